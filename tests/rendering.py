"""Render the template from this checkout, uncommitted changes included."""

from __future__ import annotations

from pathlib import Path

import copier

REPO = Path(__file__).resolve().parents[1]


def render(dst: Path, **answers: object) -> Path:
    """Render this checkout into dst with default answers plus `answers`; returns dst."""
    copier.run_copy(
        src_path=str(REPO),
        dst_path=str(dst),
        data=answers,
        defaults=True,
        unsafe=True,  # the template's _tasks
        vcs_ref="HEAD",
        quiet=True,
    )
    return dst
