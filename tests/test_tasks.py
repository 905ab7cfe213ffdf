"""Unit tests of the generated project's tasks.py with invoke.MockContext: no Docker runs.

The template is rendered once per module (copier's Python API, this checkout with its
uncommitted changes); each test works on its own copy of the project, so the files tasks write
(.env, poetry.lock) never leak between tests. Settings are tasks.DEFAULTS overlaid with the
rendered invoke.yaml, as Invoke merges them.

Covered:
- the command each task issues: build (runtime target, NB_UID/NB_GID, OCI labels, --no-cache,
  --pull, PyPI mirror and CA bundle), up (--no-build; compose.gpu.yaml only with a GPU), down
  (--volumes), logs (--follow), exec (-T without a tty; exit code passed through), lock
  (--regenerate), add (--lock, --group), push (version and latest; login with the password on
  stdin only), run-notebook (host paths as /workspace paths), url, lab --local (index
  settings), update (copier update, relock when pyproject.toml changed);
- every error path: no engine, port in use, missing or stale poetry.lock, failed builds, a bad
  CA bundle, registry problems (none, auth, login), GPU problems, an unhealthy or crashed
  server, servers not running, notebooks missing or outside the project, no git version,
  no Poetry or Copier on the host, uncommitted changes or conflicts on update;
- ensure_token (.env with mode 0600, a 256-bit token, reused) and doctor's exit status.

Every expected Exit is checked for its message and a non-zero code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shlex
import shutil
import socket
import stat
import sys
import uuid
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from types import ModuleType, SimpleNamespace
from unittest.mock import DEFAULT

import pytest
import yaml
from invoke import Config, Exit, MockContext, Result

from tests.rendering import render

ANSWERS = {"project_name": "Unit Demo", "registry": "127.0.0.1:5000/team"}
ENGINE_CHECK = "docker version --format '{{.Server.Version}}'"
LOCK_CONTENT = "# poetry.lock of the unit tests\n"

# Patterns for MockContext's run dict, matched (re.match) against the command strings.
ENGINE = r"docker version"
IMAGE_INSPECT = r"docker image inspect"
HEALTH = r"docker inspect --format '\{\{\.State"
SERVER_ENV = r"docker inspect --format '\{\{range \.Config\.Env"
PS = r"docker compose .* ps -q"
PORT = r"docker compose .* port "
COMPOSE_UP = r"docker compose .* up "
COMPOSE_EXEC = r"docker compose .* exec "
COMPOSE_RUN = r"docker compose .* run "
BUILDER = r"docker build --target builder"
RUNTIME = r"docker build --target runtime"
POETRY = r"docker run .* sh -c 'poetry "
CHECK_LOCK = r"docker run .* poetry check --lock"
GIT_SHA = r"git .* rev-parse HEAD"
GIT_SHORT_SHA = r"git .* rev-parse --short HEAD"
GIT_TAG = r"git .* describe --tags"
GIT_ORIGIN = r"git .* remote get-url origin"
GIT_TIME = r"git .* log -1 --format=%ct"
LOGIN = r"docker login"
PUSH = r"docker push"


# ----------------------------------------------------------------------------- helpers


def ok(stdout: str = "") -> Result:
    return Result(stdout=stdout, exited=0)


def fail(stderr: str = "", stdout: str = "", exited: int = 1) -> Result:
    return Result(stdout=stdout, stderr=stderr, exited=exited)


def commands(c: MockContext) -> list[str]:
    return [call.args[0] for call in c.run.call_args_list]


def matching(c: MockContext, pattern: str) -> list[str]:
    return [command for command in commands(c) if re.match(pattern, command)]


def call_of(c: MockContext, pattern: str):
    """The one c.run call whose command matches pattern."""
    calls = [call for call in c.run.call_args_list if re.match(pattern, call.args[0])]
    assert len(calls) == 1, f"{pattern!r} ran {len(calls)} times in {commands(c)}"
    return calls[0]


def args_of(c: MockContext, pattern: str) -> list[str]:
    """The arguments of the one command matching pattern, as the shell splits them."""
    return shlex.split(call_of(c, pattern).args[0])


def position(c: MockContext, pattern: str) -> int:
    return next(i for i, command in enumerate(commands(c)) if re.match(pattern, command))


def pairs(args: list[str]) -> set[tuple[str, str]]:
    """Adjacent argument pairs, e.g. ('--build-arg', 'NB_UID=1234')."""
    return set(pairwise(args))


def exit_of(action: Callable[[], object]) -> Exit:
    """The Exit that action raises; it must carry a non-zero code."""
    with pytest.raises(Exit) as info:
        action()
    assert info.value.code != 0, f"exit code 0 for {info.value.message!r}"
    return info.value


def write_lock(project: Path) -> Path:
    lock_file = project / "poetry.lock"
    lock_file.write_text(LOCK_CONTENT)
    return lock_file


def load_tasks(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"labdock_tasks_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeClock:
    """Stands in for the time module: sleep() advances monotonic() at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1


class Tty:
    def isatty(self) -> bool:
        return True


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("rendered") / "unit-demo", **ANSWERS)


@pytest.fixture
def project(rendered: Path, tmp_path: Path) -> Path:
    """A private copy of the rendered project."""
    return Path(shutil.copytree(rendered, tmp_path / "unit-demo"))


@pytest.fixture
def tasks(project: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The project's tasks.py, imported so that its ROOT is the project copy."""
    module = load_tasks(project / "tasks.py")
    monkeypatch.setattr(module, "port_in_use", lambda host, port: False)  # never probe real ports
    monkeypatch.setattr(module, "host_ids", lambda: (1234, 5678))
    for name in ("DOCKER_HOST", "REGISTRY_USER", "REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return module


@pytest.fixture
def make_ctx(tasks: ModuleType, project: Path):
    """make_ctx({pattern: Result or [Result, ...]}, **settings) -> MockContext.

    Commands matching no pattern succeed with empty output.
    """
    file_settings = yaml.safe_load((project / "invoke.yaml").read_text())["labdock"]

    def _make(responses: dict[str, Result | list[Result]] | None = None, **settings: object):
        run = {re.compile(pattern): result for pattern, result in (responses or {}).items()}
        run[re.compile("")] = ok()
        config = Config(overrides={"labdock": {**tasks.DEFAULTS, **file_settings, **settings}})
        return MockContext(config=config, run=run)

    return _make


def on_command(c: MockContext, pattern: str, action: Callable[[], object]) -> None:
    """Run action whenever c.run gets a command matching pattern (the mocked result still applies)."""

    def side_effect(command: str, *args: object, **kwargs: object):
        if re.match(pattern, command):
            action()
        return DEFAULT

    c.run.side_effect = side_effect


RUNNING = {PS: ok("abc123\n"), HEALTH: ok("running healthy"), PORT: ok("127.0.0.1:8888\n")}


# ----------------------------------------------------------------------------- the rendered settings


def test_settings_come_from_the_rendered_invoke_yaml(make_ctx):
    s = make_ctx().config.labdock
    assert (s.project, s.image, s.port, s.gpu, s.registry) == (
        "unit-demo",
        "unit-demo",
        8888,
        "none",
        "127.0.0.1:5000/team",
    )
    assert (s.pypi_mirror, s.ca_bundle) == ("", "")  # DEFAULTS only: machine-specific


# ----------------------------------------------------------------------------- build


def test_build_command(tasks, make_ctx, project):
    write_lock(project)
    c = make_ctx(
        {
            GIT_SHA: ok("0123456789abcdef\n"),
            GIT_ORIGIN: ok("https://example.com/unit-demo.git\n"),
            GIT_TIME: ok("1700000000\n"),
        }
    )
    tasks.build(c)
    call = call_of(c, RUNTIME)
    args = shlex.split(call.args[0])
    assert args[:5] == ["docker", "build", "--target", "runtime", "-t"]
    assert args[5] == "unit-demo:latest"
    assert args[-1] == str(project)
    assert {
        ("--build-arg", "PYTHON_VERSION=3.13"),
        ("--build-arg", "NB_UID=1234"),
        ("--build-arg", "NB_GID=5678"),
        ("--label", "org.opencontainers.image.title=unit-demo"),
        ("--label", "org.opencontainers.image.revision=0123456789abcdef"),
        ("--label", "org.opencontainers.image.source=https://example.com/unit-demo.git"),
        # the commit's time, not the clock's: an unchanged rebuild gives the same image id
        ("--label", "org.opencontainers.image.created=2023-11-14T22:13:20Z"),
        ("--label", f"dev.labdock.lock-sha256={hashlib.sha256(LOCK_CONTENT.encode()).hexdigest()}"),
    } <= pairs(args)
    assert not {"--no-cache", "--pull", "--secret"} & set(args)
    assert not any(arg.startswith("PYPI_MIRROR_URL") for arg in args)
    assert call.kwargs["env"] == {"DOCKER_BUILDKIT": "1"}
    assert commands(c)[0] == ENGINE_CHECK
    assert not matching(c, CHECK_LOCK)  # a good build does not pay for the lock check


def test_long_steps_end_with_a_timed_summary(tasks, make_ctx, project, capsys):
    write_lock(project)
    c = make_ctx()
    tasks.build(c)
    tasks.lock(c)
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Built unit-demo:latest in [0-9]+\.[0-9]s\.", out[0])
    assert re.fullmatch(
        r"poetry\.lock is up to date \([0-9]+\.[0-9]s\): commit it with pyproject\.toml\.", out[1]
    )


def test_build_labels_without_git(tasks, make_ctx, project):
    write_lock(project)
    c = make_ctx({r"git ": fail("fatal: not a git repository")})
    tasks.build(c)
    assert {
        ("--label", "org.opencontainers.image.revision=unknown"),
        ("--label", f"org.opencontainers.image.source={project.as_uri()}"),
        ("--label", "org.opencontainers.image.created=1970-01-01T00:00:00Z"),
    } <= pairs(args_of(c, RUNTIME))


@pytest.mark.parametrize(
    ("options", "flags"),
    [({"no_cache": True}, {"--no-cache"}), ({"pull": True}, {"--pull"}), ({}, set())],
)
def test_build_cache_and_pull_flags(tasks, make_ctx, project, options, flags):
    write_lock(project)
    c = make_ctx()
    tasks.build(c, **options)
    assert {"--no-cache", "--pull"} & set(args_of(c, RUNTIME)) == flags


def test_build_passes_mirror_and_ca_bundle(tasks, make_ctx, project, tmp_path):
    write_lock(project)
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    c = make_ctx(pypi_mirror="https://pypi.corp.example/simple", ca_bundle=str(bundle))
    tasks.build(c)
    tasks.lock(c)  # the builder stage is built for Poetry's runs
    for pattern in (BUILDER, RUNTIME):
        assert {
            ("--build-arg", "PYPI_MIRROR_URL=https://pypi.corp.example/simple"),
            ("--secret", f"id=ca_bundle,src={bundle.resolve()}"),
        } <= pairs(args_of(c, pattern))


def test_build_passes_the_apt_proxy_as_a_secret_only(tasks, make_ctx, project):
    write_lock(project)
    c = make_ctx(apt_proxy="http://10.0.0.2:3142")
    tasks.build(c)
    call = call_of(c, RUNTIME)
    assert ("--secret", "id=apt_proxy,env=LABDOCK_APT_PROXY") in pairs(shlex.split(call.args[0]))
    assert "10.0.0.2" not in call.args[0]  # never a build arg: those are recorded in the image
    assert call.kwargs["env"] == {"DOCKER_BUILDKIT": "1", "LABDOCK_APT_PROXY": "http://10.0.0.2:3142"}


@pytest.mark.parametrize("proxy", ["http://:3142", "apt-cache:3142", "http://cache.example.com:31a2"])
def test_build_refuses_an_apt_proxy_apt_would_ignore(tasks, make_ctx, project, proxy):
    write_lock(project)
    c = make_ctx(apt_proxy=proxy)
    error = exit_of(lambda: tasks.build(c))
    assert error.message.startswith(
        "labdock.apt_proxy must be a URL such as http://apt-cache.example.com:3142"
    )
    assert not matching(c, RUNTIME)


def test_build_warns_root(tasks, make_ctx, project, monkeypatch, capsys):
    write_lock(project)
    monkeypatch.setattr(tasks, "host_ids", lambda: (0, 0))
    c = make_ctx()
    tasks.build(c)
    assert ("--build-arg", "NB_UID=0") in pairs(args_of(c, RUNTIME))
    assert "WARNING: you are root" in capsys.readouterr().err


def test_build_without_lock_runs_lock_first(tasks, make_ctx, project):
    c = make_ctx()
    on_command(c, POETRY, lambda: write_lock(project))  # what `poetry lock` would write
    tasks.build(c)
    assert matching(c, POETRY) == [matching(c, POETRY)[0]]
    assert "poetry lock && chown" in matching(c, POETRY)[0]
    assert position(c, BUILDER) < position(c, POETRY) < position(c, RUNTIME)
    sha = hashlib.sha256(LOCK_CONTENT.encode()).hexdigest()
    assert ("--label", f"dev.labdock.lock-sha256={sha}") in pairs(args_of(c, RUNTIME))


def test_build_with_stale_lock(tasks, make_ctx, project):
    write_lock(project)
    stale = (
        "pyproject.toml changed significantly since poetry.lock was last generated. "
        "Run `poetry lock` to fix the lock file."
    )
    c = make_ctx({RUNTIME: fail(), CHECK_LOCK: fail(stdout=stale)})
    error = exit_of(lambda: tasks.build(c))
    assert "out of date" in error.message
    assert "`invoke lock`" in error.message
    assert position(c, RUNTIME) < position(c, CHECK_LOCK)  # checked only once the build failed


def test_build_with_invalid_pyproject(tasks, make_ctx, project):
    write_lock(project)
    bad = fail(stderr="Error: Declared dependencies are invalid\n  - bad spec")
    c = make_ctx({RUNTIME: fail(), CHECK_LOCK: bad})
    error = exit_of(lambda: tasks.build(c))
    assert "pyproject.toml has a problem (  - bad spec)" in error.message


@pytest.mark.parametrize(
    ("failing", "what"),
    [(BUILDER, "The builder stage (Poetry) failed to build"), (RUNTIME, "The image build failed")],
)
def test_build_failure_names_the_index_settings(tasks, make_ctx, project, failing, what):
    write_lock(project)
    c = make_ctx({failing: fail()})
    run = tasks.lock if failing == BUILDER else tasks.build  # `lock` builds the builder stage
    error = exit_of(lambda: run(c))
    assert error.message.startswith(what)
    assert "INVOKE_LABDOCK_PYPI_MIRROR" in error.message
    assert "INVOKE_LABDOCK_CA_BUNDLE" in error.message


def test_missing_ca_bundle(tasks, make_ctx, project, tmp_path):
    write_lock(project)
    c = make_ctx(ca_bundle=str(tmp_path / "nowhere.pem"))
    error = exit_of(lambda: tasks.build(c))
    assert "nowhere.pem (labdock.ca_bundle) is not a file" in error.message
    assert "INVOKE_LABDOCK_CA_BUNDLE" in error.message
    assert not matching(c, r"docker build")


# ----------------------------------------------------------------------------- no engine

ENGINE_TASKS = {
    "build": lambda t, c: t.build(c),
    "up": lambda t, c: t.up(c),
    "down": lambda t, c: t.down(c),
    "logs": lambda t, c: t.logs(c),
    "url": lambda t, c: t.url(c),
    "shell": lambda t, c: t.shell(c),
    "exec": lambda t, c: t.exec_(c, "true"),
    "lock": lambda t, c: t.lock(c),
    "add": lambda t, c: t.add(c, "polars"),
    "run-notebook": lambda t, c: t.run_notebook(c, "notebooks/getting-started.ipynb"),
    "push": lambda t, c: t.push(c, tag="1.0"),
}


@pytest.mark.parametrize("name", ENGINE_TASKS)
def test_no_engine(tasks, make_ctx, project, monkeypatch, name):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.9.8.7:2375")
    c = make_ctx({ENGINE: fail("Cannot connect to the Docker daemon")})
    error = exit_of(lambda: ENGINE_TASKS[name](tasks, c))
    assert error.message.startswith("No Docker engine reachable at tcp://10.9.8.7:2375")
    assert "DOCKER_HOST" in error.message
    assert commands(c) == [ENGINE_CHECK]  # nothing else was tried
    assert not (project / ".env").exists()


def test_no_engine_without_docker_host(tasks, make_ctx):
    c = make_ctx({ENGINE: fail()})
    error = exit_of(lambda: tasks.down(c))
    assert "the default Docker socket/context" in error.message
    assert "point DOCKER_HOST at a running engine" in error.message


# ----------------------------------------------------------------------------- up


def test_up_starts_compose_and_prints_the_url(tasks, make_ctx, project, capsys):
    c = make_ctx(RUNNING)
    tasks.up(c)
    call = call_of(c, COMPOSE_UP)
    assert shlex.split(call.args[0]) == [
        *("docker", "compose", "--project-name", "unit-demo", "-f", str(project / "compose.yaml")),
        *("up", "--detach", "--no-build"),
    ]
    assert call.kwargs["env"] == {
        "LABDOCK_IMAGE": "unit-demo:latest",
        "LABDOCK_PORT": "8888",
        "LABDOCK_BIND": "127.0.0.1",
        "LABDOCK_GPUS": "all",
        "LABDOCK_CPUS": "0",  # no limit (the rendered default)
        "LABDOCK_MEMORY": "0",
        "LABDOCK_TENSORBOARD_PORT": "6006",
    }
    assert not matching(c, r"docker build")
    token = tasks.read_env_file()["JUPYTER_TOKEN"]
    out = capsys.readouterr().out
    assert f"JupyterLab: http://127.0.0.1:8888/lab?token={token}" in out
    assert "TensorBoard" not in out


def test_resource_limits_reach_compose_from_the_settings(tasks, make_ctx):
    c = make_ctx(RUNNING, cpus="1.5", memory="12g", gpus="0,1")
    tasks.up(c)
    env = call_of(c, COMPOSE_UP).kwargs["env"]
    assert (env["LABDOCK_CPUS"], env["LABDOCK_MEMORY"], env["LABDOCK_GPUS"]) == ("1.5", "12g", "0,1")


def test_up_builds_a_missing_image(tasks, make_ctx, project):
    write_lock(project)
    c = make_ctx({IMAGE_INSPECT: fail(), **RUNNING})
    tasks.up(c)
    assert position(c, IMAGE_INSPECT) < position(c, RUNTIME) < position(c, COMPOSE_UP)


def test_up_rebuilds_on_request(tasks, make_ctx, project):
    write_lock(project)
    c = make_ctx(RUNNING)
    tasks.up(c, build_=True)
    assert position(c, RUNTIME) < position(c, COMPOSE_UP)


@pytest.mark.parametrize(("setting", "flag"), [("nvidia", False), ("none", True)])
def test_up_with_gpu_adds_the_override(tasks, make_ctx, project, setting, flag):
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    c = make_ctx(RUNNING, gpu=setting)
    tasks.up(c, gpu=flag)
    assert shlex.split(call_of(c, COMPOSE_UP).args[0])[4:10] == [
        *("-f", str(project / "compose.yaml")),
        *("-f", str(project / "compose.gpu.yaml")),
        *("up", "--detach"),
    ]


def test_no_gpu_overrides_the_setting(tasks, make_ctx, project):
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    c = make_ctx(RUNNING, gpu="nvidia")
    tasks.up(c, no_gpu=True)
    assert "compose.gpu.yaml" not in call_of(c, COMPOSE_UP).args[0]


def test_gpu_and_no_gpu_together_are_refused(tasks, make_ctx, project):
    c = make_ctx(RUNNING)
    error = exit_of(lambda: tasks.up(c, gpu=True, no_gpu=True))
    assert error.message == "--gpu and --no-gpu contradict each other: give one of them."
    assert commands(c) == []


@pytest.mark.parametrize(
    ("setting", "options", "with_gpu"),
    [
        ("nvidia", {}, True),
        ("nvidia", {"no_gpu": True}, False),
        ("none", {"gpu": True}, True),
        ("none", {}, False),
    ],
)
def test_run_notebook_follows_the_gpu_choice(tasks, make_ctx, project, setting, options, with_gpu):
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    c = make_ctx(gpu=setting)
    tasks.run_notebook(c, str(project / "notebooks" / "getting-started.ipynb"), **options)
    assert ("compose.gpu.yaml" in call_of(c, COMPOSE_RUN).args[0]) is with_gpu


def test_up_without_gpu_leaves_out_the_override(tasks, make_ctx, project):
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    c = make_ctx(RUNNING)
    tasks.up(c)
    assert "compose.gpu.yaml" not in call_of(c, COMPOSE_UP).args[0]


def test_up_gpu_without_override_file(tasks, make_ctx, project):
    c = make_ctx(RUNNING)
    error = exit_of(lambda: tasks.up(c, gpu=True))
    assert "no compose.gpu.yaml" in error.message
    assert "gpu=nvidia" in error.message
    assert commands(c) == []


def test_up_gpu_without_nvidia_runtime(tasks, make_ctx, project):
    (project / "compose.gpu.yaml").write_text("services: {}\n")
    stderr = 'Error response from daemon: could not select device driver "nvidia" with capabilities: [[gpu]]'
    c = make_ctx({COMPOSE_UP: fail(stderr), **RUNNING})
    error = exit_of(lambda: tasks.up(c, gpu=True))
    assert "NVIDIA Container Toolkit" in error.message
    assert not matching(c, HEALTH)


def test_up_port_in_use(tasks, make_ctx, monkeypatch):
    probed = []
    monkeypatch.setattr(tasks, "port_in_use", lambda host, port: probed.append((host, port)) or True)
    c = make_ctx({PS: ok("")}, port=9123)
    error = exit_of(lambda: tasks.up(c))
    assert "Port 9123 on 127.0.0.1 is already in use" in error.message
    assert "INVOKE_LABDOCK_PORT" in error.message
    assert probed == [("127.0.0.1", 9123)]
    assert not matching(c, COMPOSE_UP)


def test_up_port_taken_by_our_own_server_is_fine(tasks, make_ctx, monkeypatch):
    monkeypatch.setattr(tasks, "port_in_use", lambda host, port: True)
    c = make_ctx(RUNNING)
    tasks.up(c)
    assert matching(c, COMPOSE_UP)


def test_up_port_allocated_when_compose_starts(tasks, make_ctx):
    stderr = "Error response from daemon: Bind for 127.0.0.1:8888 failed: port is already allocated"
    c = make_ctx({COMPOSE_UP: fail(stderr), **RUNNING})
    error = exit_of(lambda: tasks.up(c))
    assert "Port 8888 on 127.0.0.1 is already in use" in error.message
    assert "INVOKE_LABDOCK_PORT" in error.message


def test_up_compose_fails_otherwise(tasks, make_ctx, capsys):
    c = make_ctx({COMPOSE_UP: fail("service lab: invalid volume spec"), **RUNNING})
    error = exit_of(lambda: tasks.up(c))
    assert error.message == "`docker compose up` failed (error above)."
    assert "invalid volume spec" in capsys.readouterr().err


def test_up_warns_when_published_beyond_localhost(tasks, make_ctx, capsys):
    c = make_ctx(RUNNING, bind="0.0.0.0")
    tasks.up(c)
    assert call_of(c, COMPOSE_UP).kwargs["env"]["LABDOCK_BIND"] == "0.0.0.0"
    assert "WARNING: JupyterLab is published on 0.0.0.0" in capsys.readouterr().err


def test_up_times_out_when_never_healthy(tasks, make_ctx, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(tasks, "time", clock)
    monkeypatch.setattr(tasks, "server_answers", lambda host, port: False)
    c = make_ctx({**RUNNING, HEALTH: ok("running starting")}, healthy_timeout=3)
    error = exit_of(lambda: tasks.up(c))
    assert "did not become healthy within 3s" in error.message
    assert "labdock.healthy_timeout" in error.message
    assert clock.sleeps == 12  # every 0.25 s
    assert args_of(c, r"docker compose .* logs ")[-3:] == ["--tail", "30", "lab"]


def test_up_is_healthy_as_soon_as_the_server_answers(tasks, make_ctx, monkeypatch, capsys):
    clock = FakeClock()
    monkeypatch.setattr(tasks, "time", clock)
    probes = []

    def third_probe_answers(host, port):
        probes.append((host, port))
        return len(probes) > 2

    monkeypatch.setattr(tasks, "server_answers", third_probe_answers)
    c = make_ctx({**RUNNING, HEALTH: ok("running starting")}, port=9123)
    tasks.up(c)
    assert probes == [("127.0.0.1", 9123)] * 3  # before the engine's healthcheck says so
    assert clock.sleeps == 2
    assert "JupyterLab is healthy after 0.5s." in capsys.readouterr().out


def test_server_answers_only_a_jupyter_api(tasks):
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert tasks.server_answers("0.0.0.0", port) is False


def test_up_reports_a_crashed_server(tasks, make_ctx, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(tasks, "time", clock)
    c = make_ctx({**RUNNING, HEALTH: ok("exited ")})
    error = exit_of(lambda: tasks.up(c))
    assert "stopped while starting (container exited" in error.message
    assert clock.sleeps == 0
    assert matching(c, r"docker compose .* logs --tail 30 lab")


# ----------------------------------------------------------------------------- down, logs, url


@pytest.mark.parametrize(("volumes", "tail"), [(False, ["down", "--remove-orphans"]), (True, ["--volumes"])])
def test_down(tasks, make_ctx, project, volumes, tail):
    c = make_ctx()
    tasks.down(c, volumes=volumes)
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


# ----------------------------------------------------------------------------- prepare, .env


def test_prepare_writes_token_and_settings_to_env_and_builds_a_missing_image(tasks, make_ctx, project):
    write_lock(project)
    c = make_ctx({IMAGE_INSPECT: fail()}, port=9999, cpus="2")
    tasks.prepare(c)
    env = tasks.read_env_file()
    assert len(env["JUPYTER_TOKEN"]) == 64
    assert (env["LABDOCK_PORT"], env["LABDOCK_CPUS"], env["LABDOCK_IMAGE"]) == (
        "9999",
        "2",
        "unit-demo:latest",
    )
    assert stat.S_IMODE((project / ".env").stat().st_mode) == 0o600
    assert matching(c, RUNTIME)


def test_settings_in_env_are_replaced_and_other_lines_kept(tasks, make_ctx, project):
    (project / ".env").write_text("JUPYTER_TOKEN=abc\nMY_VAR=1\nLABDOCK_PORT=1111\n")
    tasks.prepare(make_ctx(port=9999))
    tasks.prepare(make_ctx(port=8888))  # twice: one block of settings, the latest
    text = (project / ".env").read_text()
    assert text.count("LABDOCK_PORT=") == 1 and "LABDOCK_PORT=8888" in text
    assert text.startswith("JUPYTER_TOKEN=abc\nMY_VAR=1\n")
    assert text.count(tasks.SETTINGS_HEADER) == 1


def test_up_keeps_env_settings_in_step(tasks, make_ctx, project):
    tasks.up(make_ctx(RUNNING, memory="4g"))
    assert tasks.read_env_file()["LABDOCK_MEMORY"] == "4g"


# ----------------------------------------------------------------------------- tensorboard

SERVICES = r"docker compose .* config --services"


@pytest.fixture
def tensorboard_answers(tasks, monkeypatch):
    monkeypatch.setattr(tasks, "url_answers", lambda url: url == "http://127.0.0.1:6106/")


def test_up_starts_tensorboard_when_enabled(tasks, make_ctx, capsys, tensorboard_answers):
    c = make_ctx(RUNNING, tensorboard=True, tensorboard_port=6106)
    tasks.up(c)
    up_args = args_of(c, COMPOSE_UP)
    assert ("--profile", "tensorboard") in pairs(up_args)
    assert call_of(c, COMPOSE_UP).kwargs["env"]["LABDOCK_TENSORBOARD_PORT"] == "6106"
    assert "TensorBoard: http://127.0.0.1:6106/" in capsys.readouterr().out


def test_up_leaves_tensorboard_off_by_default(tasks, make_ctx):
    c = make_ctx(RUNNING)
    tasks.up(c)
    assert "--profile" not in args_of(c, COMPOSE_UP)


def test_tensorboard_task_starts_the_service(tasks, make_ctx, capsys, tensorboard_answers):
    c = make_ctx({SERVICES: ok("lab\ntensorboard\n")}, tensorboard_port=6106)
    tasks.tensorboard(c)
    assert args_of(c, COMPOSE_UP)[-1] == "tensorboard"
    assert "TensorBoard: http://127.0.0.1:6106/" in capsys.readouterr().out


def test_tensorboard_that_never_answers(tasks, make_ctx, monkeypatch):
    monkeypatch.setattr(tasks, "url_answers", lambda url: False)
    monkeypatch.setattr(tasks, "HEALTH_POLL_SECONDS", 0)
    c = make_ctx({SERVICES: ok("lab\ntensorboard\n")}, tensorboard_port=6106)
    error = exit_of(lambda: tasks.wait_for_tensorboard(c, timeout=0.05))
    assert "TensorBoard did not answer on http://127.0.0.1:6106/ within 0s" in error.message
    assert "docker compose logs tensorboard" in error.message


def test_tensorboard_task_without_the_service(tasks, make_ctx):
    c = make_ctx({SERVICES: ok("lab\n")})
    error = exit_of(lambda: tasks.tensorboard(c))
    assert "no TensorBoard service" in error.message
    assert "tensorboard=true" in error.message
    assert not matching(c, COMPOSE_UP)


def test_tensorboard_port_in_use(tasks, make_ctx, monkeypatch):
    monkeypatch.setattr(tasks, "port_in_use", lambda host, port: port == 6106)
    c = make_ctx({SERVICES: ok("lab\ntensorboard\n"), PS: ok("")}, tensorboard_port=6106)
    error = exit_of(lambda: tasks.tensorboard(c))
    assert "Port 6106 on 127.0.0.1 (TensorBoard) is already in use" in error.message
    assert "INVOKE_LABDOCK_TENSORBOARD_PORT" in error.message
    assert not matching(c, COMPOSE_UP)


@pytest.mark.parametrize(
    ("options", "tail"),
    [({"follow": True}, ["--tail", "all", "--follow", "lab"]), ({"tail": "50"}, ["--tail", "50", "lab"])],
)
def test_logs(tasks, make_ctx, options, tail):
    c = make_ctx()
    tasks.logs(c, **options)
    args = args_of(c, r"docker compose .* logs ")
    assert args[args.index("logs") + 1 :] == tail


def test_url_prints_a_reachable_address(tasks, make_ctx, project, capsys):
    # The running server's token wins over .env, which may have been edited since it started.
    (project / ".env").write_text("JUPYTER_TOKEN=edited-since\n")
    c = make_ctx({PORT: ok("0.0.0.0:8888\n"), SERVER_ENV: ok("PATH=/x\nJUPYTER_TOKEN=from-server\n")})
    tasks.url(c)
    assert capsys.readouterr().out.splitlines()[-1] == "http://127.0.0.1:8888/lab?token=from-server"
    assert args_of(c, PORT)[-2:] == ["lab", "8888"]


def test_url_when_not_running(tasks, make_ctx):
    c = make_ctx({PORT: ok("")})
    error = exit_of(lambda: tasks.url(c))
    assert error.message == "JupyterLab is not running: start it with `invoke up`."


# ----------------------------------------------------------------------------- shell, exec


@pytest.mark.parametrize("name", ["shell", "exec"])
def test_shell_and_exec_when_not_running(tasks, make_ctx, name):
    c = make_ctx({PS: ok("")})
    error = exit_of(lambda: ENGINE_TASKS[name](tasks, c))
    assert error.message == "JupyterLab is not running: start it with `invoke up`."
    assert not matching(c, COMPOSE_EXEC)


def test_shell(tasks, make_ctx):
    c = make_ctx(RUNNING)
    tasks.shell(c)
    call = call_of(c, COMPOSE_EXEC)
    assert shlex.split(call.args[0])[-3:] == ["exec", "lab", "bash"]
    assert call.kwargs["pty"] is True


def test_exec_without_a_tty(tasks, make_ctx):
    c = make_ctx(RUNNING)
    tasks.exec_(c, "pytest -q")
    call = call_of(c, COMPOSE_EXEC)
    assert shlex.split(call.args[0])[-6:] == ["exec", "-T", "lab", "sh", "-c", "pytest -q"]
    assert call.kwargs["pty"] is False


def test_exec_on_a_tty(tasks, make_ctx, monkeypatch):
    monkeypatch.setattr(tasks, "sys", SimpleNamespace(stdin=Tty(), stdout=Tty(), stderr=sys.stderr))
    c = make_ctx(RUNNING)
    tasks.exec_(c, "pytest -q")
    call = call_of(c, COMPOSE_EXEC)
    assert shlex.split(call.args[0])[-5:] == ["exec", "lab", "sh", "-c", "pytest -q"]
    assert call.kwargs["pty"] is True


def test_exec_passes_the_exit_code_through(tasks, make_ctx):
    c = make_ctx({COMPOSE_EXEC: fail(exited=3), **RUNNING})
    with pytest.raises(Exit) as info:
        tasks.exec_(c, "pytest -q")
    assert info.value.code == 3
    assert info.value.message is None  # the command's own output says what failed


# ----------------------------------------------------------------------------- lock, add


@pytest.mark.parametrize(("upgrade", "poetry"), [(False, "poetry lock"), (True, "poetry lock --regenerate")])
def test_lock(tasks, make_ctx, project, capsys, upgrade, poetry):
    c = make_ctx()
    tasks.lock(c, upgrade=upgrade)
    assert args_of(c, POETRY) == [
        *("docker", "run", "--rm", "-v", f"{project}:/workspace"),
        *("-v", "unit-demo-poetry-cache:/var/cache/pypoetry"),
        *("unit-demo:builder", "sh", "-c", f"{poetry} && chown 1234:5678 poetry.lock"),
    ]
    assert args_of(c, BUILDER)[4:6] == ["-t", "unit-demo:builder"]
    assert position(c, BUILDER) < position(c, POETRY)
    assert "poetry.lock is up to date" in capsys.readouterr().out


def test_lock_passes_mirror_and_ca_bundle(tasks, make_ctx, tmp_path):
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    c = make_ctx(pypi_mirror="https://pypi.corp.example/simple", ca_bundle=str(bundle))
    tasks.lock(c)
    assert {
        ("-e", "PYPI_MIRROR_URL=https://pypi.corp.example/simple"),
        ("-v", f"{bundle.resolve()}:/run/secrets/ca_bundle:ro"),
    } <= pairs(args_of(c, POETRY))


def test_lock_failure(tasks, make_ctx):
    c = make_ctx({POETRY: fail("Because unit-demo depends on nothing-such ...")})
    error = exit_of(lambda: tasks.lock(c))
    assert error.message.startswith("poetry lock failed")
    assert "INVOKE_LABDOCK_PYPI_MIRROR" in error.message


@pytest.mark.parametrize(
    ("group", "poetry"),
    [("", "poetry add --lock 'polars>=1.0'"), ("dev", "poetry add --lock 'polars>=1.0' --group dev")],
)
def test_add(tasks, make_ctx, project, group, poetry):
    write_lock(project)
    c = make_ctx()
    tasks.add(c, "polars>=1.0", group=group)
    assert args_of(c, POETRY)[-1] == f"{poetry} && chown 1234:5678 pyproject.toml poetry.lock"
    assert position(c, POETRY) < position(c, RUNTIME)


@pytest.mark.parametrize(("restart", "restarted"), [(True, True), (False, False)])
def test_add_restarts_a_running_server_on_the_new_image(tasks, make_ctx, project, restart, restarted):
    write_lock(project)
    c = make_ctx(RUNNING)
    tasks.add(c, "tqdm", restart=restart)
    assert bool(matching(c, COMPOSE_UP)) is restarted
    if restarted:
        assert position(c, POETRY) < position(c, RUNTIME) < position(c, COMPOSE_UP)


def test_add_leaves_a_stopped_server_stopped(tasks, make_ctx, project):
    write_lock(project)
    c = make_ctx({PS: ok("")})
    tasks.add(c, "tqdm")
    assert not matching(c, COMPOSE_UP)


def test_add_failure(tasks, make_ctx, project):
    write_lock(project)
    c = make_ctx({POETRY: fail()})
    error = exit_of(lambda: tasks.add(c, "nothing-such"))
    assert error.message.startswith("poetry add nothing-such failed")
    assert not matching(c, RUNTIME)


# ----------------------------------------------------------------------------- push


def test_push_logs_in_with_the_password_on_stdin_only(tasks, make_ctx, monkeypatch, capsys):
    password = "s3cr3t-Pa55word"
    monkeypatch.setenv("REGISTRY_USER", "bob")
    monkeypatch.setenv("REGISTRY_PASSWORD", password)
    c = make_ctx({GIT_TAG: ok("v1.2.0\n")})
    tasks.push(c)
    login = call_of(c, LOGIN)
    assert shlex.split(login.args[0]) == [
        *("docker", "login", "127.0.0.1:5000", "--username", "bob", "--password-stdin"),
    ]
    assert login.kwargs["in_stream"].getvalue() == password + "\n"
    assert not [command for command in commands(c) if password in command]
    remote = "127.0.0.1:5000/team/unit-demo"
    assert matching(c, r"docker tag ") == [
        f"docker tag unit-demo:latest {remote}:v1.2.0",
        f"docker tag unit-demo:latest {remote}:latest",
    ]
    assert matching(c, PUSH) == [f"docker push {remote}:v1.2.0", f"docker push {remote}:latest"]
    assert position(c, LOGIN) < position(c, PUSH)
    assert re.search(rf"Pushed {re.escape(remote)}:latest in [0-9.]+s\.", capsys.readouterr().out)


def test_push_version_falls_back_to_the_commit(tasks, make_ctx):
    c = make_ctx({GIT_TAG: fail("fatal: no tag exactly matches"), GIT_SHORT_SHA: ok("abc1234\n")})
    tasks.push(c)
    assert matching(c, PUSH)[0] == "docker push 127.0.0.1:5000/team/unit-demo:abc1234"
    assert not matching(c, LOGIN)  # no REGISTRY_USER/REGISTRY_PASSWORD: docker's own login


def test_push_with_an_explicit_tag_builds_a_missing_image(tasks, make_ctx, project):
    write_lock(project)
    c = make_ctx({IMAGE_INSPECT: fail()})
    tasks.push(c, tag="2024.1")
    assert not matching(c, r"git .* (describe|rev-parse --short)")
    assert position(c, RUNTIME) < position(c, r"docker tag ")
    assert matching(c, PUSH)[0] == "docker push 127.0.0.1:5000/team/unit-demo:2024.1"


def test_push_without_a_version(tasks, make_ctx):
    c = make_ctx({r"git ": fail("fatal: not a git repository")})
    error = exit_of(lambda: tasks.push(c))
    assert "No version from git" in error.message
    assert "--tag VERSION" in error.message
    assert not matching(c, PUSH)


def test_push_without_registry(tasks, make_ctx):
    c = make_ctx(registry="")
    error = exit_of(lambda: tasks.push(c, tag="1.0"))
    assert "labdock.registry" in error.message
    assert "INVOKE_LABDOCK_REGISTRY" in error.message
    assert commands(c) == []


def test_push_refused_for_missing_credentials(tasks, make_ctx):
    c = make_ctx({PUSH: fail("unauthorized: no basic auth credentials")})
    error = exit_of(lambda: tasks.push(c, tag="1.0"))
    assert "127.0.0.1:5000 refused the push" in error.message
    assert "REGISTRY_USER" in error.message
    assert "REGISTRY_PASSWORD" in error.message
    assert "docker login 127.0.0.1:5000" in error.message
    assert len(matching(c, PUSH)) == 1  # stops at the first refusal


def test_push_login_failure(tasks, make_ctx, monkeypatch):
    monkeypatch.setenv("REGISTRY_USER", "bob")
    monkeypatch.setenv("REGISTRY_PASSWORD", "wrong")
    c = make_ctx({LOGIN: fail("Error response from daemon: login attempt failed")})
    error = exit_of(lambda: tasks.push(c, tag="1.0"))
    assert "Login to 127.0.0.1:5000 as bob failed" in error.message
    assert "REGISTRY_USER and REGISTRY_PASSWORD" in error.message
    assert not matching(c, PUSH)


def test_push_other_failure_shows_the_last_error_line(tasks, make_ctx):
    c = make_ctx({PUSH: fail("retrying in 5 seconds\ndial tcp 127.0.0.1:5000: connection refused")})
    error = exit_of(lambda: tasks.push(c, tag="1.0"))
    assert error.message == (
        "Pushing 127.0.0.1:5000/team/unit-demo:1.0 failed: dial tcp 127.0.0.1:5000: connection refused"
    )


# ----------------------------------------------------------------------------- run-notebook


def test_run_notebook_maps_host_paths(tasks, make_ctx, project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    c = make_ctx()
    tasks.run_notebook(c, "notebooks/getting-started.ipynb")
    args = args_of(c, COMPOSE_RUN)
    assert args[args.index("run") :] == [
        *("run", "--rm", "--no-deps", "-T", "lab", "jupyter", "nbconvert", "--to", "notebook"),
        *("--execute", "--ExecutePreprocessor.timeout=-1"),
        *("/workspace/notebooks/getting-started.ipynb", "--output"),
        "/workspace/notebooks/getting-started.executed.ipynb",
    ]
    assert "Executed copy: notebooks/getting-started.executed.ipynb" in capsys.readouterr().out


def test_run_notebook_paths_are_relative_to_the_current_folder(tasks, make_ctx, project, monkeypatch):
    monkeypatch.chdir(project / "notebooks")
    c = make_ctx()
    tasks.run_notebook(c, "getting-started.ipynb", output="../data/out.ipynb", timeout=60)
    args = args_of(c, COMPOSE_RUN)
    assert "--ExecutePreprocessor.timeout=60" in args
    assert args[-3:] == [
        "/workspace/notebooks/getting-started.ipynb",
        "--output",
        "/workspace/data/out.ipynb",
    ]


def test_run_notebook_missing(tasks, make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    c = make_ctx()
    error = exit_of(lambda: tasks.run_notebook(c, "notebooks/nothing.ipynb"))
    assert error.message == "No notebook or folder at notebooks/nothing.ipynb."


def test_run_notebook_outside_the_project(tasks, make_ctx, project, tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere.ipynb"
    outside.write_text("{}")
    monkeypatch.chdir(project)
    c = make_ctx()
    error = exit_of(lambda: tasks.run_notebook(c, str(outside)))
    assert f"{outside} is outside the project folder {project}" in error.message
    assert not matching(c, COMPOSE_RUN)


def test_run_notebook_cell_failure(tasks, make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    c = make_ctx({COMPOSE_RUN: fail("CellExecutionError")})
    error = exit_of(lambda: tasks.run_notebook(c, "notebooks/getting-started.ipynb"))
    assert (
        error.message == "notebooks/getting-started.ipynb failed: a cell raised an error (traceback above)."
    )


def write_notebook(path: Path, ci: bool | None) -> None:
    metadata = {} if ci is None else {"labdock": {"ci": ci}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}))


def executed(c: MockContext) -> list[str]:
    return [shlex.split(command)[-3] for command in matching(c, COMPOSE_RUN)]


def test_run_notebook_runs_a_folder_each_in_its_own_container(tasks, make_ctx, project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    write_notebook(project / "notebooks" / "deep" / "b.ipynb", ci=None)
    write_notebook(project / "notebooks" / "a.ipynb", ci=False)
    write_notebook(project / "notebooks" / "a.executed.ipynb", ci=True)  # an output, never an input
    c = make_ctx()
    tasks.run_notebook(c, "notebooks")
    assert executed(c) == [
        "/workspace/notebooks/a.ipynb",
        "/workspace/notebooks/deep/b.ipynb",
        "/workspace/notebooks/getting-started.ipynb",
    ]
    assert "Ran 3 notebooks in" in capsys.readouterr().out


def test_run_notebook_marked_runs_only_notebooks_marked_for_ci(tasks, make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    write_notebook(project / "notebooks" / "marked.ipynb", ci=True)
    write_notebook(project / "notebooks" / "unmarked.ipynb", ci=False)
    c = make_ctx()
    tasks.run_notebook(c, "notebooks", marked=True)
    # The starter notebook is marked, so a new project's CI runs it.
    assert executed(c) == ["/workspace/notebooks/getting-started.ipynb", "/workspace/notebooks/marked.ipynb"]


def test_run_notebook_with_nothing_marked_runs_nothing(tasks, make_ctx, project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    (project / "notebooks" / "getting-started.ipynb").unlink()
    write_notebook(project / "notebooks" / "unmarked.ipynb", ci=None)
    c = make_ctx()
    tasks.run_notebook(c, "notebooks", marked=True)
    assert not matching(c, COMPOSE_RUN)
    assert (
        'No notebook marked for CI (metadata {"labdock": {"ci": true}}) in notebooks'
        in capsys.readouterr().out
    )


def test_run_notebook_folder_reports_every_failure(tasks, make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    write_notebook(project / "notebooks" / "a.ipynb", ci=True)
    c = make_ctx({COMPOSE_RUN: [fail("CellExecutionError"), ok()]})
    error = exit_of(lambda: tasks.run_notebook(c, "notebooks"))
    assert error.message == "1 of 2 notebooks failed: notebooks/a.ipynb (tracebacks above)."
    assert len(executed(c)) == 2  # a failure does not stop the others


def test_run_notebook_output_needs_one_notebook(tasks, make_ctx, project, monkeypatch):
    monkeypatch.chdir(project)
    write_notebook(project / "notebooks" / "a.ipynb", ci=True)
    c = make_ctx()
    error = exit_of(lambda: tasks.run_notebook(c, "notebooks", output="out.ipynb"))
    assert "--output names one executed copy, but notebooks holds 2 notebooks" in error.message
    assert not matching(c, COMPOSE_RUN)


# ----------------------------------------------------------------------------- lab --local


def test_lab_local(tasks, make_ctx, project, monkeypatch):
    write_lock(project)
    monkeypatch.setattr(tasks.shutil, "which", lambda name: f"/usr/bin/{name}")
    c = make_ctx()
    tasks.lab(c, local=True)
    token = tasks.read_env_file()["JUPYTER_TOKEN"]
    assert commands(c) == [
        "poetry install --all-groups",
        "poetry run jupyter lab --no-browser --ip=127.0.0.1 --port=8888",
    ]
    assert c.run.call_args_list[1].kwargs["env"] == {"JUPYTER_TOKEN": token}


def test_lab_local_without_poetry(tasks, make_ctx, project, monkeypatch):
    write_lock(project)
    monkeypatch.setattr(tasks.shutil, "which", lambda name: None)
    c = make_ctx()
    error = exit_of(lambda: tasks.lab(c, local=True))
    assert "Poetry is not installed" in error.message
    assert commands(c) == []


def test_lab_local_without_lock(tasks, make_ctx, monkeypatch):
    monkeypatch.setattr(tasks.shutil, "which", lambda name: f"/usr/bin/{name}")
    c = make_ctx()
    error = exit_of(lambda: tasks.lab(c, local=True))
    assert error.message.startswith("poetry.lock is missing: run `invoke lock` first")
    assert commands(c) == []


def test_lab_local_passes_the_index_settings(tasks, make_ctx, project, monkeypatch, tmp_path):
    write_lock(project)
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr(tasks.shutil, "which", lambda name: f"/usr/bin/{name}")
    c = make_ctx(pypi_mirror="https://pypi.corp.example/simple", ca_bundle=str(bundle))
    tasks.lab(c, local=True)
    assert call_of(c, r"poetry install").kwargs["env"] == {
        "POETRY_PYPI_MIRROR_URL": "https://pypi.corp.example/simple",
        "REQUESTS_CA_BUNDLE": str(bundle),
    }


# ----------------------------------------------------------------------------- update

COPIER_UPDATE = r"copier update"
GIT_STATUS = r"git .* status --porcelain"
GIT_GREP = r"git .* grep "


@pytest.fixture
def with_copier(tasks, monkeypatch):
    monkeypatch.setattr(tasks.shutil, "which", lambda name: f"/usr/bin/{name}")


@pytest.mark.parametrize(("vcs_ref", "extra"), [("", []), ("v2.0.0", ["--vcs-ref", "v2.0.0"])])
def test_update_runs_copier(tasks, make_ctx, with_copier, capsys, vcs_ref, extra):
    c = make_ctx({GIT_GREP: fail()})  # git grep exits 1: no conflict markers
    tasks.update(c, vcs_ref=vcs_ref)
    assert args_of(c, COPIER_UPDATE) == [
        "copier",
        "update",
        "--defaults",
        "--trust",
        "--conflict",
        "inline",
        *extra,
    ]
    assert position(c, GIT_STATUS) < position(c, COPIER_UPDATE) < position(c, GIT_GREP)
    assert not matching(c, r"docker ")  # pyproject.toml unchanged: no relock
    assert "Updated: review with `git diff`" in capsys.readouterr().out


def test_update_relocks_when_pyproject_changes(tasks, make_ctx, project, with_copier):
    c = make_ctx({GIT_GREP: fail()})
    pyproject = project / "pyproject.toml"
    on_command(c, COPIER_UPDATE, lambda: pyproject.write_text(pyproject.read_text() + "\n# updated\n"))
    tasks.update(c)
    assert position(c, COPIER_UPDATE) < position(c, POETRY)


def test_update_without_copier(tasks, make_ctx, monkeypatch):
    monkeypatch.setattr(tasks.shutil, "which", lambda name: None)
    c = make_ctx()
    error = exit_of(lambda: tasks.update(c))
    assert "Copier is not installed" in error.message
    assert "pipx install copier" in error.message
    assert commands(c) == []


def test_update_with_uncommitted_changes(tasks, make_ctx, with_copier):
    c = make_ctx({GIT_STATUS: ok(" M notebooks/getting-started.ipynb\n")})
    error = exit_of(lambda: tasks.update(c))
    assert "uncommitted changes: commit them first" in error.message
    assert not matching(c, COPIER_UPDATE)


def test_update_conflicts(tasks, make_ctx, project, with_copier):
    c = make_ctx({GIT_GREP: ok("pyproject.toml\ntasks.py\n")})
    pyproject = project / "pyproject.toml"
    on_command(c, COPIER_UPDATE, lambda: pyproject.write_text(pyproject.read_text() + "\n# updated\n"))
    error = exit_of(lambda: tasks.update(c))
    assert "conflicts with your edits in: pyproject.toml, tasks.py" in error.message
    assert "<<<<<<<" in error.message
    assert ("-e", "^<<<<<<< ") in pairs(args_of(c, GIT_GREP))
    assert not matching(c, POETRY)  # no relock before the conflicts are resolved


# ----------------------------------------------------------------------------- ensure_token


def test_ensure_token_creates_a_private_env_file(tasks, project):
    token = tasks.ensure_token()
    env_file = project / ".env"
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"\nJUPYTER_TOKEN={token}\n" in env_file.read_text()
    before = env_file.read_text()
    assert tasks.ensure_token() == token
    assert env_file.read_text() == before


def test_ensure_token_keeps_other_settings(tasks, project):
    env_file = project / ".env"
    env_file.write_text("HF_TOKEN=hf_abc\n")
    env_file.chmod(0o644)
    token = tasks.ensure_token()
    assert tasks.read_env_file() == {"HF_TOKEN": "hf_abc", "JUPYTER_TOKEN": token}
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_ensure_token_reuses_a_quoted_token(tasks, project):
    (project / ".env").write_text("# mine\nJUPYTER_TOKEN='handmade'\n")
    assert tasks.ensure_token() == "handmade"


def test_ensure_token_after_a_last_line_without_newline(tasks, project):
    (project / ".env").write_text("HF_TOKEN=hf_abc")
    token = tasks.ensure_token()
    assert tasks.read_env_file() == {"HF_TOKEN": "hf_abc", "JUPYTER_TOKEN": token}


def test_up_port_error_in_a_project_named_gpu(tasks, make_ctx):
    stderr = (
        "Error response from daemon: driver failed programming external connectivity on endpoint "
        "gpu-lab-lab-1: Bind for 127.0.0.1:8888 failed: port is already allocated"
    )
    c = make_ctx({COMPOSE_UP: fail(stderr), **RUNNING}, project="gpu-lab")
    error = exit_of(lambda: tasks.up(c))
    assert "Port 8888 on 127.0.0.1 is already in use" in error.message


# ----------------------------------------------------------------------------- doctor


def test_doctor_fails_without_engine(tasks, make_ctx, project, capsys):
    write_lock(project)
    c = make_ctx({ENGINE: fail()})
    error = exit_of(lambda: tasks.doctor(c))
    assert "[!!]" in error.message
    out = capsys.readouterr().out
    assert "[!!] Docker engine: No Docker engine reachable" in out
    assert "[!!] poetry.lock matches pyproject.toml: needs the engine" in out
    assert "[ok] Docker Compose" in out
    assert not matching(c, CHECK_LOCK)


def test_doctor_passes_when_everything_is_fine(tasks, make_ctx, project, capsys):
    write_lock(project)
    tasks.ensure_token()
    c = make_ctx({ENGINE: ok("27.3.1\n"), r"docker compose version": ok("2.29.7\n"), PS: ok("")})
    tasks.doctor(c)  # no Exit: exit code 0
    out = capsys.readouterr().out
    assert "[!!]" not in out
    for line in (
        "[ok] Docker engine 27.3.1",
        "[ok] Docker Compose 2.29.7",
        "[ok] BuildKit (buildx)",
        "[ok] poetry.lock matches pyproject.toml",
        "[ok] port 8888 on 127.0.0.1 is free for JupyterLab",
        "[ok] .env holds a JupyterLab token",
    ):
        assert line in out
    assert matching(c, CHECK_LOCK)


@pytest.mark.parametrize(
    ("responses", "line"),
    [
        ({CHECK_LOCK: fail(stdout="Run `poetry lock` to fix the lock file.")}, "[!!] poetry.lock matches"),
        ({r"docker buildx": fail()}, "[!!] BuildKit (buildx)"),
        ({r"docker info": ok('{"runc":{}}')}, "[!!] NVIDIA container runtime"),
    ],
)
def test_doctor_fails_on_a_required_check(tasks, make_ctx, project, capsys, responses, line):
    write_lock(project)
    c = make_ctx(responses, gpu="nvidia")
    error = exit_of(lambda: tasks.doctor(c))
    assert "fix the lines marked [!!]" in error.message
    assert line in capsys.readouterr().out


def test_doctor_reports_a_busy_port(tasks, make_ctx, project, monkeypatch, capsys):
    write_lock(project)
    monkeypatch.setattr(tasks, "port_in_use", lambda host, port: True)
    c = make_ctx({PS: ok("")})
    exit_of(lambda: tasks.doctor(c))
    assert "[!!] port 8888 on 127.0.0.1 is free for JupyterLab: stop what uses it" in capsys.readouterr().out
