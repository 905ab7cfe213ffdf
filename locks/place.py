"""Give a new project the tested poetry.lock shipped for its answers (run by `copier copy`).

    python locks/place.py STACK GPU TENSORBOARD PYTHON_VERSION     (in the new project's folder)

The locks in this folder are Poetry's own poetry.lock files, one per combination of answers that
changes pyproject.toml's dependencies; the maintainer task `invoke locks` refreshes them and the
render tests check each one against the pyproject.toml it is shipped for. With one, a new
project's first `invoke up` builds at once instead of resolving every dependency from nothing.
Without one (pytorch with gpu none: its index is not reachable where the locks are made), the
first `invoke up` locks as before. A project that already has a poetry.lock keeps it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def lock_name(stack: str, gpu: str, tensorboard: bool, python_version: str) -> str:
    """The shipped lock for these answers: only the ones that change pyproject's dependencies."""
    parts = [stack]
    if stack == "pytorch":  # the GPU answer changes only the pytorch stack's dependencies
        parts.append("nvidia" if gpu == "nvidia" else "cpu")
    if tensorboard:
        parts.append("tensorboard")
    return f"{'-'.join(parts)}-py{python_version}.lock"


def main(stack: str, gpu: str, tensorboard: str, python_version: str) -> None:
    shipped = FOLDER / lock_name(stack, gpu, tensorboard.lower() == "true", python_version)
    target = Path("poetry.lock")
    if shipped.is_file() and not target.exists():
        shutil.copyfile(shipped, target)


if __name__ == "__main__":
    main(*sys.argv[1:5])
