"""Test 8 of the update suite: a project updated with `invoke update` still builds and starts.

A copy of this checkout is released as 0.1.0; a project is rendered from it, locked and committed;
the template then releases 0.2.0 with a new dev dependency. `invoke update` runs copier update,
sees that pyproject.toml changed and relocks; `invoke up` builds the updated image and starts it.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.e2e.harness import Project, free_port, record, remove_project_state
from tests.test_update import commit_all, copy_working_tree, git


def test_updated_project_relocks_builds_and_starts(engine, tmp_path):
    template = tmp_path / "labdock"
    copy_working_tree(template)
    git(template, "init", "--quiet")
    commit_all(template, "labdock 0.1.0")
    git(template, "tag", "0.1.0")

    root = tmp_path / "project"
    answers = {
        "project_name": "Updated Lab",
        "stack": "minimal",
        "python_version": "3.11",
        "jupyter_port": str(free_port()),
    }
    data = [f"--data={key}={value}" for key, value in answers.items()]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "copier",
            "copy",
            "--trust",
            "--defaults",
            "--vcs-ref=0.1.0",
            "--quiet",
            *data,
            str(template),
            str(root),
        ],
        check=True,
    )
    answers.update(project_slug="updated-lab", package_name="updated_lab")
    project = Project(root, answers)
    try:
        project.invoke("lock")
        commit_all(root, "Project from labdock 0.1.0, locked")

        pyproject = template / "template" / "pyproject.toml.jinja"
        pyproject.write_text(
            re.sub(
                r'^pytest = ".*"$',
                '\\g<0>\npytest-cov = ">=6.0"',
                pyproject.read_text(),
                count=1,
                flags=re.MULTILINE,
            )
        )
        commit_all(template, "labdock 0.2.0: pytest-cov in the dev group")
        git(template, "tag", "0.2.0")

        result = project.invoke("update")
        assert "The update changed pyproject.toml: relocking." in result.stdout
        assert "_commit: 0.2.0" in (root / ".copier-answers.yml").read_text()
        assert "pytest-cov" in (root / "poetry.lock").read_text()
        up = project.invoke("up")
        assert "JupyterLab is healthy" in up.stdout
        project.invoke("exec", "python -c 'import pytest_cov'")
        record("update", "invoke update (relock) + up", f"{result.seconds:.1f} s + {up.seconds:.1f} s")
    finally:
        remove_project_state(project)
