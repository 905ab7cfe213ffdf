"""The `slugify` filter of copier.yml: python-slugify's slug, which transliterates (Café -> cafe).

Loaded by copier-template-extensions (`_jinja_extensions` in copier.yml); both packages are
installed next to Copier (README: Quick start). Filter arguments go to python-slugify, e.g.
`{{ name | slugify(max_length=48, word_boundary=True) }}`.
"""

from __future__ import annotations

from jinja2 import Environment
from jinja2.ext import Extension
from slugify import slugify


class SlugifyExtension(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["slugify"] = slugify
