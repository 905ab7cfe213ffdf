"""Kubernetes: values for the Zero to JupyterHub Helm chart (KubeSpawner), and its install command.

`invoke helm` writes kubernetes/z2jh-values.yaml for the image `invoke push` published (the
singleuser target, tagged with the release) and prints the `helm upgrade --install` command that
deploys it; `--install` runs it. The values are checked against the chart's own schema in the
template's tests; no cluster is needed to make them.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable

from invoke import Context, Exit, task

from .commands import cmd, run
from .hub import HOME, NB_GID, NB_UID, SEED_NOTEBOOKS, cpu_limit, memory_limit
from .project import Project
from .release import git_version, image_tags
from .settings import yaml

Z2JH_REPO = "https://hub.jupyter.org/helm-chart/"
Z2JH_CHART_VERSION = "4.4.0"  # the chart release whose schema the values are checked against
VALUES_FILE = "kubernetes/z2jh-values.yaml"


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


# ----------------------------------------------------------------------------- the task


def values_yaml(values: dict, image: str) -> str:
    header = (
        f"# Zero to JupyterHub values for {image}, written by `invoke helm` (run it again after\n"
        "# `invoke push`). Add what your cluster needs (ingress, authentication) in another values\n"
        "# file given after this one, so this one can be rewritten.\n"
    )
    return header + yaml.safe_dump(values, sort_keys=False, default_flow_style=False)


@task(
    help={
        "tag": "Image version to deploy (default: what `invoke push` pushes for HEAD)",
        "install": "Run `helm upgrade --install` (needs helm and a cluster); default: only print it",
        "namespace": "Kubernetes namespace (default: the project's name)",
    }
)
def helm(c: Context, tag: str = "", install: bool = False, namespace: str = "") -> None:
    """Write Zero to JupyterHub values for the pushed image and print (or run) `helm upgrade --install`."""
    p = Project.load(c)
    s = p.settings
    version = image_tags(tag or git_version(p))[0]
    try:
        values = z2jh_values(
            slug=p.slug,
            registry=s.registry,
            version=version,
            gpu=s.gpu,
            cpus=s.cpus,
            memory=s.memory,
            storage=s.hub_storage,
            cull_timeout=int(s.hub_cull_timeout),
            admins=s.hub_admins.split(","),
        )
    except ValueError as error:
        raise Exit(str(error)) from None
    path = p.root / VALUES_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_text(values_yaml(values, f"{s.registry}/{p.slug}:{version}"), encoding="utf-8")
    command = helm_command(values_file=VALUES_FILE, release=p.slug, namespace=namespace or p.slug)
    print(f"Wrote {VALUES_FILE}. Deploy with:\n  {cmd(*command)}")
    if install:
        if not shutil.which("helm"):
            raise Exit("helm is not installed on this machine: install it (https://helm.sh), then retry.")
        with c.cd(str(p.root)):
            run(c, *command)
