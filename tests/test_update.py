"""`copier update` on real git history: no Docker, real git repositories in temporary folders.

The `template_repo` fixture copies this checkout's working tree (uncommitted files included) into
a fresh repository, commits it and tags it `0.1.0`, then makes a fake next release, tagged
`0.2.0` (see `release_0_2_0`): a template change in a line of the Dockerfile, a new dev
dependency in pyproject.toml and a new template-owned file. The 0.2.0 migrations run and change
nothing here (this checkout is already 0.2.0's layout); tests/test_layout_update.py updates from
the real previous release. Projects are rendered from `0.1.0` with the copier CLI, committed (the
copy's `git init` task made them repositories), edited like a user would, committed again and
updated.

Covered:
1. an update without user edits leaves no conflict and equals a fresh render of 0.2.0;
2. user edits of template-owned files (pyproject.toml, Dockerfile) and the template's changes
   elsewhere in the same files are both kept;
3. both changed the same line: inline markers (or a .rej file with --conflict rej), and the
   generated pre-commit hooks refuse them;
4. files the user deleted stay deleted, whether or not the new version changes them; a file the
   new version no longer ships is deleted even if the user edited it;
5. answers flipped through `copier update --data` switch the GPU setting (and the devcontainer's
   compose.gpu.yaml, which the tasks write) and the stack's dependencies;
6. notebooks/, src/, data/ and tests/ are the user's: byte-identical after an update, even when
   the template changed its starter files (a further fake release, 0.3.0, in a clone);
7. the update from the oldest tag (0.1.0) to the newest runs the migration, which is idempotent;
   the copy-only task that runs `git init`.

Figures (updates run, conflicts expected and seen, user-owned files changed) are written to
`update-figures.json` in pytest's base temporary folder and printed by the last test (`-rA`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests import precommit as offline_precommit
from tests.rendering import REPO

USER_OWNED = ("notebooks", "src", "data", "tests")
FIGURES = {"updates_run": 0, "conflicts_expected": 0, "conflicts_seen": 0, "user_files_changed": 0}
MARKERS = re.compile(rb"^(<<<<<<<|>>>>>>>)( |$)", re.MULTILINE)
TOKEN = "5e" * 32
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "labdock tests",
    "GIT_AUTHOR_EMAIL": "tests@labdock.invalid",
    "GIT_COMMITTER_NAME": "labdock tests",
    "GIT_COMMITTER_EMAIL": "tests@labdock.invalid",
}


# ---------------------------------------------------------------- helpers


def run(
    args: list[str], cwd: Path | None = None, check: bool = True, **env: str
) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env={**ENV, **env}, capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def git(cwd: Path, *args: str) -> str:
    return run(["git", *args], cwd=cwd).stdout


def copier(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "copier", *args], check=check)


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--no-verify", "--allow-empty", "-m", message)


def tool(name: str) -> str:
    """A tool installed next to this Python (the nox session's venv), else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed: run the tests through nox (pre-commit is in the render group)"
    return found


def edit(path: Path, pattern: str, replacement: str) -> None:
    """Replace the one line matching pattern; fails loudly when the template no longer has it."""
    text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.MULTILINE)
    assert count == 1, f"{path.name} has no line matching {pattern!r}: adapt the fake release in this test"
    path.write_text(text)


def files(root: Path, ignore: tuple[str, ...] = ()) -> dict[str, tuple[bytes, bool]]:
    """Relative path -> (content, executable) for every file under root, .git and ignore left out."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in (".git", *ignore) or not path.is_file():
            continue
        found[rel] = (path.read_bytes(), bool(path.stat().st_mode & stat.S_IXUSR))
    return found


def user_owned(project: Path) -> dict[str, str]:
    """sha256 of every file in the folders the project owns."""
    return {
        rel: hashlib.sha256(content).hexdigest()
        for rel, (content, _) in files(project).items()
        if rel.split("/")[0] in USER_OWNED
    }


def conflicts(project: Path) -> list[str]:
    """Files with conflict markers, and *.rej files."""
    return sorted(
        rel for rel, (content, _) in files(project).items() if rel.endswith(".rej") or MARKERS.search(content)
    )


def answers(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def render(template: Path, dst: Path, ref: str) -> Path:
    """copier copy of the template at ref, default answers."""
    copier("copy", "--vcs-ref", ref, "--defaults", "--trust", "--quiet", str(template), str(dst))
    return dst


def new_project(template: Path, dst: Path, ref: str = "0.1.0") -> Path:
    """A project rendered from ref, committed (the copy's task made it a repository)."""
    render(template, dst, ref)
    assert (dst / ".git").is_dir(), "the copy task did not run `git init`"
    commit_all(dst, f"copier copy {ref}")
    return dst


def update(
    project: Path, *args: str, ref: str | None = "0.2.0", conflict: str = "inline", expect_conflicts: int = 0
) -> subprocess.CompletedProcess:
    """copier update, counted in FIGURES; fails on a conflict count other than expected."""
    before = user_owned(project)
    vcs_ref = ["--vcs-ref", ref] if ref else []
    result = copier(
        "update", "--defaults", "--trust", f"--conflict={conflict}", *vcs_ref, *args, str(project)
    )
    after = user_owned(project)
    seen = conflicts(project)
    changed = sorted(rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel))
    FIGURES["updates_run"] += 1
    FIGURES["conflicts_expected"] += expect_conflicts
    FIGURES["conflicts_seen"] += len(seen)
    FIGURES["user_files_changed"] += len(changed)
    assert len(seen) == expect_conflicts, f"conflicts: {seen}\n{result.stderr}"
    assert not changed, f"copier update changed files the project owns: {changed}"
    return result


def assert_same_tree(project: Path, fresh: Path, ignore: tuple[str, ...] = ()) -> None:
    """project equals fresh (contents and executable bits), but for the _commit answer."""
    mine, theirs = files(project, ignore), files(fresh, ignore)
    assert sorted(mine) == sorted(theirs)
    for tree in (mine, theirs):
        content, executable = tree[".copier-answers.yml"]
        tree[".copier-answers.yml"] = (re.sub(rb"(?m)^_commit: .*$", b"_commit: X", content), executable)
    for rel in mine:
        assert mine[rel] == theirs[rel], f"{rel} differs from a fresh render"


def precommit(project: Path, hook: str, *paths: str) -> subprocess.CompletedProcess:
    """One hook of the generated .pre-commit-config.yaml on the given files (from PyPI: see
    tests/precommit.py)."""
    return offline_precommit.run(project, hook, "--files", *paths)


# ---------------------------------------------------------------- the template's history


def copy_working_tree(dst: Path) -> None:
    """This checkout as it is on disk: tracked and untracked files, not ignored ones, no demo/."""
    listed = git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for rel in filter(None, listed):
        if rel.split("/")[0] in (".nox", "demo"):
            continue
        src = REPO / rel
        if src.is_file():  # deleted but still tracked files are skipped
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def release_0_2_0(repo: Path) -> None:
    """The fake next release: changes of template-owned files only, plus what the migration needs."""
    template = repo / "template"
    edit(template / "Dockerfile.jinja", r"^ARG POETRY_VERSION=.*$", "ARG POETRY_VERSION=2.6.0")
    edit(template / "pyproject.toml.jinja", r'^pytest = ".*"$', '\\g<0>\npytest-cov = ">=6.0"')
    (template / ".editorconfig").write_text(
        "root = true\n\n[*]\nend_of_line = lf\ninsert_final_newline = true\n"
    )


def release_0_3_0(repo: Path) -> None:
    """A release that changes the starter files, which existing projects own."""
    template = repo / "template"
    notebook = {
        "cells": [{"cell_type": "markdown", "id": "new-intro", "metadata": {}, "source": ["# A new start"]}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (template / "notebooks" / "getting-started.ipynb.jinja").write_text(json.dumps(notebook, indent=1) + "\n")
    (template / "notebooks" / "tour.ipynb").write_text(json.dumps(notebook, indent=1) + "\n")
    for starter in [
        *(template / "src").rglob("__init__.py.jinja"),
        *(template / "tests").glob("test_*.jinja"),
    ]:
        starter.write_text(starter.read_text() + "\n# changed in 0.3.0\n")
    (template / "data" / "README.md").write_text("Data files go here; git ignores them.\n")


def next_release(template_repo: Path, dst: Path, change: Callable[[Path], None]) -> Path:
    """A clone of template_repo with one more release, tagged 0.3.0 (for one test only)."""
    run(["git", "clone", "--quiet", str(template_repo), str(dst)])
    change(dst)
    commit_all(dst, "labdock 0.3.0")
    git(dst, "tag", "-a", "0.3.0", "-m", "0.3.0")
    return dst


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory) -> Path:
    """This checkout as 0.1.0, then the fake 0.2.0 (HEAD)."""
    repo = tmp_path_factory.mktemp("labdock")
    copy_working_tree(repo)
    git(repo, "init", "--quiet")
    commit_all(repo, "labdock 0.1.0")
    git(repo, "tag", "-a", "0.1.0", "-m", "0.1.0")
    release_0_2_0(repo)
    commit_all(repo, "labdock 0.2.0")
    git(repo, "tag", "-a", "0.2.0", "-m", "0.2.0")
    return repo


# ---------------------------------------------------------------- 1. no user edits


def test_update_without_user_edits_equals_a_fresh_render(template_repo, tmp_path):
    project = new_project(template_repo, tmp_path / "project")
    assert answers(project)["_commit"] == "0.1.0"
    update(project)
    assert answers(project)["_commit"] == "0.2.0"
    assert "ARG POETRY_VERSION=2.6.0" in (project / "Dockerfile").read_text()
    assert 'pytest-cov = ">=6.0"' in (project / "pyproject.toml").read_text()
    assert (project / ".editorconfig").is_file()
    assert not (project / ".env").exists(), "the migration must not create .env"
    assert_same_tree(project, render(template_repo, tmp_path / "fresh", "0.2.0"))


# ---------------------------------------------------------------- 2. edits merged


def test_user_edits_and_template_changes_in_the_same_file_are_both_kept(template_repo, tmp_path):
    project = new_project(template_repo, tmp_path / "project")
    edit(project / "pyproject.toml", r"^dependencies = \[\]$", 'dependencies = [\n    "polars (>=1.0)",\n]')
    edit(project / "Dockerfile", r"^ARG NB_USER=jovyan$", "ARG NB_USER=researcher")
    commit_all(project, "polars; our user name")
    update(project)
    pyproject = (project / "pyproject.toml").read_text()
    dockerfile = (project / "Dockerfile").read_text()
    assert '"polars (>=1.0)"' in pyproject and 'pytest-cov = ">=6.0"' in pyproject
    assert "ARG NB_USER=researcher" in dockerfile and "ARG POETRY_VERSION=2.6.0" in dockerfile
    dependencies = tomllib.loads(pyproject)["project"]["dependencies"]
    assert dependencies[-1] == "polars (>=1.0)"
    assert (project / ".editorconfig").is_file()


# ---------------------------------------------------------------- 3. real conflicts


def test_conflict_on_the_same_line_is_inline_and_refused_by_pre_commit(template_repo, tmp_path):
    project = new_project(template_repo, tmp_path / "project")
    edit(project / "Dockerfile", r"^ARG POETRY_VERSION=.*$", "ARG POETRY_VERSION=2.5.2")
    commit_all(project, "our Poetry")
    update(project, expect_conflicts=1)
    text = (project / "Dockerfile").read_text()
    assert re.search(
        r"^<<<<<<< before updating\nARG POETRY_VERSION=2\.5\.2\n=======\nARG POETRY_VERSION=2\.6\.0\n"
        r">>>>>>> after updating$",
        text,
        re.MULTILINE,
    ), text
    # copier records the conflict in the index, so `git commit` refuses until the file is added
    assert git(project, "ls-files", "--unmerged", "--", "Dockerfile")
    git(project, "add", "Dockerfile")  # marked resolved, markers left in: the hook refuses
    refused = precommit(project, "check-merge-conflict", "Dockerfile")
    assert refused.returncode != 0, refused.stdout
    assert re.search(r"^check-merge-conflict\.+Failed$", refused.stdout, re.MULTILINE), refused.stdout
    assert re.search(r"^Dockerfile:\d+: Merge conflict string '<<<<<<<' found", refused.stdout, re.MULTILINE)
    # resolved (the template's pin kept), the hook passes
    (project / "Dockerfile").write_text(
        re.sub(
            r"^<<<<<<< before updating\n.*?\n=======\n(.*?)\n>>>>>>> after updating\n",
            r"\1\n",
            text,
            flags=re.S | re.M,
        )
    )
    git(project, "add", "Dockerfile")
    accepted = precommit(project, "check-merge-conflict", "Dockerfile")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_conflict_as_rej_file_is_refused_by_pre_commit(template_repo, tmp_path):
    project = new_project(template_repo, tmp_path / "project")
    edit(project / "Dockerfile", r"^ARG POETRY_VERSION=.*$", "ARG POETRY_VERSION=2.5.2")
    commit_all(project, "our Poetry")
    update(project, conflict="rej", expect_conflicts=1)
    assert (project / "Dockerfile.rej").is_file()
    # the file has the template's line; the user's change is the rejected hunk
    assert "ARG POETRY_VERSION=2.6.0" in (project / "Dockerfile").read_text()
    assert "+ARG POETRY_VERSION=2.5.2" in (project / "Dockerfile.rej").read_text()
    git(project, "add", "--all")
    refused = precommit(project, "no-rej-files", "Dockerfile.rej")
    assert refused.returncode != 0 and "no *.rej files" in refused.stdout, refused.stdout


# ---------------------------------------------------------------- 4. deleted files


def test_files_the_user_deleted_stay_deleted(template_repo, tmp_path):
    """copier compares the last render with the project's HEAD: what the user deleted is deleted
    again after the update, even when the new version changed it (that change is then dropped
    without a conflict); the user-owned folders are not rendered on update at all."""
    project = new_project(template_repo, tmp_path / "project")
    package = answers(project)["package_name"]
    deleted = [".dockerignore", "Dockerfile", f"tests/test_{package}.py"]  # unchanged, changed, owned
    for rel in deleted:
        (project / rel).unlink()
    commit_all(project, "we do not want these")
    update(project)
    for rel in deleted:
        assert not (project / rel).exists(), f"copier update recreated {rel}"
    # the rest of the release still arrives
    assert 'pytest-cov = ">=6.0"' in (project / "pyproject.toml").read_text()
    assert (project / ".editorconfig").is_file()


def test_a_file_the_template_drops_is_deleted_even_if_the_user_edited_it(template_repo, tmp_path):
    """copier deletes what the new version no longer ships, edited or not, without a conflict:
    the edit is only in git (`git checkout HEAD -- FILE` before committing the update)."""
    template = next_release(
        template_repo, tmp_path / "labdock", lambda repo: (repo / "template" / ".dockerignore").unlink()
    )
    project = new_project(template, tmp_path / "project")
    with (project / ".dockerignore").open("a") as dockerignore:
        dockerignore.write("!data/\n")  # the user's own line (the template ships none like it)
    commit_all(project, "data in the build context")
    update(project, ref="0.3.0")
    assert not (project / ".dockerignore").exists()
    assert git(project, "status", "--porcelain", "--", ".dockerignore").startswith(" D")
    git(project, "checkout", "HEAD", "--", ".dockerignore")  # how the user gets it back
    assert "!data/" in (project / ".dockerignore").read_text()


# ---------------------------------------------------------------- 5. answers flipped


def test_flipping_answers_adds_and_removes_files_and_dependencies(template_repo, tmp_path):
    project = new_project(template_repo, tmp_path / "project")
    assert answers(project)["gpu"] == "none" and answers(project)["stack"] == "scipy"
    assert not (project / "compose.gpu.yaml").exists()

    update(project, "--data", "gpu=nvidia")
    # The GPU request is compose.gpu.yaml, which the tasks write (git-ignored); the answer turns
    # the setting on and adds the file to the devcontainer.
    assert not (project / "compose.gpu.yaml").exists()
    assert yaml.safe_load((project / "invoke.yaml").read_text())["labdock"]["gpu"] == "nvidia"
    assert "../compose.gpu.yaml" in (project / ".devcontainer" / "devcontainer.json").read_text()
    assert answers(project)["gpu"] == "nvidia"
    commit_all(project, "gpu")

    update(project, "--data", "gpu=none")
    assert yaml.safe_load((project / "invoke.yaml").read_text())["labdock"]["gpu"] == "none"
    assert "compose.gpu.yaml" not in (project / ".devcontainer" / "devcontainer.json").read_text()
    commit_all(project, "no gpu")

    update(project, "--data", "stack=minimal")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert set(pyproject["tool"]["poetry"]["group"]["lab"]["dependencies"]) == {
        "jupyterlab",
        "ipykernel",
        "ipywidgets",
    }
    assert answers(project)["stack"] == "minimal"


# ---------------------------------------------------------------- 6. the project's own files


def test_notebooks_code_data_and_tests_are_never_touched(template_repo, tmp_path):
    template = next_release(template_repo, tmp_path / "labdock", release_0_3_0)
    project = new_project(template, tmp_path / "project")
    package = answers(project)["package_name"]
    starter = project / "notebooks" / "getting-started.ipynb"
    notebook = json.loads(starter.read_text())
    notebook["cells"].append(
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "ours",
            "metadata": {},
            "outputs": [],
            "source": ["1 + 1"],
        }
    )
    starter.write_text(json.dumps(notebook, indent=1) + "\n")
    (project / "notebooks" / "analysis.ipynb").write_text(json.dumps(notebook) + "\n")
    with (project / "src" / package / "__init__.py").open("a") as init:
        init.write("\n\ndef answer() -> int:\n    return 42\n")
    (project / "src" / package / "features.py").write_text("FEATURES = ['age', 'dose']\n")
    with (project / "tests" / f"test_{package}.py").open("a") as test:
        test.write("\n\ndef test_answer() -> None:\n    assert " + package + ".answer() == 42\n")
    (project / "data" / "raw").mkdir()
    (project / "data" / "raw" / "measurements.csv").write_bytes(b"id,value\r\n1,0.5\r\n")  # gitignored
    commit_all(project, "our work")
    owned = user_owned(project)
    assert "data/raw/measurements.csv" in owned and "notebooks/analysis.ipynb" in owned

    update(project, ref="0.3.0")  # asserts that no owned file changed
    assert user_owned(project) == owned
    assert not (project / "notebooks" / "tour.ipynb").exists()  # new starters arrive with `copy` only
    assert not (project / "data" / "README.md").exists()
    assert "ARG POETRY_VERSION=2.6.0" in (project / "Dockerfile").read_text()  # template-owned: updated
    assert answers(project)["_commit"] == "0.3.0"

    # `copier recopy` renders everything again, as a copy: the project's own files still stay.
    commit_all(project, "updated")
    copier("recopy", "--defaults", "--trust", "--overwrite", "--quiet", str(project))
    after = user_owned(project)
    assert {rel: after.get(rel) for rel in owned} == owned
    assert (project / "notebooks" / "tour.ipynb").is_file()  # a new starter: nothing to overwrite


# ---------------------------------------------------------------- 7. migration, copy task


def test_update_from_the_oldest_tag_runs_the_migrations(template_repo, tmp_path):
    project = new_project(template_repo, tmp_path / "project")
    env_file = project / ".env"  # as `invoke up` writes it (this checkout already names it LABDOCK_TOKEN)
    env_file.write_text(
        f"# Created by `invoke up`. Keep it secret; never commit it.\nLABDOCK_TOKEN={TOKEN}\n"
    )
    env_file.chmod(0o600)
    before = env_file.read_text()
    assert not git(project, "status", "--porcelain"), ".env must be gitignored"
    assert git(template_repo, "describe", "--tags", "HEAD").strip() == "0.2.0"

    result = update(project, ref=None)  # what users run: the newest release tag
    assert "labdock migration 0.2.0: .env already sets LABDOCK_TOKEN" in result.stdout
    assert "tasks.py already loads labdock/" in result.stdout
    assert env_file.read_text() == before
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert answers(project)["_commit"] == "0.2.0"
    assert_same_tree(project, render(template_repo, tmp_path / "fresh", "HEAD"), ignore=(".env",))


def test_migration_leaves_env_alone_unless_compose_reads_the_new_name(tmp_path):
    (tmp_path / "compose.yaml").write_text("x: ${JUPYTER_TOKEN:?not set}\n")
    script = [sys.executable, str(REPO / "migrations" / "env_token_name.py"), str(tmp_path)]
    assert "no .env" in run(script).stdout
    (tmp_path / ".env").write_bytes(f"JUPYTER_TOKEN={TOKEN}\r\n".encode())
    assert "does not read LABDOCK_TOKEN" in run(script).stdout
    (tmp_path / "compose.yaml").write_text("x: ${LABDOCK_TOKEN:?not set}\n")
    assert "renamed" in run(script).stdout
    assert (tmp_path / ".env").read_bytes() == f"LABDOCK_TOKEN={TOKEN}\r\n".encode()  # line endings kept
    assert "already sets" in run(script).stdout


def test_copy_task_runs_git_init_only_outside_a_work_tree(template_repo, tmp_path):
    outer = tmp_path / "monorepo"
    outer.mkdir()
    git(outer, "init", "--quiet")
    render(template_repo, outer / "lab", "0.1.0")
    assert (outer / "lab" / "Dockerfile").is_file()
    assert not (outer / "lab" / ".git").exists()
    alone = new_project(template_repo, tmp_path / "alone")  # asserts .git
    assert git(alone, "rev-parse", "--show-toplevel").strip() == str(alone.resolve())


# ---------------------------------------------------------------- figures (keep last)


def test_zz_update_figures(tmp_path_factory):
    """Totals of this module's updates, for the team lead's report (`pytest -rA` prints them)."""
    path = tmp_path_factory.getbasetemp() / "update-figures.json"
    path.write_text(json.dumps(FIGURES, indent=2) + "\n")
    print(f"update figures ({path}):")
    for name, value in FIGURES.items():
        print(f"  {name.replace('_', ' '):20} {value}")
    assert FIGURES["user_files_changed"] == 0
    assert FIGURES["conflicts_seen"] == FIGURES["conflicts_expected"]
