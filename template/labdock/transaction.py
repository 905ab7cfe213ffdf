"""pyproject.toml and poetry.lock change together or not at all, whatever interrupts the change.

Poetry never writes to the project: it works on a copy of both files in .labdock/ (`staging`),
and only a change that fully succeeded is written back (`replace`): each new file is written
beside its target and synced, the pair is recorded in a journal, both are renamed over their
targets, then the journal is deleted. If the process dies between the two renames, the next
task finishes them (`recover`, run by `settle` when a task starts), so the project always holds
both old files or both new ones. Ctrl-C, SIGTERM and SIGHUP while dependencies change are caught
(`Interrupts`): the step that can stop is stopped, the rest finish, and the task says
"interrupted" and what state it left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

from invoke import Exit

from . import guard

FILES = ("pyproject.toml", "poetry.lock")  # what a dependency change may rewrite
JOURNAL = "replace.json"  # in .labdock/: the renames of a replacement under way
NEW_SUFFIX = ".labdock-new"  # a new file, written beside its target until it is renamed over it
STAGING_PREFIX = "staging-"  # .labdock/staging-*: Poetry's working copies

CONFLICT_MARKER = re.compile(r"^(<{7}|={7}|>{7})( |$)")  # what git leaves in a file it could not merge
# Exit code of an interrupted task, as a shell reports a process ended by Ctrl-C.
INTERRUPTED = 130


# ----------------------------------------------------------------------------- files


def _sync_folder(folder: Path) -> None:
    """Make renames in folder durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_synced(path: Path, data: bytes, mode: int = 0o644) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.chmod(path, mode)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def new_file(target: Path) -> Path:
    """Where the new content of target waits for its rename: beside it, hidden."""
    return target.with_name(f".{target.name}{NEW_SUFFIX}")


def replace(root: Path, contents: dict[str, bytes]) -> list[str]:
    """Replace the files named in contents (relative to root) together; returns the changed names."""
    changed = {name: data for name, data in contents.items() if _read(root / name) != data}
    if not changed:
        return []
    renames = []
    for name, data in changed.items():
        target = root / name
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
        _write_synced(new_file(target), data, mode)
        renames.append([new_file(target).name, name])
    _sync_folder(root)
    journal = guard.state_dir(root) / JOURNAL
    pending = journal.with_name(JOURNAL + ".tmp")
    _write_synced(pending, json.dumps(renames).encode(), 0o600)
    os.replace(pending, journal)  # from here on, the change is decided: recover() finishes it
    _sync_folder(journal.parent)
    _finish(root, renames)
    journal.unlink()
    _sync_folder(journal.parent)
    return list(changed)


def _finish(root: Path, renames: list[list[str]]) -> None:
    for source, target in renames:
        with contextlib.suppress(FileNotFoundError):  # renamed before the interruption
            os.replace(root / source, root / target)
    _sync_folder(root)


def pending(root: Path) -> bool:
    """Whether an interrupted change left something to finish or clean up (cheap: no lock)."""
    return (root / guard.STATE_DIR / JOURNAL).exists() or any(
        new_file(root / name).exists() for name in FILES
    )


def recover(root: Path) -> str:
    """Finish a replacement that was interrupted, drop what an interrupted change left; returns
    what was done ('' when nothing was). Call it holding the checkout lock."""
    journal = root / guard.STATE_DIR / JOURNAL
    done = ""
    if journal.exists():
        try:
            renames = json.loads(journal.read_text(encoding="utf-8"))
            _finish(root, [[str(source), str(target)] for source, target in renames])
            done = "finished replacing " + " and ".join(target for _, target in renames)
        except (ValueError, TypeError, OSError):
            done = "dropped an unreadable replacement journal"
        journal.unlink(missing_ok=True)
    for name in FILES:  # written, but the change was never decided: the old files stand
        if new_file(root / name).exists():
            new_file(root / name).unlink()
            done = done or f"dropped the unfinished new {name}"
    folder = root / guard.STATE_DIR
    if folder.is_dir():
        for stale in folder.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
    return done


def settle(root: Path) -> None:
    """At the start of every task: finish what an interrupted change left, unless a running task
    holds the checkout (it is the one changing the files)."""
    if not pending(root):
        return
    try:
        with guard.checkout_lock(root, "recovery", wait=False):
            done = recover(root)
    except Exit:
        return
    if done:
        print(f"An interrupted dependency change was completed: {done}.", file=sys.stderr)


@contextlib.contextmanager
def staging(root: Path) -> Iterator[Path]:
    """A private copy of pyproject.toml and poetry.lock for Poetry to work on, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=guard.state_dir(root)))
    try:
        for name in FILES:
            if (root / name).exists():
                shutil.copyfile(root / name, folder / name)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def staged(folder: Path) -> dict[str, bytes]:
    """What Poetry left in a staging folder, as replace() takes it."""
    return {name: (folder / name).read_bytes() for name in FILES if (folder / name).exists()}


def conflict_marker(path: Path) -> int | None:
    """The line number of the first git conflict marker in a file, or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return next((number for number, line in enumerate(file, 1) if CONFLICT_MARKER.match(line)), None)
    except FileNotFoundError:
        return None


def conflict_problem(root: Path) -> str | None:
    """A one-line cause and fix when pyproject.toml or poetry.lock holds git conflict markers."""
    if line := conflict_marker(root / "poetry.lock"):
        return (
            f"poetry.lock has a git conflict marker at line {line}: take one side "
            "(`git checkout --ours poetry.lock` or `--theirs`), then run `invoke lock`."
        )
    if line := conflict_marker(root / "pyproject.toml"):
        return (
            f"pyproject.toml has a git conflict marker at line {line}: edit it to keep the lines you "
            "want (delete the markers), then run `invoke lock`."
        )
    return None


# ----------------------------------------------------------------------------- interrupts

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupts:
    """Catches Ctrl-C, SIGTERM and SIGHUP while dependencies change.

    Invoke forwards Ctrl-C to the command it runs and waits, and a container does not stop when
    its `docker run` gets a signal: so a caught signal calls the cancel action of the step under
    way (e.g. removing the Poetry container), or none when the step should finish (installing,
    replacing the files). After each step, `check()` ends the task if a signal came.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._cancel: Callable[[], None] | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._caught)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _caught(self, number: int, frame: object) -> None:
        first = self.signal is None
        self.signal = number
        if self._cancel is not None:
            cancel, self._cancel = self._cancel, None
            cancel()
        elif first:
            print("\nInterrupted: finishing this step, then stopping...", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def cancel_with(self, cancel: Callable[[], None]) -> Iterator[None]:
        """While the block runs, a signal calls cancel (at most once)."""
        if self.signal is not None:
            cancel()
        self._cancel = cancel
        try:
            yield
        finally:
            self._cancel = None

    @property
    def happened(self) -> bool:
        return self.signal is not None

    @contextlib.contextmanager
    def step(self, state: str) -> Iterator[None]:
        """A step that a signal may make fail (the terminal's Ctrl-C also stops the docker command
        it runs): its failure after a signal, or the signal itself, ends the task as interrupted."""
        try:
            yield
        except Exit:
            if self.happened:
                raise Exit(f"Interrupted: {state}", code=INTERRUPTED) from None
            raise
        self.check(state)

    def check(self, state: str) -> None:
        """End the task if a signal came: 'Interrupted: <state>'."""
        if self.signal is not None:
            raise Exit(f"Interrupted: {state}", code=INTERRUPTED)
