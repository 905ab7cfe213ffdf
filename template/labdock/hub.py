"""The team hub: JupyterHub on one Docker host (hub/), serving the project's image to every user.

`invoke hub` builds the singleuser image (image.py) and the hub's own image (hub/Dockerfile),
then starts hub/compose.yaml with the LABDOCK_HUB_* variables computed here from the settings:
JupyterHub with DockerSpawner, one container and one named volume per user, the limits and GPUs
of the project, the idle culler. `invoke hub --down` stops it. Every engine resource is named
after the checkout's compose project (`Project.compose_project`), so checkouts never share a hub.
Kubernetes (Zero to JupyterHub) is kubernetes.py.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable

from invoke import Context, Exit, task

from . import engine, image, network
from .commands import run, since, warn
from .guard import exclusive
from .project import Project
from .stages import docker_build

HUB_DIR = "hub"  # relative to the project: Dockerfile, compose.yaml, jupyterhub_config.py
COMPOSE_FILE = f"{HUB_DIR}/compose.yaml"
UP = ("up", "--detach", "--wait")  # compose arguments that start the hub and wait until healthy
AUTHENTICATORS = ("native", "shared-password")  # shared-password: tests only, loopback only
PASSWORD_VARIABLE = "LABDOCK_HUB_PASSWORD"  # the shared password, from the environment only
# The single-user image's user: the chart's default UID, and the image's group.
NB_UID, NB_GID = 1000, 1000
HOME = "/home/jovyan"
# Copies the image's starter notebooks into a new user's home once (DockerSpawner's post-start
# command, the chart's postStart hook); hub/jupyterhub_config.py holds the same line.
SEED_NOTEBOOKS = 'test -e "$HOME/notebooks" || cp -r /workspace/notebooks "$HOME/notebooks"'

_PREFIX = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MEMORY = re.compile(r"([0-9]+(?:[.][0-9]+)?)([kmgKMG])")
_CPUS = re.compile(r"[0-9]+(?:[.][0-9]+)?")
_GPU_IDS = re.compile(r"[0-9]+(?:,[0-9]+)*")


def is_loopback(bind: str) -> bool:
    """Whether a bind address reaches only this machine (127.0.0.0/8, ::1, localhost)."""
    try:
        return bind == "localhost" or network.is_loopback(bind.strip("[]"))
    except ValueError:  # a host name
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
    port: int = 8000,
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
    return f"http://{network.url_host(bind.strip('[]'))}:{port}/"


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


# ----------------------------------------------------------------------------- the task


def cull_every(timeout: int) -> int:
    """How often the culler looks: often enough for short test timeouts, once a minute otherwise."""
    return max(1, min(60, timeout // 2))


def environment(p: Project, singleuser: str, hub_image: str) -> dict[str, str]:
    s = p.settings
    password = os.environ.get(PASSWORD_VARIABLE, "")
    if s.hub_auth == "shared-password" and not password:
        raise Exit(
            f"hub_auth: shared-password needs the password in {PASSWORD_VARIABLE} (8 characters or "
            "more); it is for tests on this machine only."
        )
    try:
        return hub_environment(
            prefix=p.compose_project,
            image=singleuser,
            hub_image=hub_image,
            port=s.hub_port,
            bind=s.hub_bind,
            auth=s.hub_auth,
            admins=s.hub_admins.split(","),
            shared_password=password,
            cpus=s.cpus,
            memory=s.memory,
            gpus=s.gpus if s.gpu == "nvidia" else "none",
            cull_timeout=int(s.hub_cull_timeout),
            cull_every=cull_every(int(s.hub_cull_timeout)),
            docker_host=os.environ.get("DOCKER_HOST", ""),
        )
    except ValueError as error:
        raise Exit(str(error)) from None


def build_hub_image(p: Project) -> str:
    """The hub's own image, from hub/ (pinned JupyterHub, proxy, spawner, authenticator, culler)."""
    ref = f"{p.compose_project}-hub:latest"
    started = time.monotonic()
    docker_build(p, "", ref, context=p.root / HUB_DIR, failure="The hub image failed to build")
    print(f"Built {ref} in {since(started)}.")
    return ref


def compose_hub(p: Project, env: dict[str, str], *args: str, **kwargs: object):
    return run(
        p.c,
        *compose_command(p.compose_project, *args, compose_file=str(p.root / COMPOSE_FILE)),
        env=env,
        **kwargs,
    )


def remove_users(p: Project, volumes: bool) -> None:
    """The users' servers (and, with volumes, their homes), which are not the compose project's."""
    prefix = p.compose_project
    containers = run(p.c, *user_containers_command(prefix), hide=True, warn=True).stdout.split()
    if containers:
        run(p.c, "docker", "rm", "--force", *containers, hide=True, warn=True)
    if volumes:
        names = run(p.c, *user_volumes_command(prefix), hide=True, warn=True).stdout.split()
        names = [name for name in names if name.startswith(f"{prefix}-user-")]
        if names:
            run(p.c, "docker", "volume", "rm", "--force", *names, hide=True, warn=True)


@task(
    help={
        "down": "Stop the hub and every user's server",
        "volumes": "With --down: also delete the hub's database and every user's home",
        "image": "Serve this image (e.g. the one `invoke push` published) instead of building the "
        "singleuser target here",
    }
)
@exclusive
def hub(c: Context, down: bool = False, volumes: bool = False, image_: str = "") -> None:
    """Start the team's JupyterHub on this engine: every user gets the project's image (DockerSpawner)."""
    p = Project.load(c)
    engine.require_engine(p)
    if volumes and not down:
        raise Exit("--volumes deletes the hub's data and every user's home: give it with --down.")
    # compose.yaml needs the variables to parse even to stop the hub: placeholders then.
    placeholders = {
        "LABDOCK_HUB_PREFIX": p.compose_project,
        "LABDOCK_HUB_IMAGE": "-",
        "LABDOCK_HUB_HUB_IMAGE": "-",
    }
    if down:
        compose_hub(p, placeholders, "down", *(["--volumes"] if volumes else []), warn=True)
        remove_users(p, volumes)
        print("The hub is stopped" + (", its data and the users' homes deleted." if volumes else "."))
        return
    environment(p, "-", "-")  # the settings are checked before anything is built
    singleuser = image_ or image.build_singleuser(p)
    env = environment(p, singleuser, build_hub_image(p))
    started = time.monotonic()
    result = compose_hub(p, env, *UP, warn=True, hide="stderr")
    if not result.ok:
        error = result.stderr.strip()
        print(error, file=sys.stderr)
        compose_hub(p, env, "logs", "--tail", "30", warn=True)
        raise Exit("The hub did not become healthy (its log above): fix what it says, then `invoke hub`.")
    s = p.settings
    if warning := bind_warning(s.hub_bind, s.hub_port):
        warn(warning.removeprefix("WARNING: "))
    print(f"JupyterHub is up after {since(started)}: {hub_url(s.hub_bind, s.hub_port)}")
