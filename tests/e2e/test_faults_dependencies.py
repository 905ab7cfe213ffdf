"""Faults in the dependency loop on a real engine: two adds at once; Ctrl-C and `kill -9` at each
step of `add` and `lock`; a replacement killed between its two renames; conflict markers.

After every fault: no Poetry container runs, pyproject.toml and poetry.lock are both as before or
both changed (never one of each) and Poetry accepts them (`poetry check --lock`), and a Ctrl-C
ends with a line saying "Interrupted". One project (stack minimal, Python 3.11), running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.harness import (
    docker,
    free_port,
    git_commit,
    new_project,
    read_token,
    record,
    remove_project_state,
)
from tests.e2e.kernel import Kernel

NAME = "Loop Faults Beta"
SLUG = "loop-faults-beta"
FILES = ("pyproject.toml", "poetry.lock")


@pytest.fixture(scope="module")
def project(engine, tmp_path_factory):
    proj = new_project(
        tmp_path_factory.mktemp("faults"),
        project_name=NAME,
        stack="minimal",
        python_version="3.11",
        jupyter_port=free_port(),
    )
    git_commit(proj.root)
    proj.invoke("up")
    yield proj
    remove_project_state(proj)


def pair(project) -> dict[str, bytes]:
    return {name: (project.root / name).read_bytes() for name in FILES}


def restore(project) -> None:
    """Back to the committed pyproject.toml and poetry.lock."""
    subprocess.run(["git", "checkout", "--", *FILES], cwd=project.root, check=True)


def poetry_containers() -> list[str]:
    return docker("ps", "-q", "--filter", f"name=^/{SLUG}-poetry-").stdout.split()


def poetry_check(project) -> subprocess.CompletedProcess:
    env = {**os.environ, "POETRY_VIRTUALENVS_CREATE": "false"}
    command = ["poetry", "check", "--lock"]
    return subprocess.run(command, cwd=project.root, capture_output=True, text=True, env=env)


def start(project, *args: str) -> subprocess.Popen:
    """`invoke ARGS` as a terminal runs it: a process group of its own (Ctrl-C reaches all of it)."""
    return subprocess.Popen(
        [project.python, "-m", "invoke", *args],
        cwd=project.root,
        env={**os.environ, **project.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the task ended before {what}:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.02)


def holds_the_checkout(project, task: str):
    lock = project.root / ".labdock" / "task.lock"
    return lambda: lock.exists() and f"`invoke {task}`" in lock.read_text(errors="replace")


def reach(point: str, project, process: subprocess.Popen, task: str) -> None:
    """Wait until the task is at `point`."""
    if point == "before Poetry":
        wait_for(holds_the_checkout(project, task), process, "the task holding the checkout")
        return
    wait_for(lambda: bool(poetry_containers()), process, "a Poetry container")
    if point == "after Poetry":
        wait_for(lambda: not poetry_containers(), process, "Poetry's end")
    elif point == "during the build":
        pyproject = project.root / "pyproject.toml"
        before = pyproject.read_bytes()
        wait_for(lambda: pyproject.read_bytes() != before, process, "the files replaced")


def interrupt(process: subprocess.Popen, how: str) -> str:
    if how == "SIGINT":
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    else:
        os.kill(process.pid, signal.SIGKILL)  # the task only: what `kill -9 PID` does
    output, _ = process.communicate(timeout=300)
    return output


CASES = [
    ("add", "before Poetry"),
    ("add", "during Poetry"),
    ("add", "after Poetry"),
    ("add", "during the build"),
    ("lock", "before Poetry"),
    ("lock", "during Poetry"),
]


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
@pytest.mark.parametrize(("task", "point"), CASES, ids=[f"{t}-{p.replace(' ', '-')}" for t, p in CASES])
def test_an_interrupt_leaves_a_consistent_project(project, task, point, how):
    restore(project)
    before = pair(project)
    args = ("add", "tabulate") if task == "add" else ("lock", "--upgrade")
    process = start(project, *args)
    reach(point, project, process, args[0])
    output = interrupt(process, how)
    print(output)
    # Nothing keeps running: the Poetry container goes with the task (a watcher removes it when
    # the task is killed outright).
    deadline = time.monotonic() + 30
    while poetry_containers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert poetry_containers() == [], "a Poetry container outlived the task"
    after = pair(project)
    changed = {name for name in FILES if after[name] != before[name]}
    assert changed in (set(), set(FILES)) or (task == "lock" and changed == {"poetry.lock"}), changed
    check = poetry_check(project)
    assert check.returncode == 0, check.stdout + check.stderr
    lines = [line for line in output.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if how == "SIGINT":
        assert process.returncode == 130, output
        assert last.startswith("Interrupted"), last
        assert "INVOKE_LABDOCK_PYPI_MIRROR" not in output
    else:
        assert process.returncode == -signal.SIGKILL
    state = "changed" if changed else "as before"
    record(NAME, f"{how} {task} {point}", f"exit {process.returncode}; files {state}; {last[:90]}")
    project.invoke("url")  # any next task: finishes what the killed one left (nothing, here)
    assert poetry_check(project).returncode == 0


def test_two_adds_at_once_both_land(project):
    restore(project)
    first, second = start(project, "add", "tabulate"), start(project, "add", "rich")
    results = {}
    for package, process in (("tabulate", first), ("rich", second)):
        output, _ = process.communicate(timeout=600)
        results[package] = (process.returncode, output)
        print(output)
    pyproject = (project.root / "pyproject.toml").read_text()
    lock = (project.root / "poetry.lock").read_text()
    kernel = Kernel(project.answers["jupyter_port"], read_token(project.root))
    try:
        for package, (code, output) in results.items():
            if code == 0:  # an add that says it worked did: recorded and importable
                assert f'"{package} (' in pyproject and f'name = "{package}"' in lock, package
                kernel.run(f"import {package}")
            else:  # refused: one clear line, and nothing of it recorded
                assert output.strip().splitlines()[-1], output
                assert f'"{package} (' not in pyproject
    finally:
        kernel.close()
    assert [code for code, _ in results.values()] == [0, 0]  # the second waits for the first
    assert "Waiting for `invoke add` (pid" in results["rich"][1] + results["tabulate"][1]
    record(NAME, "two adds at once (tabulate, rich)", "both landed; the second waited for the first")
    assert poetry_check(project).returncode == 0


KILL_BETWEEN_RENAMES = """
import os, signal, sys
sys.path.insert(0, os.getcwd())
from pathlib import Path
from labdock import transaction
real, renamed = os.replace, []
def replace(source, target):
    if str(target).endswith(("pyproject.toml", "poetry.lock")) and not str(target).endswith(".tmp"):
        if renamed:
            os.kill(os.getpid(), signal.SIGKILL)  # between the two renames
        renamed.append(target)
    real(source, target)
os.replace = replace
new = {name: Path(sys.argv[1], name).read_bytes() for name in ("pyproject.toml", "poetry.lock")}
transaction.replace(Path.cwd(), new)
"""


def test_a_replacement_killed_between_its_renames_is_finished_by_the_next_task(project, tmp_path):
    restore(project)
    project.invoke("add", "humanize")
    for name in FILES:  # the pair a successful add wrote
        (tmp_path / name).write_bytes((project.root / name).read_bytes())
    restore(project)
    killed = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(tmp_path)], cwd=project.root)
    assert killed.returncode == -signal.SIGKILL
    assert (project.root / "pyproject.toml").read_bytes() == (tmp_path / "pyproject.toml").read_bytes()
    assert (project.root / "poetry.lock").read_bytes() != (tmp_path / "poetry.lock").read_bytes()
    assert poetry_check(project).returncode != 0  # one of each: what the journal is for
    result = project.invoke("url")  # any task, even one that changes nothing
    assert "An interrupted dependency change was completed: finished replacing" in result.stderr
    assert pair(project) == {name: (tmp_path / name).read_bytes() for name in FILES}
    assert poetry_check(project).returncode == 0
    restore(project)


def test_conflict_markers_in_the_lock_name_the_file_and_the_fix(project):
    restore(project)
    lock = project.root / "poetry.lock"
    lines = lock.read_text().splitlines(keepends=True)
    lock.write_text("".join(lines[:5]) + "<<<<<<< HEAD\n" + "".join(lines[5:9]) + "=======\n>>>>>>> theirs\n"
                    + "".join(lines[9:]))  # fmt: skip
    expected = (
        "poetry.lock has a git conflict marker at line 6: take one side (`git checkout --ours "
        "poetry.lock` or `--theirs`), then run `invoke lock`."
    )
    for args in (("add", "rich"), ("lock",), ("build",)):
        result = project.invoke(*args, check=False)
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        record(NAME, f"conflict markers: invoke {' '.join(args)}", last)
        assert last == expected
    restore(project)  # the fix, the way it says: one side, then `invoke lock`
    project.invoke("lock")
    assert poetry_check(project).returncode == 0
