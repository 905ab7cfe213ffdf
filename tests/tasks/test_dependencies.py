"""lock, add, remove: one transaction each; the running server gets the change without a restart."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
from unittest.mock import DEFAULT

import pytest

from tests.tasks.helpers import (
    BUILDER,
    COMPOSE_UP,
    POETRY,
    PS,
    RUNTIME,
    args_of,
    call_of,
    exit_of,
    fail,
    labdock,
    matching,
    ok,
    pairs,
    position,
    staging_of,
)

dependencies = labdock.dependencies
EXEC = r"docker exec -i -u 0 "
CID = "c0ffee" * 10 + "abcd"
LOCK_LABEL = r"docker container inspect --format .*lock-sha256"
NOT_FOUND = "Could not find a matching version of package nothing-such\n"


def package(name: str, version: str) -> str:
    digest = hashlib.sha256(f"{name}{version}".encode()).hexdigest()
    return (
        f'[[package]]\nname = "{name}"\nversion = "{version}"\ndescription = ""\noptional = false\n'
        f'python-versions = ">=3.9"\ngroups = ["main"]\n'
        f'files = [\n    {{file = "{name}-{version}-py3-none-any.whl", hash = "sha256:{digest}"}},\n]\n\n'
    )


def lock(*packages: tuple[str, str]) -> str:
    body = "".join(package(name, version) for name, version in packages)
    return body + '[metadata]\nlock-version = "2.1"\npython-versions = ">=3.13,<3.14"\ncontent-hash = "x"\n'


OLD_LOCK = lock(("jupyterlab", "4.5.0"), ("tabulate", "0.9.0"))
NEW_LOCK = lock(("jupyterlab", "4.5.0"), ("rich", "14.1.0"), ("tabulate", "0.9.0"))
# A running server whose image was built from OLD_LOCK.
SERVER = {PS: ok(CID + "\n"), LOCK_LABEL: ok(hashlib.sha256(OLD_LOCK.encode()).hexdigest() + "\n")}


@pytest.fixture
def files(project):
    """The project's pyproject.toml and poetry.lock, as bytes (to check they never half change)."""
    (project / "poetry.lock").write_text(OLD_LOCK)
    return lambda: {name: (project / name).read_bytes() for name in ("pyproject.toml", "poetry.lock")}


def poetry_writes(c, project, new_lock: str = NEW_LOCK, dependency: str = '"rich (>=14.1.0,<15.0.0)"'):
    """What `poetry add/remove --lock` writes to its copy of the files; fails as the mock says."""

    def side_effect(command: str, *args, **kwargs):
        if re.match(POETRY, command):
            folder = staging_of(command)
            text = (folder / "pyproject.toml").read_text()
            (folder / "pyproject.toml").write_text(
                text.replace("dependencies = []", f"dependencies = [{dependency}]")
            )
            (folder / "poetry.lock").write_text(new_lock)
        return DEFAULT

    c.run.side_effect = side_effect


def live_record(project) -> dict:
    return json.loads((project / ".labdock" / "live.json").read_text())


# ----------------------------------------------------------------------------- add


def test_add_reaches_the_running_server_then_rebuilds(make_ctx, project, files, capsys):
    c = make_ctx(
        {
            **SERVER,
            r"docker container inspect --format .*lock-sha256": ok(
                hashlib.sha256(OLD_LOCK.encode()).hexdigest()
            ),
        }
    )
    poetry_writes(c, project)
    dependencies.add(c, "rich")
    assert args_of(c, POETRY)[-1] == "poetry add --lock -- rich"
    install = call_of(c, EXEC)
    assert "LABDOCK_MODE=install" in install.args[0]
    assert install.kwargs["in_stream"].read().startswith("rich==14.1.0 \\\n    --hash=sha256:")  # only rich
    assert position(c, BUILDER) < position(c, POETRY) < position(c, EXEC) < position(c, RUNTIME)
    assert not matching(c, COMPOSE_UP)  # no restart: kernels keep their state
    assert (project / "poetry.lock").read_text() == NEW_LOCK
    assert "rich (>=14.1.0,<15.0.0)" in (project / "pyproject.toml").read_text()
    assert live_record(project) == {"container": CID, "lock": hashlib.sha256(NEW_LOCK.encode()).hexdigest()}
    out = capsys.readouterr().out
    assert re.search(r"Added rich 14\.1\.0 in pyproject\.toml and poetry\.lock \([0-9.]+s\)\.", out)
    assert "The running JupyterLab has it now (installed 1): import it in any kernel, no restart." in out
    assert "Rebuilding the image, so that the next `invoke up` has it too" in out


def test_add_to_a_group(make_ctx, project, files):
    c = make_ctx({PS: ok("")})
    poetry_writes(c, project)
    dependencies.add(c, "pytest-cov>=5", group="dev")
    assert args_of(c, POETRY)[-1] == "poetry add --lock --group dev -- 'pytest-cov>=5'"


def test_add_with_no_server_locks_and_rebuilds(make_ctx, project, files):
    c = make_ctx({PS: ok("")})
    poetry_writes(c, project)
    dependencies.add(c, "rich")
    assert not matching(c, EXEC)
    assert (project / "poetry.lock").read_text() == NEW_LOCK
    assert matching(c, RUNTIME)
    assert not (project / ".labdock" / "live.json").exists()


def test_a_server_on_another_lock_gets_what_it_lacks(make_ctx, project, files):
    """Its lock is not the project's (`invoke lock` without a build): compared with what it has."""
    installed = json.dumps({"jupyterlab": "4.5.0", "tabulate": "0.8.0", "left-over": "1.0"})
    c = make_ctx({**SERVER, r"docker container inspect --format .*lock-sha256": ok("an older lock's digest"),
                  r"docker exec \S+ python -c": ok(installed + "\n")})  # fmt: skip
    poetry_writes(c, project)
    dependencies.add(c, "rich")
    install = call_of(c, EXEC)
    stdin = install.kwargs["in_stream"].read()
    assert [line.split("==")[0] for line in stdin.splitlines() if "==" in line] == ["rich", "tabulate"]
    assert "LABDOCK_REMOVE=left-over" in shlex.split(install.args[0])


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (NOT_FOUND, "Could not find a matching version of package nothing-such"),
        ("Incompatible constraints in requirements of unit-demo (0.1.0):\njupyterlab (<4)\n", "Incompatible"),
    ],
)
def test_a_failed_add_changes_nothing(make_ctx, project, files, stderr, reason):
    before = files()
    c = make_ctx({**SERVER, POETRY: fail(stderr=stderr)})
    poetry_writes(c, project)  # Poetry wrote its copy before failing: never seen by the project
    error = exit_of(lambda: dependencies.add(c, "nothing-such"))
    assert error.message.startswith(f"poetry add nothing-such failed: {reason}")
    assert error.message.endswith("pyproject.toml and poetry.lock are unchanged.")
    assert files() == before
    assert not matching(c, EXEC)  # the server's environment is not touched
    assert not matching(c, RUNTIME)
    assert not list((project / ".labdock").glob("staging-*"))


def test_ctrl_c_during_poetry(make_ctx, project, files):
    before = files()
    c = make_ctx({**SERVER, POETRY: fail(exited=137)})

    def ctrl_c(command, *args, **kwargs):
        if re.match(POETRY, command):
            os.kill(os.getpid(), signal.SIGINT)
        return DEFAULT

    c.run.side_effect = ctrl_c
    error = exit_of(lambda: dependencies.add(c, "rich"))
    assert (error.code, error.message) == (
        130,
        "Interrupted: Poetry was stopped; pyproject.toml and poetry.lock are unchanged.",
    )
    assert labdock.locking.lifeline.cut  # the Poetry container was removed
    assert files() == before
    assert not matching(c, EXEC)


def test_ctrl_c_while_installing_finishes_the_install_and_the_files(make_ctx, project, files):
    c = make_ctx(SERVER)
    poetry_writes(c, project)
    poetry = c.run.side_effect

    def ctrl_c_in_install(command, *args, **kwargs):
        if re.match(EXEC, command):
            os.kill(os.getpid(), signal.SIGINT)  # deferred: the install and the replace finish
        return poetry(command, *args, **kwargs)

    c.run.side_effect = ctrl_c_in_install
    error = exit_of(lambda: dependencies.add(c, "rich"))
    assert error.code == 130
    assert (
        "Interrupted: the change is recorded (and in the running server); the image is not rebuilt"
        in error.message
    )
    assert (project / "poetry.lock").read_text() == NEW_LOCK
    assert not matching(c, RUNTIME)


def test_ctrl_c_during_the_build(make_ctx, project, files):
    c = make_ctx({**SERVER, RUNTIME: fail()})
    poetry_writes(c, project)
    poetry = c.run.side_effect

    def ctrl_c_in_build(command, *args, **kwargs):
        if re.match(RUNTIME, command):
            os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C also stops `docker build`
        return poetry(command, *args, **kwargs)

    c.run.side_effect = ctrl_c_in_build
    error = exit_of(lambda: dependencies.add(c, "rich"))
    assert (error.code, error.message) == (
        130,
        "Interrupted while rebuilding the image: the change is recorded; run `invoke build`.",
    )
    assert (project / "poetry.lock").read_text() == NEW_LOCK


def test_a_failed_install_in_the_server_changes_nothing(make_ctx, project, files):
    before = files()
    c = make_ctx({**SERVER, EXEC: fail(stderr="error: Failed to fetch: https://pypi.org/simple/rich/\n")})
    poetry_writes(c, project)
    error = exit_of(lambda: dependencies.add(c, "rich"))
    assert error.message == (
        "Installing into the running JupyterLab failed "
        "(error: Failed to fetch: https://pypi.org/simple/rich/): "
        "pyproject.toml and poetry.lock are unchanged."
    )
    assert files() == before


def test_a_package_that_builds_from_source_waits_for_the_image(make_ctx, project, files, capsys):
    c = make_ctx({**SERVER, EXEC: fail(stderr="Building source distributions is disabled, but ...")})
    poetry_writes(c, project)
    dependencies.add(c, "rich")
    assert (project / "poetry.lock").read_text() == NEW_LOCK
    assert "It builds from source, which is not done inside the running server" in capsys.readouterr().out
    assert not (project / ".labdock" / "live.json").exists()
    assert matching(c, RUNTIME)


def test_adding_what_is_there_changes_nothing(make_ctx, project, files, capsys):
    before = files()
    c = make_ctx(SERVER)
    dependencies.add(c, "tabulate")  # Poetry leaves both files as they are
    assert files() == before
    assert "Nothing to change" in capsys.readouterr().out
    assert not matching(c, EXEC)
    assert not matching(c, RUNTIME)


def test_missing_uv_is_copied_into_the_server(make_ctx, project, files, monkeypatch):
    copied = []
    monkeypatch.setattr(labdock.live, "copy_tools", lambda p, cid, builder, uv, ca: copied.append((cid, uv)))
    c = make_ctx(
        {
            **SERVER,
            EXEC: [fail(exited=97), ok()],
            r"docker image inspect --format '\{\{\.Id\}\}'": ok("sha256:0123456789abcdef0123\n"),
        }
    )
    poetry_writes(c, project)
    dependencies.add(c, "rich")
    assert copied == [(CID, "/opt/labdock/tools/uv-0123456789abcdef")]
    assert len(matching(c, EXEC)) == 2


# ----------------------------------------------------------------------------- remove


def test_remove(make_ctx, project, files, capsys):
    (project / "poetry.lock").write_text(NEW_LOCK)
    c = make_ctx(
        {
            **SERVER,
            r"docker container inspect --format .*lock-sha256": ok(
                hashlib.sha256(NEW_LOCK.encode()).hexdigest()
            ),
        }
    )
    poetry_writes(c, project, new_lock=OLD_LOCK, dependency="")
    dependencies.remove(c, "rich")
    assert args_of(c, POETRY)[-1] == "poetry remove --lock -- rich"
    install = shlex.split(call_of(c, EXEC).args[0])
    assert {"LABDOCK_REMOVE=rich", "LABDOCK_MODE=none"} <= set(install)
    assert (project / "poetry.lock").read_text() == OLD_LOCK
    out = capsys.readouterr().out
    assert "Removed rich in pyproject.toml and poetry.lock" in out
    assert "kernels that imported it keep it" in out


def test_remove_what_is_not_there(make_ctx, project, files):
    c = make_ctx({POETRY: fail(stderr="The following packages were not found: rich\n")})
    error = exit_of(lambda: dependencies.remove(c, "rich"))
    assert error.message == (
        "poetry remove rich failed: The following packages were not found: rich. "
        "pyproject.toml and poetry.lock are unchanged."
    )


# ----------------------------------------------------------------------------- lock


def test_lock_task(make_ctx, project, files, capsys):
    c = make_ctx()
    dependencies.lock(c)
    assert args_of(c, POETRY)[-1] == "poetry check --lock >/dev/null 2>&1 || poetry lock"
    assert "already matches" in capsys.readouterr().out


def test_lock_passes_mirror_and_ca_bundle(make_ctx, project, tmp_path):
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    c = make_ctx(pypi_mirror="https://user:hunter2@pypi.corp.example/simple", ca_bundle=str(bundle))
    dependencies.lock(c)
    args = args_of(c, POETRY)
    assert {("-e", "PYPI_MIRROR_URL"), ("-v", f"{bundle.resolve()}:/run/secrets/ca_bundle:ro")} <= pairs(args)
    assert "hunter2" not in " ".join(args)  # the mirror URL travels in the environment only
    assert (
        call_of(c, POETRY).kwargs["env"]["PYPI_MIRROR_URL"] == "https://user:hunter2@pypi.corp.example/simple"
    )
