"""The devcontainer of a gpu project gets the same GPU request as `invoke up`, as the devcontainer
CLI reads it: it merges compose.yaml with the compose.gpu.yaml the tasks write (gpu.py), under
the checkout's compose project name from .env. No GPU here, so nothing is started: the CLI's
`read-configuration --include-merged-configuration` runs `docker compose ... config`, and its
trace log shows what Compose would start."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.rendering import render
from tests.standalone import load

gpu = load("gpu")


def devcontainer_cli() -> str:
    found = shutil.which("devcontainer")
    if not found:
        pytest.fail("The devcontainer CLI is not on PATH (.ci/run installs it; npm i @devcontainers/cli)")
    return found


def compose_config_in_log(log: str) -> dict:
    """The `docker compose ... config` output the CLI logged (its first line carries the timestamp)."""
    pattern = r"Stop \([0-9]+ ms\): Run: docker compose ([^\n]*) config\n\[[^\]]+\] (.*?)(?=^\[20|\Z)"
    match = re.search(pattern, log, re.S | re.M)
    assert match, log[-3000:]
    return {"args": match.group(1), "config": yaml.safe_load(match.group(2))}


def test_the_devcontainer_cli_merges_the_gpu_request(engine, tmp_path):
    root = render(tmp_path / "project", project_name="Gpu Devcontainer Alpha", gpu="nvidia", stack="minimal")
    name = "gpu-devcontainer-alpha-me-0123abcd"
    # What `invoke prepare` (the devcontainer's initializeCommand) writes; a local stand-in image
    # for the CLI's image inspection, as the real one needs a lock and a build.
    (root / ".env").write_text(
        f"LABDOCK_TOKEN={'t' * 64}\nLABDOCK_PROJECT={name}\nLABDOCK_IMAGE=python:3.13-slim\n"
    )
    (root / "compose.gpu.yaml").write_text(gpu.override_yaml(gpu.selection("nvidia", "0,1")))
    result = subprocess.run(
        [
            *(devcontainer_cli(), "read-configuration", "--workspace-folder", str(root)),
            *("--include-merged-configuration", "--log-level", "trace"),
        ],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    read = json.loads(result.stdout)
    assert read["configuration"]["dockerComposeFile"] == ["../compose.yaml", "../compose.gpu.yaml"]
    logged = compose_config_in_log(result.stderr)
    assert f"-f {Path(root, 'compose.gpu.yaml')}" in logged["args"]
    assert logged["config"]["name"] == name  # the checkout's project: VS Code joins invoke's container
    (request,) = logged["config"]["services"]["lab"]["deploy"]["resources"]["reservations"]["devices"]
    assert request["device_ids"] == ["0", "1"] and "count" not in request
    assert request["capabilities"] == ["gpu"]
