"""The Docker engine and Compose, as the tasks use them: is there an engine, run `docker compose`
for this project with its settings, find its containers and images."""

from __future__ import annotations

import os
import re

from invoke import Exit, Result

from . import envfile, network
from .commands import output, run
from .project import SERVICE, TENSORBOARD, Project

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
    if engine_version(p) is None:
        raise Exit(no_engine_message())


def compose_settings(p: Project) -> dict[str, str]:
    """The settings as the LABDOCK_* variables compose.yaml reads."""
    s = p.settings
    return {
        "LABDOCK_IMAGE": p.image(),
        "LABDOCK_PORT": str(s.port),
        "LABDOCK_BIND": network.compose_bind(s.bind),
        "LABDOCK_GPUS": s.gpus,
        # compose.yaml reads 0 as "no limit"
        "LABDOCK_CPUS": s.cpus or "0",
        "LABDOCK_MEMORY": s.memory or "0",
        "LABDOCK_TENSORBOARD_PORT": str(s.tensorboard_port),
        "LABDOCK_TENSORBOARD_BIND": network.compose_bind(s.tensorboard_bind),
    }


def compose(p: Project, *args: object, gpu: bool = False, tensorboard: bool = False, **run_kwargs) -> Result:
    """Run `docker compose ARGS` for this project, from any folder, with its settings."""
    files = ["-f", p.compose_file] + (["-f", p.gpu_compose_file] if gpu else [])
    profiles = ["--profile", TENSORBOARD] if tensorboard else []
    # The token from .env, explicitly: compose would let one exported in the shell win. Without
    # .env, compose.yaml refuses to parse; only `up` uses the token, and `up` writes .env before it
    # starts anything, so `down`, `ps`... go on with a placeholder.
    token = envfile.read(p.env_file).get(envfile.TOKEN)
    env = {**compose_settings(p), envfile.TOKEN: token or "unused-without-env-file"}
    return run(
        p.c,
        "docker",
        "compose",
        "--project-name",
        p.compose_project,
        *files,
        *profiles,
        *args,
        env=env,
        **run_kwargs,
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
    """Whether to add compose.gpu.yaml: --gpu or --no-gpu if given, else the gpu setting."""
    if gpu and no_gpu:
        raise Exit("--gpu and --no-gpu contradict each other: give one of them.")
    wanted = gpu or (p.settings.gpu == "nvidia" and not no_gpu)
    if wanted and not p.gpu_compose_file.exists():
        raise Exit(
            "This project has no compose.gpu.yaml: add GPU support with "
            "`copier update --defaults --data gpu=nvidia`."
        )
    return wanted
