"""End-to-end fixtures: a real Docker engine (never mocked), a real registry, rendered projects.

The engine is whatever DOCKER_HOST points at; .ci/run starts one. Without an engine these tests
fail (they are never skipped): a suite that silently skips its e2e half proves nothing.
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.harness import FIGURES, Registry, docker
from tests.e2e.remote import DOCKER_HOST as REMOTE_DOCKER_HOST
from tests.e2e.remote import PrivateFolder, check_remote_engine


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("e2e figures")
        for project, figure, value in FIGURES:
            terminalreporter.write_line(f"{project:28} {figure:34} {value}")


@pytest.fixture(scope="session")
def engine() -> str:
    """The engine's version; fails the run when no engine answers."""
    result = docker("version", "--format", "{{.Server.Version}}", check=False)
    if result.returncode != 0:
        pytest.fail(
            f"No Docker engine at DOCKER_HOST={os.environ.get('DOCKER_HOST')}: start one "
            f"(bash .ci/run does): {result.stderr.strip()}"
        )
    return result.stdout.strip()


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def remote_engine(engine) -> str:
    """DOCKER_HOST for the same engine reached over ssh (.ci/engine.sh's sshd_start); fails the
    run when it does not answer there."""
    local_id = docker("info", "--format", "{{.ID}}").stdout.strip()
    assert check_remote_engine() == local_id, "ssh://labdock-remote reaches another engine than DOCKER_HOST"
    return REMOTE_DOCKER_HOST


@pytest.fixture
def private_folder(tmp_path) -> PrivateFolder:
    """A folder the engine cannot see (see tests/e2e/remote.py); commands run in it via .run()."""
    folder = PrivateFolder(tmp_path / "private")
    yield folder
    folder.close()
