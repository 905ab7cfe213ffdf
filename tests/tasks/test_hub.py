"""Unit tests of template/labdock/hub.py and kubernetes.py: settings in, commands, environments
and Helm values out; the `hub` and `helm` tasks with MockContext."""

from __future__ import annotations

import pytest
import yaml

from tests.rendering import REPO
from tests.tasks.helpers import (
    args_of,
    call_of,
    commands,
    exit_of,
    labdock,
    matching,
    ok,
    pairs,
    write_lock,
)

hub = labdock.hub
kubernetes = labdock.kubernetes

BASE = {"prefix": "acme-ab12cd", "image": "acme:singleuser", "hub_image": "acme-hub:latest"}


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


def test_seed_command_matches_the_hub_config():
    config = (REPO / "template" / "hub" / "jupyterhub_config.py").read_text()
    assert f"SEED_NOTEBOOKS = {hub.SEED_NOTEBOOKS!r}" in config


# ----------------------------------------------------------------------------- Kubernetes

VALUES = {"slug": "acme", "registry": "ghcr.io/team", "version": "1.2.0"}


def test_z2jh_values_use_the_pushed_image():
    values = kubernetes.z2jh_values(**VALUES)
    singleuser = values["singleuser"]
    assert singleuser["image"] == {"name": "ghcr.io/team/acme", "tag": "1.2.0", "pullPolicy": "IfNotPresent"}
    assert singleuser["cmd"] == "jupyterhub-singleuser"
    assert singleuser["storage"] == {"type": "dynamic", "capacity": "10Gi", "homeMountPath": "/home/jovyan"}
    assert singleuser["lifecycleHooks"]["postStart"]["exec"]["command"] == ["sh", "-c", hub.SEED_NOTEBOOKS]
    assert "profileList" not in singleuser and "cpu" not in singleuser and "memory" not in singleuser
    assert values["cull"] == {"enabled": True, "timeout": 3600, "every": 600}
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "native"


def test_z2jh_values_with_limits_and_a_gpu_profile():
    values = kubernetes.z2jh_values(
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
        kubernetes.z2jh_values(**{**VALUES, **settings})


def test_helm_command():
    command = kubernetes.helm_command(
        values_file="kubernetes/values.yaml", release="acme", namespace="acme-hub"
    )
    assert command == [
        "helm", "upgrade", "--install", "--cleanup-on-fail", "acme", "jupyterhub",
        "--repo", "https://hub.jupyter.org/helm-chart/", "--version", kubernetes.Z2JH_CHART_VERSION,
        "--namespace", "acme-hub", "--create-namespace", "--values", "kubernetes/values.yaml",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "data",
    [
        {"a": {"b": [1, 2.5, True, None, "yes", "null", "1", "x: y", "# no", 'q"uote', "ünïcode", ""]}},
        {"list": [{"k": "v", "nested": {"deep": []}}, [1, [2]], {}], "empty": {}, "key with space": "v"},
        kubernetes.z2jh_values(**VALUES, gpu="nvidia", cpus="1.5", memory="512m"),
    ],
)
def test_values_yaml_reads_back_unchanged(data):
    text = kubernetes.values_yaml(data, "ghcr.io/acme/lab:1.2.0")
    assert text.startswith("# Zero to JupyterHub values for ghcr.io/acme/lab:1.2.0")
    assert yaml.safe_load(text) == data


# ----------------------------------------------------------------------------- the tasks

HUB_UP = r"docker compose -f .*hub/compose.yaml --project-name unit-demo-hub up --detach --wait"


def test_hub_builds_both_images_and_starts_compose_with_the_settings(make_ctx, project, capsys):
    write_lock(project)
    c = make_ctx(cpus="2", memory="4g", hub_port=8123, hub_admins="ada, grace", hub_cull_timeout=600)
    hub.hub(c)
    singleuser = args_of(c, r"docker build --target singleuser")
    assert {("--build-arg", "NB_UID=1000"), ("-t", "unit-demo:singleuser")} <= pairs(singleuser)
    hub_build = args_of(c, r"docker build -t unit-demo-hub:latest")
    assert hub_build[-1] == str(project / "hub")
    env = call_of(c, HUB_UP).kwargs["env"]
    assert env["LABDOCK_HUB_IMAGE"] == "unit-demo:singleuser"
    assert env["LABDOCK_HUB_HUB_IMAGE"] == "unit-demo-hub:latest"
    assert (env["LABDOCK_HUB_PORT"], env["LABDOCK_HUB_BIND"]) == ("8123", "127.0.0.1")
    assert (env["LABDOCK_HUB_CPUS"], env["LABDOCK_HUB_MEMORY"]) == ("2.0", "4G")
    assert env["LABDOCK_HUB_ADMINS"] == "ada,grace"
    assert (env["LABDOCK_HUB_CULL_TIMEOUT"], env["LABDOCK_HUB_GPUS"]) == ("600", "none")
    assert "JupyterHub is up after" in capsys.readouterr().out


def test_hub_serves_a_pushed_image_without_building_the_project(make_ctx, project):
    write_lock(project)
    c = make_ctx()
    hub.hub(c, image_="ghcr.io/acme/unit-demo:1.2.0")
    assert not matching(c, r"docker build --target singleuser")
    assert call_of(c, HUB_UP).kwargs["env"]["LABDOCK_HUB_IMAGE"] == "ghcr.io/acme/unit-demo:1.2.0"


def test_the_test_login_refuses_a_network_bind(make_ctx, project, monkeypatch):
    write_lock(project)
    monkeypatch.setenv(hub.PASSWORD_VARIABLE, "a-long-enough-secret")
    c = make_ctx(hub_auth="shared-password", hub_bind="0.0.0.0")
    error = exit_of(lambda: hub.hub(c))
    assert "shared-password authenticator is for tests and serves loopback only, not 0.0.0.0" in error.message
    assert not matching(c, HUB_UP)
    monkeypatch.delenv(hub.PASSWORD_VARIABLE)
    error = exit_of(lambda: hub.hub(make_ctx(hub_auth="shared-password")))
    assert "LABDOCK_HUB_PASSWORD" in error.message


def test_hub_down_removes_the_users_servers_and_with_volumes_their_homes(make_ctx):
    c = make_ctx(
        {
            r"docker ps --all --quiet --filter label=dev.labdock.hub=unit-demo": ok("c1\nc2\n"),
            r"docker volume ls": ok("unit-demo-user-ada\nunit-demo-user-grace\nunit-demo-userx\n"),
        }
    )
    hub.hub(c, down=True, volumes=True)
    assert matching(c, r"docker compose .* down --volumes")
    assert "docker rm --force c1 c2" in commands(c)
    assert "docker volume rm --force unit-demo-user-ada unit-demo-user-grace" in commands(c)
    error = exit_of(lambda: hub.hub(make_ctx(), volumes=True))
    assert "give it with --down" in error.message


def test_helm_writes_values_for_the_pushed_image_and_prints_the_command(make_ctx, project, capsys):
    c = make_ctx({r"git .* describe --tags": ok("v1.2.0\n")}, hub_storage="20Gi")
    kubernetes.helm(c)
    values = yaml.safe_load((project / kubernetes.VALUES_FILE).read_text())
    assert values["singleuser"]["image"] == {
        "name": "127.0.0.1:5000/team/unit-demo",
        "tag": "1.2.0",  # what `invoke push` pushed for the tag v1.2.0
        "pullPolicy": "IfNotPresent",
    }
    assert values["singleuser"]["storage"]["capacity"] == "20Gi"
    out = capsys.readouterr().out
    assert "helm upgrade --install --cleanup-on-fail unit-demo jupyterhub" in out
    assert not matching(c, r"helm ")  # printed, not run, without --install


def test_helm_needs_a_registry(make_ctx):
    error = exit_of(
        lambda: kubernetes.helm(make_ctx({r"git .* describe --tags": ok("v1.2.0\n")}, registry=""))
    )
    assert "set labdock.registry" in error.message


def test_a_refused_setting_stops_the_hub_before_any_build(make_ctx, project, monkeypatch):
    write_lock(project)
    monkeypatch.setenv(hub.PASSWORD_VARIABLE, "a-long-enough-secret")
    c = make_ctx(hub_auth="shared-password", hub_bind="0.0.0.0")
    exit_of(lambda: hub.hub(c))
    assert not matching(c, r"docker build")
