"""The Docker engine and Compose, as the tasks use them: is there an engine, run `docker compose`
for this project with its settings and override files, find its containers and images, and make
sure what it finds belongs to this checkout (project.py names and labels everything)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping

from invoke import Exit, Result

from . import envfile, network, overrides, remote
from .commands import label_flags, output, run
from .project import (
    CHECKOUT_LABEL,
    FOLDER_LABEL,
    SERVICE,
    TENSORBOARD,
    USER_LABEL,
    Project,
)

# What engines say when a GPU is requested but the NVIDIA runtime is missing.
NVIDIA_ERRORS = (
    "could not select device driver",
    "unknown or invalid runtime name: nvidia",
    "nvidia-container",
)


def engine_version(p: Project) -> str | None:
    """The Docker engine's version, or None when no engine answers."""
    result = p.c.run("docker version --format '{{.Server.Version}}'", hide=True, warn=True)
    return result.stdout.strip() if result is not None and result.ok else None


def no_engine_message() -> str:
    where = os.environ.get("DOCKER_HOST") or "the default Docker socket/context"
    return (
        f"No Docker engine reachable at {where}: start Docker (Docker Desktop, or "
        "`sudo systemctl start docker`), or point DOCKER_HOST at a running engine."
    )


def require_engine(p: Project) -> None:
    """Stop unless an engine answers and nothing there with this checkout's names is another's."""
    if engine_version(p) is None:
        raise Exit(no_engine_message())
    claim(p)


def require_local_folder(p: Project, what: str) -> None:
    """Stop in remote mode before a command that bind-mounts this folder (the engine cannot see it)."""
    if p.remote:
        raise Exit(
            f"{what} is not supported on a remote engine yet: run it where the files are (on the "
            "engine's host), or with a local engine."
        )


def compose_settings(p: Project) -> dict[str, str]:
    """The settings as the LABDOCK_* variables compose.yaml reads (and the names and labels of
    this checkout, so that plain `docker compose` and VS Code use the same ones)."""
    s = p.settings
    labels, lasting = p.labels(), p.labels(lasting=True)
    return {
        "LABDOCK_PROJECT": p.compose_project,
        "LABDOCK_CHECKOUT": labels[CHECKOUT_LABEL],
        "LABDOCK_FOLDER": labels[FOLDER_LABEL],
        "LABDOCK_ORIGIN": lasting[FOLDER_LABEL],
        "LABDOCK_USER": labels[USER_LABEL],
        "LABDOCK_IMAGE": p.image(),
        # empty with `port: auto` before the first start: the engine picks a free port
        "LABDOCK_PORT": str(p.port or ""),
        "LABDOCK_BIND": network.compose_bind(s.bind),
        # compose.yaml reads 0 as "no limit"
        "LABDOCK_CPUS": s.cpus or "0",
        "LABDOCK_MEMORY": s.memory or "0",
        "LABDOCK_TENSORBOARD_PORT": str(s.tensorboard_port),
        "LABDOCK_TENSORBOARD_BIND": network.compose_bind(s.tensorboard_bind),
    }


# ----------------------------------------------------------------------------- compose


def compose_command(
    p: Project, gpu: bool = False, tensorboard: bool = False
) -> tuple[list[object], dict[str, str]]:
    """`docker compose` with this project's name, files and profiles, and the environment it needs."""
    files: list[object] = ["-f", p.compose_file]
    if gpu:
        files += ["-f", overrides.write_gpu_override(p, True)]
    if p.remote:
        files += ["-f", overrides.write_remote_override(p)]
    profiles = ["--profile", TENSORBOARD] if tensorboard else []
    # The token from .env, explicitly: compose would let one exported in the shell win. Without
    # .env, compose.yaml refuses to parse; only `up` uses the token, and `up` writes .env before it
    # starts anything, so `down`, `ps`... go on with a placeholder.
    token = envfile.read(p.env_file).get(envfile.TOKEN)
    env = {**compose_settings(p), envfile.TOKEN: token or "unused-without-env-file"}
    return ["docker", "compose", "--project-name", p.compose_project, *files, *profiles], env


def compose(p: Project, *args: object, gpu: bool = False, tensorboard: bool = False, **run_kwargs) -> Result:
    """Run `docker compose ARGS` for this project, from any folder, with its settings."""
    argv, env = compose_command(p, gpu=gpu, tensorboard=tensorboard)
    return run(p.c, *argv, *args, env=env, **run_kwargs)


def compose_bytes(
    p: Project, *args: object, stdin: bytes = b"", gpu: bool = False, show_errors: bool = False
) -> subprocess.CompletedProcess:
    """`docker compose ARGS` with bytes in and out (tar streams, notebooks): Invoke's run
    decodes output as text. stderr is captured, or shown as it comes with show_errors."""
    argv, env = compose_command(p, gpu=gpu)
    return exchange([*argv, *args], stdin, env, show_errors)


def exchange(
    argv: list[object], stdin: bytes = b"", env: Mapping[str, str] | None = None, show_errors: bool = False
) -> subprocess.CompletedProcess:
    """Run a command with bytes on stdin, its stdout as bytes (the one place tests replace)."""
    return subprocess.run(
        [str(arg) for arg in argv],
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=None if show_errors else subprocess.PIPE,
        env={**os.environ, **(env or {})},
        check=False,
    )


def image_exists(p: Project, ref: str) -> bool:
    return run(p.c, "docker", "image", "inspect", ref, hide=True, warn=True).ok


def label(p: Project, kind: str, ref: str, name: str) -> str:
    """A label of a local image or a container (kind "image" / "container"); '' when missing."""
    value = output(p.c, "docker", kind, "inspect", "--format", f'{{{{index .Config.Labels "{name}"}}}}', ref)
    return "" if value == "<no value>" else value


def image_label(p: Project, ref: str, name: str) -> str:
    return label(p, "image", ref, name)


def container_id(p: Project, service: str = SERVICE) -> str:
    """The running container's id (JupyterLab's by default), or '' when it is not running."""
    result = compose(p, "ps", "-q", service, tensorboard=service == TENSORBOARD, hide=True, warn=True)
    return result.stdout.strip() if result.ok else ""


def require_running(p: Project) -> str:
    cid = container_id(p)
    if not cid:
        raise Exit("JupyterLab is not running: start it with `invoke up`.")
    return cid


def health(p: Project, cid: str) -> tuple[str, str]:
    """(container state, health status) of a container, e.g. ('running', 'starting')."""
    result = run(
        p.c,
        "docker",
        "inspect",
        "--format",
        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
        cid,
        hide=True,
        warn=True,
    )
    state, _, status = result.stdout.strip().partition(" ") if result.ok else ("gone", "", "")
    return state, status


def container_env(p: Project, cid: str) -> dict[str, str]:
    """The environment a container was started with."""
    text = output(p.c, "docker", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", cid)
    return dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)


def is_nvidia_error(error: str) -> bool:
    return any(sign in error for sign in NVIDIA_ERRORS)


def no_gpu_runtime(command: str) -> str:
    """The one line for a GPU request the engine cannot serve, naming the command without it."""
    return (
        "The Docker engine has no NVIDIA GPU runtime: install the NVIDIA Container Toolkit and "
        f"restart Docker, or run without the GPUs: `{command} --no-gpu` (or gpu: none in invoke.yaml)."
    )


def leftovers(p: Project) -> list[str]:
    """Containers of this project that a failed or interrupted start left behind: never started
    (Created), or renamed by Compose while it replaced a container (`<id>_<name>`)."""
    listing = output(
        p.c,
        "docker",
        "ps",
        "--all",
        "--filter",
        f"label=com.docker.compose.project={p.compose_project}",
        "--format",
        "{{.ID}} {{.State}} {{.Names}}",
    )
    found = []
    for line in listing.splitlines():
        cid, state, name = [*line.split(" ", 2), "", ""][:3]
        if state == "created" or re.match(r"[0-9a-f]{12}_", name):
            found.append(cid)
    return found


def remove_leftovers(p: Project) -> None:
    if doomed := leftovers(p):
        run(p.c, "docker", "rm", "--force", *doomed, hide=True, warn=True)


GPU_HELP = {
    "gpu": "Reserve the NVIDIA GPUs (adds compose.gpu.yaml); the default when invoke.yaml says gpu: nvidia",
    "no-gpu": "Start without the GPUs, even when invoke.yaml says gpu: nvidia",
}


def use_gpu(p: Project, gpu: bool, no_gpu: bool) -> bool:
    """Whether to request GPUs (compose.gpu.yaml, written for the run): --gpu or --no-gpu if
    given, else the gpu setting. Which GPUs: the gpus setting (gpu.py)."""
    if gpu and no_gpu:
        raise Exit("--gpu and --no-gpu contradict each other: give one of them.")
    wanted = gpu or (p.settings.gpu == "nvidia" and not no_gpu)
    if wanted:
        overrides.gpu_selection(p, True)  # a bad gpus setting stops the task before anything starts
    return wanted


# ----------------------------------------------------------------------------- this checkout's


def known_names(p: Project) -> list[str]:
    """Everything this checkout may have made on the engine, by name (a name that does not
    exist costs `docker inspect` ~8 ms: the TensorBoard container and the workspace volume only
    where they can exist)."""
    name = p.compose_project
    services = [SERVICE, *([TENSORBOARD] if TENSORBOARD in overrides.compose_services(p) else [])]
    containers = [f"{name}-{service}-1" for service in services]
    volumes = ["jupyter-state", "python-cache", *([remote.WORKSPACE_VOLUME] if p.remote else [])]
    volume_names = [f"{name}_{volume}" for volume in volumes]
    return [
        *containers,
        *volume_names,
        p.poetry_cache_volume,
        f"{name}_default",
        p.image(),
        p.image("builder"),
    ]


def owner_of(found: Mapping) -> tuple[str, str, str]:
    """(checkout id, folder, user) from the labels of an object `docker inspect` printed."""
    labels = (found.get("Config") or {}).get("Labels") or found.get("Labels") or {}
    return labels.get(CHECKOUT_LABEL, ""), labels.get(FOLDER_LABEL, ""), labels.get(USER_LABEL, "")


def foreign(p: Project, inspected: Iterable[Mapping]) -> str:
    """'' when no inspected object belongs to another checkout, else the line that says so."""
    for found in inspected:
        checkout, folder, user = owner_of(found)
        if checkout and checkout != p.checkout.id:
            name = str(found.get("Name") or (found.get("RepoTags") or [found.get("Id", "?")])[0]).lstrip("/")
            return (
                f"{name} on the Docker engine belongs to another checkout: {folder or 'a folder'} (user "
                f"{user or 'unknown'}); it is never reused. This folder carries that checkout's "
                f"{p.state_dir.name}/ (copied with it?): delete {p.state_dir.name}/ here, and the next "
                "task gives it names of its own."
            )
    return ""


def ensure_volume(p: Project, name: str) -> None:
    """Create a volume this checkout uses outside Compose (Poetry's cache), with its labels."""
    if run(p.c, "docker", "volume", "inspect", name, hide=True, warn=True).ok:
        return
    flags = label_flags(p.labels(lasting=True))
    run(p.c, "docker", "volume", "create", *flags, name, hide=True, warn=True)


def inspect(p: Project, names: Iterable[str]) -> list[dict]:
    """What `docker inspect` knows of these names, of any kind (containers, volumes, networks,
    images) in one call; names that do not exist are left out."""
    result = run(p.c, "docker", "inspect", *names, hide=True, warn=True)
    try:
        found = json.loads(result.stdout) if result is not None and result.stdout.strip() else []
    except ValueError:
        return []
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []


def claim(p: Project) -> None:
    """Stop when a container, volume, network or image with this checkout's names belongs to
    another checkout (labels; unlabelled ones carry this checkout's hash in their name: ours)."""
    if message := foreign(p, inspect(p, known_names(p))):
        raise Exit(message)


# A container's mount of the project (`docker inspect --format`): what it serves.
MOUNTED = '{{range .Mounts}}{{if eq .Destination "/workspace"}}{{.Source}}{{end}}{{end}}'


def port_holder(p: Project, port: int) -> str:
    """What publishes a host port, where the engine can tell: this project's JupyterLab, another
    checkout's (its folder and user, from its labels), another container; else another process."""
    ids = output(p.c, "docker", "ps", "--filter", f"publish={port}", "--format", "{{.ID}}").split()
    if not ids:
        return "another process"
    labels = [CHECKOUT_LABEL, FOLDER_LABEL, USER_LABEL, "com.docker.compose.project"]
    fields = "|".join(["{{.Name}}", *(f'{{{{index .Config.Labels "{name}"}}}}' for name in labels), MOUNTED])
    for line in output(p.c, "docker", "inspect", "--format", fields, *ids).splitlines():
        name, checkout, folder, user, project, mounted = [*line.split("|"), "", "", "", "", ""][:6]
        name = name.lstrip("/")
        if checkout == p.checkout.id:
            return "this project's JupyterLab"
        if checkout:
            return f"the JupyterLab of another checkout, {folder} (user {user})"
        if mounted:  # a labdock project from before checkouts had labels
            return f"container {name} of the project in {mounted}"
        return f"container {name}" + (f" (compose project {project})" if project else "")
    return "another process"


def port_taken(p: Project, port: int, bind: str) -> str:
    """The one line for a host port that is taken, naming what holds it where the engine can tell."""
    return (
        f"Port {port} on {bind} is already in use by {port_holder(p, port)}: stop it, or choose another "
        "port: labdock.port: auto picks a free one (or INVOKE_LABDOCK_PORT=<port> for one run)."
    )


def print_error(result: subprocess.CompletedProcess) -> None:
    if result.stderr:
        sys.stderr.write(result.stderr.decode(errors="replace"))
