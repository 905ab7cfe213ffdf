"""End-to-end fixtures: a real Docker engine (never mocked), a real registry, rendered projects.

The engine is whatever DOCKER_HOST points at; .ci/run starts one. Without an engine these tests
fail (they are never skipped): a suite that silently skips its e2e half proves nothing.
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.harness import FIGURES, Registry, docker


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
