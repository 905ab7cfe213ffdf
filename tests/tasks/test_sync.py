"""sync.py on a fake remote engine: the commands remote.py spells out for the container run here,
on a folder that stands in for the workspace volume (same python, sh and tar), so the tar streams,
the three-way plan and the state file are the real ones; only `docker compose exec` is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.tasks.helpers import COMPOSE_UP, PS, args_of, exit_of, labdock, ok, run_task

sync = labdock.sync
engine = labdock.engine
server = labdock.server


class FakeEngine:
    """Runs what tasks send to `docker compose exec|run ... lab CMD` on a local folder."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.calls: list[list[str]] = []

    def __call__(self, argv, stdin=b"", env=None, show_errors=False):
        argv = [str(arg) for arg in argv]
        self.calls.append(argv)
        service = argv.index("lab")
        command = [str(self.workspace) if arg == "/workspace" else arg for arg in argv[service + 1 :]]
        if command[0] == "python":
            command[0] = sys.executable
        return subprocess.run(command, input=stdin, capture_output=True, check=False)

    @property
    def modes(self) -> list[str]:
        return ["exec" if "exec" in call else "run" for call in self.calls]


@pytest.fixture
def remote_engine(project, monkeypatch, tmp_path) -> FakeEngine:
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@gpu.example.org")
    workspace = tmp_path / "volume"
    workspace.mkdir()
    fake = FakeEngine(workspace)
    monkeypatch.setattr(engine, "exchange", fake)
    # Files git would list: the project is no repository here, so sync walks the folder.
    return fake


RUNNING = {PS: ok("abc123\n")}


def test_a_first_sync_sends_the_project_but_never_env_data_or_caches(make_ctx, project, remote_engine):
    (project / ".env").write_text("LABDOCK_TOKEN=secret\n")
    (project / "data" / "big.csv").write_text("1,2\n")
    (project / "src" / "unit_demo" / "__pycache__").mkdir()
    (project / "src" / "unit_demo" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    run_task("sync", make_ctx(RUNNING))
    there = remote_engine.workspace
    assert (there / "pyproject.toml").read_bytes() == (project / "pyproject.toml").read_bytes()
    assert (there / "notebooks" / "getting-started.ipynb").is_file()
    assert not (there / ".env").exists() and not (there / "data" / "big.csv").exists()
    assert not (there / "src" / "unit_demo" / "__pycache__").exists()
    assert not (there / ".labdock").exists()  # the sync's own state stays here
    assert (project / ".labdock" / "sync.json").is_file()
    assert set(remote_engine.modes) == {"exec"}  # through the running server


def test_edits_flow_both_ways(make_ctx, project, remote_engine, capsys):
    run_task("sync", make_ctx(RUNNING))
    module = project / "src" / "unit_demo" / "__init__.py"
    module.write_text(module.read_text() + "EDITED_HERE = 1\n")
    saved = remote_engine.workspace / "notebooks" / "from-the-lab.ipynb"
    saved.write_text('{"cells": []}')
    (remote_engine.workspace / "notebooks" / "getting-started.ipynb").unlink()  # deleted in the lab
    run_task("sync", make_ctx(RUNNING))
    assert "EDITED_HERE" in (remote_engine.workspace / "src" / "unit_demo" / "__init__.py").read_text()
    assert (project / "notebooks" / "from-the-lab.ipynb").read_text() == '{"cells": []}'
    assert not (project / "notebooks" / "getting-started.ipynb").exists()
    assert "1 sent, 1 fetched, 1 deleted." in capsys.readouterr().out


def test_a_conflict_is_left_alone_until_a_side_is_preferred(make_ctx, project, remote_engine, capsys):
    run_task("sync", make_ctx(RUNNING))
    here, there = project / "pyproject.toml", remote_engine.workspace / "pyproject.toml"
    here.write_text(here.read_text() + "# here\n")
    there.write_text(there.read_text() + "# there\n")
    error = exit_of(lambda: run_task("sync", make_ctx(RUNNING)))
    assert error.message.startswith(
        "Changed here and in the engine's workspace, left as they are on both sides: pyproject.toml."
    )
    assert "`invoke sync --prefer here` or `--prefer engine`" in error.message
    assert here.read_text().endswith("# here\n") and there.read_text().endswith("# there\n")
    run_task("sync", make_ctx(RUNNING), prefer="engine")
    assert here.read_text().endswith("# there\n")


def test_a_bad_prefer_is_one_line(make_ctx, project, remote_engine):
    error = exit_of(lambda: run_task("sync", make_ctx(RUNNING), prefer="laptop"))
    assert error.message == "--prefer 'laptop' is not valid: use --prefer here or --prefer engine."


def test_without_a_server_a_throwaway_container_reaches_the_volume(make_ctx, project, remote_engine):
    run_task("sync", make_ctx({PS: ok("")}))
    assert set(remote_engine.modes) == {"run"}
    assert all("--rm" in call for call in remote_engine.calls)


def test_a_local_engine_has_nothing_to_sync(make_ctx, project, monkeypatch, capsys):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    c = make_ctx()
    run_task("sync", c)
    assert "nothing to sync" in capsys.readouterr().out
    assert c.run.call_args_list == []


def test_down_volumes_refuses_while_the_lab_has_unsynced_work(make_ctx, project, remote_engine):
    run_task("sync", make_ctx(RUNNING))
    (remote_engine.workspace / "notebooks" / "only-in-the-lab.ipynb").write_text("{}")
    c = make_ctx(RUNNING)
    error = exit_of(lambda: server.down(c, volumes=True))
    assert error.message == (
        "The engine's workspace has changes not synced here (notebooks/only-in-the-lab.ipynb): "
        "`invoke sync` first, or `invoke down --volumes --force` to delete them."
    )
    assert not [command for command in c.run.call_args_list if " down " in command.args[0]]
    forced = make_ctx(RUNNING)
    server.down(forced, volumes=True, force=True)
    assert [call.args[0] for call in forced.run.call_args_list if " down " in call.args[0]]


def test_up_sends_this_folder_and_says_what_waits_in_the_lab(make_ctx, project, remote_engine, capsys):
    (remote_engine.workspace / "notebooks").mkdir()
    (remote_engine.workspace / "notebooks" / "lab-only.ipynb").write_text("{}")
    c = make_ctx({**RUNNING, r"docker compose .* port ": ok("127.0.0.1:8888\n")})
    server.up(c)
    out = capsys.readouterr().out
    assert (remote_engine.workspace / "pyproject.toml").is_file()
    assert not (project / "notebooks" / "lab-only.ipynb").exists()  # up never fetches
    assert "1 changes made in the lab wait to come here: `invoke sync` copies them." in out
    up = args_of(c, COMPOSE_UP)

    assert up[up.index("--wait") : up.index("--wait") + 3] == ["--wait", "--wait-timeout", "180"]
    assert str(project / "compose.remote.yaml") in up  # the workspace volume instead of the bind mount
    assert "ssh -N -L 127.0.0.1:8888:127.0.0.1:8888 me@gpu.example.org" in out
