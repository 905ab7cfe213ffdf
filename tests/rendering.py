"""Render the template from this checkout, uncommitted changes included, and read its questions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import copier
import yaml

REPO = Path(__file__).resolve().parents[1]


def render(dst: Path, **answers: object) -> Path:
    """Render this checkout into dst with default answers plus `answers`; returns dst."""
    copier.run_copy(
        src_path=str(REPO),
        dst_path=str(dst),
        data=answers,
        defaults=True,
        unsafe=True,  # the template's _tasks and _jinja_extensions
        vcs_ref="HEAD",
        quiet=True,
    )
    return dst


def snapshot(dst: Path) -> Path:
    """This checkout's files (committed or not, ignored ones left out) in a folder without git.

    copier renders such a folder in place instead of cloning it first, several times faster:
    what a test that renders hundreds of projects needs. Returns dst."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO / name).is_file():  # a file deleted in the work tree is still listed
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dst / name)
    return dst


def render_from(template: Path, dst: Path, **answers: object) -> Path:
    """Render a snapshot() folder into dst with default answers plus `answers`; returns dst."""
    copier.run_copy(
        src_path=str(template), dst_path=str(dst), data=answers, defaults=True, unsafe=True, quiet=True
    )
    return dst


def questions() -> dict[str, dict]:
    """copier.yml's questions (its `_` settings left out), in the order copier asks them."""
    config = yaml.safe_load((REPO / "copier.yml").read_text())
    return {name: spec for name, spec in config.items() if not name.startswith("_")}


def choices(spec: dict) -> list:
    """A question's allowed values: the list, or the values of a {label: value} mapping."""
    found = spec.get("choices", [])
    return list(found.values()) if isinstance(found, dict) else list(found)


def tool(name: str) -> str:
    """A tool installed next to this Python (the nox session's venv), else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed: run the tests through nox"
    return found
