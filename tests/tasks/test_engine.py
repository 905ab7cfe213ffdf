"""engine.py: every task that needs the engine stops at once, with one line, when none answers;
what it finds there under this checkout's names must be this checkout's; a taken port is named;
the first `up` after the rename moves an earlier release's JupyterLab state; remote mode."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from tests.tasks.helpers import (
    COMPOSE_UP,
    ENGINE,
    ENGINE_CHECK,
    PS,
    RUNNING,
    commands,
    exit_of,
    fail,
    labdock,
    matching,
    ok,
    pairs,
    position,
    run_task,
)

server = labdock.server
engine = labdock.engine


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


# ----------------------------------------------------------------------------- one engine, many checkouts


def inspected(checkout: str, folder: str = "/home/bob/unit-demo", user: str = "bob", **more) -> dict:
    labels = {"dev.labdock.checkout": checkout, "dev.labdock.folder": folder, "dev.labdock.user": user}
    return {"Name": "/unit-demo-lab-1", "Config": {"Labels": labels}, **more}


def test_every_task_checks_the_names_it_uses_in_one_call(make_ctx, load):
    c = make_ctx()
    p = load(c)
    engine.require_engine(p)
    (inspect,) = matching(c, r"docker inspect ")
    assert shlex.split(inspect)[2:] == [
        "unit-demo-lab-1",  # no TensorBoard in this project; no workspace volume on a local engine
        "unit-demo_jupyter-state",
        "unit-demo_python-cache",
        "unit-demo-poetry-cache",
        "unit-demo_default",
        "unit-demo:latest",
        "unit-demo:builder",
    ]


def test_another_checkouts_resource_is_never_reused(make_ctx, load, project):
    found = json.dumps([inspected("0123456789ab")])
    c = make_ctx({r"docker inspect unit-demo": ok(found)})
    error = exit_of(lambda: server.up(c))
    assert error.message.startswith(
        "unit-demo-lab-1 on the Docker engine belongs to another checkout: /home/bob/unit-demo (user "
        "bob); it is never reused."
    )
    assert "delete .labdock/ here" in error.message
    assert not matching(c, r"docker compose .* up ") and not matching(c, r"docker build")


def test_this_checkouts_and_unlabelled_resources_are_its_own(make_ctx, load, project):
    p = load(make_ctx())
    mine = inspected(p.checkout.id, folder="/where/it/was")  # e.g. after the folder moved
    unlabelled = {"Name": "unit-demo-poetry-cache", "Labels": None}  # made by an earlier release
    assert engine.foreign(p, [mine, unlabelled]) == ""


@pytest.mark.parametrize(
    ("listing", "holder"),
    [
        ("", "another process"),
        (
            "/other-lab-1|0123456789ab|/home/bob/x|bob||",
            "the JupyterLab of another checkout, /home/bob/x (user bob)",
        ),
        ("/old-lab-1||||old|/home/ann/old", "container old-lab-1 of the project in /home/ann/old"),
        ("/web||||site|", "container web (compose project site)"),
    ],
)
def test_a_taken_port_names_what_holds_it(make_ctx, load, listing, holder):
    c = make_ctx(
        {
            r"docker ps --filter publish=8888": ok("f00d\n" if listing else ""),
            r"docker inspect --format": ok(listing),
        }
    )
    p = load(c)
    message = engine.port_taken(p, 8888, "127.0.0.1")
    assert message == (
        f"Port 8888 on 127.0.0.1 is already in use by {holder}: stop it, or choose another port: "
        "labdock.port: auto picks a free one (or INVOKE_LABDOCK_PORT=<port> for one run)."
    )


def test_up_names_the_checkout_holding_the_port(make_ctx, project, monkeypatch):
    monkeypatch.setattr(labdock.network, "port_in_use", lambda host, port: True)
    listing = "/x-lab-1|0123456789ab|/home/bob/unit-demo|bob||"
    c = make_ctx(
        {
            PS: ok(""),
            r"docker ps --filter publish=8888": ok("f00d\n"),
            r"docker inspect --format": ok(listing),
        }
    )
    error = exit_of(lambda: server.up(c))
    assert error.message.startswith(
        "Port 8888 on 127.0.0.1 is already in use by the JupyterLab of another checkout, "
        "/home/bob/unit-demo (user bob)"
    )
    assert not matching(c, r"docker compose .* up ")


# ----------------------------------------------------------------------------- from an earlier release


def test_the_first_up_moves_the_earlier_releases_jupyterlab_state(
    make_ctx, load, project, monkeypatch, capsys
):
    monkeypatch.setattr(
        labdock.project, "checkout_name", lambda slug, user, host, folder: f"{slug}-tester-12345678"
    )
    (project / ".env").write_text("LABDOCK_TOKEN=abc\n")  # an earlier release ran here
    mounted = f"old123 {project}\nelse456 /home/bob/unit-demo\n"  # the old containers and what they mount
    c = make_ctx(
        {
            **RUNNING,
            r"docker ps --all --quiet --filter label=com.docker.compose.project=unit-demo$": ok(
                "old123\nelse456\n"
            ),
            r"docker inspect --format '\{\{\.Id\}\} ": ok(mounted),
            r"docker volume ls --quiet": ok("unit-demo_jupyter-state\nunit-demo_python-cache\nother\n"),
        }
    )
    server.up(c)
    new = "unit-demo-tester-12345678"
    assert matching(c, r"docker rm --force") == ["docker rm --force old123"]  # only this folder's
    created = [shlex.split(command) for command in matching(c, r"docker volume create")]
    assert [args[-1] for args in created] == [f"{new}_jupyter-state", f"{new}_python-cache"]
    assert pairs(created[0]) >= {
        ("--label", f"com.docker.compose.project={new}"),
        ("--label", "com.docker.compose.volume=jupyter-state"),
        ("--label", "dev.labdock.user=tester"),
    }
    copies = [shlex.split(command) for command in matching(c, r"docker run --rm --network none")]
    assert pairs(copies[0]) >= {
        ("-v", "unit-demo_jupyter-state:/from:ro"),
        ("-v", f"{new}_jupyter-state:/to"),
    }
    assert copies[0][-4:] == ["cp", "-a", "/from/.", "/to/"]
    assert position(c, r"docker run --rm --network none") < position(c, COMPOSE_UP)
    assert not matching(c, r"docker volume rm")  # the old volumes stay, for other checkouts
    assert "The old volumes stay, for other checkouts of unit-demo" in capsys.readouterr().out
    assert load(make_ctx()).checkout.legacy is False  # once
    again = make_ctx(RUNNING)
    server.up(again)
    assert not matching(again, r"docker volume ls")


def test_the_move_never_overwrites_a_volume_this_checkout_has(make_ctx, project, monkeypatch):
    monkeypatch.setattr(labdock.project, "checkout_name", lambda slug, user, host, folder: f"{slug}-t-1")
    (project / ".env").write_text("LABDOCK_TOKEN=abc\n")
    c = make_ctx(
        {**RUNNING, r"docker volume ls --quiet": ok("unit-demo_jupyter-state\nunit-demo-t-1_jupyter-state\n")}
    )
    server.up(c)
    assert not matching(c, r"docker volume create") and not matching(c, r"docker run --rm --network none")


# ----------------------------------------------------------------------------- remote engines


def test_remote_mode_replaces_the_bind_mount_and_labels_the_volume(make_ctx, load, project, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@gpu.example.org")
    c = make_ctx(RUNNING)
    p = load(c)
    engine.compose(p, "ps")
    (ps,) = matching(c, r"docker compose ")
    assert shlex.split(ps)[4:8] == [
        "-f",
        str(project / "compose.yaml"),
        "-f",
        str(project / "compose.remote.yaml"),
    ]
    override = yaml.safe_load((project / "compose.remote.yaml").read_text())
    assert list(override["services"]) == ["lab"]  # the services that mount the project
    assert override["volumes"]["workspace"]["labels"]["dev.labdock.checkout"] == p.checkout.id


def test_the_tensorboard_service_gets_the_volume_too(make_ctx, load, project, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@gpu.example.org")
    compose_file = project / "compose.yaml"
    compose_file.write_text(
        compose_file.read_text().replace(
            "\nvolumes:\n",
            "\n  tensorboard:\n    image: x\n    volumes:\n      - .:/workspace\n\nvolumes:\n",
            1,
        )
    )
    labdock.overrides.write_remote_override(load(make_ctx()))
    assert list(yaml.safe_load((project / "compose.remote.yaml").read_text())["services"]) == [
        "lab",
        "tensorboard",
    ]


@pytest.mark.parametrize("name", ["lock", "add"])
def test_poetry_tasks_stop_in_one_line_on_a_remote_engine(make_ctx, project, monkeypatch, name):
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@gpu.example.org")
    c = make_ctx()
    error = exit_of(lambda: run_task(name, c, *ENGINE_TASKS[name]))
    assert error.message.startswith(
        "Poetry (invoke lock, add, the lock check) is not supported on a remote engine yet"
    )
    assert not matching(c, r"docker (run|build)")
