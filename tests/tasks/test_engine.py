"""Every task that needs the engine stops at once, with one line, when none answers."""

from __future__ import annotations

import pytest

from tests.tasks.helpers import (
    ENGINE,
    ENGINE_CHECK,
    commands,
    exit_of,
    fail,
    labdock,
    run_task,
)

server = labdock.server


# Every task that needs the engine, with the arguments it needs.
ENGINE_TASKS = {
    "build": (),
    "up": (),
    "down": (),
    "logs": (),
    "url": (),
    "prepare": (),
    "tensorboard": (),
    "shell": (),
    "exec": ("true",),
    "lock": (),
    "add": ("polars",),
    "remove": ("polars",),
    "run-notebook": ("notebooks/getting-started.ipynb",),
    "lab": (),
    "push": ("1.0",),
}


@pytest.mark.parametrize("name", ENGINE_TASKS)
def test_no_engine(make_ctx, project, monkeypatch, name):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.9.8.7:2375")
    c = make_ctx({ENGINE: fail("Cannot connect to the Docker daemon")})
    error = exit_of(lambda: run_task(name, c, *ENGINE_TASKS[name]))
    assert error.message.startswith("No Docker engine reachable at tcp://10.9.8.7:2375")
    assert "DOCKER_HOST" in error.message
    assert commands(c) == [ENGINE_CHECK]  # nothing else was tried
    assert not (project / ".env").exists()


def test_no_engine_without_docker_host(make_ctx):
    c = make_ctx({ENGINE: fail()})
    error = exit_of(lambda: server.down(c))
    assert "the default Docker socket/context" in error.message
    assert "point DOCKER_HOST at a running engine" in error.message
