"""Symbolic links the container cannot follow. The container sees the project folder only (at
/workspace): a link to a path that does not exist is broken everywhere, and a link that leaves the
project is broken inside JupyterLab even when it works on the host. Checked before `up` starts the
server and by `doctor`, so that neither shows up only as an empty folder in the lab.
"""

from __future__ import annotations

import os
from pathlib import Path

# Where links are looked for: the project's top level and the folders the lab works in (one
# level deep: data/ may hold millions of files).
FOLDERS = ("notebooks", "data", "src", "runs")


def candidates(root: Path) -> list[Path]:
    """The links in the project's top level and directly in FOLDERS."""
    found: list[Path] = []
    for folder in (root, *(root / name for name in FOLDERS)):
        try:
            with os.scandir(folder) as entries:
                found += [Path(entry.path) for entry in entries if entry.is_symlink()]
        except OSError:  # missing, or not a folder: nothing to look at
            continue
    return sorted(set(found))


def broken(root: Path) -> list[str]:
    """One line per link whose target does not exist, naming both and the fix."""
    lines = []
    for link in candidates(root):
        if not link.exists():
            lines.append(
                f"{link.relative_to(root).as_posix()} is a link to {os.readlink(link)}, which does not "
                "exist: point it at a folder that does, or remove it"
            )
    return lines


def outside(root: Path) -> list[str]:
    """One line per link that leaves the project (so it is empty or broken in the container)."""
    lines = []
    project = root.resolve()
    for link in candidates(root):
        if not link.exists():
            continue
        target = link.resolve()
        if target != project and project not in target.parents:
            lines.append(
                f"{link.relative_to(root).as_posix()} links to {target}, outside the project: the "
                "container sees only the project folder, so it is empty in JupyterLab (move or copy "
                "the files into the project)"
            )
    return lines
