"""Poetry in a container on a copy of the files; the builder stage; why Poetry failed; what a lock
installs (checked against `poetry export` itself)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from unittest.mock import DEFAULT

import pytest
from invoke import Result

from tests.tasks.helpers import (
    BUILDER,
    CHECK_LOCK,
    IMAGE_INSPECT,
    POETRY,
    RUNTIME,
    args_of,
    exit_of,
    fail,
    labdock,
    matching,
    ok,
    on_poetry,
    pairs,
    write_lock,
)

locking = labdock.locking


# ----------------------------------------------------------------------------- the builder stage


def test_the_builder_is_built_only_when_its_inputs_changed(make_ctx, project, load):
    inputs = locking.builder_inputs(load(make_ctx()))
    c = make_ctx({IMAGE_INSPECT: ok(inputs + "\n")})
    assert locking.ensure_builder(load(c)) == "unit-demo:builder"
    assert not matching(c, BUILDER)
    c = make_ctx({IMAGE_INSPECT: ok("an older digest\n")})
    locking.ensure_builder(load(c))
    assert ("--label", f"dev.labdock.builder-inputs={inputs}") in pairs(args_of(c, BUILDER))


@pytest.mark.parametrize(("name", "changes"), [("Dockerfile", True), ("docker/pip", True),
    ("apt-packages.txt", True), ("pyproject.toml", False), ("notebooks/new.ipynb", False)])  # fmt: skip
def test_builder_inputs(make_ctx, project, load, name, changes):
    before = locking.builder_inputs(load(make_ctx()))
    path = project / name
    path.write_text(path.read_text() + "\n# edited\n" if path.exists() else "{}")
    assert (locking.builder_inputs(load(make_ctx())) != before) is changes


# ----------------------------------------------------------------------------- Poetry's container


def test_poetry_runs_in_a_named_container_on_a_copy(make_ctx, project, load):
    c = make_ctx()
    with labdock.transaction.Interrupts() as interrupts, labdock.transaction.staging(project) as folder:
        locking.poetry(load(c), folder, "poetry lock", interrupts, builder="unit-demo:builder")
    args = args_of(c, POETRY)
    name = args[args.index("--name") + 1]
    assert name.startswith("unit-demo-poetry-")
    assert ("-v", f"{folder}:/workspace") in pairs(args)
    assert ("-v", "unit-demo-poetry-cache:/var/cache/pypoetry") in pairs(args)
    assert f"{project}:" not in " ".join(args)  # never the project folder itself
    assert locking.lifeline.watched == [name]  # watched while it runs
    assert locking.lifeline.cut == []


def test_ctrl_c_removes_the_poetry_container(make_ctx, project, load):
    c = make_ctx({POETRY: fail(exited=137)})

    def ctrl_c(command, *args, **kwargs):
        if "poetry lock" in command:
            os.kill(os.getpid(), signal.SIGINT)  # Invoke would forward it and wait
        return DEFAULT

    c.run.side_effect = ctrl_c
    error = exit_of(lambda: locking.lock(load(c)))
    assert error.code == 130
    assert error.message == "Interrupted: Poetry was stopped; pyproject.toml and poetry.lock are unchanged."
    assert locking.lifeline.cut == locking.lifeline.watched != []
    assert not (project / "poetry.lock").exists()


def test_the_watcher_removes_the_container_when_the_task_dies(tmp_path):
    """The real watcher: it runs `docker rm -f NAME` when its stdin ends without "done"."""
    fake = tmp_path / "docker"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    for ending, expected in ((b"done", ""), (b"", "rm -f unit-demo-poetry-1\n")):
        (tmp_path / "calls").write_text("")
        watcher = subprocess.Popen([sys.executable, "-c", locking.WATCHER, "unit-demo-poetry-1"],
                                   stdin=subprocess.PIPE, env=env)  # fmt: skip
        watcher.communicate(ending, timeout=30)
        assert (tmp_path / "calls").read_text() == expected


# ----------------------------------------------------------------------------- why Poetry failed

NOT_FOUND = "Using version ^1 for x\n\nCould not find a matching version of package nothing-such\n"
CONFLICT = (
    "Incompatible constraints in requirements of unit-demo (0.1.0):\njupyterlab (<4)\njupyterlab (>=4.4,<5)\n"
)
SOLVER = (
    "Because no versions of foo match >2\n"
    " and foo (2.0) depends on numpy (<1), foo (>=2) requires numpy (<1).\n"
    "So, because unit-demo depends on both numpy (>=2.1) and foo (>=2), version solving failed.\n"
)
OFFLINE = "All attempts to connect to pypi.org failed.\n\nProbable Causes:\n - the server is not responding\n"


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (NOT_FOUND, "poetry add nothing-such failed: Could not find a matching version of package "
         "nothing-such (check the name and the version on PyPI). "
         "pyproject.toml and poetry.lock are unchanged."),
        (CONFLICT, "poetry add nothing-such failed: Incompatible constraints in requirements of unit-demo "
         "(0.1.0): jupyterlab (<4) jupyterlab (>=4.4,<5). pyproject.toml and poetry.lock are unchanged."),
        (SOLVER, "poetry add nothing-such failed: Because no versions of foo match >2 and foo (2.0) depends "
         "on numpy (<1), foo (>=2) requires numpy (<1). So, because unit-demo depends on both numpy (>=2.1) "
         "and foo (>=2), version solving failed.. pyproject.toml and poetry.lock are unchanged."),
    ],
)  # fmt: skip
def test_explain_gives_poetrys_own_reason(stderr, expected):
    progress = "Updating dependencies\nResolving dependencies...\n"
    message = locking.explain(Result(stdout=progress, stderr=stderr, exited=1), "poetry add nothing-such")
    assert message == expected
    assert "MIRROR" not in message


@pytest.mark.parametrize(
    "stderr", [OFFLINE, "SSLError(CERTIFICATE_VERIFY_FAILED)", "Package jupyter (1.1.1) not found."]
)
def test_explain_gives_the_mirror_hint_only_for_index_failures(stderr):
    message = locking.explain(Result(stderr=stderr, exited=1), "poetry lock")
    assert message.startswith("poetry lock failed: the package index did not answer as expected")
    assert "INVOKE_LABDOCK_PYPI_MIRROR" in message
    assert message.endswith("(pyproject.toml and poetry.lock are unchanged.)")


def test_explain_shortens_a_long_explanation():
    message = locking.explain(Result(stderr="Because " + "x depends on y " * 100, exited=1), "poetry lock")
    assert "(Poetry's full explanation above)" in message
    assert len(message) < 450


# ----------------------------------------------------------------------------- conflict markers


@pytest.mark.parametrize(("name", "cause"), [
    ("poetry.lock", "poetry.lock has a git conflict marker at line 2: take one side (`git checkout --ours "
                    "poetry.lock` or `--theirs`), then run `invoke lock`."),
    ("pyproject.toml", "pyproject.toml has a git conflict marker at line 2: edit it to keep the lines you "
                       "want (delete the markers), then run `invoke lock`."),
])  # fmt: skip
def test_conflict_markers_name_the_file_and_the_fix(make_ctx, project, load, name, cause):
    write_lock(project)
    c = make_ctx({RUNTIME: fail()})  # the build's `poetry export` refuses the lock
    p = load(c)  # before the markers: loading reads pyproject.toml (and refuses them too)
    path = project / name
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "<<<<<<< HEAD\n" + "".join(lines[1:]) + "=======\n>>>>>>> main\n")
    assert locking.conflict_problem(p) == cause
    for task in (labdock.dependencies.lock, labdock.dependencies.add, labdock.image.build):
        assert (
            exit_of(lambda task=task: task(c, *(["rich"] if task.__name__ == "add" else []))).message == cause
        )
    assert not matching(c, POETRY)
    assert not matching(c, CHECK_LOCK)  # no Poetry needed to tell


def test_lock_problem_for_a_broken_lock(make_ctx, project, load):
    write_lock(project)
    c = make_ctx({CHECK_LOCK: fail(stderr="Error: poetry.lock is not a valid TOML file.")})
    assert locking.lock_problem(load(c)) == (
        "poetry.lock is not a valid lock file (Error: poetry.lock is not a valid TOML file.): "
        "run `invoke lock`."
    )


# ----------------------------------------------------------------------------- invoke lock


def test_lock_checks_before_resolving(make_ctx, project, load, capsys):
    write_lock(project)
    c = make_ctx()
    locking.lock(load(c))
    assert args_of(c, POETRY)[-1] == "poetry check --lock >/dev/null 2>&1 || poetry lock"
    assert "poetry.lock already matches pyproject.toml" in capsys.readouterr().out
    assert (project / "poetry.lock").read_text() == "# poetry.lock of the unit tests\n"


def test_lock_replaces_the_lock_written_by_poetry(make_ctx, project, load, capsys):
    c = make_ctx()
    on_poetry(c, lambda folder: (folder / "poetry.lock").write_text("# resolved\n"))
    locking.lock(load(c), upgrade=True)
    assert args_of(c, POETRY)[-1] == "poetry lock --regenerate"
    assert (project / "poetry.lock").read_text() == "# resolved\n"
    assert "poetry.lock is up to date" in capsys.readouterr().out
    assert not list((project / ".labdock").glob("staging-*"))


def test_a_failed_lock_changes_nothing(make_ctx, project, load):
    write_lock(project)
    before = {name: (project / name).read_bytes() for name in ("pyproject.toml", "poetry.lock")}
    c = make_ctx({POETRY: fail(stderr=CONFLICT)})
    on_poetry(c, lambda folder: (folder / "poetry.lock").write_text("# half written\n"))
    error = exit_of(lambda: locking.lock(load(c)))
    assert error.message.startswith("poetry lock failed: Incompatible constraints")
    assert {name: (project / name).read_bytes() for name in before} == before


# ----------------------------------------------------------------------------- what a lock installs


def package(name: str, version: str, markers=None, optional=False, source=None) -> dict:
    digest = hashlib.sha256(f"{name}{version}".encode()).hexdigest()
    wheel = {"file": f"{name}-{version}-py3-none-any.whl", "hash": f"sha256:{digest}"}
    data = {"name": name, "version": version, "optional": optional, "groups": ["main"], "files": [wheel]}
    if markers is not None:
        data["markers"] = markers
    if source:
        data["source"] = source
    return data


def test_changes_between_two_locks():
    old = {"package": [package("a", "1.0"), package("b", "1.0"), package("Gone_Pkg", "2.0")]}
    new = {"package": [package("a", "1.0"), package("b", "1.1"), package("new.pkg", "0.1")]}
    assert locking.changes(old, new) == (["b", "new-pkg"], ["gone-pkg"])
    assert locking.changes(new, new) == ([], [])
    rebuilt = {"package": [package("a", "1.0") | {"files": []}]}  # same version, other files
    assert locking.changes({"package": [package("a", "1.0")]}, rebuilt) == (["a"], [])


def test_requirements_as_poetry_export_writes_them():
    lock = {"package": [
        package("tabulate", "0.10.0"),
        package("colorama", "0.4.6", markers='sys_platform == "win32"'),
        package("appnope", "1.0", markers={"main": 'sys_platform == "darwin"', "dev": 'os_name == "posix"'}),
        package("either", "1.0", markers={"main": "", "dev": 'os_name == "nt"'}),
        package("extra-only", "1.0", optional=True),
    ]}  # fmt: skip
    text = locking.requirements(lock)
    digest = hashlib.sha256(b"tabulate0.10.0").hexdigest()
    assert f"tabulate==0.10.0 \\\n    --hash=sha256:{digest}\n" in text
    assert 'colorama==0.4.6 ; sys_platform == "win32" \\\n' in text
    assert 'appnope==1.0 ; (sys_platform == "darwin") or (os_name == "posix") \\\n' in text
    assert "either==1.0 \\\n" in text
    assert "extra-only" not in text
    assert locking.requirements(lock, ["tabulate"]).startswith("tabulate==0.10.0")


def test_requirements_name_the_extra_index_of_a_package():
    source = {"type": "legacy", "url": "https://download.pytorch.org/whl/cpu", "reference": "pytorch-cpu"}
    lock = {"package": [package("torch", "2.6.0+cpu", source=source)]}
    assert locking.requirements(lock).startswith(
        "--extra-index-url https://download.pytorch.org/whl/cpu\ntorch=="
    )


def test_requirements_refuse_what_cannot_be_installed_by_hash():
    lock = {
        "package": [package("mylib", "0.1", source={"type": "git", "url": "https://example.com/mylib.git"})]
    }
    assert "git source" in exit_of(lambda: locking.requirements(lock)).message


def test_requirements_match_poetry_export(rendered, tmp_path):
    """The shipped lock of the rendered project: the same packages, versions, hashes and
    platforms as `poetry export --with` every non-optional group (what the runtime image installs)."""
    from packaging.markers import Marker

    project = Path(shutil.copytree(rendered, tmp_path / "export"))
    poetry = Path(sys.executable).with_name("poetry")
    groups = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["poetry"]["group"]
    default = ",".join(name for name, group in groups.items() if not group.get("optional"))
    exported = subprocess.run([poetry, "export", "--with", default], cwd=project,
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    ours = locking.requirements(tomllib.loads((project / "poetry.lock").read_text()))
    linux = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
             "implementation_name": "cpython", "python_version": "3.13",
             "python_full_version": "3.13.5"}  # fmt: skip

    def installed(text: str) -> dict[str, tuple[str, frozenset]]:
        found = {}
        for entry in text.replace("\\\n", " ").splitlines():
            if not entry.strip() or entry.startswith("--"):
                continue
            requirement, _, rest = entry.partition(" --hash=")
            pin, _, marker = requirement.partition(";")
            if marker.strip() and not Marker(marker.strip()).evaluate(linux):
                continue
            name, version = pin.strip().split("==")
            hashes = frozenset(part.strip() for part in ("--hash=" + rest).split("--hash=") if part.strip())
            found[locking.normalize(name)] = (version, hashes)
        return found

    assert installed(ours) == installed(exported)
    assert len(installed(ours)) > 50


def test_the_optional_hub_group_is_not_the_runtime_images():
    """jupyterhub and what only it needs are locked (group hub) but never installed into the
    server `invoke up` runs; a package the hub shares with the lab stays."""
    lock = {
        "package": [
            {"name": "jupyterhub", "version": "6.1.1", "groups": ["hub"]},
            {"name": "SQLAlchemy", "version": "2.0.0", "groups": ["hub"]},
            {"name": "tornado", "version": "6.5", "groups": ["hub", "lab"]},
            {"name": "numpy", "version": "2.3", "groups": ["lab"]},
        ]
    }
    assert sorted(locking._installed(lock)) == ["numpy", "tornado"]
