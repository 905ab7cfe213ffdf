"""The override files the tasks write beside compose.yaml for a run (git-ignored, rewritten each
time): compose.gpu.yaml, the GPU request of the gpu/gpus settings or --gpu (gpu.py spells it),
and compose.remote.yaml, the project in a volume on a remote engine (remote.py spells it)."""

from __future__ import annotations

from pathlib import Path

from invoke import Exit

from . import gpu, remote
from .project import SERVICE, WORKSPACE, Project
from .settings import yaml


def write_if_changed(path: Path, text: str) -> None:
    try:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise Exit(
            f"Cannot write {path.name} ({error.strerror}): labdock needs a writable project folder."
        ) from None


def gpu_selection(p: Project, flag: bool | None = None) -> str:
    """The GPUs to request (gpu.selection): from the gpu/gpus settings, or --gpu / --no-gpu."""
    try:
        return gpu.selection(p.settings.gpu, p.settings.gpus, flag)
    except ValueError as error:
        raise Exit(str(error)) from None


def write_gpu_override(p: Project, flag: bool | None = None) -> Path:
    """Write compose.gpu.yaml for this run's GPU selection; returns its path. `prepare` writes it
    from the settings for VS Code's devcontainer; `up` and `run-notebook` for their own run."""
    write_if_changed(p.gpu_compose_file, gpu.override_yaml(gpu_selection(p, flag), SERVICE))
    return p.gpu_compose_file


def compose_services(p: Project) -> dict:
    """compose.yaml's services, as written."""
    try:
        services = yaml.safe_load(p.compose_file.read_text(encoding="utf-8")).get("services") or {}
    except (OSError, yaml.YAMLError, AttributeError) as error:
        raise Exit(f"compose.yaml does not parse ({error}): fix it, then retry.") from None
    return services if isinstance(services, dict) else {}


def project_services(p: Project) -> list[str]:
    """The services of compose.yaml that mount the project folder (lab; tensorboard when the
    project has it; any you added), which the remote override gives the workspace volume."""
    services = compose_services(p)
    found = []
    for name, service in services.items():
        targets = [
            mount.split(":")[1] if isinstance(mount, str) and ":" in mount else (mount or {}).get("target")
            for mount in (service or {}).get("volumes") or []
        ]
        if WORKSPACE in targets:
            found.append(str(name))
    return found or [SERVICE]


def write_remote_override(p: Project) -> Path:
    """Write compose.remote.yaml (remote mode: the project in a volume on the engine)."""
    text = remote.compose_override(project_services(p), SERVICE, labels=p.labels(lasting=True))
    write_if_changed(p.remote_compose_file, text)
    return p.remote_compose_file
