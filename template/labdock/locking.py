"""poetry.lock: Poetry runs in the Dockerfile's builder stage, on the project folder, so the host
needs neither Poetry nor a matching Python."""

from __future__ import annotations

import shlex
import time

from invoke import Exit, Result

from .commands import run, since
from .project import WORKSPACE, Project, host_ids
from .stages import build_builder, failure_hint, index_args, index_env


def poetry_in_container(p: Project, poetry_args: str, owned_files: list[str], **run_kwargs) -> Result:
    """Run Poetry in the builder stage on the project folder; written files stay the host user's."""
    builder = build_builder(p)
    _, run_flags = index_args(p)
    uid, gid = host_ids()
    script = f"poetry {poetry_args} && chown {uid}:{gid} {shlex.join(owned_files)}"
    return run(
        p.c,
        "docker",
        "run",
        "--rm",
        "-v",
        f"{p.root}:{WORKSPACE}",
        "-v",
        f"{p.poetry_cache_volume}:/var/cache/pypoetry",
        *run_flags,
        builder,
        "sh",
        "-c",
        script,
        env=index_env(p),
        **run_kwargs,
    )


def lock_problem(p: Project, quiet: bool = False) -> str | None:
    """None when poetry.lock exists and matches pyproject.toml, else a one-line cause and fix.
    quiet: without the builder stage's build output (doctor prints one line per check)."""
    if not p.lock_file.exists():
        return "poetry.lock is missing: run `invoke lock` (the build runs it for you), then commit it."
    builder = build_builder(p, quiet=quiet)
    result = run(
        p.c,
        "docker",
        "run",
        "--rm",
        "-v",
        f"{p.root}:{WORKSPACE}:ro",
        builder,
        "poetry",
        "check",
        "--lock",
        hide=True,
        warn=True,
    )
    if result.ok:
        return None
    output = (result.stdout + result.stderr).strip()
    if "poetry lock" in output:
        return "poetry.lock is out of date with pyproject.toml: run `invoke lock`, then commit both."
    last_line = output.splitlines()[-1] if output else "poetry check failed"
    return f"pyproject.toml has a problem ({last_line}): fix it, then run `invoke lock`."


def lock(p: Project, upgrade: bool = False) -> None:
    """Resolve pyproject.toml into poetry.lock."""
    started = time.monotonic()
    result = poetry_in_container(p, "lock" + (" --regenerate" if upgrade else ""), ["poetry.lock"], warn=True)
    if not result.ok:
        raise Exit(failure_hint("poetry lock failed"))
    print(f"poetry.lock is up to date ({since(started)}): commit it with pyproject.toml.")
