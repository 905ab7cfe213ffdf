"""The state of an earlier release, which named everything after the project's slug
(`<slug>_jupyter-state`...) instead of the checkout (project.py): on a checkout's first `up`, its
JupyterLab state is copied into the checkout's own volumes, so nothing is lost through the rename.
"""

from __future__ import annotations

from collections.abc import Iterable

from invoke import Exit

from .commands import label_flags, output, run
from .engine import MOUNTED
from .project import Project

LEGACY_VOLUMES = ("jupyter-state", "python-cache")  # compose.yaml's volumes: JupyterLab's state


def volumes_present(p: Project, names: Iterable[str]) -> set[str]:
    found = output(p.c, "docker", "volume", "ls", "--quiet")
    return set(found.split()) & set(names)


def legacy_volumes(p: Project) -> list[str]:
    """The volumes an earlier release named after the slug (`<slug>_jupyter-state`...) that exist."""
    names = [f"{p.slug}_{volume}" for volume in LEGACY_VOLUMES]
    present = volumes_present(p, names)
    return [name for name in names if name in present]


def move_legacy_state(p: Project) -> None:
    """Once, on the first `up` of a checkout an earlier release used: stop that release's
    container of this folder (it holds the port), and copy its JupyterLab settings and
    workspaces (and the bytecode cache) into this checkout's new volumes, so nothing is lost
    through the rename. The old volumes are left: other checkouts of the same project on this
    engine (clones, other users) shared them and may still need them; `invoke doctor` names
    them until they are removed."""
    if p.slug == p.compose_project:
        return
    # `docker ps` lists them; only `docker inspect` shows what each one mounts.
    old = output(
        p.c, "docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={p.slug}"
    )
    mounted = output(p.c, "docker", "inspect", "--format", "{{.Id}} " + MOUNTED, *old.split()) if old else ""
    ours = [line.split(" ")[0] for line in mounted.splitlines() if line.partition(" ")[2] == str(p.root)]
    if ours:
        print("Stopping this folder's JupyterLab of the previous release (it is renamed now).")
        run(p.c, "docker", "rm", "--force", *ours, hide=True, warn=True)
    old_volumes = legacy_volumes(p)
    new_names = {f"{p.slug}_{volume}": f"{p.compose_project}_{volume}" for volume in LEGACY_VOLUMES}
    present = volumes_present(p, new_names.values())
    moved = []
    for name in old_volumes:
        target = new_names[name]
        if target in present:
            continue  # never overwrite what this checkout already has
        # Made here with Compose's own labels, so that `compose up` takes it as its volume.
        volume = name.removeprefix(f"{p.slug}_")
        labels = {
            "com.docker.compose.project": p.compose_project,
            "com.docker.compose.volume": volume,
            **p.labels(lasting=True),
        }
        flags = label_flags(labels)
        run(p.c, "docker", "volume", "create", *flags, target, hide=True)
        copied = run(
            p.c,
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "0:0",
            "-v",
            f"{name}:/from:ro",
            "-v",
            f"{target}:/to",
            p.image(),
            "cp",
            "-a",
            "/from/.",
            "/to/",
            hide=True,
            warn=True,
        )
        if not copied.ok:
            run(p.c, "docker", "volume", "rm", target, hide=True, warn=True)
            raise Exit(
                f"Copying {name} to {target} failed ({copied.stderr.strip()[-200:]}): nothing was "
                "changed; fix the engine's problem, then `invoke up` again."
            )
        moved.append(name)
    if moved:
        print(
            f"Copied JupyterLab's settings and workspaces from the previous release's volumes "
            f"({', '.join(moved)}) to this checkout's. The old volumes stay, for other checkouts of "
            f"{p.slug}: `docker volume rm {' '.join(moved)}` once none needs them."
        )
    p.checkout.legacy = False
    p.save_checkout()
