"""TensorBoard: started by up when enabled, alone by the task; ports; a server that never answers."""

from __future__ import annotations

from tests.tasks.helpers import (
    COMPOSE_UP,
    PS,
    SERVICES,
    args_of,
    exit_of,
    labdock,
    matching,
    ok,
)

network = labdock.network
tensorboard = labdock.tensorboard


def test_tensorboard_task_starts_the_service(make_ctx, capsys, tensorboard_answers):
    c = make_ctx({SERVICES: ok("lab\ntensorboard\n")}, tensorboard_port=6106)
    tensorboard.tensorboard(c)
    assert args_of(c, COMPOSE_UP)[-1] == "tensorboard"
    assert "TensorBoard: http://127.0.0.1:6106/" in capsys.readouterr().out


def test_tensorboard_that_never_answers(make_ctx, load, monkeypatch):
    monkeypatch.setattr(network, "url_answers", lambda url: False)
    monkeypatch.setattr(tensorboard, "POLL_SECONDS", 0)
    c = make_ctx({SERVICES: ok("lab\ntensorboard\n")}, tensorboard_port=6106)
    error = exit_of(lambda: tensorboard.wait_until_answering(load(c), timeout=0.05))
    assert "TensorBoard did not answer on http://127.0.0.1:6106/ within 0s" in error.message
    assert "docker compose logs tensorboard" in error.message


def test_tensorboard_task_without_the_service(make_ctx):
    c = make_ctx({SERVICES: ok("lab\n")})
    error = exit_of(lambda: tensorboard.tensorboard(c))
    assert "no TensorBoard service" in error.message
    assert "tensorboard=true" in error.message
    assert not matching(c, COMPOSE_UP)


def test_tensorboard_port_in_use(make_ctx, monkeypatch):
    monkeypatch.setattr(network, "port_in_use", lambda host, port: port == 6106)
    c = make_ctx({SERVICES: ok("lab\ntensorboard\n"), PS: ok("")}, tensorboard_port=6106)
    error = exit_of(lambda: tensorboard.tensorboard(c))
    assert "Port 6106 on 127.0.0.1 (TensorBoard) is already in use" in error.message
    assert "INVOKE_LABDOCK_TENSORBOARD_PORT" in error.message
    assert not matching(c, COMPOSE_UP)
