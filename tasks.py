"""Maintainer tasks for the labdock template itself (`invoke --list`).

The generated project's tasks live in template/tasks.py; these only help work on the template.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from invoke import Context, task

REPO = Path(__file__).resolve().parent


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
    if target.exists():
        shutil.rmtree(target)
    answers = [f"--data={item.strip()}" for item in data.split(",") if item.strip()]
    c.run(f"copier copy --trust --defaults --vcs-ref=HEAD {' '.join(answers)} {REPO} {target}")
    if up:
        with c.cd(str(target)):
            c.run("invoke up", pty=True)
