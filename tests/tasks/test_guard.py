"""One task at a time per checkout: a second task waits for the first (saying which, with its pid),
and a killed task never leaves a lock behind. Real processes, real OS locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rendering import REPO
from tests.tasks.helpers import exit_of, labdock, run_task

guard = labdock.guard

HOLD = """
import sys, time
sys.path.insert(0, {template!r})
from labdock import guard
with guard.checkout_lock(__import__("pathlib").Path({root!r}), "add"):
    print("locked", flush=True)
    time.sleep(60)
"""


def hold_lock(root: Path) -> subprocess.Popen:
    """Another process holding the checkout's lock, as `invoke add` would."""
    script = HOLD.format(template=str(REPO / "template"), root=str(root))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_task_waits_for_the_first_and_names_it(tmp_path, capsys, monkeypatch):
    holder = hold_lock(tmp_path)
    try:
        error = exit_of(lambda: guard.checkout_lock(tmp_path, "up", wait=False).__enter__())
        assert error.message == (
            f"`invoke add` (pid {holder.pid}) is running in this project: wait for it, or stop it first."
        )
        started = time.monotonic()
        monkeypatch.setattr(guard, "POLL_SECONDS", 0.05)
        subprocess.Popen(["sh", "-c", f"sleep 1; kill {holder.pid}"])
        with guard.checkout_lock(tmp_path, "up"):
            waited = time.monotonic() - started
            assert (tmp_path / ".labdock" / "task.lock").read_text() == f"`invoke up` (pid {os.getpid()})\n"
        assert waited >= 0.8
        assert f"Waiting for `invoke add` (pid {holder.pid}) to finish" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


SLOW_TO_NAME = """
import fcntl, os, sys, time
os.makedirs({state!r}, exist_ok=True)
fd = os.open({path!r}, os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(0.3)  # the moment between taking the lock and writing who holds it
os.write(fd, b"`invoke add` (pid 4242)\\n")
time.sleep(60)
"""


@pytest.mark.skipif(os.name == "nt", reason="the holder here takes the lock with fcntl")
def test_a_task_that_arrives_just_after_another_took_the_lock_still_names_it(tmp_path, capsys):
    """The holder writes its name just after it takes the lock: a task arriving in between waits
    to learn it instead of saying 'another invoke task' (a race CI hit with two `invoke add`s)."""
    state = tmp_path / ".labdock"
    script = SLOW_TO_NAME.format(state=str(state), path=str(state / "task.lock"))
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        error = exit_of(lambda: guard.checkout_lock(tmp_path, "up", wait=False).__enter__())
        assert error.message.startswith("`invoke add` (pid 4242) is running in this project")
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_task_leaves_no_stale_lock(tmp_path):
    holder = hold_lock(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert "pid" in (tmp_path / ".labdock" / "task.lock").read_text()  # what it wrote is still there
    started = time.monotonic()
    with guard.checkout_lock(tmp_path, "up", wait=False):
        pass
    assert time.monotonic() - started < 1


def test_a_task_may_take_its_own_lock_again(tmp_path):
    with guard.checkout_lock(tmp_path, "add"), guard.checkout_lock(tmp_path, "up", wait=False):
        pass


def test_mutating_tasks_are_exclusive():
    namespace = labdock.namespace()
    exclusive = {
        name for name in namespace.task_names if getattr(namespace[name].body, "labdock_exclusive", False)
    }
    assert exclusive >= {
        "build",
        "up",
        "down",
        "prepare",
        "lab",
        "tensorboard",
        "lock",
        "add",
        "push",
        "update",
    }
    assert not exclusive & {"url", "logs", "shell", "exec", "doctor"}  # read or attach only


def test_an_unexpected_error_is_one_line_unless_debugging(make_ctx, monkeypatch):
    def broken(p):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(labdock.engine, "require_engine", broken)
    monkeypatch.delenv("LABDOCK_DEBUG", raising=False)
    error = exit_of(lambda: run_task("down", make_ctx()))
    assert error.message.startswith("labdock failed unexpectedly (ZeroDivisionError: division by zero at ")
    assert "`invoke --debug`" in error.message
    monkeypatch.setenv("LABDOCK_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run_task("down", make_ctx())


def test_an_interrupt_is_one_line(make_ctx, monkeypatch):
    def interrupted(p):
        raise KeyboardInterrupt

    monkeypatch.setattr(labdock.engine, "require_engine", interrupted)
    error = exit_of(lambda: run_task("logs", make_ctx()))
    assert error.code == 130 and error.message.startswith("Interrupted.")
