"""Running notebooks headlessly: `invoke run-notebook`, each notebook in a fresh container.

Parameters (`-p name=value`) are injected the way papermill does it, without papermill: the cell
tagged `parameters` holds the defaults, and a cell tagged `injected-parameters` is inserted after
it with the values given; the executed copy keeps both (and the values in its metadata). nbconvert,
which runs the notebook, is already part of JupyterLab, so nothing is added to the image for it.
"""

from __future__ import annotations

import ast
import json
import secrets
import sys
import time
from pathlib import Path

from invoke import Context, Exit, Task, task

from . import engine, envfile, sync, transfer
from .commands import run
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


def parse_parameters(items: list[str]) -> dict[str, object]:
    """`name=value` items as a dict: values are Python literals (42, 0.5, True, [1, 2], 'x'),
    anything else is a string."""
    parameters: dict[str, object] = {}
    for item in items:
        name, equals, text = item.partition("=")
        name = name.strip()
        if not equals or not name.isidentifier():
            raise Exit(f"-p {item!r} is not name=value (e.g. -p alpha=0.5 or -p dataset=train): fix it.")
        try:
            parameters[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            parameters[name] = text
    return parameters


def declared(source: str) -> set[str]:
    """The names a `parameters` cell assigns (IPython magics and shell lines left out)."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        names |= {leaf.id for target in targets for leaf in ast.walk(target) if isinstance(leaf, ast.Name)}
    return names


def inject(notebook: Path, parameters: dict[str, object]) -> dict:
    """The notebook with an `injected-parameters` cell after its `parameters` cell, as papermill
    does; Exit if it has no `parameters` cell or does not declare a name given."""
    data = json.loads(notebook.read_text(encoding="utf-8"))
    language = data.get("metadata", {}).get("kernelspec", {}).get("language", "python")
    if language != "python":
        raise Exit(f"{notebook} runs {language}: -p injects Python assignments, for Python notebooks only.")
    cells = data.get("cells", [])
    tagged = [cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise Exit(
            f"{notebook} has no cell tagged `parameters`: tag the cell that sets the defaults "
            "(JupyterLab: select it, then Property Inspector > Common Tools > Cell Tags > parameters)."
        )
    source = tagged[0].get("source", "")
    names = declared("".join(source) if isinstance(source, list) else source)
    unknown = sorted(set(parameters) - names)
    if unknown:
        known = ", ".join(sorted(names)) or "nothing"
        raise Exit(
            f"{notebook} does not declare {', '.join(unknown)} in its `parameters` cell (it sets "
            f"{known}): check the name, or add it to that cell."
        )
    lines = ["# Parameters (injected by `invoke run-notebook -p`)"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    injected = {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": ["injected-parameters"]},
        "outputs": [],
        "source": "\n".join(lines) + "\n",
    }
    if (data.get("nbformat"), data.get("nbformat_minor", 0)) >= (4, 5):  # cell ids since nbformat 4.5
        injected["id"] = "injected-parameters"
    # A cell injected by an earlier run (an executed copy run again) is replaced, not stacked.
    cells = [cell for cell in cells if "injected-parameters" not in cell.get("metadata", {}).get("tags", [])]
    cells.insert(next(i for i, cell in enumerate(cells) if cell is tagged[0]) + 1, injected)
    data["cells"] = cells
    data.setdefault("metadata", {}).setdefault("labdock", {})["parameters"] = {
        name: value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        for name, value in parameters.items()
    }
    return data


def relative(p: Project, path: Path) -> str:
    """A notebook's path in the project, as the sync names it; stops on one a sync never copies."""
    name = p.relative_path(str(path))
    if not transfer.in_scope(name):
        raise Exit(
            f"{path} is in a folder a remote engine's workspace never gets (data/, runs/ and caches "
            "stay on one side): move the notebook, e.g. into notebooks/."
        )
    return name


def execute(
    p: Project, source: Path, target: Path, timeout: int, gpu: bool, parameters: dict | None = None
) -> bool:
    """Execute one notebook into target in a fresh container; whether every cell succeeded.
    With parameters, the injected copy is written to target first and executed in place."""
    print(f"Running {source} ...", flush=True)
    if parameters:
        target.write_text(json.dumps(inject(source, parameters), indent=1) + "\n", encoding="utf-8")
        source = target
    if p.remote:  # the engine runs the workspace volume's copy: this one goes there first
        sync.send_files(p, [relative(p, source)])
    name = f"{p.compose_project}-run-{secrets.token_hex(4)}"  # to remove it if it never starts
    result = compose(
        p,
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "--name",
        name,
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
        hide="stderr",
    )
    if result.ok:
        if p.remote:
            sync.fetch_files(p, [relative(p, target)])
        print(f"Executed copy: {target}")
        return True
    run(p.c, "docker", "rm", "--force", name, hide=True, warn=True)  # a container that never started
    if gpu and engine.is_nvidia_error(result.stderr):
        raise Exit(engine.no_gpu_runtime(f"invoke run-notebook {source}"))
    print(result.stderr.rstrip(), file=sys.stderr)  # the cell's traceback
    return False


class ParamTask(Task):
    """Invoke gives each option the first free letter of its name, in signature order: `path`
    (positional, never typed as an option) would take -p, which papermill users expect for
    parameters."""

    def arg_opts(self, name: str, default: object, taken_names: set[str]) -> dict:
        return super().arg_opts(name, default, taken_names if name == "param" else {*taken_names, "p"})


@task(
    klass=ParamTask,
    name="run-notebook",
    positional=["path"],
    help={
        "path": "A notebook, or a folder: every notebook in it",
        "marked": 'Only the notebooks whose metadata has {"labdock": {"ci": true}} (what CI runs)',
        "output": "Where to write the executed copy of one notebook (default: NAME.executed.ipynb beside it)",
        "timeout": "Seconds one cell may run (default: no limit)",
        "param": "A parameter for a notebook with a cell tagged `parameters`, as name=value (a Python "
        "literal, else a string); repeat it: -p alpha=0.5 -p dataset=train",
        **GPU_HELP,
    },
    iterable=["param"],
)
def run_notebook(
    c: Context,
    path: str,
    marked: bool = False,
    output: str = "",
    timeout: int = -1,
    gpu: bool = False,
    no_gpu: bool = False,
    param: list[str] | None = None,
) -> None:
    """Execute notebooks headlessly, each in a fresh container; fails if a cell fails. -p sets parameters."""
    p = Project.load(c)
    parameters = parse_parameters(param or [])
    with_gpu = engine.use_gpu(p, gpu, no_gpu)
    engine.require_engine(p)
    notebooks = notebooks_under(Path(path), marked)
    if not notebooks:
        marker = ' marked for CI (metadata {"labdock": {"ci": true}})' if marked else ""
        print(f"No notebook{marker} in {path}: nothing to run.")
        return
    if output and len(notebooks) > 1:
        raise Exit(f"--output names one executed copy, but {path} holds {len(notebooks)} notebooks: drop it.")
    if parameters and len(notebooks) > 1:
        raise Exit(
            f"-p sets the parameters of one notebook, but {path} holds {len(notebooks)}: name the notebook."
        )
    if parameters:
        inject(notebooks[0], parameters)  # checked before anything is built or started
    envfile.ensure_token(p.env_file)
    ensure_image(p)
    if p.remote:  # the code and data files the notebooks use, as `up` sends them
        for notebook in notebooks:
            relative(p, notebook)  # checked before anything is sent
        sync.push_on_up(p)
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
            parameters,
        )
    ]
    if len(notebooks) == 1 and failed:
        raise Exit(f"{failed[0]} failed: a cell raised an error (traceback above).")
    if failed:
        names = ", ".join(str(notebook) for notebook in failed)
        raise Exit(f"{len(failed)} of {len(notebooks)} notebooks failed: {names} (tracebacks above).")
    count = f"{len(notebooks)} notebook" + ("s" if len(notebooks) > 1 else "")
    print(f"Ran {count} in {time.monotonic() - started:.1f}s.")
