"""Fixtures for the unit tests of template/labdock/ (see helpers.py)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from invoke import Config, MockContext, Result

from tests.rendering import render
from tests.tasks.helpers import ANSWERS, FakeLifeline, labdock, ok

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("rendered") / "unit-demo", **ANSWERS)


@pytest.fixture
def project(rendered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the rendered project, which the package's tasks work on."""
    copy = Path(shutil.copytree(rendered, tmp_path / "unit-demo"))
    (copy / "poetry.lock").unlink(missing_ok=True)  # the shipped lock: tests add theirs (write_lock)
    monkeypatch.setattr(labdock.project, "ROOT", copy)
    # Processes the tasks start beside Docker: Poetry's watcher, the lab's pip helper.
    monkeypatch.setattr(labdock.locking, "lifeline", FakeLifeline())
    monkeypatch.setattr(labdock.agent, "spawn", lambda p, cid: None)
    monkeypatch.setattr(labdock.network, "port_in_use", lambda host, port: False)  # never probe
    # The image matches the project's files unless a test says otherwise (test_image.py tests how
    # that is decided; a missing image still counts as missing).
    real_stale_reason = labdock.image.stale_reason
    monkeypatch.setattr(
        labdock.image,
        "stale_reason",
        lambda p: "there is no image yet" if real_stale_reason(p) == "there is no image yet" else "",
    )
    monkeypatch.setattr(os, "getuid", lambda: 1234, raising=False)
    monkeypatch.setattr(os, "getgid", lambda: 5678, raising=False)
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "REGISTRY_USER", "REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # no current context: local
    # The checkout's names on the engine are the slug's here, so that tests of other modules read
    # plainly (unit-demo:latest); test_project.py tests the real names (and un-patches this).
    monkeypatch.setattr(labdock.project, "login_name", lambda: "tester")
    monkeypatch.setattr(labdock.project, "checkout_name", lambda slug, user, host, folder: slug)
    monkeypatch.setattr(labdock.settings, "ENVIRONMENT", {})
    return copy


@pytest.fixture
def make_ctx(project: Path):
    """make_ctx({pattern: Result or [Result, ...]}, **settings) -> MockContext.

    Commands matching no pattern succeed with empty output. Settings are the rendered
    invoke.yaml's, overlaid with `settings`.
    """
    file_settings = yaml.safe_load((project / "invoke.yaml").read_text())["labdock"]

    def _make(responses: dict[str, Result | list[Result]] | None = None, **settings: object):
        run = {re.compile(pattern): result for pattern, result in (responses or {}).items()}
        run[re.compile("")] = ok()
        config = Config(overrides={"labdock": {**file_settings, **settings}})
        return MockContext(config=config, run=run)

    return _make


@pytest.fixture
def load(project: Path):
    """load(c) -> the Project the tasks see for this context."""
    return lambda c: labdock.project.Project.load(c)


@pytest.fixture
def tensorboard_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorBoard answers on port 6106 (and nothing else does)."""
    monkeypatch.setattr(labdock.network, "url_answers", lambda url: url == "http://127.0.0.1:6106/")
