"""Two guards around every task. One task at a time per checkout: tasks that change the project
or its containers take a lock. And no Python traceback reaches the user: an unexpected error ends
the task with one line (`invoke --debug TASK` or LABDOCK_DEBUG=1 shows the traceback).

The lock is an OS file lock (flock / msvcrt) on .labdock/task.lock, which the OS releases when
the holder exits, however it exits: a killed task never leaves a stale lock behind. The file
also records who holds it (pid, task), for the message a second task prints while it waits.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from invoke import Context, Exit, Task
from invoke.exceptions import Failure

from . import project as project_module

STATE_DIR = ".labdock"  # per-checkout state, git-ignored
LOCK_NAME = "task.lock"
POLL_SECONDS = 0.2
NAME_GRACE_SECONDS = 1.0  # how long a waiting task waits to learn who holds the lock

_held: set[Path] = set()  # locks this process holds (a task's own helpers may ask again)

if os.name == "nt":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False


def state_dir(root: Path) -> Path:
    """The checkout's state folder (created on first use; .gitignore lists it)."""
    folder = root / STATE_DIR
    try:
        folder.mkdir(exist_ok=True)
    except OSError as error:
        raise Exit(
            f"Cannot write in {root} ({error.strerror}): labdock needs a writable project folder."
        ) from None
    return folder


def holder(path: Path) -> str:
    """Who holds the lock, as the holder wrote it ('' when unknown)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


@contextlib.contextmanager
def checkout_lock(root: Path, task: str, wait: bool = True) -> Iterator[None]:
    """Hold the checkout's task lock; wait (saying for whom) while another task holds it."""
    path = state_dir(root) / LOCK_NAME
    if path in _held:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        said, first_try = False, time.monotonic()
        while not _try_lock(fd):
            # The holder writes its name just after it takes the lock: give it a moment to.
            known = holder(path)
            if not known and time.monotonic() - first_try < NAME_GRACE_SECONDS:
                time.sleep(0.01)
                continue
            other = known or "another invoke task"
            if not wait:
                raise Exit(f"{other} is running in this project: wait for it, or stop it first.")
            if not said:
                print(f"Waiting for {other} to finish (Ctrl-C to give up)...", file=sys.stderr, flush=True)
                said = True
            time.sleep(POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, f"`invoke {task}` (pid {os.getpid()})\n".encode())
        _held.add(path)
        try:
            yield
        finally:
            _held.discard(path)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the lock


def exclusive(task: Callable[..., object]) -> Callable[..., object]:
    """For a task that changes the project or its containers: run it under the checkout lock."""

    @functools.wraps(task)
    def wrapper(c: Context, *args: object, **kwargs: object) -> object:
        with checkout_lock(project_module.ROOT, task.__name__.rstrip("_").replace("_", "-")):
            return task(c, *args, **kwargs)

    wrapper.labdock_exclusive = True
    return wrapper


def debugging() -> bool:
    return os.environ.get("LABDOCK_DEBUG") == "1" or logging.getLogger("invoke").isEnabledFor(logging.DEBUG)


def one_line_errors(task: Task) -> Task:
    """Make a task end with one line instead of a traceback, for an interrupt or a bug."""
    body = task.body
    if getattr(body, "labdock_guarded", False):
        return task  # namespace() was called before

    @functools.wraps(body)
    def guarded(*args: object, **kwargs: object) -> object:
        try:
            return body(*args, **kwargs)
        except (Exit, Failure):
            raise  # already a message for the user (or a command's own output)
        except KeyboardInterrupt:
            raise Exit(
                "Interrupted. Run the task again; `invoke doctor` shows the project's state.", code=130
            ) from None
        except Exception as error:
            if debugging():
                raise
            where = error.__traceback__
            while where and where.tb_next:
                where = where.tb_next
            place = f" at {Path(where.tb_frame.f_code.co_filename).name}:{where.tb_lineno}" if where else ""
            raise Exit(
                f"labdock failed unexpectedly ({type(error).__name__}: {error}{place}): "
                "run with `invoke --debug` for the traceback, and report it if it is labdock's fault."
            ) from None

    guarded.labdock_guarded = True
    task.body = guarded
    return task
