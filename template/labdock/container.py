"""Working in the running JupyterLab container: a shell, one command, the server's output."""

from __future__ import annotations

import sys

from invoke import Context, Exit, task

from . import engine, image, live
from .commands import warn
from .engine import compose
from .project import SERVICE, Project


def warn_if_stale(p: Project, cid: str) -> None:
    """Say so when the running server's image was built from other files than the project's."""
    changed = image.changed_inputs(p, engine.label(p, "container", cid, image.INPUTS_LABEL))
    changed = [name for name in changed if name not in live.synced_files(p, cid)]  # `add` reached it
    if changed:
        warn(
            f"the running server's image was built before {', '.join(changed)} changed: "
            "`invoke up` rebuilds it and restarts the server."
        )


@task
def shell(c: Context) -> None:
    """Open an interactive shell in the running JupyterLab container, as the notebook user."""
    p = Project.load(c)
    engine.require_engine(p)
    warn_if_stale(p, engine.require_running(p))
    compose(p, "exec", SERVICE, "bash", pty=True, warn=True)


@task(
    name="exec",
    positional=["command"],
    help={"command": 'The command, quoted as one argument, e.g. "pytest -q"'},
)
def exec_(c: Context, command: str) -> None:
    """Run one command in the running JupyterLab container; its exit code is passed through."""
    p = Project.load(c)
    engine.require_engine(p)
    warn_if_stale(p, engine.require_running(p))
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    no_tty = [] if tty else ["-T"]
    result = compose(p, "exec", *no_tty, SERVICE, "sh", "-c", command, pty=tty, warn=True)
    if not result.ok:
        raise Exit(code=result.exited)


@task(
    help={"follow": "Keep printing new output", "tail": "Number of lines to show from the end (default: all)"}
)
def logs(c: Context, follow: bool = False, tail: str = "all") -> None:
    """Show the JupyterLab server's output."""
    p = Project.load(c)
    engine.require_engine(p)
    follow_flag = ["--follow"] if follow else []
    compose(p, "logs", "--tail", tail, *follow_flag, SERVICE, pty=follow and sys.stdout.isatty())
