"""labdock's pip for the lab: `pip install` / `%pip install` add the package to the project's
dependencies (pyproject.toml and poetry.lock) and to this running server. See __main__.py."""
