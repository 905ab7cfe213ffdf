"""Fixtures shared by every test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rendering import render


@pytest.fixture
def render_project(tmp_path: Path):
    """render_project(**answers) -> path of a freshly rendered project."""

    def _render(name: str = "project", **answers: object) -> Path:
        return render(tmp_path / name, **answers)

    return _render
