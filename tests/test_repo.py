"""The template repository passes its own pre-commit checks (as committed, nothing rewritten)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests import precommit

REPO = Path(__file__).resolve().parents[1]


def test_repository_passes_its_own_precommit_hooks(tmp_path):
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    copy = tmp_path / "labdock"
    for name in filter(None, tracked.stdout.split("\0")):
        if (REPO / name).is_file():  # a file deleted in the work tree is still listed
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True)
    result = precommit.run_all_files(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    changed = subprocess.run(["git", "diff", "--stat"], cwd=copy, capture_output=True, text=True)
    assert changed.stdout == ""


def test_demo_refuses_a_folder_it_did_not_make_and_quotes_its_answers(tmp_path):
    import importlib.util

    from invoke import Exit, MockContext, Result

    spec = importlib.util.spec_from_file_location("labdock_maintainer_tasks", REPO / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    c = MockContext(run=Result())
    try:
        tasks.demo(c, dest=str(precious), up=False)
        raise AssertionError("demo rendered into a folder it did not make")
    except Exit as error:
        assert "is not empty and was not made by `invoke demo`" in error.message
    assert (precious / "thesis.tex").read_text() == "years of work"
    demo = tmp_path / "demo; rm -rf ~"
    c = MockContext(run=Result())
    tasks.demo(c, dest=str(demo), up=False, data="project_name=A & B,stack=minimal")
    command = c.run.call_args.args[0]
    assert "'--data=project_name=A & B'" in command and f"'{demo}'" in command
    assert (demo / tasks.DEMO_MARKER).is_file()
    tasks.demo(MockContext(run=Result()), dest=str(demo), up=False)  # its own folder: replaced
