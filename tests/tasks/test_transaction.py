"""pyproject.toml and poetry.lock replaced together; recovery after a kill; interrupts."""

from __future__ import annotations

import json
import os
import signal
import stat

import pytest
from invoke import Exit

from tests.tasks.helpers import exit_of, labdock

transaction = labdock.transaction
OLD = {"pyproject.toml": b"[project]\nname = 'unit-demo'\n# old\n", "poetry.lock": b"# old lock\n"}
NEW = {"pyproject.toml": b"[project]\nname = 'unit-demo'\n# new\n", "poetry.lock": b"# new lock\n"}


@pytest.fixture
def root(project):
    for name, data in OLD.items():
        (project / name).write_bytes(data)
    return project


def contents(root) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in OLD}


def leftovers(root) -> list[str]:
    state = root / ".labdock"
    found = [path.name for path in root.glob(".*.labdock-new")]
    return found + (
        [path.name for path in state.iterdir() if path.name != "task.lock"] if state.exists() else []
    )


def test_replace_writes_both_files_and_leaves_nothing_behind(root):
    os.chmod(root / "poetry.lock", 0o640)
    assert transaction.replace(root, NEW) == ["pyproject.toml", "poetry.lock"]
    assert contents(root) == NEW
    assert stat.S_IMODE((root / "poetry.lock").stat().st_mode) == 0o640  # the file's mode is kept
    assert leftovers(root) == []


def test_replace_skips_unchanged_files(root):
    before = (root / "pyproject.toml").stat().st_mtime_ns
    assert transaction.replace(root, {**NEW, "pyproject.toml": OLD["pyproject.toml"]}) == ["poetry.lock"]
    assert (root / "pyproject.toml").stat().st_mtime_ns == before
    assert transaction.replace(root, OLD | {"poetry.lock": NEW["poetry.lock"]}) == []


def test_replace_creates_a_missing_lock(root):
    (root / "poetry.lock").unlink()
    assert transaction.replace(root, NEW) == ["pyproject.toml", "poetry.lock"]
    assert contents(root) == NEW


def kill_after_renames(monkeypatch, count: int) -> None:
    """os.replace as a process killed after `count` renames of the project's files."""
    real = os.replace
    done = []

    def replace(source, target):
        if str(target).endswith(("pyproject.toml", "poetry.lock")) and not str(target).endswith(".tmp"):
            if len(done) == count:
                raise KeyboardInterrupt("killed")
            done.append(target)
        real(source, target)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("renamed", [0, 1])
def test_a_kill_between_the_renames_is_rolled_forward(root, renamed):
    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        kill_after_renames(patch, renamed)
        transaction.replace(root, NEW)
    assert (root / ".labdock" / "replace.json").exists()
    assert contents(root) != NEW
    assert transaction.recover(root) == "finished replacing pyproject.toml and poetry.lock"
    assert contents(root) == NEW
    assert leftovers(root) == []


def test_a_kill_before_the_journal_keeps_the_old_files(root):
    real = transaction._write_synced

    def write(path, data, mode=0o644):
        if path.name == "replace.json.tmp":
            raise KeyboardInterrupt("killed")
        real(path, data, mode)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(transaction, "_write_synced", write)
        transaction.replace(root, NEW)
    assert (root / ".pyproject.toml.labdock-new").exists()
    assert transaction.recover(root) == "dropped the unfinished new pyproject.toml"
    assert contents(root) == OLD
    assert leftovers(root) == []


def test_an_unreadable_journal_is_dropped(root):
    state = root / ".labdock"
    state.mkdir(exist_ok=True)
    (state / "replace.json").write_text("{not json")
    assert transaction.recover(root) == "dropped an unreadable replacement journal"
    assert contents(root) == OLD


def interrupted_replacement(root) -> None:
    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        kill_after_renames(patch, 1)
        transaction.replace(root, NEW)


def test_every_task_finishes_an_interrupted_replacement(root, monkeypatch, load, make_ctx, capsys):
    interrupted_replacement(root)
    load(make_ctx())  # Project.load, as every task starts
    assert contents(root) == NEW
    assert "An interrupted dependency change was completed" in capsys.readouterr().err


def test_recovery_waits_for_a_running_task(root, monkeypatch):
    """While a task holds the checkout, it is the one replacing the files: leave them to it."""
    interrupted_replacement(root)

    def held(root, task, wait=True):
        raise Exit("`invoke add` (pid 1) is running in this project")

    monkeypatch.setattr(labdock.guard, "checkout_lock", held)
    transaction.settle(root)
    assert (root / ".labdock" / "replace.json").exists()


def test_settle_does_nothing_when_nothing_is_pending(root, monkeypatch):
    monkeypatch.setattr(labdock.guard, "checkout_lock", lambda *a, **k: pytest.fail("locked for nothing"))
    transaction.settle(root)


def test_staging_copies_the_files_and_removes_itself(root):
    with pytest.raises(RuntimeError), transaction.staging(root) as folder:
        assert folder.parent == root / ".labdock"
        assert transaction.staged(folder) == OLD
        (folder / "poetry.lock").write_bytes(b"# changed by Poetry\n")
        raise RuntimeError("Poetry failed")
    assert not folder.exists()
    assert contents(root) == OLD


def test_recover_removes_staging_folders_of_killed_tasks(root):
    with transaction.staging(root) as folder:
        pass
    folder.mkdir()  # as a killed task leaves it
    transaction.recover(root)
    assert not folder.exists()


def test_interrupts_cancel_the_running_step_once(capsys):
    cancelled = []
    previous = signal.getsignal(signal.SIGINT)
    with transaction.Interrupts() as interrupts:
        with interrupts.cancel_with(lambda: cancelled.append("poetry")):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
        assert cancelled == ["poetry"]
        assert interrupts.happened
        error = exit_of(lambda: interrupts.check("Poetry was stopped; nothing changed."))
    assert error.message == "Interrupted: Poetry was stopped; nothing changed."
    assert error.code == 130
    assert signal.getsignal(signal.SIGINT) is previous


def test_interrupts_outside_a_cancellable_step_are_deferred(capsys):
    with transaction.Interrupts() as interrupts:
        os.kill(os.getpid(), signal.SIGTERM)
        assert interrupts.happened  # noted; the step goes on
    assert "finishing this step, then stopping" in capsys.readouterr().err


def test_a_signal_before_a_step_cancels_it_at_once():
    cancelled = []
    with transaction.Interrupts() as interrupts:
        os.kill(os.getpid(), signal.SIGINT)
        with interrupts.cancel_with(lambda: cancelled.append(True)):
            pass
    assert cancelled == [True]


def test_journal_lists_the_renames(root, monkeypatch):
    seen = {}
    real = transaction._finish

    def finish(root_, renames):
        seen["journal"] = json.loads((root / ".labdock" / "replace.json").read_text())
        real(root_, renames)

    monkeypatch.setattr(transaction, "_finish", finish)
    transaction.replace(root, NEW)
    assert seen["journal"] == [
        [".pyproject.toml.labdock-new", "pyproject.toml"],
        [".poetry.lock.labdock-new", "poetry.lock"],
    ]
