"""`invoke sync`: on a remote engine, the project lives in a volume there (the engine cannot see
this folder); this copies files between the two, both ways, as tar streams through `docker
compose exec` as the notebook user (transfer.py has the plain parts and the rules).

What is compared: here, what git tracks or would track (`git ls-files -co --exclude-standard`;
every file without git), there, the volume's files; both against the state of the last sync
(.labdock/sync.json). A side that changed wins; a file changed on both sides is a conflict and
stays as it is on both. Never synced: .env, .git, caches, data/ and runs/ (they stay on the
engine's side), and files the container made that .gitignore excludes.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from invoke import Context, Exit, task

from . import engine, transfer
from .commands import since
from .guard import checkout_lock
from .project import SERVICE, STATE_DIR, Project

STATE_FILE = "sync.json"  # in .labdock/
WATCH_SECONDS = 0.5
PREFER = ("here", "engine")


# ----------------------------------------------------------------------------- both sides


def host_paths(p: Project) -> list[str]:
    """This folder's files that are synced candidates: git's tracked and new, not ignored
    (every file without git; transfer.in_scope filters both)."""
    result = subprocess.run(
        ["git", "-C", str(p.root), "ls-files", "-co", "--exclude-standard", "-z"],
        capture_output=True,
        check=False,
    )
    if result.returncode == 0:
        return [path for path in result.stdout.decode(errors="surrogateescape").split("\0") if path]
    found = []
    for folder, dirs, files in os.walk(p.root):
        dirs[:] = [name for name in dirs if name not in transfer.SKIPPED and name != STATE_DIR]
        found += [Path(folder, name).relative_to(p.root).as_posix() for name in files]
    return found


def ignored_here(p: Project, paths: list[str]) -> list[str]:
    """Which of these paths this folder's .gitignore excludes (none without git)."""
    if not paths:
        return []
    result = subprocess.run(
        ["git", "-C", str(p.root), "check-ignore", "--no-index", "--stdin", "-z"],
        input="\0".join(paths).encode(errors="surrogateescape"),
        capture_output=True,
        check=False,
    )
    return [path for path in result.stdout.decode(errors="surrogateescape").split("\0") if path]


def server_running(p: Project) -> bool:
    """Whether the server runs (asked once per task: each question is an ssh round trip)."""
    if RUNNING.get(p.root) is None:
        RUNNING[p.root] = bool(engine.container_id(p))
    return RUNNING[p.root]


RUNNING: dict[Path, bool] = {}


def in_workspace(p: Project, argv: list[str], stdin: bytes = b"") -> bytes:
    """Run a command on the workspace volume as the notebook user: in the running server, else
    in a throwaway container of the same service (the volume outlives the server)."""
    if server_running(p):
        result = engine.compose_bytes(p, "exec", "-T", SERVICE, *argv, stdin=stdin)
    else:
        result = engine.compose_bytes(p, "run", "--rm", "--no-deps", "-T", SERVICE, *argv, stdin=stdin)
    if result.returncode != 0:
        engine.print_error(result)
        raise Exit(f"The sync with the engine's workspace failed (exit {result.returncode}; error above).")
    return result.stdout


@dataclass
class State:
    """Both sides and the last sync's state, compared."""

    volume: str
    base: dict[str, str]
    host: dict[str, str]
    engine: dict[str, str]
    plan: transfer.SyncPlan


def state_file(p: Project) -> Path:
    return p.root / STATE_DIR / STATE_FILE


def look(p: Project) -> State:
    """Compare this folder and the workspace volume with the last sync (one engine round trip:
    the volume's manifest; the ignore check happens here)."""
    RUNNING.pop(p.root, None)  # ask again: the server may have started or stopped since
    host = transfer.host_manifest(p.root, host_paths(p))
    try:
        volume, there = transfer.parse_manifest(in_workspace(p, transfer.engine_manifest_command()).decode())
    except ValueError as error:
        raise Exit(str(error)) from None
    path = state_file(p)
    base = transfer.read_base(path.read_text(encoding="utf-8") if path.exists() else "", volume)
    ignored = ignored_here(p, sorted(set(there) - set(host)))
    return State(volume, base, host, there, transfer.plan_sync(base, host, there, ignored))


def resolve(state: State, prefer: str) -> None:
    """Settle the conflicts in favour of one side (--prefer here / engine)."""
    plan = state.plan
    for path in plan.conflicts:
        here, there = state.host.get(path), state.engine.get(path)
        if prefer == "here":
            (plan.push if here is not None else plan.delete_on_engine).append(path)
        else:
            (plan.fetch if there is not None else plan.delete_here).append(path)
    plan.conflicts = []


def send_files(p: Project, paths: list[str], deleted: Iterable[str] = ()) -> None:
    """Copy these files of this folder to the engine's workspace (whatever git ignores), and
    delete those `deleted` there."""
    in_workspace(p, transfer.engine_apply_command(deleted), transfer.pack(p.root, paths))


def fetch_files(p: Project, paths: list[str]) -> None:
    """Copy these files of the engine's workspace here, each replacing its file whole."""
    try:
        transfer.unpack(in_workspace(p, transfer.engine_pack_command(paths)), p.root, paths)
    except ValueError as error:
        raise Exit(str(error)) from None


def apply(p: Project, state: State, push: bool = True, fetch: bool = True) -> None:
    """Carry out the plan (one side or both) and record the new state."""
    plan = state.plan
    if push and (plan.push or plan.delete_on_engine):
        send_files(p, plan.push, deleted=plan.delete_on_engine)
    if fetch and plan.fetch:
        fetch_files(p, plan.fetch)
    if fetch:
        for path in plan.delete_here:
            (p.root / path).unlink(missing_ok=True)
    files = transfer.base_after(state.base, state.host, state.engine, plan, pushed=push, fetched=fetch)
    path = state_file(p)
    path.parent.mkdir(exist_ok=True)
    partial = path.with_name(f".{STATE_FILE}.partial")
    partial.write_text(transfer.base_record(state.volume, files), encoding="utf-8")
    partial.replace(path)


def names(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def conflict_line(paths: list[str]) -> str:
    return (
        f"Changed here and in the engine's workspace, left as they are on both sides: {names(paths)}. "
        "Keep one side with `invoke sync --prefer here` or `--prefer engine` (or copy one away first)."
    )


def push_on_up(p: Project) -> None:
    """`up` in remote mode: this folder's changes go to the volume (never the other way: the
    lab's changes wait for `invoke sync`, which the lines printed here say)."""
    started = time.monotonic()
    state = look(p)
    plan = state.plan
    apply(p, state, push=True, fetch=False)
    sent = len(plan.push) + len(plan.delete_on_engine)
    print(f"Synced this folder to the engine's workspace ({sent} changed, {since(started)}).")
    waiting = len(plan.fetch) + len(plan.delete_here)
    if waiting:
        print(f"{waiting} changes made in the lab wait to come here: `invoke sync` copies them.")
    if plan.conflicts:
        print(conflict_line(plan.conflicts))


def unsynced(p: Project) -> list[str]:
    """What only the engine's workspace has: changes `invoke sync` would fetch, and conflicts."""
    plan = look(p).plan
    return sorted(plan.fetch + plan.conflicts)


def sync_once(p: Project, prefer: str = "", quiet: bool = False) -> transfer.SyncPlan:
    started = time.monotonic()
    state = look(p)
    if prefer:
        resolve(state, prefer)
    plan = state.plan
    apply(p, state)
    if not quiet or not plan.empty:
        print(
            f"Synced with the engine's workspace in {since(started)}: {len(plan.push)} sent, "
            f"{len(plan.fetch)} fetched, {len(plan.delete_on_engine) + len(plan.delete_here)} deleted."
        )
    return plan


def snapshot(p: Project) -> dict[str, tuple[int, int]]:
    """(mtime, size) of this folder's synced files: cheap to poll."""
    found = {}
    for path in host_paths(p):
        try:
            info = (p.root / path).stat()
        except OSError:
            continue
        if transfer.in_scope(path):
            found[path] = (info.st_mtime_ns, info.st_size)
    return found


def watch(p: Project, prefer: str) -> None:
    """Sync now, then push every change made here (polling); Ctrl-C stops. The task lock is
    taken for each sync only: `invoke up` and friends go on meanwhile."""
    with checkout_lock(p.root, "sync"):
        sync_once(p, prefer)
    print("Watching this folder: changes go to the engine as you save (Ctrl-C stops).")
    seen = snapshot(p)
    try:
        while True:
            time.sleep(WATCH_SECONDS)
            now = snapshot(p)
            if now != seen:
                with checkout_lock(p.root, "sync --watch"):
                    plan = sync_once(p, prefer, quiet=True)
                if plan.conflicts:
                    print(conflict_line(plan.conflicts))
                seen = snapshot(p)
    except KeyboardInterrupt:
        print("Stopped watching.")


@task(
    help={
        "prefer": "Settle files changed on both sides: `here` (this folder wins) or `engine` "
        "(the lab's version wins)",
        "watch": "Keep going: send every change made here as you save (Ctrl-C stops)",
    }
)
def sync(c: Context, prefer: str = "", watch_: bool = False) -> None:
    """Remote engine: copy changes between this folder and the project's volume there, both ways."""
    p = Project.load(c)
    if prefer and prefer not in PREFER:
        raise Exit(f"--prefer {prefer!r} is not valid: use --prefer here or --prefer engine.")
    if not p.remote:
        print("The engine is local: it mounts this folder, so there is nothing to sync.")
        return
    engine.require_engine(p)
    if watch_:
        watch(p, prefer)
        return
    with checkout_lock(p.root, "sync"):
        plan = sync_once(p, prefer)
    if plan.conflicts:
        raise Exit(conflict_line(plan.conflicts))
