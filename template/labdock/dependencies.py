"""Dependencies: `invoke lock`, `add` and `remove`, with Poetry in a container (locking.py).

A change is one transaction (transaction.py): Poetry works on a copy of pyproject.toml and
poetry.lock; only if it succeeds does the new lock reach the running server (live.py: installed
into its environment, so kernels import the package at once and keep their state) and are both
files replaced together. Then the image is rebuilt, so that the next `invoke up` has the package.
A failure or an interrupt before that point leaves the project exactly as it was.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import time

from invoke import Context, Exit, task

from . import engine, live, locking, transaction
from .commands import since
from .guard import exclusive
from .image import build_image
from .locking import UNCHANGED
from .project import Project
from .transaction import INTERRUPTED, Interrupts

NEEDS_BUILD = "needs a build"  # reach_server: a package has no wheel, the image build makes it
REQUIREMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def names_of(packages: list[str]) -> list[str]:
    """The distribution names in requirements such as 'polars>=1.0' or 'rich[jupyter]'."""
    return [locking.normalize(match.group()) for match in map(REQUIREMENT_NAME.match, packages) if match]


def versions(lock: dict, names: list[str]) -> str:
    """'tabulate 0.10.0, rich 14.1.0' for the named packages the lock has."""
    found = {locking.normalize(package["name"]): package for package in lock.get("package", [])}
    return ", ".join(f"{found[name]['name']} {found[name]['version']}" for name in names if name in found)


def reach_server(
    p: Project, cid: str, builder: str, old: bytes | None, new: bytes, interrupts: Interrupts
) -> str:
    """Bring the running server's environment to the new lock; returns what changed there."""
    before, after = locking.load_lock(old), locking.load_lock(new)
    install, remove = locking.changes(before, after)
    if live.container_lock(p, cid) != locking.lock_digest(old):
        # The server runs another lock than the project's (e.g. `invoke lock` without a build):
        # compare with what it has installed instead.
        install, remove = locking.changes_from(live.installed(p, cid), after)
    if not install and not remove:
        return ""
    requirements = locking.requirements(after, install) if install else ""
    result = live.install(p, cid, builder, requirements, remove)
    if not result.ok and interrupts.happened:
        raise Exit(
            f"Interrupted while installing into the running JupyterLab; {UNCHANGED} (the server may "
            "hold part of the change until it restarts: `invoke down`, then `invoke up`).",
            code=INTERRUPTED,
        )
    if not result.ok and any(sign in result.stderr + result.stdout for sign in live.NEEDS_BUILD):
        return NEEDS_BUILD
    if not result.ok:
        lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit code {result.exited}"
        raise Exit(f"Installing into the running JupyterLab failed ({reason}): {UNCHANGED}.")
    return ", ".join(
        filter(
            None, [f"installed {len(install)}" if install else "", f"removed {len(remove)}" if remove else ""]
        )
    )


def change(
    p: Project,
    verb: str,
    packages: list[str],
    group: str = "",
    build: bool = True,
    builder: str = "",
    cid: str | None = None,
    interrupts: Interrupts | None = None,
) -> bool:
    """`poetry add` or `poetry remove` the packages as one transaction (see the module docstring).
    Returns whether the files changed. `builder` pins the image Poetry and uv come from, `cid` the
    running server (default: the builder stage as built now, the server compose finds)."""
    locking.refuse_conflicts(p)
    what = f"poetry {verb} {' '.join(packages)}"
    script = shlex.join(["poetry", verb, "--lock", *(["--group", group] if group else []), "--", *packages])
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        interrupts = interrupts or stack.enter_context(Interrupts())
        with interrupts.step(f"before Poetry ran; {UNCHANGED}."):
            builder = builder or locking.ensure_builder(p)
        with transaction.staging(p.root) as folder:
            result = locking.poetry(p, folder, script, interrupts, builder=builder)
            interrupts.check(f"Poetry was stopped; {UNCHANGED}.")
            if not result.ok:
                raise Exit(locking.explain(result, what))
            new_files = transaction.staged(folder)
            old_lock = p.lock_file.read_bytes() if p.lock_file.exists() else None
            new_lock = new_files.get("poetry.lock", b"")
            # From here on the change goes through: a signal only stops it once the files are replaced.
            cid = engine.container_id(p) if cid is None else cid
            reached = reach_server(p, cid, builder, old_lock, new_lock, interrupts) if cid else ""
            changed = transaction.replace(p.root, new_files)
            if cid and reached != NEEDS_BUILD:
                live.record(p, cid, locking.lock_digest(new_lock))
        lock = locking.load_lock(new_lock)
        names = names_of(packages)
        if not changed:
            print(f"Nothing to change: pyproject.toml already says so ({since(started)}).")
            return False
        done = "Added" if verb == "add" else "Removed"
        listed = versions(lock, names) if verb == "add" else ", ".join(packages)
        print(f"{done} {listed} in pyproject.toml and poetry.lock ({since(started)}).")
        if reached == NEEDS_BUILD:
            print(
                "It builds from source, which is not done inside the running server: it reaches the "
                "server with the image (`invoke up --build` after this, which restarts the server)."
            )
        elif reached:
            if verb == "add":
                print(f"The running JupyterLab has it now ({reached}): import it in any kernel, no restart.")
            else:
                print(
                    f"The running JupyterLab no longer has it ({reached}); kernels that imported it keep it."
                )
        interrupts.check(
            "the change is recorded (and in the running server); the image is not rebuilt: "
            "run `invoke build`."
        )
        if not build:
            return True
        print(
            "Rebuilding the image, so that the next `invoke up` has it too (the server keeps running)...",
            flush=True,
        )
        try:
            build_image(p)
        except Exit as error:
            if interrupts.happened:
                raise Exit(
                    "Interrupted while rebuilding the image: the change is recorded; run `invoke build`.",
                    code=INTERRUPTED,
                ) from None
            raise Exit(f"{error.message} The change is recorded; once fixed, run `invoke build`.") from None
        interrupts.check("the change is recorded and the image rebuilt.")
    return True


# ----------------------------------------------------------------------------- tasks


def start(c: Context, interrupts: Interrupts) -> Project:
    """The project, once the engine answers; Ctrl-C from here on ends in one line, not a traceback."""
    with interrupts.step(f"before anything ran; {UNCHANGED}."):
        p = Project.load(c)
        engine.require_engine(p)
    return p


@task(
    help={
        "upgrade": "Re-resolve every dependency to the newest allowed version "
        "(default: keep locked versions that still fit pyproject.toml)"
    }
)
@exclusive
def lock(c: Context, upgrade: bool = False) -> None:
    """Resolve pyproject.toml into poetry.lock, with Poetry in a container (no Poetry on the host)."""
    with Interrupts() as interrupts:
        p = start(c, interrupts)
        locking.lock(p, upgrade=upgrade, interrupts=interrupts)


@task(
    positional=["package"],
    help={
        "package": "A requirement, e.g. polars or 'polars>=1.0'",
        "group": "Dependency group (default: the main dependencies)",
    },
)
@exclusive
def add(c: Context, package: str, group: str = "") -> None:
    """Add a dependency: locked, importable at once in the running JupyterLab (no restart), image rebuilt."""
    with Interrupts() as interrupts:
        change(start(c, interrupts), "add", [package], group, interrupts=interrupts)


@task(
    positional=["package"],
    help={
        "package": "The dependency to remove, by name",
        "group": "Dependency group it is in (default: the main dependencies)",
    },
)
@exclusive
def remove(c: Context, package: str, group: str = "") -> None:
    """Remove a dependency from pyproject.toml, poetry.lock and the running JupyterLab; image rebuilt."""
    with Interrupts() as interrupts:
        change(start(c, interrupts), "remove", [package], group, interrupts=interrupts)
