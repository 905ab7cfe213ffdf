"""Remote Docker engines (DOCKER_HOST=ssh://..., or a Docker context on another machine).

A remote engine's bind mounts name folders on *its* host, which does not have this checkout, and
a port it publishes on 127.0.0.1 is its own loopback, not this machine's. So in remote mode:
  - the project lives in a named volume (`workspace`) on the engine instead of a bind mount
    (compose_override); `invoke sync` copies files in and out (transfer.py decides what and how);
  - readiness is the image's healthcheck, as the engine sees it (`docker compose up --wait`);
  - the server is reached through an ssh tunnel (tunnel_command).
docs/remote-engines.md in the labdock repository explains the choice and its trade-offs.

Plain functions only: no Invoke, no subprocess, no other labdock module. The tasks run the
commands these functions spell out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

WORKSPACE = "/workspace"  # where compose.yaml mounts the project in the container
WORKSPACE_VOLUME = "workspace"  # the volume that holds it on a remote engine
LOCAL_SCHEMES = ("unix", "npipe", "fd")
NETWORK_SCHEMES = ("tcp", "http", "https")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


# ----------------------------------------------------------------------------- which engine


def context_endpoint(inspect_output: str) -> str:
    """The engine address from `docker context inspect` (no name: the current context).

    With DOCKER_HOST set, the CLI reports the "default" context with DOCKER_HOST as its host, so
    this one call gives the endpoint every docker command of the task will use."""
    try:
        contexts = json.loads(inspect_output)
        return str(contexts[0]["Endpoints"]["docker"]["Host"])
    except (ValueError, LookupError, TypeError):
        raise ValueError(
            "`docker context inspect` gave no engine address: check `docker context ls`, or set DOCKER_HOST."
        ) from None


def is_remote(docker_host: str, context_endpoint: str = "") -> bool:
    """Whether the engine runs on another machine, so that this folder cannot be bind-mounted.

    DOCKER_HOST wins over the context, as it does for the docker CLI. ssh:// is remote even to
    localhost (its logins may see another file system); tcp:// is remote unless on loopback."""
    endpoint = (docker_host or "").strip() or (context_endpoint or "").strip()
    if not endpoint:
        return False  # the platform's default socket
    parts = urlsplit(endpoint)
    if parts.scheme in LOCAL_SCHEMES:
        return False
    if parts.scheme == "ssh":
        return True
    if parts.scheme in NETWORK_SCHEMES:
        return (parts.hostname or "") not in LOOPBACK_HOSTS
    raise ValueError(
        f"Docker engine address {endpoint!r} has an unknown scheme: use unix://, npipe://, "
        "tcp:// or ssh:// (DOCKER_HOST or `docker context use`)."
    )


def remote_mode(setting: object, docker_host: str, context_endpoint: str = "") -> bool:
    """The `remote` setting: auto (the default: from the engine's address), true or false
    (for engines the address does not tell, e.g. a unix socket forwarded from another machine)."""
    text = str(setting).strip().lower()
    if text in ("", "auto"):
        return is_remote(docker_host, context_endpoint)
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ValueError(f"labdock.remote must be auto, true or false (got {setting!r}).")


# ----------------------------------------------------------------------------- reaching the server


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str = ""
    port: int | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def ssh_target(endpoint: str) -> SshTarget:
    """Where to ssh to reach the engine's host: ssh://[user@]host[:port] as the docker CLI reads
    it (host may be an alias of ~/.ssh/config); for tcp://host:port, the same host on ssh's port."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("ssh", *NETWORK_SCHEMES) or not parts.hostname:
        raise ValueError(f"{endpoint!r} names no remote host: expected ssh://[user@]host[:port].")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{endpoint!r} has an invalid port.") from None
    if parts.scheme == "ssh":
        return SshTarget(parts.hostname, parts.username or "", port)
    return SshTarget(parts.hostname)


def tunnel_command(endpoint: str, forwards: Iterable[tuple[int, int]]) -> list[str]:
    """The ssh command that makes ports published on the engine host's loopback reachable here.

    forwards: (local port, port on the engine's host) pairs, e.g. JupyterLab and TensorBoard.
    -N: forward only, no remote command; both ends on loopback, like `invoke up` locally."""
    target = ssh_target(endpoint)
    argv = ["ssh", "-N"]
    for local, remote in forwards:
        for port in (local, remote):
            if not 0 < int(port) < 65536:
                raise ValueError(f"Port {port} is out of range (1 to 65535).")
        argv += ["-L", f"127.0.0.1:{int(local)}:127.0.0.1:{int(remote)}"]
    if target.port:
        argv += ["-p", str(target.port)]
    return [*argv, target.destination]


# ----------------------------------------------------------------------------- compose


SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def yaml_string(text: str) -> str:
    """A YAML double-quoted scalar (JSON's escaping is valid YAML); `$` doubled for Compose."""
    return json.dumps(text.replace("$", "$$"), ensure_ascii=False)


def compose_override(
    services: Iterable[str],
    health_service: str = "lab",
    volume: str = WORKSPACE_VOLUME,
    start_period: str = "60s",
    labels: Mapping[str, str] | None = None,
) -> str:
    """compose.remote.yaml: the remote-mode override, added after compose.yaml (and the GPU one).
    services: those of compose.yaml that mount the project (lab; tensorboard when it has it).

    Compose merges a service's volumes by their target, so this replaces the bind mount of the
    project at /workspace with the volume, for every service that mounts it; labels go on the
    volume (the checkout's, project.py). start_interval
    makes the engine check health every second while the server starts (engines >= 25; older
    ones ignore it and check every 5 s), so `up --wait` returns about as soon as /api answers."""
    names = list(services)
    for name in [*names, health_service, volume]:
        if not SERVICE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid compose service or volume name.")
    lines = [
        "# Remote engine: written by invoke, do not edit (it is rewritten on each run). The",
        "# engine's host has no copy of this folder, so the project lives in a volume there;",
        "# `invoke sync` copies files between it and this folder.",
        "services:",
    ]
    for name in names:
        lines += [
            f"  {name}:",
            "    volumes:",
            "      - type: volume",
            f"        source: {volume}",
            f"        target: {WORKSPACE}",
        ]
        if name == health_service:
            lines += ["    healthcheck:", f"      start_period: {start_period}", "      start_interval: 1s"]
    lines += ["volumes:", f"  {volume}:"]
    if labels:
        lines += ["    labels:"]
        lines += [f"      {yaml_string(key)}: {yaml_string(value)}" for key, value in labels.items()]
    return "\n".join([*lines, ""])
