"""Template updates: `invoke update` runs `copier update`, then relocks if pyproject.toml changed."""

from __future__ import annotations

import shutil

from invoke import Context, Exit, task

from . import locking
from .commands import run
from .guard import exclusive
from .project import Project


@task(help={"vcs_ref": "Template version to update to (default: its latest release)"})
@exclusive
def update(c: Context, vcs_ref: str = "") -> None:
    """Pull the template's improvements into this project (`copier update`), then relock if needed."""
    p = Project.load(c)
    if not shutil.which("copier"):
        raise Exit("Copier is not installed on this machine: `pipx install copier`, then retry.")
    if p.git("status", "--porcelain"):
        raise Exit(
            "The project has uncommitted changes: commit them first, so the update can merge "
            "with them and `git diff` shows what it changed."
        )
    before = p.pyproject.read_bytes()
    with c.cd(str(p.root)):
        run(
            c,
            "copier",
            "update",
            "--defaults",
            "--trust",
            "--conflict",
            "inline",
            *(["--vcs-ref", vcs_ref] if vcs_ref else []),
        )
    conflicted = p.git("grep", "--untracked", "-l", "-e", "^<<<<<<< ")
    if conflicted:
        raise Exit(
            f"The update conflicts with your edits in: {', '.join(conflicted.split())}. Resolve "
            "the <<<<<<< / >>>>>>> blocks, commit, then run `invoke lock` if pyproject.toml changed."
        )
    if p.pyproject.read_bytes() != before:
        print("The update changed pyproject.toml: relocking.")
        locking.lock(Project.load(c))  # the update may have changed the project's name too
    print("Updated: review with `git diff`, then commit.")
