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
    commands,
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
        *("run", "--rm", "--no-deps", "-T", "--name", args[args.index("--name") + 1], "lab"),
        *("jupyter", "nbconvert", "--to", "notebook"),
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


# ----------------------------------------------------------------------------- parameters (-p)


def parametrized(
    path: Path, source: str = "alpha = 1\nname: str = 'x'\n", tags=("parameters",), minor: int = 5
):
    cells = [
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# A run"},
        {"cell_type": "code", "id": "p", "metadata": {"tags": list(tags)}, "outputs": [], "source": source,
         "execution_count": None},
        {"cell_type": "code", "id": "b", "metadata": {}, "outputs": [], "source": "print(alpha, name)",
         "execution_count": None},
    ]  # fmt: skip
    if minor < 5:
        for cell in cells:
            del cell["id"]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.write_text(json.dumps({"cells": cells, "metadata": {"kernelspec": kernelspec}, "nbformat": 4,
                                "nbformat_minor": minor}))  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["alpha=0.5", "n=3", "flag=True", "name=train", "xs=[1, 2]", "quoted='3'", "empty="],
         {"alpha": 0.5, "n": 3, "flag": True, "name": "train", "xs": [1, 2], "quoted": "3", "empty": ""}),
        (["path=/data/x.csv", "eq=a=b"], {"path": "/data/x.csv", "eq": "a=b"}),
    ],
)  # fmt: skip
def test_parameter_values_are_python_literals_or_strings(items, expected):
    assert notebooks.parse_parameters(items) == expected


@pytest.mark.parametrize("item", ["alpha", "=3", "2x=1", "a b=1"])
def test_a_parameter_must_be_name_equals_value(item):
    assert "is not name=value" in exit_of(lambda: notebooks.parse_parameters([item])).message


def test_parameters_are_injected_after_the_parameters_cell(tmp_path):
    data = notebooks.inject(parametrized(tmp_path / "run.ipynb"), {"alpha": 0.5, "name": "train"})
    assert [cell.get("id") for cell in data["cells"]] == ["m", "p", "injected-parameters", "b"]
    injected = data["cells"][2]
    assert injected["metadata"] == {"tags": ["injected-parameters"]}
    assert (
        injected["source"]
        == "# Parameters (injected by `invoke run-notebook -p`)\nalpha = 0.5\nname = 'train'\n"
    )
    assert data["metadata"]["labdock"]["parameters"] == {"alpha": 0.5, "name": "train"}
    # Run again on the executed copy: the injected cell is replaced, not stacked.
    again = tmp_path / "again.ipynb"
    again.write_text(json.dumps(data))
    assert [cell.get("id") for cell in notebooks.inject(again, {"alpha": 2})["cells"]] == [
        "m", "p", "injected-parameters", "b"
    ]  # fmt: skip


def test_older_notebooks_get_no_cell_id(tmp_path):
    data = notebooks.inject(parametrized(tmp_path / "old.ipynb", minor=4), {"alpha": 2})
    assert "id" not in data["cells"][2]


def test_an_undeclared_parameter_is_reported(tmp_path):
    error = exit_of(lambda: notebooks.inject(parametrized(tmp_path / "run.ipynb"), {"alpha": 1, "beta": 2}))
    assert error.message == (
        f"{tmp_path / 'run.ipynb'} does not declare beta in its `parameters` cell (it sets alpha, name): "
        "check the name, or add it to that cell."
    )


def test_a_notebook_without_a_parameters_cell(tmp_path):
    error = exit_of(lambda: notebooks.inject(parametrized(tmp_path / "run.ipynb", tags=()), {"alpha": 1}))
    assert "has no cell tagged `parameters`: tag the cell that sets the defaults" in error.message


def test_magics_in_the_parameters_cell(tmp_path):
    notebook = parametrized(
        tmp_path / "run.ipynb", source="%matplotlib inline\nalpha, (beta, gamma) = 1, (2, 3)\n"
    )
    assert notebooks.inject(notebook, {"gamma": 4})["cells"][2]["source"].endswith("gamma = 4\n")


def test_run_notebook_with_parameters_runs_the_injected_copy(make_ctx, project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    parametrized(project / "notebooks" / "run.ipynb")
    c = make_ctx()
    notebooks.run_notebook(c, "notebooks/run.ipynb", param=["alpha=0.5"])
    args = args_of(c, COMPOSE_RUN)
    target = project / "notebooks" / "run.executed.ipynb"
    assert args[-3:] == [
        "/workspace/notebooks/run.executed.ipynb",
        "--output",
        "/workspace/notebooks/run.executed.ipynb",
    ]
    assert json.loads(target.read_text())["cells"][2]["source"].endswith("alpha = 0.5\n")
    assert "Executed copy: notebooks/run.executed.ipynb" in capsys.readouterr().out


def test_run_notebook_checks_parameters_before_starting_anything(make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    parametrized(project / "notebooks" / "run.ipynb")
    c = make_ctx()
    error = exit_of(lambda: notebooks.run_notebook(c, "notebooks/run.ipynb", param=["beta=1"]))
    assert "does not declare beta" in error.message
    assert not matching(c, COMPOSE_RUN)
    assert not matching(c, r"docker build")


def test_run_notebook_parameters_need_one_notebook(make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    parametrized(project / "notebooks" / "run.ipynb")
    error = exit_of(lambda: notebooks.run_notebook(make_ctx(), "notebooks", param=["alpha=1"]))
    assert (
        error.message == "-p sets the parameters of one notebook, but notebooks holds 2: name the notebook."
    )


def test_run_notebook_gets_dash_p():
    flags = {arg.name: arg.names for arg in notebooks.run_notebook.get_arguments()}
    assert "p" in flags["param"]
    assert "p" not in flags["path"]


def test_the_starter_notebook_declares_a_parameter(project):
    data = notebooks.inject(project / "notebooks" / "getting-started.ipynb", {"greeting": "Hi"})
    assert data["cells"][-2]["source"].endswith("greeting = 'Hi'\n")


def test_parameters_are_for_python_notebooks(tmp_path):
    notebook = parametrized(tmp_path / "r.ipynb")
    data = json.loads(notebook.read_text())
    data["metadata"]["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    notebook.write_text(json.dumps(data))
    assert (
        "runs R: -p injects Python assignments"
        in exit_of(lambda: notebooks.inject(notebook, {"a": 1})).message
    )


def test_run_notebook_without_an_nvidia_runtime_leaves_nothing(make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    refused = 'Error response from daemon: could not select device driver "nvidia" with capabilities: [[gpu]]'
    c = make_ctx({COMPOSE_RUN: fail(refused)}, gpu="nvidia")
    error = exit_of(lambda: notebooks.run_notebook(c, "notebooks/getting-started.ipynb"))
    assert error.message.startswith("The Docker engine has no NVIDIA GPU runtime")
    assert "`invoke run-notebook notebooks/getting-started.ipynb --no-gpu`" in error.message
    name = args_of(c, COMPOSE_RUN)[args_of(c, COMPOSE_RUN).index("--name") + 1]
    assert name.startswith("unit-demo-run-")
    assert f"docker rm --force {name}" in commands(c)  # the Created container is removed


# ----------------------------------------------------------------------------- on a remote engine


@pytest.fixture
def remote_workspace(project, monkeypatch, tmp_path):
    """A remote engine whose workspace volume is a folder here: what is sent lands there, and
    nbconvert (the compose run) writes the executed copy there."""
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@gpu.example.org")
    volume = tmp_path / "volume"
    volume.mkdir()
    transfer, sync = labdock.transfer, labdock.sync
    steps = []
    monkeypatch.setattr(sync, "push_on_up", lambda p: steps.append("push the folder's changes"))

    def in_workspace(p, argv, stdin=b""):
        if argv[0] == "sh":  # engine_apply_command: unpack what was sent
            names = transfer.unpack(stdin, volume, ["notebooks/getting-started.ipynb"])
            steps.append(f"send {', '.join(names)}")
            return b""
        names = argv[argv.index("--") + 1 :]
        steps.append(f"fetch {', '.join(names)}")
        for name in names:  # what nbconvert wrote there
            (volume / name).write_text('{"executed": true}')
        return transfer.pack(volume, names)

    monkeypatch.setattr(sync, "in_workspace", in_workspace)
    return volume, steps


def test_run_notebook_on_a_remote_engine_sends_it_and_fetches_the_executed_copy(
    make_ctx, project, monkeypatch, remote_workspace, capsys
):
    _, steps = remote_workspace
    monkeypatch.chdir(project)
    c = make_ctx()
    notebooks.run_notebook(c, "notebooks/getting-started.ipynb")
    args = args_of(c, COMPOSE_RUN)  # the volume's copy, at the same path as a bind mount's
    assert "compose.remote.yaml" in " ".join(args)
    assert args[-3:] == [
        "/workspace/notebooks/getting-started.ipynb",
        "--output",
        "/workspace/notebooks/getting-started.executed.ipynb",
    ]
    assert steps == [
        "push the folder's changes",
        "send notebooks/getting-started.ipynb",
        "fetch notebooks/getting-started.executed.ipynb",
    ]
    assert (project / "notebooks" / "getting-started.executed.ipynb").read_text() == '{"executed": true}'
    assert "Executed copy: notebooks/getting-started.executed.ipynb" in capsys.readouterr().out


def test_run_notebook_on_a_remote_engine_refuses_a_notebook_the_sync_never_sends(
    make_ctx, project, monkeypatch, remote_workspace
):
    _, steps = remote_workspace
    starter = (project / "notebooks" / "getting-started.ipynb").read_text()
    (project / "data" / "scratch.ipynb").write_text(starter)
    c = make_ctx()
    error = exit_of(lambda: notebooks.run_notebook(c, str(project / "data" / "scratch.ipynb")))
    assert error.message.startswith(f"{project / 'data' / 'scratch.ipynb'} is in a folder a remote engine's")
    assert steps == [] and not matching(c, COMPOSE_RUN)  # refused before anything is sent
