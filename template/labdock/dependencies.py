"""Dependencies: `invoke lock` and `invoke add`, with Poetry in a container (see locking.py)."""

from __future__ import annotations

import shlex

from invoke import Context, Exit, task

from . import engine, locking, server
from .guard import exclusive
from .image import build_image
from .project import Project


@task(
    help={
        "upgrade": "Re-resolve every dependency to the newest allowed version "
        "(default: keep locked versions that still fit pyproject.toml)"
    }
)
@exclusive
def lock(c: Context, upgrade: bool = False) -> None:
    """Resolve pyproject.toml into poetry.lock, with Poetry in a container (no Poetry on the host)."""
    p = Project.load(c)
    engine.require_engine(p)
    locking.lock(p, upgrade=upgrade)


@task(
    positional=["package"],
    help={
        "package": "A requirement, e.g. polars or 'polars>=1.0'",
        "group": "Dependency group (default: the main dependencies)",
        "restart": "Restart a running JupyterLab on the new image, so the package imports "
        "(default; running kernels stop)",
    },
)
@exclusive
def add(c: Context, package: str, group: str = "", restart: bool = True) -> None:
    """Add a dependency to pyproject.toml and poetry.lock (Poetry in a container), then rebuild."""
    p = Project.load(c)
    engine.require_engine(p)
    args = shlex.join(["add", "--lock", package, *(["--group", group] if group else [])])
    result = locking.poetry_in_container(p, args, ["pyproject.toml", "poetry.lock"], warn=True)
    if not result.ok:
        raise Exit(f"poetry add {package} failed (output above): check the package name and version.")
    build_image(p)
    if restart and engine.container_id(p):
        print("Restarting JupyterLab on the new image: running kernels stop; restart them in the page.")
        server.start(p, gpu=engine.use_gpu(p, False, False))
