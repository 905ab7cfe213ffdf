"""lock and add: Poetry in a container, rebuild, restart."""

from __future__ import annotations

import pytest

from tests.tasks.helpers import (
    BUILDER,
    COMPOSE_UP,
    POETRY,
    PS,
    RUNNING,
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
    write_lock,
)

dependencies = labdock.dependencies


@pytest.mark.parametrize(("upgrade", "poetry"), [(False, "poetry lock"), (True, "poetry lock --regenerate")])
def test_lock(make_ctx, project, capsys, upgrade, poetry):
    c = make_ctx()
    dependencies.lock(c, upgrade=upgrade)
    assert args_of(c, POETRY) == [
        *("docker", "run", "--rm", "-v", f"{project}:/workspace"),
        *("-v", "unit-demo-poetry-cache:/var/cache/pypoetry"),
        *("unit-demo:builder", "sh", "-c", f"{poetry} && chown 1234:5678 poetry.lock"),
    ]
    assert args_of(c, BUILDER)[4:6] == ["-t", "unit-demo:builder"]
    assert position(c, BUILDER) < position(c, POETRY)
    assert "poetry.lock is up to date" in capsys.readouterr().out


def test_lock_passes_mirror_and_ca_bundle(make_ctx, tmp_path):
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    c = make_ctx(pypi_mirror="https://pypi.corp.example/simple", ca_bundle=str(bundle))
    dependencies.lock(c)
    assert {("-e", "PYPI_MIRROR_URL"), ("-v", f"{bundle.resolve()}:/run/secrets/ca_bundle:ro")} <= pairs(
        args_of(c, POETRY)
    )
    assert call_of(c, POETRY).kwargs["env"]["PYPI_MIRROR_URL"] == "https://pypi.corp.example/simple"


def test_lock_failure(make_ctx):
    c = make_ctx({POETRY: fail("Because unit-demo depends on nothing-such ...")})
    error = exit_of(lambda: dependencies.lock(c))
    assert error.message.startswith("poetry lock failed")
    assert "INVOKE_LABDOCK_PYPI_MIRROR" in error.message


@pytest.mark.parametrize(
    ("group", "poetry"),
    [("", "poetry add --lock 'polars>=1.0'"), ("dev", "poetry add --lock 'polars>=1.0' --group dev")],
)
def test_add(make_ctx, project, group, poetry):
    write_lock(project)
    c = make_ctx()
    dependencies.add(c, "polars>=1.0", group=group)
    assert args_of(c, POETRY)[-1] == f"{poetry} && chown 1234:5678 pyproject.toml poetry.lock"
    assert position(c, POETRY) < position(c, RUNTIME)


@pytest.mark.parametrize(("restart", "restarted"), [(True, True), (False, False)])
def test_add_restarts_a_running_server_on_the_new_image(make_ctx, project, restart, restarted):
    write_lock(project)
    c = make_ctx(RUNNING)
    dependencies.add(c, "tqdm", restart=restart)
    assert bool(matching(c, COMPOSE_UP)) is restarted
    if restarted:
        assert position(c, POETRY) < position(c, RUNTIME) < position(c, COMPOSE_UP)


def test_add_leaves_a_stopped_server_stopped(make_ctx, project):
    write_lock(project)
    c = make_ctx({PS: ok("")})
    dependencies.add(c, "tqdm")
    assert not matching(c, COMPOSE_UP)


def test_add_failure(make_ctx, project):
    write_lock(project)
    c = make_ctx({POETRY: fail()})
    error = exit_of(lambda: dependencies.add(c, "nothing-such"))
    assert error.message.startswith("poetry add nothing-such failed")
    assert not matching(c, RUNTIME)
