"""Maintainer tasks for the labdock template itself (`invoke --list`).

The generated project's tasks live in template/labdock/; these only help work on the template.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from invoke import Context, Exit, task

REPO = Path(__file__).resolve().parent
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
