"""The team hub: JupyterHub on one Docker host (hub/), and Zero to JupyterHub values for Kubernetes.

Pure functions only: settings in, command lines (argument lists), environments and Helm values out.
Nothing here runs a command or reads a file, so tasks can wrap them and tests can check them alone.

One machine: `hub_build_command` and `singleuser_build_command` build the two images,
`hub_environment` turns the project's settings into the LABDOCK_HUB_* variables hub/compose.yaml
reads, and `compose_command(prefix, *UP)` starts the hub. Kubernetes: `z2jh_values` gives the
chart's values (`to_yaml` writes them), `helm_command` the `helm upgrade --install` line.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping

HUB_DIR = "hub"  # relative to the project: Dockerfile, compose.yaml, jupyterhub_config.py
COMPOSE_FILE = f"{HUB_DIR}/compose.yaml"
UP = ("up", "--detach", "--wait")  # compose arguments that start the hub and wait until healthy
HUB_PORT = 8000  # the default host port of the hub
AUTHENTICATORS = ("native", "shared-password")  # shared-password: tests only, loopback only
# The single-user image's user: the chart's default UID, and the image's group.
NB_UID, NB_GID = 1000, 1000
HOME = "/home/jovyan"
# Copies the image's starter notebooks into a new user's home once (DockerSpawner's post-start
# command, the chart's postStart hook); hub/jupyterhub_config.py holds the same line.
SEED_NOTEBOOKS = 'test -e "$HOME/notebooks" || cp -r /workspace/notebooks "$HOME/notebooks"'
# Zero to JupyterHub: the chart release whose schema the values are checked against.
Z2JH_REPO = "https://hub.jupyter.org/helm-chart/"
Z2JH_CHART_VERSION = "4.4.0"

_PREFIX = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MEMORY = re.compile(r"([0-9]+(?:[.][0-9]+)?)([kmgKMG])")
_CPUS = re.compile(r"[0-9]+(?:[.][0-9]+)?")
_GPU_IDS = re.compile(r"[0-9]+(?:,[0-9]+)*")


def is_loopback(bind: str) -> bool:
    """Whether a bind address reaches only this machine (127.0.0.0/8, ::1, localhost)."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False


def resource_names(prefix: str) -> dict[str, str]:
    """The engine resources of one checkout's hub, as hub/compose.yaml and the hub name them.

    {username} is filled in by DockerSpawner (escaped to what Docker accepts)."""
    return {
        "project": f"{prefix}-hub",  # compose project; the hub container is <project>-hub-1
        "network": f"{prefix}-hub",  # the hub and every user's server
        "hub_volume": f"{prefix}-hub-data",  # the hub's database and cookie secret
        "user_volume": f"{prefix}-user-{{username}}",  # one per user: their home
        "user_container": f"{prefix}-user-{{username}}",
        "label": f"dev.labdock.hub={prefix}",  # on every user's container
    }


def check_prefix(prefix: str, slug: str) -> None:
    """Refuse a resource prefix that does not start with the project's slug or that Compose refuses."""
    if not _PREFIX.fullmatch(prefix) or not (prefix == slug or prefix.startswith(f"{slug}-")):
        raise ValueError(
            f"The hub's resource prefix must start with the project slug '{slug}' and use only "
            f"lowercase letters, digits, '-' and '_' (got '{prefix}')."
        )


def docker_socket(docker_host: str) -> str:
    """The engine's socket as the engine's host sees it, for the hub container to mount."""
    if not docker_host or docker_host.startswith("ssh://"):
        return "/var/run/docker.sock"  # a remote engine over ssh: its host's default socket
    if docker_host.startswith("unix://"):
        return docker_host.removeprefix("unix://")
    raise ValueError(
        f"The hub mounts the Docker engine's socket, and DOCKER_HOST={docker_host} names none: "
        "use a unix:// or ssh:// engine, or run the hub on the engine's machine."
    )


def cpu_limit(cpus: str) -> float | None:
    """labdock's `cpus` setting (e.g. "4", "1.5"; empty or 0: no limit) as a number of CPUs."""
    text = str(cpus).strip()
    if not text or text in ("0", "0.0"):
        return None
    if not _CPUS.fullmatch(text):
        raise ValueError(
            f"cpus must be empty (no limit) or a number of CPUs such as 4 or 1.5 (got '{cpus}')."
        )
    return float(text)


def memory_limit(memory: str) -> str | None:
    """labdock's `memory` setting (Docker's 12g, 512m) as JupyterHub's ByteSpecification (12G, 512M)."""
    text = str(memory).strip()
    if not text or text == "0":
        return None
    match = _MEMORY.fullmatch(text)
    if not match:
        raise ValueError(
            f"memory must be empty (no limit) or a size with a unit k, m or g such as 12g (got '{memory}')."
        )
    return f"{match[1]}{match[2].upper()}"


def gpu_request(gpus: str) -> str:
    """The GPU choice for every user's server: 'none', 'all', or device ids such as '0,1'."""
    text = str(gpus).strip().replace(" ", "") or "none"
    if text in ("none", "all") or _GPU_IDS.fullmatch(text):
        return text
    raise ValueError(f"gpus must be none, all or device ids such as 0,1 (got '{gpus}').")


def hub_environment(
    *,
    prefix: str,
    image: str,
    hub_image: str,
    port: int = HUB_PORT,
    bind: str = "127.0.0.1",
    auth: str = "native",
    admins: Iterable[str] = (),
    shared_password: str = "",
    cpus: str = "",
    memory: str = "",
    gpus: str = "none",
    cull_timeout: int = 3600,
    cull_every: int = 0,
    docker_host: str = "",
) -> dict[str, str]:
    """The LABDOCK_HUB_* variables for `docker compose -f hub/compose.yaml`, checked.

    image: the single-user image DockerSpawner starts per user (the project's singleuser target,
    or `<registry>/<slug>:<version>` to pull the pushed one); hub_image: the hub's own image.
    auth 'shared-password' (one password for every user name) is for tests and refuses any
    bind address other than loopback, here and again in the hub itself.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"The hub's resource prefix must be lowercase letters, digits, '-', '_' (got '{prefix}')."
        )
    if auth not in AUTHENTICATORS:
        raise ValueError(
            f"The hub's authenticator must be one of {', '.join(AUTHENTICATORS)} (got '{auth}')."
        )
    if auth == "shared-password":
        if not is_loopback(bind):
            raise ValueError(
                f"The shared-password authenticator is for tests and serves loopback only, not {bind}: "
                "bind the hub to 127.0.0.1, or use the native authenticator for a team."
            )
        if len(shared_password) < 8:
            raise ValueError("The shared-password authenticator needs a password of at least 8 characters.")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"The hub's port must be from 1 to 65535 (got {port}).")
    if int(cull_timeout) <= 0 or int(cull_every) < 0:
        raise ValueError(
            "The idle culler's timeout and interval must be positive numbers of seconds "
            f"(got timeout {cull_timeout}, every {cull_every})."
        )
    names = [name.strip() for name in admins if name.strip()]
    if any("," in name for name in names):
        raise ValueError(f"Admin user names must not contain commas (got {names}).")
    limit_cpus, limit_memory = cpu_limit(cpus), memory_limit(memory)
    return {
        "LABDOCK_HUB_PREFIX": prefix,
        "LABDOCK_HUB_IMAGE": image,
        "LABDOCK_HUB_HUB_IMAGE": hub_image,
        "LABDOCK_HUB_PORT": str(int(port)),
        "LABDOCK_HUB_BIND": bind,
        "LABDOCK_HUB_AUTH": auth,
        "LABDOCK_HUB_ADMINS": ",".join(names),
        "LABDOCK_HUB_SHARED_PASSWORD": shared_password if auth == "shared-password" else "",
        "LABDOCK_HUB_CPUS": "" if limit_cpus is None else str(limit_cpus),
        "LABDOCK_HUB_MEMORY": limit_memory or "",
        "LABDOCK_HUB_GPUS": gpu_request(gpus),
        "LABDOCK_HUB_CULL_TIMEOUT": str(int(cull_timeout)),
        "LABDOCK_HUB_CULL_EVERY": str(int(cull_every)) if cull_every else "",
        "LABDOCK_HUB_DOCKER_SOCKET": docker_socket(docker_host),
    }


def bind_warning(bind: str, port: int) -> str:
    """A warning for a hub published beyond this machine ('' on loopback)."""
    if is_loopback(bind):
        return ""
    return (
        f"WARNING: the hub is published on {bind}:{port} over plain HTTP: anyone who reaches it can "
        "sign up and passwords cross the network unencrypted. Put a TLS proxy in front of it, or "
        "keep bind 127.0.0.1 and reach it with `ssh -L`."
    )


def hub_url(bind: str, port: int) -> str:
    host = "127.0.0.1" if bind in ("0.0.0.0", "::", "[::]") else bind
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{port}/"


def compose_command(prefix: str, *args: str, compose_file: str = COMPOSE_FILE) -> list[str]:
    """`docker compose` on the hub's compose file, under the checkout's own project name."""
    return [
        "docker",
        "compose",
        "-f",
        compose_file,
        "--project-name",
        resource_names(prefix)["project"],
        *args,
    ]


def down_command(prefix: str, volumes: bool = False, compose_file: str = COMPOSE_FILE) -> list[str]:
    """Stop the hub (it stops every user's server first); with volumes, also delete the hub's data.

    Users' volumes are not the compose project's: `user_volumes_command` lists them."""
    return compose_command(prefix, "down", *(["--volumes"] if volumes else []), compose_file=compose_file)


def user_containers_command(prefix: str) -> list[str]:
    """List the ids of this hub's user servers, running or not (left over if the hub died)."""
    return ["docker", "ps", "--all", "--quiet", "--filter", f"label={resource_names(prefix)['label']}"]


def user_volumes_command(prefix: str) -> list[str]:
    """List the names of this hub's user volumes (a name filter matches substrings: check the prefix)."""
    return ["docker", "volume", "ls", "--quiet", "--filter", f"name=^{prefix}-user-"]


def _index_flags(pypi_mirror: str, ca_bundle: str, apt_proxy: bool) -> list[str]:
    flags = ["--build-arg", f"PYPI_MIRROR_URL={pypi_mirror}"] if pypi_mirror else []
    if ca_bundle:
        flags += ["--secret", f"id=ca_bundle,src={ca_bundle}"]
    if apt_proxy:  # the caller puts the proxy URL in LABDOCK_APT_PROXY: a secret, never a build arg
        flags += ["--secret", "id=apt_proxy,env=LABDOCK_APT_PROXY"]
    return flags


def singleuser_build_command(
    *,
    project_dir: str,
    tag: str,
    python_version: str,
    pypi_mirror: str = "",
    ca_bundle: str = "",
    apt_proxy: bool = False,
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """`docker build` of the Dockerfile's singleuser target (run with DOCKER_BUILDKIT=1).

    The user is UID 1000 whoever builds it: the image is for a hub, not for the builder's files."""
    label_flags = [flag for key, value in (labels or {}).items() for flag in ("--label", f"{key}={value}")]
    return [
        "docker",
        "build",
        "--target",
        "singleuser",
        "-t",
        tag,
        "--build-arg",
        f"PYTHON_VERSION={python_version}",
        "--build-arg",
        f"NB_UID={NB_UID}",
        "--build-arg",
        f"NB_GID={NB_GID}",
        *_index_flags(pypi_mirror, ca_bundle, apt_proxy),
        *label_flags,
        project_dir,
    ]


def hub_build_command(
    *,
    hub_dir: str,
    tag: str,
    pypi_mirror: str = "",
    ca_bundle: str = "",
    apt_proxy: bool = False,
    npm_registry: str = "",
) -> list[str]:
    """`docker build` of the hub image from hub/ (run with DOCKER_BUILDKIT=1)."""
    npm = ["--build-arg", f"NPM_REGISTRY_URL={npm_registry}"] if npm_registry else []
    return ["docker", "build", "-t", tag, *_index_flags(pypi_mirror, ca_bundle, apt_proxy), *npm, hub_dir]


# ----------------------------------------------------------------------------- Kubernetes


def z2jh_values(
    *,
    slug: str,
    registry: str,
    version: str,
    gpu: str = "none",
    cpus: str = "",
    memory: str = "",
    storage: str = "10Gi",
    cull_timeout: int = 3600,
    admins: Iterable[str] = (),
) -> dict:
    """Helm values for the Zero to JupyterHub chart: the pushed image (`invoke push`'s
    <registry>/<slug>:<version>) as every user's server, a volume per user, the limits, a GPU
    profile when the project has gpu: nvidia, the idle culler and NativeAuthenticator."""
    if not registry:
        raise ValueError(
            "A cluster pulls the image from a registry: set labdock.registry (e.g. ghcr.io/acme) "
            "and `invoke push` first."
        )
    if not version:
        raise ValueError("The image version is empty: tag or commit first, or pass the version to deploy.")
    if gpu not in ("none", "nvidia"):
        raise ValueError(f"gpu must be none or nvidia (got '{gpu}').")
    if not re.fullmatch(r"[0-9]+(?:[.][0-9]+)?(?:[KMGTPE]i?)?", storage):
        raise ValueError(f"storage must be a Kubernetes size such as 10Gi (got '{storage}').")
    if int(cull_timeout) <= 0:
        raise ValueError(
            f"The idle culler's timeout must be a positive number of seconds (got {cull_timeout})."
        )
    singleuser: dict = {
        "image": {"name": f"{registry}/{slug}", "tag": str(version), "pullPolicy": "IfNotPresent"},
        "cmd": "jupyterhub-singleuser",
        "defaultUrl": "/lab",
        "uid": NB_UID,
        "fsGid": NB_GID,
        "storage": {"type": "dynamic", "capacity": storage, "homeMountPath": HOME},
        "lifecycleHooks": {"postStart": {"exec": {"command": ["sh", "-c", SEED_NOTEBOOKS]}}},
    }
    limit_cpus, limit_memory = cpu_limit(cpus), memory_limit(memory)
    if limit_cpus is not None:
        singleuser["cpu"] = {"limit": limit_cpus}
    if limit_memory is not None:
        singleuser["memory"] = {"limit": limit_memory}
    if gpu == "nvidia":
        singleuser["profileList"] = [
            {
                "display_name": "CPU only",
                "description": "The project's image without a GPU.",
                "default": True,
            },
            {
                "display_name": "1 NVIDIA GPU",
                "description": "The project's image with one GPU of its own.",
                "kubespawner_override": {
                    "extra_resource_limits": {"nvidia.com/gpu": "1"},
                    # GPU nodes are usually tainted so that only GPU pods land there.
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "environment": {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"},
                },
            },
        ]
    names = [name.strip() for name in admins if name.strip()]
    return {
        "hub": {
            "config": {
                # NativeAuthenticator (in the chart's hub image): users sign up, an admin approves.
                "JupyterHub": {"authenticator_class": "native"},
                "Authenticator": {"admin_users": names, "allow_all": True},
            }
        },
        "singleuser": singleuser,
        "cull": {"enabled": True, "timeout": int(cull_timeout), "every": max(60, int(cull_timeout) // 6)},
    }


def helm_command(
    *,
    values_file: str,
    release: str,
    namespace: str,
    chart_version: str = Z2JH_CHART_VERSION,
) -> list[str]:
    """`helm upgrade --install` of the Zero to JupyterHub chart with the generated values."""
    return [
        "helm",
        "upgrade",
        "--install",
        "--cleanup-on-fail",
        release,
        "jupyterhub",
        "--repo",
        Z2JH_REPO,
        "--version",
        chart_version,
        "--namespace",
        namespace,
        "--create-namespace",
        "--values",
        values_file,
    ]


def to_yaml(data: object, header: str = "") -> str:
    """YAML for plain data (dicts, lists, strings, numbers, booleans, None): strings are written
    JSON-quoted, which YAML reads back unchanged. header: comment lines put on top."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += _yaml_lines(data, 0)
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: object) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(value)  # true/false/null, numbers, "strings"


def _yaml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./-]*", key) else json.dumps(key)


def _yaml_lines(data: object, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(data, dict) and data:
        for key, value in data.items():
            if isinstance(value, dict | list) and value:
                lines.append(f"{pad}{_yaml_key(str(key))}:")
                lines += _yaml_lines(value, indent + 2)
            else:
                lines.append(f"{pad}{_yaml_key(str(key))}: {_yaml_scalar(value)}")
    elif isinstance(data, list) and data:
        for item in data:
            nested = _yaml_lines(item, indent + 2)
            if isinstance(item, dict | list) and item:
                # the first line of the item shares the dash's line
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(f"{pad}{_yaml_scalar(data)}")
    return lines
