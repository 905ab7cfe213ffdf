"""The notebook-first dependency loop on a real engine, as a notebook user lives it.

One project (stack minimal, Python 3.11: a shipped lock and the fastest build) is started once;
a kernel started through the Jupyter server's API then keeps a variable while packages are
added with `invoke add` and with `%pip install` in that kernel, and is checked to still have it
and to import them. Failing adds must leave the files and the environment exactly as they were.
Tests run in file order against the one project.
"""

from __future__ import annotations

import json
import subprocess
import time
import tomllib

import pytest

from tests.e2e.harness import (
    docker,
    free_port,
    git_commit,
    new_project,
    read_token,
    record,
    remove_project_state,
)
from tests.e2e.kernel import Kernel, KernelError
from tests.rendering import REPO

NAME = "Loop Deps Alpha"
ENVIRONMENT = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted((d.metadata['Name'].lower(), d.version) for d in m.distributions())))"
)


@pytest.fixture(scope="module")
def project(engine, tmp_path_factory):
    proj = new_project(
        tmp_path_factory.mktemp("loop"),
        project_name=NAME,
        stack="minimal",
        python_version="3.11",
        jupyter_port=free_port(),
    )
    git_commit(proj.root)
    yield proj
    remove_project_state(proj)


@pytest.fixture(scope="module")
def kernel(project, first_up):
    k = Kernel(project.answers["jupyter_port"], read_token(project.root))
    k.run("x = 42")
    yield k
    k.close()


@pytest.fixture(scope="module")
def first_up(project):
    """The first `invoke up` of a new project (from `copier copy`, as a user does next)."""
    result = project.invoke("up")
    record(NAME, "first `invoke up` (shipped lock)", f"{result.seconds:.1f} s")
    return result


def lab_container(project) -> str:
    return project.invoke("exec", "hostname").stdout.strip().splitlines()[-1]


def dependencies(project) -> tuple[list[str], set[str]]:
    """pyproject's [project] dependencies, and the package names in poetry.lock."""
    pyproject = tomllib.loads((project.root / "pyproject.toml").read_text())
    lock = tomllib.loads((project.root / "poetry.lock").read_text())
    return pyproject["project"]["dependencies"], {package["name"] for package in lock["package"]}


def environment(project) -> list:
    cid = lab_container(project)
    return json.loads(docker("exec", cid, "python", "-c", ENVIRONMENT).stdout)


def poetry_check(project) -> subprocess.CompletedProcess:
    """Poetry's own verdict on the pair: pyproject.toml and poetry.lock belong together."""
    return subprocess.run(
        ["poetry", "check", "--lock"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env={"PATH": subprocess.os.environ["PATH"], "POETRY_VIRTUALENVS_CREATE": "false"},
    )


def test_the_first_up_builds_from_the_shipped_lock(project, first_up):
    assert "poetry.lock is missing" not in first_up.stdout
    shipped = REPO / "locks" / "minimal-py3.11.lock"
    assert (project.root / "poetry.lock").read_bytes() == shipped.read_bytes()
    check = poetry_check(project)
    assert check.returncode == 0, check.stdout + check.stderr


def test_add_reaches_the_running_kernel_without_a_restart(project, kernel):
    before = lab_container(project)
    started = time.monotonic()
    add = subprocess.Popen(
        [project.python, "-m", "invoke", "add", "tabulate"],
        cwd=project.root,
        env={**subprocess.os.environ, **project.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Until it imports: the rebuild for the next `up` goes on after that, in the same command.
    while True:
        try:
            kernel.run("import tabulate", timeout=30)
            break
        except KernelError:
            assert add.poll() is None or add.returncode == 0, add.stdout.read()
            time.sleep(0.2)
    imported = time.monotonic() - started
    output, _ = add.communicate(timeout=600)
    print(output)
    assert add.returncode == 0, output
    command = time.monotonic() - started
    record(NAME, "invoke add: until it imports", f"{imported:.1f} s (command {command:.1f} s)")
    assert kernel.run("print(x, tabulate.tabulate([[1, 2]]))").split("\n", 1)[0] == "42 -  -"
    assert "The running JupyterLab has it now" in output
    assert "Rebuilding the image, so that the next `invoke up` has it too" in output
    assert lab_container(project) == before  # the same container: nothing restarted
    listed, locked = dependencies(project)
    assert any(item.startswith("tabulate") for item in listed)
    assert "tabulate" in locked


def test_up_after_add_keeps_the_server(project, kernel):
    before = lab_container(project)
    project.invoke("up")
    assert lab_container(project) == before
    assert kernel.run("print(x)").strip() == "42"


def test_pip_install_in_the_kernel_is_recorded(project, kernel):
    started = time.monotonic()
    output = kernel.run("%pip install humanize", timeout=300)
    record(NAME, "%pip install: until it returns", f"{time.monotonic() - started:.1f} s")
    assert "Added humanize" in output, output
    assert kernel.run("import humanize; print(x, humanize.intcomma(1234567))").strip() == "42 1,234,567"
    listed, locked = dependencies(project)
    assert any(item.startswith("humanize") for item in listed)
    assert "humanize" in locked
    assert "humanize" in kernel.run("!pip list")


def test_pip_uninstall_in_the_kernel_is_recorded(project, kernel):
    output = kernel.run("!pip uninstall -y humanize", timeout=300)
    assert "Removed humanize" in output, output
    listed, locked = dependencies(project)
    assert not any(item.startswith("humanize") for item in listed)
    assert "humanize" not in locked
    fresh = Kernel(project.answers["jupyter_port"], read_token(project.root))
    try:
        with pytest.raises(KernelError, match="ModuleNotFoundError"):
            fresh.run("import humanize")
    finally:
        fresh.close()
    assert kernel.run("print(x)").strip() == "42"


def test_pip_refuses_what_the_lock_cannot_record(kernel):
    output = kernel.run("%pip install -r requirements.txt")
    assert "edit pyproject.toml on the host and run `invoke lock`" in output


@pytest.mark.parametrize(
    ("package", "reason"),
    [
        ("nothing-such-package-for-labdock", "Could not find a matching version of package"),
        ("jupyterlab<4", "Incompatible constraints"),
    ],
)
def test_a_failing_add_changes_nothing(project, kernel, package, reason):
    files = {name: (project.root / name).read_bytes() for name in ("pyproject.toml", "poetry.lock")}
    before = environment(project)
    result = project.invoke("add", package, check=False)
    assert result.returncode != 0
    last = [line for line in result.stderr.strip().splitlines() if line.strip()][-1]
    record(NAME, f"invoke add {package}", last)
    assert reason in last
    assert last.endswith("pyproject.toml and poetry.lock are unchanged.")
    assert "INVOKE_LABDOCK_PYPI_MIRROR" not in last  # not a network problem
    assert {name: (project.root / name).read_bytes() for name in files} == files
    assert environment(project) == before
    assert kernel.run("print(x)").strip() == "42"


def test_remove(project, kernel):
    result = project.invoke("remove", "tabulate")
    assert "Removed tabulate" in result.stdout
    listed, locked = dependencies(project)
    assert "tabulate" not in locked and not listed
    assert "tabulate" not in {name for name, _ in environment(project)}
    assert kernel.run("print(x, tabulate.__name__)").strip() == "42 tabulate"  # imported: kept


def test_add_brings_a_server_on_an_older_lock_up_to_date(project, kernel):
    """Edited by hand and locked, not rebuilt: the next add brings the server the whole new lock."""
    pyproject = project.root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = [", 'dependencies = ["text-unidecode",', 1)
    )
    project.invoke("lock")
    project.invoke("add", "inflection")
    assert kernel.run("import text_unidecode, inflection; print(x)").strip() == "42"


def test_a_new_server_has_what_was_added(project):
    project.invoke("add", "rich")
    project.invoke("down")
    project.invoke("up")
    fresh = Kernel(project.answers["jupyter_port"], read_token(project.root))
    try:
        assert fresh.run("import rich; print(rich.__name__)").strip() == "rich"
    finally:
        fresh.close()
    check = poetry_check(project)
    assert check.returncode == 0, check.stdout + check.stderr


NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "p", "metadata": {"tags": ["parameters"]},
         "outputs": [], "source": "n = 1\nlabel = 'default'\n"},
        {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {}, "outputs": [],
         "source": "print(f'{label}: {n * 2}')"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip


def test_run_notebook_with_parameters(project):
    notebook = project.root / "notebooks" / "double.ipynb"
    notebook.write_text(json.dumps(NOTEBOOK))
    project.invoke("run-notebook", "notebooks/double.ipynb", "-p", "n=21", "-p", "label=answer")
    executed = json.loads((project.root / "notebooks" / "double.executed.ipynb").read_text())
    printed = "".join("".join(output["text"]) for output in executed["cells"][-1]["outputs"])
    assert printed == "answer: 42\n"
    assert executed["cells"][1]["metadata"]["tags"] == ["injected-parameters"]
    result = project.invoke("run-notebook", "notebooks/double.ipynb", "-p", "m=3", check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    record(NAME, "run-notebook -p m=3", last)
    assert last == (
        "notebooks/double.ipynb does not declare m in its `parameters` cell (it sets label, n): "
        "check the name, or add it to that cell."
    )
