"""shell, exec, logs on the running container."""

from __future__ import annotations

import shlex
import sys
from types import SimpleNamespace

import pytest
from invoke import Exit

from tests.tasks.helpers import (
    COMPOSE_EXEC,
    PS,
    RUNNING,
    Tty,
    args_of,
    call_of,
    exit_of,
    fail,
    labdock,
    matching,
    ok,
    run_task,
)

container = labdock.container


@pytest.mark.parametrize(
    ("options", "tail"),
    [({"follow": True}, ["--tail", "all", "--follow", "lab"]), ({"tail": "50"}, ["--tail", "50", "lab"])],
)
def test_logs(make_ctx, options, tail):
    c = make_ctx()
    container.logs(c, **options)
    args = args_of(c, r"docker compose .* logs ")
    assert args[args.index("logs") + 1 :] == tail


@pytest.mark.parametrize("name", ["shell", "exec"])
def test_shell_and_exec_when_not_running(make_ctx, name):
    c = make_ctx({PS: ok("")})
    error = exit_of(lambda: run_task(name, c, *(["true"] if name == "exec" else [])))
    assert error.message == "JupyterLab is not running: start it with `invoke up`."
    assert not matching(c, COMPOSE_EXEC)


def test_shell(make_ctx):
    c = make_ctx(RUNNING)
    container.shell(c)
    call = call_of(c, COMPOSE_EXEC)
    assert shlex.split(call.args[0])[-3:] == ["exec", "lab", "bash"]
    assert call.kwargs["pty"] is True


def test_exec_without_a_tty(make_ctx):
    c = make_ctx(RUNNING)
    container.exec_(c, "pytest -q")
    call = call_of(c, COMPOSE_EXEC)
    assert shlex.split(call.args[0])[-6:] == ["exec", "-T", "lab", "sh", "-c", "pytest -q"]
    assert call.kwargs["pty"] is False


def test_exec_on_a_tty(make_ctx, monkeypatch):
    monkeypatch.setattr(container, "sys", SimpleNamespace(stdin=Tty(), stdout=Tty(), stderr=sys.stderr))
    c = make_ctx(RUNNING)
    container.exec_(c, "pytest -q")
    call = call_of(c, COMPOSE_EXEC)
    assert shlex.split(call.args[0])[-5:] == ["exec", "lab", "sh", "-c", "pytest -q"]
    assert call.kwargs["pty"] is True


def test_exec_passes_the_exit_code_through(make_ctx):
    c = make_ctx({COMPOSE_EXEC: fail(exited=3), **RUNNING})
    with pytest.raises(Exit) as info:
        container.exec_(c, "pytest -q")
    assert info.value.code == 3
    assert info.value.message is None  # the command's own output says what failed


def test_exec_says_when_the_running_image_is_stale(make_ctx, capsys):
    c = make_ctx({**RUNNING, r"docker container inspect": ok("poetry.lock=0000;user=1:1\n")})
    container.exec_(c, "true")
    err = capsys.readouterr().err
    assert "WARNING: the running server's image was built before" in err
    assert "poetry.lock" in err and "`invoke up` rebuilds it" in err
