"""Maintainer tasks for the labdock template itself (`invoke --list`).

The generated project's tasks live in template/labdock/; these only help work on the template.
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from invoke import Context, Exit, task

from locks.place import lock_name

REPO = Path(__file__).resolve().parent
LOCKS = REPO / "locks"
DEMO_MARKER = ".labdock-demo"  # written into every folder `invoke demo` renders


@task(
    help={
        "dest": "Folder to render into (default: demo/ in this checkout, gitignored)",
        "up": "Start JupyterLab in the rendered project (default: yes)",
        "data": "Extra answers as KEY=VALUE, comma-separated, e.g. stack=minimal,gpu=nvidia",
    }
)
def demo(c: Context, dest: str = "", up: bool = True, data: str = "") -> None:
    """Render this checkout (uncommitted changes included) with default answers and start it."""
    target = Path(dest or REPO / "demo").resolve()
    if target.exists() and any(target.iterdir()):
        if not (target / DEMO_MARKER).is_file():
            raise Exit(f"{target} is not empty and was not made by `invoke demo`: choose another --dest.")
        shutil.rmtree(target)  # an earlier demo: replaced
    answers = [f"--data={item.strip()}" for item in data.split(",") if item.strip()]
    c.run(
        shlex.join(
            ["copier", "copy", "--trust", "--defaults", "--vcs-ref=HEAD", *answers, str(REPO), str(target)]
        )
    )
    target.mkdir(parents=True, exist_ok=True)
    (target / DEMO_MARKER).write_text("Rendered by `invoke demo`; it may delete this folder.\n")
    if up:
        with c.cd(str(target)):
            c.run("invoke up", pty=True)


def lock_matrix() -> list[dict]:
    """Every combination of answers that changes pyproject.toml's dependencies."""
    combos = []
    for python, stack, tensorboard in itertools.product(
        ("3.11", "3.12", "3.13", "3.14"), ("minimal", "scipy", "pytorch"), (False, True)
    ):
        for gpu in ("none", "nvidia") if stack == "pytorch" else ("none",):
            combos.append({"python_version": python, "stack": stack, "gpu": gpu, "tensorboard": tensorboard})
    return combos


@task(
    help={
        "only": "Refresh only the locks whose file name contains this, e.g. py3.13 or scipy",
        "skip_pytorch_cpu": "Leave out pytorch with gpu none (its index, download.pytorch.org, "
        "must be reachable; default: yes)",
    }
)
def locks(c: Context, only: str = "", skip_pytorch_cpu: bool = True) -> None:
    """Re-resolve the poetry.lock shipped for each answer combination (locks/), with the host's Poetry.

    Needs Poetry and its mirror plugin at the versions the template uses (the e2e group of
    pyproject.toml), a python3.X on the PATH for each Python version (pyenv's shims do), and
    INVOKE_LABDOCK_PYPI_MIRROR / INVOKE_LABDOCK_CA_BUNDLE as for the projects.
    Run it after changing the dependencies in template/pyproject.toml.jinja (the render tests
    fail until then) and to move the shipped locks to newer versions; commit locks/.
    """
    from tests.rendering import render  # copier: the render group

    # Poetry needs an interpreter of the project's Python version to lock (it finds pyenv's too).
    env = {"POETRY_VIRTUALENVS_IN_PROJECT": "true", "POETRY_NO_INTERACTION": "1"}
    if mirror := os.environ.get("INVOKE_LABDOCK_PYPI_MIRROR"):
        env["POETRY_PYPI_MIRROR_URL"] = mirror
    if bundle := os.environ.get("INVOKE_LABDOCK_CA_BUNDLE"):
        env["REQUESTS_CA_BUNDLE"] = bundle
    failed = []
    for answers in lock_matrix():
        name = lock_name(**answers)
        if only not in name or (skip_pytorch_cpu and name.startswith("pytorch-cpu")):
            continue
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="labdock-locks-") as tmp:
            project = render(Path(tmp) / "project", project_name="Lock Refresh", **answers)
            (project / "poetry.lock").unlink(missing_ok=True)  # resolve from nothing
            with c.cd(str(project)):
                result = c.run("poetry lock", env=env, warn=True, hide=True)
            if result.ok:
                shutil.copyfile(project / "poetry.lock", LOCKS / name)
                print(f"{name}: {time.monotonic() - started:.0f}s", flush=True)
            else:
                print(f"{name}: FAILED\n{result.stdout}{result.stderr}", flush=True)
                failed.append(name)
    if failed:
        raise Exit(f"poetry lock failed for {', '.join(failed)} (output above).")
