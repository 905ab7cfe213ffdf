"""Running notebooks headlessly: `invoke run-notebook`, each notebook in a fresh container."""

from __future__ import annotations

import json
import time
from pathlib import Path

from invoke import Context, Exit, task

from . import engine, envfile
from .engine import GPU_HELP, compose
from .image import ensure_image
from .project import SERVICE, Project

EXECUTED_SUFFIX = ".executed.ipynb"


def notebooks_under(path: Path, marked: bool) -> list[Path]:
    """The notebook at path, or those in the folder; with marked, only those marked for CI."""
    if path.is_dir():
        found = sorted(
            notebook
            for notebook in path.rglob("*.ipynb")
            if not notebook.name.endswith(EXECUTED_SUFFIX) and ".ipynb_checkpoints" not in notebook.parts
        )
    elif path.is_file():
        found = [path]
    else:
        raise Exit(f"No notebook or folder at {path}.")
    return [notebook for notebook in found if not marked or is_marked_for_ci(notebook)]


def is_marked_for_ci(notebook: Path) -> bool:
    """A notebook's metadata says {"labdock": {"ci": true}} (JupyterLab: Property Inspector)."""
    try:
        metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return False
    return metadata.get("labdock", {}).get("ci") is True


def execute(p: Project, source: Path, target: Path, timeout: int, gpu: bool) -> bool:
    """Execute one notebook into target in a fresh container; whether every cell succeeded."""
    print(f"Running {source} ...", flush=True)
    result = compose(
        p,
        "run",
        "--rm",
        "--no-deps",
        "-T",
        SERVICE,
        "jupyter",
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        f"--ExecutePreprocessor.timeout={timeout}",
        p.container_path(str(source)),
        "--output",
        p.container_path(str(target)),
        gpu=gpu,
        warn=True,
    )
    if result.ok:
        print(f"Executed copy: {target}")
    return result.ok


@task(
    name="run-notebook",
    positional=["path"],
    help={
        "path": "A notebook, or a folder: every notebook in it",
        "marked": 'Only the notebooks whose metadata has {"labdock": {"ci": true}} (what CI runs)',
        "output": "Where to write the executed copy of one notebook (default: NAME.executed.ipynb beside it)",
        "timeout": "Seconds one cell may run (default: no limit)",
        **GPU_HELP,
    },
)
def run_notebook(
    c: Context,
    path: str,
    marked: bool = False,
    output: str = "",
    timeout: int = -1,
    gpu: bool = False,
    no_gpu: bool = False,
) -> None:
    """Execute notebooks headlessly, each in a fresh container; fails if a cell fails."""
    p = Project.load(c)
    with_gpu = engine.use_gpu(p, gpu, no_gpu)
    engine.require_engine(p)
    notebooks = notebooks_under(Path(path), marked)
    if not notebooks:
        marker = ' marked for CI (metadata {"labdock": {"ci": true}})' if marked else ""
        print(f"No notebook{marker} in {path}: nothing to run.")
        return
    if output and len(notebooks) > 1:
        raise Exit(f"--output names one executed copy, but {path} holds {len(notebooks)} notebooks: drop it.")
    envfile.ensure_token(p.env_file)
    ensure_image(p)
    started = time.monotonic()
    failed = [
        source
        for source in notebooks
        if not execute(
            p,
            source,
            Path(output) if output else source.with_name(source.stem + EXECUTED_SUFFIX),
            timeout,
            with_gpu,
        )
    ]
    if len(notebooks) == 1 and failed:
        raise Exit(f"{failed[0]} failed: a cell raised an error (traceback above).")
    if failed:
        names = ", ".join(str(notebook) for notebook in failed)
        raise Exit(f"{len(failed)} of {len(notebooks)} notebooks failed: {names} (tracebacks above).")
    count = f"{len(notebooks)} notebook" + ("s" if len(notebooks) > 1 else "")
    print(f"Ran {count} in {time.monotonic() - started:.1f}s.")
