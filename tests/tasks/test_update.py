"""update: copier update, relock when pyproject.toml changed, uncommitted changes, conflicts."""

from __future__ import annotations

import shutil

import pytest

from tests.tasks.helpers import (
    POETRY,
    args_of,
    commands,
    exit_of,
    fail,
    labdock,
    matching,
    ok,
    on_command,
    pairs,
    position,
)

update = labdock.update


COPIER_UPDATE = r"copier update"


GIT_STATUS = r"git .* status --porcelain"


GIT_GREP = r"git .* grep "


@pytest.fixture
def with_copier(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")


@pytest.mark.parametrize(("vcs_ref", "extra"), [("", []), ("v2.0.0", ["--vcs-ref", "v2.0.0"])])
def test_update_runs_copier(make_ctx, with_copier, capsys, vcs_ref, extra):
    c = make_ctx({GIT_GREP: fail()})  # git grep exits 1: no conflict markers
    update.update(c, vcs_ref=vcs_ref)
    assert args_of(c, COPIER_UPDATE) == [
        "copier",
        "update",
        "--defaults",
        "--trust",
        "--conflict",
        "inline",
        *extra,
    ]
    assert position(c, GIT_STATUS) < position(c, COPIER_UPDATE) < position(c, GIT_GREP)
    assert not matching(c, r"docker ")  # pyproject.toml unchanged: no relock
    assert "Updated: review with `git diff`" in capsys.readouterr().out


def test_update_relocks_when_pyproject_changes(make_ctx, project, with_copier):
    c = make_ctx({GIT_GREP: fail()})
    pyproject = project / "pyproject.toml"
    on_command(c, COPIER_UPDATE, lambda: pyproject.write_text(pyproject.read_text() + "\n# updated\n"))
    update.update(c)
    assert position(c, COPIER_UPDATE) < position(c, POETRY)


def test_update_without_copier(make_ctx, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    c = make_ctx()
    error = exit_of(lambda: update.update(c))
    assert "Copier is not installed" in error.message
    assert "pipx install copier" in error.message
    assert commands(c) == []


def test_update_with_uncommitted_changes(make_ctx, with_copier):
    c = make_ctx({GIT_STATUS: ok(" M notebooks/getting-started.ipynb\n")})
    error = exit_of(lambda: update.update(c))
    assert "uncommitted changes: commit them first" in error.message
    assert not matching(c, COPIER_UPDATE)


def test_update_conflicts(make_ctx, project, with_copier):
    c = make_ctx({GIT_GREP: ok("pyproject.toml\ntasks.py\n")})
    pyproject = project / "pyproject.toml"
    on_command(c, COPIER_UPDATE, lambda: pyproject.write_text(pyproject.read_text() + "\n# updated\n"))
    error = exit_of(lambda: update.update(c))
    assert "conflicts with your edits in: pyproject.toml, tasks.py" in error.message
    assert "<<<<<<<" in error.message
    assert ("-e", "^<<<<<<< ") in pairs(args_of(c, GIT_GREP))
    assert not matching(c, POETRY)  # no relock before the conflicts are resolved


GIT_FIRST_ANSWERS = r"git .* log --diff-filter=A"
GIT_SHOW_ANSWERS = r"git .* show abc123:.copier-answers.yml"


def test_update_says_which_template_it_trusts(make_ctx, project, with_copier, capsys):
    source = labdock.update.template_source((project / ".copier-answers.yml").read_text())
    assert source  # the rendered answers name the template
    c = make_ctx({GIT_GREP: fail()})
    update.update(c)
    assert f"Updating from the template at {source}; its tasks and migrations run" in capsys.readouterr().out


def test_update_refuses_a_template_source_changed_since_the_project_was_made(make_ctx, project, with_copier):
    answers = project / ".copier-answers.yml"
    original = answers.read_text()
    evil = "https://example.com/evil-template.git"
    answers.write_text(original.replace(labdock.update.template_source(original), evil))
    first = {GIT_FIRST_ANSWERS: ok("abc123\n"), GIT_SHOW_ANSWERS: ok(original), GIT_GREP: fail()}
    c = make_ctx(first)
    error = exit_of(lambda: update.update(c))
    assert f"now names the template {evil}, but this project came from" in error.message
    assert f"`invoke update --src {evil}`" in error.message
    assert not matching(c, COPIER_UPDATE)
    trusting = make_ctx(first)
    update.update(trusting, src=evil)  # named explicitly: the user's decision
    assert matching(trusting, COPIER_UPDATE)
