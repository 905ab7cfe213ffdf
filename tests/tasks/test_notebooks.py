"""run-notebook: host paths as container paths, folders, --marked, failures, GPUs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from invoke import MockContext

from tests.tasks.helpers import (
    COMPOSE_RUN,
    args_of,
    call_of,
    exit_of,
    fail,
    labdock,
    matching,
    ok,
)

notebooks = labdock.notebooks


@pytest.mark.parametrize(
    ("setting", "options", "with_gpu"),
    [
        ("nvidia", {}, True),
        ("nvidia", {"no_gpu": True}, False),
        ("none", {"gpu": True}, True),
        ("none", {}, False),
    ],
)
def test_run_notebook_follows_the_gpu_choice(make_ctx, project, setting, options, with_gpu):
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    c = make_ctx(gpu=setting)
    notebooks.run_notebook(c, str(project / "notebooks" / "getting-started.ipynb"), **options)
    assert ("compose.gpu.yaml" in call_of(c, COMPOSE_RUN).args[0]) is with_gpu


def test_run_notebook_maps_host_paths(make_ctx, project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    c = make_ctx()
    notebooks.run_notebook(c, "notebooks/getting-started.ipynb")
    args = args_of(c, COMPOSE_RUN)
    assert args[args.index("run") :] == [
        *("run", "--rm", "--no-deps", "-T", "lab", "jupyter", "nbconvert", "--to", "notebook"),
        *("--execute", "--ExecutePreprocessor.timeout=-1"),
        *("/workspace/notebooks/getting-started.ipynb", "--output"),
        "/workspace/notebooks/getting-started.executed.ipynb",
    ]
    assert "Executed copy: notebooks/getting-started.executed.ipynb" in capsys.readouterr().out


def test_run_notebook_paths_are_relative_to_the_current_folder(make_ctx, project, monkeypatch):
    monkeypatch.chdir(project / "notebooks")
    c = make_ctx()
    notebooks.run_notebook(c, "getting-started.ipynb", output="../data/out.ipynb", timeout=60)
    args = args_of(c, COMPOSE_RUN)
    assert "--ExecutePreprocessor.timeout=60" in args
    assert args[-3:] == [
        "/workspace/notebooks/getting-started.ipynb",
        "--output",
        "/workspace/data/out.ipynb",
    ]


def test_run_notebook_missing(make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    c = make_ctx()
    error = exit_of(lambda: notebooks.run_notebook(c, "notebooks/nothing.ipynb"))
    assert error.message == "No notebook or folder at notebooks/nothing.ipynb."


def test_run_notebook_outside_the_project(make_ctx, project, tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere.ipynb"
    outside.write_text("{}")
    monkeypatch.chdir(project)
    c = make_ctx()
    error = exit_of(lambda: notebooks.run_notebook(c, str(outside)))
    assert f"{outside} is outside the project folder {project}" in error.message
    assert not matching(c, COMPOSE_RUN)


def test_run_notebook_cell_failure(make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    c = make_ctx({COMPOSE_RUN: fail("CellExecutionError")})
    error = exit_of(lambda: notebooks.run_notebook(c, "notebooks/getting-started.ipynb"))
    assert (
        error.message == "notebooks/getting-started.ipynb failed: a cell raised an error (traceback above)."
    )


def test_run_notebook_runs_a_folder_each_in_its_own_container(make_ctx, project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    write_notebook(project / "notebooks" / "deep" / "b.ipynb", ci=None)
    write_notebook(project / "notebooks" / "a.ipynb", ci=False)
    write_notebook(project / "notebooks" / "a.executed.ipynb", ci=True)  # an output, never an input
    c = make_ctx()
    notebooks.run_notebook(c, "notebooks")
    assert executed(c) == [
        "/workspace/notebooks/a.ipynb",
        "/workspace/notebooks/deep/b.ipynb",
        "/workspace/notebooks/getting-started.ipynb",
    ]
    assert "Ran 3 notebooks in" in capsys.readouterr().out


def test_run_notebook_marked_runs_only_notebooks_marked_for_ci(make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    write_notebook(project / "notebooks" / "marked.ipynb", ci=True)
    write_notebook(project / "notebooks" / "unmarked.ipynb", ci=False)
    c = make_ctx()
    notebooks.run_notebook(c, "notebooks", marked=True)
    # The starter notebook is marked, so a new project's CI runs it.
    assert executed(c) == ["/workspace/notebooks/getting-started.ipynb", "/workspace/notebooks/marked.ipynb"]


def test_run_notebook_with_nothing_marked_runs_nothing(make_ctx, project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    (project / "notebooks" / "getting-started.ipynb").unlink()
    write_notebook(project / "notebooks" / "unmarked.ipynb", ci=None)
    c = make_ctx()
    notebooks.run_notebook(c, "notebooks", marked=True)
    assert not matching(c, COMPOSE_RUN)
    assert (
        'No notebook marked for CI (metadata {"labdock": {"ci": true}}) in notebooks'
        in capsys.readouterr().out
    )


def test_run_notebook_folder_reports_every_failure(make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    write_notebook(project / "notebooks" / "a.ipynb", ci=True)
    c = make_ctx({COMPOSE_RUN: [fail("CellExecutionError"), ok()]})
    error = exit_of(lambda: notebooks.run_notebook(c, "notebooks"))
    assert error.message == "1 of 2 notebooks failed: notebooks/a.ipynb (tracebacks above)."
    assert len(executed(c)) == 2  # a failure does not stop the others


def test_run_notebook_output_needs_one_notebook(make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    write_notebook(project / "notebooks" / "a.ipynb", ci=True)
    c = make_ctx()
    error = exit_of(lambda: notebooks.run_notebook(c, "notebooks", output="out.ipynb"))
    assert "--output names one executed copy, but notebooks holds 2 notebooks" in error.message
    assert not matching(c, COMPOSE_RUN)


def write_notebook(path: Path, ci: bool | None) -> None:
    metadata = {} if ci is None else {"labdock": {"ci": ci}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}))


def executed(c: MockContext) -> list[str]:
    return [shlex.split(command)[-3] for command in matching(c, COMPOSE_RUN)]
