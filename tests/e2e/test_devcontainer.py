"""The generated devcontainer, brought up by the devcontainer CLI (what VS Code runs) on a real engine.

The project is fresh: no lock, no image, no .env. `devcontainer up` runs the initializeCommand
(`invoke prepare`) on the host, which must make it startable; the container must be the project's
JupyterLab service (same image, mount and user as `invoke up`), with invoke.yaml's settings even
though invoke does not start it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
import requests
import yaml

from tests.e2e.harness import (
    Project,
    checkout_name,
    docker,
    free_port,
    new_project,
    read_token,
    record,
    remove_project_state,
)


def devcontainer(subcommand: str, *args: str, root) -> subprocess.CompletedProcess:
    cli = shutil.which("devcontainer")
    assert cli, "the devcontainer CLI is not on PATH: .ci/engine.sh's install_devcontainer_cli installs it"
    argv = [cli, subcommand, "--workspace-folder", str(root), *args]
    result = subprocess.run(argv, capture_output=True, text=True)
    print(
        f"$ devcontainer {subcommand} {' '.join(args)} (exit {result.returncode})",
        result.stdout[-3000:],
        result.stderr[-3000:],
    )
    return result


@pytest.fixture(scope="module")
def project(engine, tmp_path_factory) -> Project:
    folder = tmp_path_factory.mktemp("devcontainer")
    proj = new_project(folder, project_name="Dev Box", stack="minimal", python_version="3.11")
    # A port changed in invoke.yaml after rendering: only invoke knows it, unless it reaches .env.
    config = yaml.safe_load((proj.root / "invoke.yaml").read_text())
    config["labdock"]["port"] = proj.answers["jupyter_port"] = free_port()
    (proj.root / "invoke.yaml").write_text(yaml.safe_dump(config))
    yield proj
    remove_project_state(proj)


def test_the_reference_implementation_reads_the_configuration(project):
    result = devcontainer("read-configuration", root=project.root)
    assert result.returncode == 0, result.stderr[-3000:]
    configuration = json.loads(result.stdout)["configuration"]
    assert (configuration["service"], configuration["workspaceFolder"]) == ("lab", "/workspace")
    assert configuration["dockerComposeFile"] == ["../compose.yaml"]


def test_devcontainer_up_on_a_fresh_clone(project):
    started = time.monotonic()
    result = devcontainer("up", root=project.root)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["outcome"] == "success", outcome
    record("devcontainer", "devcontainer up on a fresh project (prepare: lock + build)", f"{seconds:.1f} s")
    labels = json.loads(docker("inspect", outcome["containerId"]).stdout)[0]["Config"]["Labels"]
    assert labels["com.docker.compose.project"] == checkout_name(project.root)  # invoke's name for it
    assert labels["com.docker.compose.service"] == "lab"  # the service `invoke up` runs


def test_it_is_the_projects_jupyterlab_with_its_settings(project):
    port, token = project.answers["jupyter_port"], read_token(project.root)
    url, auth = f"http://127.0.0.1:{port}/api/status", {"Authorization": f"token {token}"}
    deadline = time.monotonic() + 90  # `devcontainer up` returns once the container runs
    while True:
        try:
            response = requests.get(url, headers=auth, timeout=5)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, f"nothing answers on invoke.yaml's port {port}"
            time.sleep(0.5)
    assert response.status_code == 200  # on invoke.yaml's port, which only .env told compose
    assert f"127.0.0.1:{port}/lab?token=" in project.invoke("url").stdout  # invoke sees the same container


def test_code_runs_in_it_as_the_host_user(project):
    probe = "import dev_box, jupyterlab, os, sys; print(os.getuid(), sys.prefix)"
    result = devcontainer("exec", "python", "-c", probe, root=project.root)
    assert result.returncode == 0, result.stderr
    uid, prefix = result.stdout.split()[-2:]
    assert (int(uid), prefix) == (os.getuid(), "/opt/venv")
    made = devcontainer("exec", "touch", "/workspace/notebooks/from-vscode.txt", root=project.root)
    assert made.returncode == 0, made.stderr
    created = project.root / "notebooks" / "from-vscode.txt"
    assert created.stat().st_uid == os.getuid()
    record("devcontainer", "exec: uid, interpreter", f"{uid}, {prefix}")
