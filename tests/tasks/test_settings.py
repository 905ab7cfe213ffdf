"""The run-time settings: invoke.yaml and INVOKE_LABDOCK_* are loaded and checked in one place,
before a task writes or starts anything; the names the template rendered come from the rendered
files. The bad-value table runs real `invoke` processes in a rendered project: Invoke's own
config loading is part of what is tested (it would cast INVOKE_LABDOCK_PORT=abc to int)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from invoke import Config, MockContext

from tests.tasks.helpers import COMPOSE_UP, PORT, RUNNING, call_of, exit_of, labdock, ok

settings = labdock.settings
Project = labdock.project.Project


def test_settings_come_from_the_rendered_files(make_ctx, load):
    p = load(make_ctx())
    assert (p.slug, p.image(), p.compose_project) == ("unit-demo", "unit-demo:latest", "unit-demo")
    s = p.settings
    assert (s.port, s.bind, s.gpu, s.registry, s.tensorboard) == (
        8888,
        "127.0.0.1",
        "none",
        "127.0.0.1:5000/team",
        False,
    )
    assert (s.pypi_mirror, s.ca_bundle, s.apt_proxy) == ("", "", "")  # machine-specific: not in invoke.yaml


def test_invoke_yaml_holds_only_run_time_settings(project):
    written = yaml.safe_load((project / "invoke.yaml").read_text())["labdock"]
    assert set(written) <= set(settings.NAMES)
    assert not set(written) & set(settings.RETIRED)  # rendered names are read from the rendered files


def test_environment_overrides_and_is_parsed(make_ctx, load, monkeypatch):
    monkeypatch.setenv("INVOKE_LABDOCK_PORT", "9999")
    monkeypatch.setenv("INVOKE_LABDOCK_TENSORBOARD", "false")
    monkeypatch.setenv("INVOKE_LABDOCK_BIND", "::1")
    s = load(make_ctx(tensorboard=True)).settings
    assert (s.port, s.tensorboard, s.bind) == (9999, False, "::1")


@pytest.mark.parametrize(
    ("bind", "compose_bind", "probed", "url"),
    [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1", "http://127.0.0.1:8888/"),
        ("0.0.0.0", "0.0.0.0", "127.0.0.1", "http://127.0.0.1:8888/"),
        ("::1", "[::1]", "::1", "http://[::1]:8888/"),
        ("::", "[::]", "::1", "http://[::1]:8888/"),
    ],
)
def test_ipv4_and_ipv6_binds(make_ctx, capsys, bind, compose_bind, probed, url):
    c = make_ctx({**RUNNING, PORT: ok(f"{compose_bind}:8888\n")}, bind=bind)
    labdock.server.up(c)
    assert call_of(c, COMPOSE_UP).kwargs["env"]["LABDOCK_BIND"] == compose_bind
    assert labdock.network.local_host(bind) == probed  # where port checks and probes connect
    assert f"JupyterLab: {url}lab?token=" in capsys.readouterr().out


@pytest.mark.parametrize("bind", ["::", "::1", "0.0.0.0"])
def test_port_probe_never_crashes_on_a_bind_address(bind):
    assert labdock.network.port_in_use(bind, 1) in (True, False)  # `::` was a gaierror


def test_octal_looking_port_in_invoke_yaml_is_refused(project, make_ctx, load):
    (project / "invoke.yaml").write_text("labdock:\n  port: 01234\n")
    c = MockContext(config=Config(overrides={"labdock": {"port": 668}}))  # what YAML made of it
    error = exit_of(lambda: load(c))
    assert error.message == (
        "labdock.port: '01234' in invoke.yaml is not valid: use auto, or a port number from 1024 to "
        "65535, in decimal without leading zeros."
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("image", "labdock.image in invoke.yaml is no longer a setting (the image is named after"),
        ("python_version", "labdock.python_version in invoke.yaml is no longer a setting"),
        ("prot", "labdock.prot in invoke.yaml is not a setting: use one of port, bind,"),
    ],
)
def test_retired_and_unknown_keys(make_ctx, load, key, message):
    error = exit_of(lambda: load(make_ctx(**{key: "x"})))
    assert error.message.startswith(message)


def test_unknown_variable(make_ctx, load, monkeypatch):
    monkeypatch.setenv("INVOKE_LABDOCK_PROT", "9999")
    error = exit_of(lambda: load(make_ctx()))
    assert error.message.startswith("INVOKE_LABDOCK_PROT is not a labdock setting: use one of port,")


def test_tensorboard_port_must_differ(make_ctx, load):
    error = exit_of(lambda: load(make_ctx(tensorboard_port=8888)))
    assert "labdock.tensorboard_port and labdock.port are both 8888" in error.message


# ----------------------------------------------------------------------------- bad values, for real

BAD_VALUES = {
    "port": ["abc", "80", "70000", "01234", "8888.5", "", "automatic"],
    "bind": ["localhost", "127.0.0.256", "0.0.0.0; rm -rf /", "[::1]"],
    "gpu": ["amd", "true"],
    "gpus": ["first", "0;1", "0,,1"],
    "cpus": ["four", "-1", "0", "1e3"],
    "memory": ["12", "12gb", "-1g", "0g"],
    "tensorboard": ["maybe", "2"],
    "tensorboard_port": ["abc", "22"],
    "tensorboard_bind": ["localhost", "0.0.0.0:6006"],
    "registry": ["GHCR.io/Acme", "ghcr.io/my team", "https://ghcr.io/acme"],
    "healthy_timeout": ["soon", "0", "-5"],
    "pypi_mirror": ["pypi.example.com/simple", "ftp://mirror/simple"],
    "ca_bundle": ["/nowhere/ca.pem"],
    "apt_proxy": ["http://:3142", "apt-cache:3142", "http://cache.example.com:31a2"],
    "build_cache": ["gha", "type=gha mode=max"],
    "hub_port": ["eighty", "80", "08000"],
    "hub_bind": ["everywhere", "0.0.0.0:8000"],
    "hub_auth": ["dummy", "oauth"],
    "hub_admins": ["ada;grace", "bad name", "-x"],
    "hub_cull_timeout": ["never", "0"],
    "hub_storage": ["10GB", "ten"],
    "user": ["al ice", "-bob", "b" * 33, "bob;id"],
    "remote": ["maybe", "ssh", "2"],
}
CASES = [(name, value) for name, values in BAD_VALUES.items() for value in values]


def test_every_setting_has_bad_values_in_the_table():
    assert set(BAD_VALUES) == set(settings.NAMES)


@pytest.fixture(scope="module")
def real_project(rendered, tmp_path_factory):
    """A rendered project to run `invoke` in (no engine needed: settings fail first)."""
    import shutil

    return shutil.copytree(rendered, tmp_path_factory.mktemp("settings") / "project")


def invoke(root, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    clean = {key: value for key, value in os.environ.items() if not key.startswith("INVOKE_LABDOCK_")}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=root,
        env={**clean, "DOCKER_HOST": "unix:///nonexistent.sock", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(result: subprocess.CompletedProcess, *parts: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    for part in parts:
        assert part in lines[0], lines[0]
    assert "is not valid: " in lines[0] or "does not parse" in lines[0]


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v}" for n, v in CASES])
def test_a_bad_variable_stops_the_task_before_anything_is_written(real_project, name, value):
    env_file = real_project / ".env"
    env_file.write_text("LABDOCK_TOKEN=abc\nMY_VAR=1\n")
    variable = f"INVOKE_LABDOCK_{name.upper()}"
    result = invoke(real_project, "up", env={variable: value})
    assert_refused(result, f"{variable}={value!r}", f"set {variable} to ")
    assert env_file.read_text() == "LABDOCK_TOKEN=abc\nMY_VAR=1\n"


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v}" for n, v in CASES])
def test_a_bad_value_in_invoke_yaml_stops_the_task_before_anything_is_written(real_project, name, value):
    config = real_project / "invoke.yaml"
    original = config.read_text()
    env_file = real_project / ".env"
    env_file.unlink(missing_ok=True)
    try:
        config.write_text(f"labdock:\n  {name}: {value}\n" if value else f"labdock:\n  {name}: ''\n")
        result = invoke(real_project, "prepare")
    finally:
        config.write_text(original)
    if value.startswith("["):  # not even YAML: named as such, before Invoke reads the file
        assert_refused(result, "invoke.yaml does not parse (", "at line 2, column ")
    else:
        assert_refused(result, f"labdock.{name}: ", "in invoke.yaml is not valid: use ")
    assert not env_file.exists()
