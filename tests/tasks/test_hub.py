"""Unit tests of template/labdock/hub.py: settings in, commands, environments and Helm values out.

The module is imported by its file path, as it is shipped (it is plain Python, not a template).
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "template" / "labdock" / "hub.py"

spec = importlib.util.spec_from_file_location("labdock_hub", SOURCE)
hub = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hub)

BASE = {"prefix": "acme-ab12cd", "image": "acme:singleuser", "hub_image": "acme-hub:latest"}


def test_the_module_stands_alone():
    """Pure functions for the tasks to wrap: no Invoke, no other labdock module, no subprocess."""
    imported = set()
    for node in ast.walk(ast.parse(SOURCE.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0] if node.level == 0 else ".")
    assert imported <= {"__future__", "ipaddress", "json", "re", "collections"}, imported


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("hub.example.com", False),
    ],
)
def test_is_loopback(bind, loopback):
    assert hub.is_loopback(bind) is loopback


def test_resource_names_start_with_the_prefix():
    names = hub.resource_names("acme-ab12cd")
    assert names == {
        "project": "acme-ab12cd-hub",
        "network": "acme-ab12cd-hub",
        "hub_volume": "acme-ab12cd-hub-data",
        "user_volume": "acme-ab12cd-user-{username}",
        "user_container": "acme-ab12cd-user-{username}",
        "label": "dev.labdock.hub=acme-ab12cd",
    }


@pytest.mark.parametrize("prefix", ["acme", "acme-ab12cd", "acme-alice-0f3a9c", "acme-x_1"])
def test_check_prefix_accepts_the_slug_and_its_extensions(prefix):
    hub.check_prefix(prefix, "acme")


@pytest.mark.parametrize("prefix", ["acmex", "other-acme", "Acme-1", "acme.1", "", "acme-ü"])
def test_check_prefix_refuses_others(prefix):
    with pytest.raises(ValueError, match="must start with the project slug 'acme'"):
        hub.check_prefix(prefix, "acme")


@pytest.mark.parametrize(
    ("docker_host", "socket"),
    [
        ("", "/var/run/docker.sock"),
        ("unix:///var/tmp/ci/docker.sock", "/var/tmp/ci/docker.sock"),
        ("ssh://me@gpu-server", "/var/run/docker.sock"),
    ],
)
def test_docker_socket(docker_host, socket):
    assert hub.docker_socket(docker_host) == socket


def test_docker_socket_refuses_tcp():
    with pytest.raises(ValueError, match="names none"):
        hub.docker_socket("tcp://10.0.0.5:2375")


@pytest.mark.parametrize(("cpus", "limit"), [("", None), ("0", None), ("4", 4.0), ("1.5", 1.5), (" 2 ", 2.0)])
def test_cpu_limit(cpus, limit):
    assert hub.cpu_limit(cpus) == limit


@pytest.mark.parametrize(
    ("memory", "limit"),
    [("", None), ("0", None), ("12g", "12G"), ("512m", "512M"), ("1.5g", "1.5G"), ("64k", "64K")],
)
def test_memory_limit_converts_dockers_units(memory, limit):
    assert hub.memory_limit(memory) == limit


BAD_LIMITS = [
    ("cpu_limit", "four"),
    ("cpu_limit", "-1"),
    ("memory_limit", "12"),
    ("memory_limit", "12gb"),
    ("gpu_request", "first"),
]


@pytest.mark.parametrize(("function", "value"), BAD_LIMITS)
def test_bad_limits_name_what_is_allowed(function, value):
    with pytest.raises(ValueError, match=f"got '{value}'"):
        getattr(hub, function)(value)


@pytest.mark.parametrize(
    ("gpus", "wanted"), [("", "none"), ("none", "none"), ("all", "all"), ("0, 1", "0,1")]
)
def test_gpu_request(gpus, wanted):
    assert hub.gpu_request(gpus) == wanted


def test_hub_environment_defaults():
    env = hub.hub_environment(**BASE, docker_host="unix:///run/docker.sock")
    assert env == {
        "LABDOCK_HUB_PREFIX": "acme-ab12cd",
        "LABDOCK_HUB_IMAGE": "acme:singleuser",
        "LABDOCK_HUB_HUB_IMAGE": "acme-hub:latest",
        "LABDOCK_HUB_PORT": "8000",
        "LABDOCK_HUB_BIND": "127.0.0.1",
        "LABDOCK_HUB_AUTH": "native",
        "LABDOCK_HUB_ADMINS": "",
        "LABDOCK_HUB_SHARED_PASSWORD": "",
        "LABDOCK_HUB_CPUS": "",
        "LABDOCK_HUB_MEMORY": "",
        "LABDOCK_HUB_GPUS": "none",
        "LABDOCK_HUB_CULL_TIMEOUT": "3600",
        "LABDOCK_HUB_CULL_EVERY": "",
        "LABDOCK_HUB_DOCKER_SOCKET": "/run/docker.sock",
    }


def test_hub_environment_carries_limits_gpus_admins_and_the_culler():
    env = hub.hub_environment(
        **BASE,
        port=9000,
        bind="0.0.0.0",
        admins=[" lead ", "", "ops"],
        cpus="2",
        memory="12g",
        gpus="0,1",
        cull_timeout=600,
        cull_every=60,
        shared_password="ignored-without-that-login",
    )
    assert env["LABDOCK_HUB_PORT"] == "9000" and env["LABDOCK_HUB_BIND"] == "0.0.0.0"
    assert env["LABDOCK_HUB_ADMINS"] == "lead,ops"
    assert (env["LABDOCK_HUB_CPUS"], env["LABDOCK_HUB_MEMORY"], env["LABDOCK_HUB_GPUS"]) == (
        "2.0",
        "12G",
        "0,1",
    )
    assert (env["LABDOCK_HUB_CULL_TIMEOUT"], env["LABDOCK_HUB_CULL_EVERY"]) == ("600", "60")
    assert env["LABDOCK_HUB_SHARED_PASSWORD"] == ""  # only the test login gets it


def test_the_test_login_serves_loopback_only():
    env = hub.hub_environment(**BASE, auth="shared-password", shared_password="long-enough")
    assert env["LABDOCK_HUB_AUTH"] == "shared-password"
    assert env["LABDOCK_HUB_SHARED_PASSWORD"] == "long-enough"
    for bind in ("0.0.0.0", "::", "10.1.2.3"):
        with pytest.raises(ValueError, match=f"loopback only, not {bind}"):
            hub.hub_environment(**BASE, auth="shared-password", shared_password="long-enough", bind=bind)
    with pytest.raises(ValueError, match="at least 8 characters"):
        hub.hub_environment(**BASE, auth="shared-password", shared_password="short")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"auth": "dummy"}, "authenticator must be one of native, shared-password"),
        ({"port": 70000}, "port must be from 1 to 65535"),
        ({"cull_timeout": 0}, "must be positive"),
        ({"prefix": "Acme"}, "resource prefix"),
        ({"admins": ["a,b"]}, "must not contain commas"),
        ({"memory": "lots"}, "memory must be empty"),
    ],
)
def test_hub_environment_refuses_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        hub.hub_environment(**{**BASE, **settings})


def test_bind_warning_only_beyond_loopback():
    assert hub.bind_warning("127.0.0.1", 8000) == ""
    assert "plain HTTP" in hub.bind_warning("0.0.0.0", 8000)


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000/"),
        ("0.0.0.0", "http://127.0.0.1:8000/"),
        ("::1", "http://[::1]:8000/"),
    ],
)
def test_hub_url(bind, url):
    assert hub.hub_url(bind, 8000) == url


def test_compose_commands():
    assert hub.compose_command("acme-ab12cd", *hub.UP) == [
        "docker", "compose", "-f", "hub/compose.yaml", "--project-name", "acme-ab12cd-hub",
        "up", "--detach", "--wait",
    ]  # fmt: skip
    assert hub.down_command("acme-ab12cd")[-1] == "down"
    assert hub.down_command("acme-ab12cd", volumes=True)[-2:] == ["down", "--volumes"]
    assert hub.user_containers_command("acme-ab12cd")[-2:] == [
        "--filter",
        "label=dev.labdock.hub=acme-ab12cd",
    ]
    assert hub.user_volumes_command("acme-ab12cd")[-1] == "name=^acme-ab12cd-user-"


def test_singleuser_build_command():
    command = hub.singleuser_build_command(
        project_dir="/p",
        tag="acme:singleuser",
        python_version="3.12",
        pypi_mirror="https://mirror/simple/",
        ca_bundle="/etc/ca.pem",
        apt_proxy=True,
        labels={"org.opencontainers.image.revision": "abc"},
    )
    assert command[:6] == ["docker", "build", "--target", "singleuser", "-t", "acme:singleuser"]
    pairs = list(itertools.pairwise(command))
    for pair in [
        ("--build-arg", "PYTHON_VERSION=3.12"),
        ("--build-arg", "NB_UID=1000"),
        ("--build-arg", "NB_GID=1000"),
        ("--build-arg", "PYPI_MIRROR_URL=https://mirror/simple/"),
        ("--secret", "id=ca_bundle,src=/etc/ca.pem"),
        ("--secret", "id=apt_proxy,env=LABDOCK_APT_PROXY"),
        ("--label", "org.opencontainers.image.revision=abc"),
    ]:
        assert pair in pairs
    assert command[-1] == "/p"
    plain = hub.singleuser_build_command(project_dir=".", tag="t", python_version="3.13")
    assert "--secret" not in plain and not any("PYPI_MIRROR_URL" in arg for arg in plain)


def test_hub_build_command():
    assert hub.hub_build_command(hub_dir="hub", tag="acme-hub:latest") == [
        "docker", "build", "-t", "acme-hub:latest", "hub",
    ]  # fmt: skip
    command = hub.hub_build_command(
        hub_dir="hub", tag="h", pypi_mirror="https://m/", ca_bundle="/ca", npm_registry="https://npm.corp/"
    )
    assert "NPM_REGISTRY_URL=https://npm.corp/" in command and "id=ca_bundle,src=/ca" in command


def test_seed_command_matches_the_hub_config():
    config = (REPO / "template" / "hub" / "jupyterhub_config.py").read_text()
    assert f"SEED_NOTEBOOKS = {hub.SEED_NOTEBOOKS!r}" in config


# ----------------------------------------------------------------------------- Kubernetes

VALUES = {"slug": "acme", "registry": "ghcr.io/team", "version": "1.2.0"}


def test_z2jh_values_use_the_pushed_image():
    values = hub.z2jh_values(**VALUES)
    singleuser = values["singleuser"]
    assert singleuser["image"] == {"name": "ghcr.io/team/acme", "tag": "1.2.0", "pullPolicy": "IfNotPresent"}
    assert singleuser["cmd"] == "jupyterhub-singleuser"
    assert singleuser["storage"] == {"type": "dynamic", "capacity": "10Gi", "homeMountPath": "/home/jovyan"}
    assert singleuser["lifecycleHooks"]["postStart"]["exec"]["command"] == ["sh", "-c", hub.SEED_NOTEBOOKS]
    assert "profileList" not in singleuser and "cpu" not in singleuser and "memory" not in singleuser
    assert values["cull"] == {"enabled": True, "timeout": 3600, "every": 600}
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "native"


def test_z2jh_values_with_limits_and_a_gpu_profile():
    values = hub.z2jh_values(
        **VALUES, gpu="nvidia", cpus="4", memory="12g", admins=["lead"], cull_timeout=120
    )
    singleuser = values["singleuser"]
    assert singleuser["cpu"] == {"limit": 4.0}
    assert singleuser["memory"] == {"limit": "12G"}
    cpu, gpu = singleuser["profileList"]
    assert cpu["default"] is True and "kubespawner_override" not in cpu
    assert gpu["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert values["hub"]["config"]["Authenticator"]["admin_users"] == ["lead"]
    assert values["cull"]["timeout"] == 120 and values["cull"]["every"] == 60


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"registry": ""}, "set labdock.registry"),
        ({"version": ""}, "version is empty"),
        ({"gpu": "amd"}, "gpu must be none or nvidia"),
        ({"storage": "10 GB"}, "Kubernetes size"),
        ({"cpus": "all"}, "cpus must be empty"),
    ],
)
def test_z2jh_values_refuse_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        hub.z2jh_values(**{**VALUES, **settings})


def test_helm_command():
    assert hub.helm_command(values_file="kubernetes/values.yaml", release="acme", namespace="acme-hub") == [
        "helm", "upgrade", "--install", "--cleanup-on-fail", "acme", "jupyterhub",
        "--repo", "https://hub.jupyter.org/helm-chart/", "--version", hub.Z2JH_CHART_VERSION,
        "--namespace", "acme-hub", "--create-namespace", "--values", "kubernetes/values.yaml",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "data",
    [
        {"a": {"b": [1, 2.5, True, None, "yes", "null", "1", "x: y", "# no", 'q"uote', "ünïcode", ""]}},
        {"list": [{"k": "v", "nested": {"deep": []}}, [1, [2]], {}], "empty": {}, "key with space": "v"},
        hub.z2jh_values(**VALUES, gpu="nvidia", cpus="1.5", memory="512m"),
    ],
)
def test_to_yaml_reads_back_unchanged(data):
    text = hub.to_yaml(data, header="Generated by labdock.\nEdit invoke.yaml instead.")
    assert text.startswith("# Generated by labdock.\n# Edit invoke.yaml instead.\n")
    assert yaml.safe_load(text) == data
