"""up, down, url, prepare, lab: starting JupyterLab and waiting for it, ports, GPUs, .env, the native lab."""

from __future__ import annotations

import shlex
import shutil
import socket
import stat

import pytest

from tests.tasks.helpers import (
    COMPOSE_UP,
    HEALTH,
    IMAGE_INSPECT,
    PORT,
    PS,
    RUNNING,
    RUNTIME,
    SERVER_ENV,
    FakeClock,
    args_of,
    call_of,
    commands,
    exit_of,
    fail,
    labdock,
    matching,
    ok,
    on_command,
    pairs,
    position,
    write_lock,
)

envfile = labdock.envfile
network = labdock.network
server = labdock.server


def test_up_starts_compose_and_prints_the_url(make_ctx, project, capsys):
    c = make_ctx(RUNNING)
    server.up(c)
    call = call_of(c, COMPOSE_UP)
    assert shlex.split(call.args[0]) == [
        *("docker", "compose", "--project-name", "unit-demo", "-f", str(project / "compose.yaml")),
        *("up", "--detach", "--no-build"),
    ]
    assert call.kwargs["env"] == {
        # this checkout's names and labels (test_project.py; the slug's in these tests)
        "LABDOCK_PROJECT": "unit-demo",
        "LABDOCK_CHECKOUT": labdock.project.read_record(project / ".labdock" / "checkout.json")["id"],
        "LABDOCK_FOLDER": str(project),
        "LABDOCK_ORIGIN": str(project),
        "LABDOCK_USER": "tester",
        "LABDOCK_IMAGE": "unit-demo:latest",
        "LABDOCK_PORT": "8888",
        "LABDOCK_BIND": "127.0.0.1",
        "LABDOCK_CPUS": "0",  # no limit (the rendered default)
        "LABDOCK_MEMORY": "0",
        "LABDOCK_TENSORBOARD_PORT": "6006",
        "LABDOCK_TENSORBOARD_BIND": "127.0.0.1",
        # from .env, passed explicitly: a LABDOCK_TOKEN exported in the shell cannot win
        "LABDOCK_TOKEN": envfile.read(project / ".env")["LABDOCK_TOKEN"],
    }
    assert not matching(c, r"docker build")
    token = envfile.read(project / ".env")["LABDOCK_TOKEN"]
    out = capsys.readouterr().out
    assert f"JupyterLab: http://127.0.0.1:8888/lab?token={token}" in out
    assert "TensorBoard" not in out


def test_resource_limits_reach_compose_from_the_settings(make_ctx):
    c = make_ctx(RUNNING, cpus="1.5", memory="12g")
    server.up(c)
    env = call_of(c, COMPOSE_UP).kwargs["env"]
    assert (env["LABDOCK_CPUS"], env["LABDOCK_MEMORY"]) == ("1.5", "12g")


def test_up_builds_a_missing_image(make_ctx, project):
    write_lock(project)
    c = make_ctx({IMAGE_INSPECT: fail(), **RUNNING})
    server.up(c)
    assert position(c, IMAGE_INSPECT) < position(c, RUNTIME) < position(c, COMPOSE_UP)


def test_up_rebuilds_on_request(make_ctx, project):
    write_lock(project)
    c = make_ctx(RUNNING)
    server.up(c, build_=True)
    assert position(c, RUNTIME) < position(c, COMPOSE_UP)


@pytest.mark.parametrize(("setting", "flag"), [("nvidia", False), ("none", True)])
def test_up_with_gpu_adds_the_override(make_ctx, project, setting, flag):
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    c = make_ctx(RUNNING, gpu=setting)
    server.up(c, gpu=flag)
    assert shlex.split(call_of(c, COMPOSE_UP).args[0])[4:10] == [
        *("-f", str(project / "compose.yaml")),
        *("-f", str(project / "compose.gpu.yaml")),
        *("up", "--detach"),
    ]


def test_no_gpu_overrides_the_setting(make_ctx, project):
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    c = make_ctx(RUNNING, gpu="nvidia")
    server.up(c, no_gpu=True)
    assert "compose.gpu.yaml" not in call_of(c, COMPOSE_UP).args[0]


def test_gpu_and_no_gpu_together_are_refused(make_ctx, project):
    c = make_ctx(RUNNING)
    error = exit_of(lambda: server.up(c, gpu=True, no_gpu=True))
    assert error.message == "--gpu and --no-gpu contradict each other: give one of them."
    assert commands(c) == []


def test_up_without_gpu_leaves_out_the_override(make_ctx, project):
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    c = make_ctx(RUNNING)
    server.up(c)
    assert "compose.gpu.yaml" not in call_of(c, COMPOSE_UP).args[0]


@pytest.mark.parametrize(
    ("gpus", "wanted"),
    [("all", "count: all"), ("0,1", 'device_ids: ["0", "1"]'), ("none", "lab: {}")],
)
def test_up_writes_the_gpu_request_of_the_gpus_setting(make_ctx, project, gpus, wanted):
    """compose.gpu.yaml is generated for the run (gpu.py; the real Compose reads it in
    tests/test_gpu_render.py), also for a project rendered without the GPU."""
    assert not (project / "compose.gpu.yaml").exists()
    c = make_ctx(RUNNING, gpus=gpus)
    server.up(c, gpu=True)
    written = (project / "compose.gpu.yaml").read_text()
    assert wanted in written and ("count" in written) == (gpus == "all")
    assert "compose.gpu.yaml" in call_of(c, COMPOSE_UP).args[0]


def test_a_bad_gpus_setting_stops_before_anything_runs(make_ctx, project):
    c = make_ctx(RUNNING, gpus="0,0")
    error = exit_of(lambda: server.up(c, gpu=True))
    assert error.message == "labdock.gpus lists GPU 0 twice: give each GPU once."
    assert commands(c) == []


def test_up_gpu_without_nvidia_runtime(make_ctx, project):
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    stderr = 'Error response from daemon: could not select device driver "nvidia" with capabilities: [[gpu]]'
    c = make_ctx({COMPOSE_UP: fail(stderr), **RUNNING})
    error = exit_of(lambda: server.up(c, gpu=True))
    assert "NVIDIA Container Toolkit" in error.message
    assert not matching(c, HEALTH)


def test_up_port_in_use(make_ctx, monkeypatch):
    probed = []
    monkeypatch.setattr(network, "port_in_use", lambda host, port: probed.append((host, port)) or True)
    c = make_ctx({PS: ok("")}, port=9123)
    error = exit_of(lambda: server.up(c))
    assert "Port 9123 on 127.0.0.1 is already in use" in error.message
    assert "INVOKE_LABDOCK_PORT" in error.message
    assert probed == [("127.0.0.1", 9123)]
    assert not matching(c, COMPOSE_UP)


def test_up_port_taken_by_our_own_server_is_fine(make_ctx, monkeypatch):
    monkeypatch.setattr(network, "port_in_use", lambda host, port: True)
    c = make_ctx(RUNNING)
    server.up(c)
    assert matching(c, COMPOSE_UP)


def test_up_port_allocated_when_compose_starts(make_ctx):
    stderr = "Error response from daemon: Bind for 127.0.0.1:8888 failed: port is already allocated"
    c = make_ctx({COMPOSE_UP: fail(stderr), **RUNNING})
    error = exit_of(lambda: server.up(c))
    assert "Port 8888 on 127.0.0.1 is already in use" in error.message
    assert "INVOKE_LABDOCK_PORT" in error.message


def test_up_compose_fails_otherwise(make_ctx, capsys):
    c = make_ctx({COMPOSE_UP: fail("service lab: invalid volume spec"), **RUNNING})
    error = exit_of(lambda: server.up(c))
    assert error.message.startswith("`docker compose up` failed (error above): the server is down")
    assert "invalid volume spec" in capsys.readouterr().err


def test_up_warns_when_published_beyond_localhost(make_ctx, capsys):
    c = make_ctx(RUNNING, bind="0.0.0.0")
    server.up(c)
    assert call_of(c, COMPOSE_UP).kwargs["env"]["LABDOCK_BIND"] == "0.0.0.0"
    assert "WARNING: JupyterLab is published on 0.0.0.0" in capsys.readouterr().err


def test_up_times_out_when_never_healthy(make_ctx, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(server, "time", clock)
    monkeypatch.setattr(server, "server_answers", lambda host, port: False)
    c = make_ctx({**RUNNING, HEALTH: ok("running starting")}, healthy_timeout=3)
    error = exit_of(lambda: server.up(c))
    assert "did not become healthy within 3s" in error.message
    assert "labdock.healthy_timeout" in error.message
    assert clock.sleeps == 12  # every 0.25 s
    assert args_of(c, r"docker compose .* logs ")[-3:] == ["--tail", "30", "lab"]


def test_up_is_healthy_as_soon_as_the_server_answers(make_ctx, monkeypatch, capsys):
    clock = FakeClock()
    monkeypatch.setattr(server, "time", clock)
    probes = []

    def third_probe_answers(host, port):
        probes.append((host, port))
        return len(probes) > 2

    monkeypatch.setattr(server, "server_answers", third_probe_answers)
    c = make_ctx({**RUNNING, HEALTH: ok("running starting")}, port=9123)
    server.up(c)
    assert probes == [("127.0.0.1", 9123)] * 3  # before the engine's healthcheck says so
    assert clock.sleeps == 2
    assert "JupyterLab is healthy after 0.5s." in capsys.readouterr().out


def test_server_answers_only_a_jupyter_api():
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert server.server_answers("0.0.0.0", port) is False


def test_up_reports_a_crashed_server(make_ctx, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(server, "time", clock)
    c = make_ctx({**RUNNING, HEALTH: ok("exited ")})
    error = exit_of(lambda: server.up(c))
    assert "stopped while starting (container exited" in error.message
    assert clock.sleeps == 0
    assert matching(c, r"docker compose .* logs --tail 30 lab")


@pytest.mark.parametrize(("volumes", "tail"), [(False, ["down", "--remove-orphans"]), (True, ["--volumes"])])
def test_down(make_ctx, project, volumes, tail):
    c = make_ctx()
    server.down(c, volumes=volumes)
    args = args_of(c, r"docker compose .* down")
    assert args[:6] == [
        "docker",
        "compose",
        "--project-name",
        "unit-demo",
        "-f",
        str(project / "compose.yaml"),
    ]
    assert args[-len(tail) :] == tail
    assert ("--volumes" in args) is volumes
    assert ("--profile", "tensorboard") in pairs(args)  # a TensorBoard started alone stops too
    # Poetry's cache volume is the checkout's, outside Compose: a reset deletes it too
    assert bool(matching(c, r"docker volume rm --force unit-demo-poetry-cache")) is volumes


def test_prepare_writes_token_and_settings_to_env_and_builds_a_missing_image(make_ctx, project):
    write_lock(project)
    c = make_ctx({IMAGE_INSPECT: fail()}, port=9999, cpus="2")
    server.prepare(c)
    env = envfile.read(project / ".env")
    assert len(env["LABDOCK_TOKEN"]) == 64
    assert (env["LABDOCK_PORT"], env["LABDOCK_CPUS"], env["LABDOCK_IMAGE"]) == (
        "9999",
        "2",
        "unit-demo:latest",
    )
    assert stat.S_IMODE((project / ".env").stat().st_mode) == 0o600
    assert matching(c, RUNTIME)


def test_settings_in_env_are_replaced_and_other_lines_kept(make_ctx, project):
    (project / ".env").write_text("LABDOCK_TOKEN=abc\nMY_VAR=1\nLABDOCK_PORT=1111\n")
    server.prepare(make_ctx(port=9999))
    server.prepare(make_ctx(port=8888))  # twice: one block of settings, the latest
    text = (project / ".env").read_text()
    assert text.count("LABDOCK_PORT=") == 1 and "LABDOCK_PORT=8888" in text
    assert text.startswith("LABDOCK_TOKEN=abc\nMY_VAR=1\n")
    assert text.count(envfile.SETTINGS_HEADER) == 1


def test_up_keeps_env_settings_in_step(make_ctx, project):
    server.up(make_ctx(RUNNING, memory="4g"))
    assert envfile.read(project / ".env")["LABDOCK_MEMORY"] == "4g"


def test_up_starts_tensorboard_when_enabled(make_ctx, capsys, tensorboard_answers):
    c = make_ctx(RUNNING, tensorboard=True, tensorboard_port=6106)
    server.up(c)
    up_args = args_of(c, COMPOSE_UP)
    assert ("--profile", "tensorboard") in pairs(up_args)
    assert call_of(c, COMPOSE_UP).kwargs["env"]["LABDOCK_TENSORBOARD_PORT"] == "6106"
    assert "TensorBoard: http://127.0.0.1:6106/" in capsys.readouterr().out


def test_up_leaves_tensorboard_off_by_default(make_ctx):
    c = make_ctx(RUNNING)
    server.up(c)
    assert "--profile" not in args_of(c, COMPOSE_UP)


def test_url_prints_a_reachable_address(make_ctx, project, capsys):
    # The running server's token wins over .env, which may have been edited since it started.
    (project / ".env").write_text("LABDOCK_TOKEN=edited-since\n")
    c = make_ctx(
        {
            PS: ok("abc123\n"),
            PORT: ok("0.0.0.0:8888\n"),
            SERVER_ENV: ok("PATH=/x\nJUPYTER_TOKEN=from-server\n"),
        }
    )
    server.url(c)
    assert capsys.readouterr().out.splitlines()[-1] == "http://127.0.0.1:8888/lab?token=from-server"
    assert args_of(c, PORT)[-2:] == ["lab", "8888"]


def test_url_when_not_running(make_ctx):
    c = make_ctx({PORT: ok("")})
    error = exit_of(lambda: server.url(c))
    assert error.message == "JupyterLab is not running: start it with `invoke up`."


def test_lab_local(make_ctx, project, monkeypatch):
    write_lock(project)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    c = make_ctx()
    server.lab(c, local=True)
    token = envfile.read(project / ".env")["LABDOCK_TOKEN"]
    assert commands(c) == [
        "poetry install",
        "poetry run jupyter lab --no-browser --ip=127.0.0.1 --port=8888",
    ]
    assert c.run.call_args_list[1].kwargs["env"] == {"JUPYTER_TOKEN": token}


def test_lab_local_without_poetry(make_ctx, project, monkeypatch):
    write_lock(project)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    c = make_ctx()
    error = exit_of(lambda: server.lab(c, local=True))
    assert "Poetry is not installed" in error.message
    assert commands(c) == []


def test_lab_local_without_lock(make_ctx, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    c = make_ctx()
    error = exit_of(lambda: server.lab(c, local=True))
    assert error.message.startswith("poetry.lock is missing: run `invoke lock` first")
    assert commands(c) == []


def test_lab_local_passes_the_index_settings(make_ctx, project, monkeypatch, tmp_path):
    write_lock(project)
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    c = make_ctx(pypi_mirror="https://pypi.corp.example/simple", ca_bundle=str(bundle))
    server.lab(c, local=True)
    assert call_of(c, r"poetry install").kwargs["env"] == {
        "POETRY_PYPI_MIRROR_URL": "https://pypi.corp.example/simple",
        "REQUESTS_CA_BUNDLE": str(bundle),
    }


def test_up_port_error_in_a_project_named_gpu(make_ctx, project):
    stderr = (
        "Error response from daemon: driver failed programming external connectivity on endpoint "
        "gpu-lab-lab-1: Bind for 127.0.0.1:8888 failed: port is already allocated"
    )
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('name = "unit-demo"', 'name = "gpu-lab"'))
    c = make_ctx({COMPOSE_UP: fail(stderr), **RUNNING})
    error = exit_of(lambda: server.up(c))
    assert "Port 8888 on 127.0.0.1 is already in use" in error.message


LEFTOVERS = r"docker ps --all --filter label=com.docker.compose.project=unit-demo"


def test_up_removes_what_an_interrupted_start_left(make_ctx):
    listing = (
        "aaa111 created unit-demo-lab-1\n"
        "bbb222 exited 0123456789ab_unit-demo-lab-1\n"  # renamed by compose while replacing it
        "ccc333 running unit-demo-tensorboard-1\n"
    )
    c = make_ctx({**RUNNING, LEFTOVERS: ok(listing)})
    server.up(c)
    removed = matching(c, r"docker rm --force")
    assert removed[0] == "docker rm --force aaa111 bbb222"  # not the running TensorBoard
    assert position(c, r"docker rm --force") < position(c, COMPOSE_UP)


def test_up_interrupted_while_replacing_the_container(make_ctx):
    c = make_ctx(RUNNING)

    def interrupt():
        raise KeyboardInterrupt

    on_command(c, COMPOSE_UP, interrupt)
    error = exit_of(lambda: server.up(c))
    assert error.code == 130
    assert error.message.startswith("Interrupted while (re)starting JupyterLab: the server may be down.")
    assert "`invoke up` starts it again" in error.message


def test_up_fails_without_a_message(make_ctx):
    c = make_ctx({**RUNNING, COMPOSE_UP: fail("", exited=137)})
    error = exit_of(lambda: server.up(c))
    assert error.message.startswith("`docker compose up` failed without a message (exit 137)")


# ----------------------------------------------------------------------------- port: auto


def checkout_ports(project) -> dict:
    return labdock.project.read_record(project / ".labdock" / "checkout.json").get("ports", {})


def test_port_auto_lets_the_engine_pick_then_keeps_that_port(make_ctx, project, capsys):
    c = make_ctx({**RUNNING, PORT: ok("127.0.0.1:49153\n")}, port="auto")
    server.up(c)
    assert call_of(c, COMPOSE_UP).kwargs["env"]["LABDOCK_PORT"] == ""  # the engine picks a free one
    assert "JupyterLab: http://127.0.0.1:49153/lab?token=" in capsys.readouterr().out
    assert checkout_ports(project) == {"lab": 49153}
    again = make_ctx({**RUNNING, PORT: ok("127.0.0.1:49153\n")}, port="auto")
    server.up(again)
    assert call_of(again, COMPOSE_UP).kwargs["env"]["LABDOCK_PORT"] == "49153"  # the same URL
    assert envfile.read(project / ".env")["LABDOCK_PORT"] == "49153"  # for VS Code too


def test_port_auto_gives_up_a_port_something_else_took(make_ctx, project, monkeypatch, capsys):
    server.up(make_ctx({**RUNNING, PORT: ok("127.0.0.1:49153\n")}, port="auto"))
    monkeypatch.setattr(network, "port_in_use", lambda host, port: port == 49153)
    ids = iter(["", "abc123"])  # not running when up starts; then the new container
    monkeypatch.setattr(labdock.engine, "container_id", lambda p, service="lab": next(ids, "abc123"))
    c = make_ctx({**RUNNING, PORT: ok("127.0.0.1:49200\n")}, port="auto")
    server.up(c)
    assert call_of(c, COMPOSE_UP).kwargs["env"]["LABDOCK_PORT"] == ""
    assert "Port 49153, which JupyterLab had, is taken now: it gets another one" in capsys.readouterr().out
    assert checkout_ports(project) == {"lab": 49200}


def test_port_auto_retries_once_when_the_engine_finds_the_port_taken(make_ctx, project):
    server.up(make_ctx({**RUNNING, PORT: ok("127.0.0.1:49153\n")}, port="auto"))
    taken = fail("Bind for 127.0.0.1:49153 failed: port is already allocated")
    c = make_ctx({**RUNNING, COMPOSE_UP: [taken, ok()], PORT: ok("127.0.0.1:49200\n")}, port="auto")
    server.up(c)
    ups = [call for call in c.run.call_args_list if " up " in call.args[0]]
    assert [call.kwargs["env"]["LABDOCK_PORT"] for call in ups] == ["49153", ""]
    assert checkout_ports(project) == {"lab": 49200}


def test_url_prints_the_port_auto_picked(make_ctx, project, capsys):
    server.url(make_ctx({**RUNNING, PORT: ok("127.0.0.1:49153\n")}, port="auto"))
    assert capsys.readouterr().out.startswith("http://127.0.0.1:49153/lab?token=")


# ----------------------------------------------------------------------------- remote engines


def test_url_on_a_remote_engine_prints_the_ssh_tunnel(make_ctx, project, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@gpu.example.org:2222")
    server.url(make_ctx({**RUNNING, PORT: ok("127.0.0.1:8888\n")}))
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "The server listens on the engine's host: reach it from here with",
        "  ssh -N -L 127.0.0.1:8888:127.0.0.1:8888 -p 2222 me@gpu.example.org",
    ]
    assert lines[2].startswith("http://127.0.0.1:8888/lab?token=")


def test_up_on_a_remote_engine_never_probes_this_machine(make_ctx, project, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2376")
    probed = []
    monkeypatch.setattr(network, "port_in_use", lambda host, port: probed.append(port) or True)
    monkeypatch.setattr(network, "url_answers", lambda url: probed.append(url) or False)
    monkeypatch.setattr(labdock.sync, "push_on_up", lambda p: None)  # test_sync.py runs it
    c = make_ctx({**RUNNING, HEALTH: ok("running starting")})  # `up --wait` returned: healthy
    server.up(c)
    assert probed == []
    assert "--wait" in args_of(c, COMPOSE_UP)


def test_a_remote_server_that_never_gets_healthy_shows_its_logs(make_ctx, project, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@gpu.example.org")
    unhealthy = fail("container unit-demo-lab-1 is unhealthy")
    c = make_ctx({**RUNNING, COMPOSE_UP: unhealthy})
    error = exit_of(lambda: server.up(c))
    assert error.message.startswith("JupyterLab did not become healthy within 180s (last log lines above)")
    assert matching(c, r"docker compose .* logs --tail 30 lab")


def test_prepare_writes_the_gpu_request_for_the_devcontainer(make_ctx, project):
    server.prepare(make_ctx(gpu="nvidia", gpus="1"))
    assert 'device_ids: ["1"]' in (project / "compose.gpu.yaml").read_text()
    env = envfile.read(project / ".env")
    assert env["LABDOCK_PROJECT"] == "unit-demo" and env["LABDOCK_USER"] == "tester"  # VS Code's names too
