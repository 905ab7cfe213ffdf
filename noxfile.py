"""labdock's test driver: `nox` runs every session; `nox -s render` runs one.

Sessions, cheapest first:
  lint    ruff over this repo and over rendered projects' Python
  render  copier copy over a matrix of answers, checked with compose, hadolint, actionlint, invoke
  tasks   unit tests of the generated tasks.py with invoke.MockContext
  e2e     a real Docker engine (DOCKER_HOST): lock, build, up, HTTP, exec, push, down
  bench   not run by default: labdock against the common Poetry recipe (bench/benchmark.py)
  candidates  not run by default: uv, pip and Poetry as the installer (bench/candidates.py)
"""

from __future__ import annotations

import tempfile

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install(session: nox.Session, group: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff on the template repo, then on projects rendered with each stack."""
    install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    for stack in ("minimal", "pytorch"):
        # Not under .nox/: ruff skips every file below a .nox folder, even one it is given.
        project = f"{tempfile.mkdtemp(prefix='labdock-lint-')}/{stack}"
        session.run(
            "copier",
            "copy",
            "--trust",
            "--defaults",
            "--overwrite",
            "--vcs-ref=HEAD",
            "--quiet",
            f"--data=stack={stack}",
            ".",
            project,
        )
        session.run("ruff", "check", "--no-cache", project)
        session.run("ruff", "format", "--check", "--no-cache", project)


@nox.session
def render(session: nox.Session) -> None:
    """Render the answer matrix and check every output with the real tools."""
    install(session, "render")
    tests = [
        "tests/test_render.py",
        "tests/test_answers.py",
        "tests/test_update.py",
        "tests/test_repo.py",
        "tests/test_z2jh.py",
    ]
    session.run("pytest", *(session.posargs or tests))


@nox.session
def tasks(session: nox.Session) -> None:
    """Unit tests of the generated tasks.py (no Docker)."""
    install(session, "render")
    session.run("pytest", *(session.posargs or ["tests/test_tasks.py", "tests/tasks"]))


@nox.session
def e2e(session: nox.Session) -> None:
    """The workflow on a real Docker engine; fails (never skips) without one."""
    install(session, "e2e")
    session.run("pytest", "-v", "-p", "no:cacheprovider", *(session.posargs or ["tests/e2e"]))


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Build speed, image size and start-up against the baseline recipe; prunes the build cache."""
    install(session, "e2e")
    session.run("python", "bench/benchmark.py", *session.posargs)


@nox.session(default=False)
def candidates(session: nox.Session) -> None:
    """uv, pip and Poetry as the image's installer, each in labdock's Dockerfile; prunes the build cache."""
    install(session, "e2e")
    session.run("python", "bench/candidates.py", *session.posargs)
