"""`copier update` from the last release with the single tasks.py (commit a59c416, tagged 0.1.0 in a
temporary template repository) to this checkout (tagged 0.2.0), on real git history.

The 0.2.0 migration (migrations/tasks_package.py) replaces an unmodified tasks.py with the new
user-owned one, moves a task the user added (it still runs), and stops the update, with the
project unchanged, when tasks.py holds edits of labdock's own code.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.rendering import REPO
from tests.test_update import USER_OWNED, answers, commit_all, conflicts, copier, copy_working_tree, git, run

LEGACY_RELEASE = "a59c416"  # the last commit of main with the single template/tasks.py

USER_TASK = '''

@task
def hello(c: Context, name: str = "team") -> None:
    """Say hello (a task of the project's own)."""
    print(f"hello {name} from {Path.cwd().name}")
'''


@pytest.fixture(scope="module")
def legacy_repo(tmp_path_factory) -> Path:
    """A template repository: the legacy release as 0.1.0, this checkout as 0.2.0."""
    repo = tmp_path_factory.mktemp("labdock-legacy")
    archive = subprocess.run(["git", "-C", REPO, "archive", LEGACY_RELEASE], capture_output=True)
    assert archive.returncode == 0, (
        f"commit {LEGACY_RELEASE} is not in this clone's history (a shallow clone?): "
        f"{archive.stderr.decode()}"
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(repo, filter="data")
    git(repo, "init", "--quiet")
    commit_all(repo, "labdock 0.1.0")
    git(repo, "tag", "-a", "0.1.0", "-m", "0.1.0")
    for path in list(repo.iterdir()):
        if path.name != ".git":
            subprocess.run(["rm", "-rf", str(path)], check=True)
    copy_working_tree(repo)
    commit_all(repo, "labdock 0.2.0")
    git(repo, "tag", "-a", "0.2.0", "-m", "0.2.0")
    return repo


def legacy_project(legacy_repo: Path, dst: Path) -> Path:
    copier("copy", "--vcs-ref", "0.1.0", "--defaults", "--trust", "--quiet", str(legacy_repo), str(dst))
    commit_all(dst, "copier copy 0.1.0")
    assert "from labdock import namespace" not in (dst / "tasks.py").read_text()
    return dst


def invoke(project: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "invoke", *args], cwd=project)


def test_an_unmodified_tasks_py_is_replaced(legacy_repo, tmp_path):
    project = legacy_project(legacy_repo, tmp_path / "project")
    env_file = project / ".env"  # as the old `invoke up` wrote it: the token is JUPYTER_TOKEN
    env_file.write_text(f"# Created by `invoke up`.\nJUPYTER_TOKEN={'5e' * 32}\nLABDOCK_PORT=8888\n")
    env_file.chmod(0o600)
    copier("update", "--defaults", "--trust", "--conflict=inline", "--vcs-ref", "0.2.0", str(project))
    assert conflicts(project) == []
    assert (project / "tasks.py").read_text() == (REPO / "template" / "tasks.py").read_text()
    assert (project / "labdock" / "__init__.py").is_file()
    assert answers(project)["_commit"] == "0.2.0"
    # The token keeps its value under its new name (a JUPYTER_TOKEN in the shell no longer wins).
    assert (
        env_file.read_text() == f"# Created by `invoke up`.\nLABDOCK_TOKEN={'5e' * 32}\nLABDOCK_PORT=8888\n"
    )
    assert (env_file.stat().st_mode & 0o777) == 0o600
    listed = invoke(project, "--list").stdout
    for name in ("build", "up", "down", "lock", "add", "run-notebook", "push", "update", "doctor"):
        assert f"  {name} " in listed


def test_a_task_the_user_added_is_moved_and_still_runs(legacy_repo, tmp_path):
    project = legacy_project(legacy_repo, tmp_path / "project")
    tasks = project / "tasks.py"
    source = tasks.read_text()
    source = source.replace("ns = Collection(\n", "ns = Collection(\n    hello,\n")
    source = source.replace("\n\nns = Collection(", USER_TASK + "\n\nns = Collection(")
    tasks.write_text(source)
    assert "hello team from project" in invoke(project, "hello").stdout  # the old layout ran it
    commit_all(project, "a task of our own")
    before = {
        folder: git(project, "rev-parse", f"HEAD:{folder}")
        for folder in USER_OWNED
        if (project / folder).exists()
    }

    copier("update", "--defaults", "--trust", "--conflict=inline", "--vcs-ref", "0.2.0", str(project))

    assert conflicts(project) == []
    assert "from labdock import namespace" in tasks.read_text()
    assert "def hello(" in tasks.read_text() and "ns.add_task(hello)" in tasks.read_text()
    assert "hello labdock from project" in invoke(project, "hello", "--name", "labdock").stdout
    listed = invoke(project, "--list").stdout
    assert "  hello " in listed and "  up " in listed and "  run-notebook " in listed
    commit_all(project, "update")
    assert {folder: git(project, "rev-parse", f"HEAD:{folder}") for folder in before} == before


def test_edits_of_labdock_code_stop_the_update_with_instructions(legacy_repo, tmp_path):
    project = legacy_project(legacy_repo, tmp_path / "project")
    tasks = project / "tasks.py"
    tasks.write_text(tasks.read_text().replace("MIN_FREE_DISK_GB = 10", "MIN_FREE_DISK_GB = 50"))
    commit_all(project, "we need more disk")
    head = git(project, "rev-parse", "HEAD")

    result = copier(
        "update",
        "--defaults",
        "--trust",
        "--conflict=inline",
        "--vcs-ref",
        "0.2.0",
        str(project),
        check=False,
    )

    assert result.returncode != 0
    assert "tasks.py cannot be carried over: you changed labdock's MIN_FREE_DISK_GB" in result.stderr
    assert "run the update again" in result.stderr
    assert git(project, "rev-parse", "HEAD") == head
    assert git(project, "status", "--porcelain") == ""  # nothing changed
    assert answers(project)["_commit"] == "0.1.0"
