"""The team hub as rendered: Zero to JupyterHub values against the chart's schema, the hub's files.

Helm merges user values over the chart's defaults (maps merged key by key, lists and scalars
replaced, null deleting a key) and refuses the result if it breaks values.schema.json. The chart's
schema and defaults are fixtures (../shared/fixtures/z2jh, see its README); the values come from
`invoke helm`, run in the rendered project as a user would (it needs no engine). No cluster or
Helm binary is involved: what the schema cannot see is not checked here.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest
import yaml

from tests.rendering import render
from tests.tasks.helpers import labdock
from tests.test_render import run_in, tool

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "z2jh"

PROJECTS = {
    "defaults": {},
    "gpu": {"project_name": "Vision Lab", "gpu": "nvidia", "cpu_limit": "4", "memory_limit": "12g"},
    "registry": {"project_name": "Churn 2025", "registry": "ghcr.io/acme", "memory_limit": "1.5g"},
}


@pytest.fixture(scope="session")
def chart() -> tuple[dict, dict]:
    """The chart's defaults and its schema."""
    assert FIXTURES.is_dir(), f"The Zero to JupyterHub fixtures are missing: expected {FIXTURES}"
    defaults = yaml.safe_load((FIXTURES / "values.yaml").read_text())
    schema = yaml.safe_load((FIXTURES / "values.schema.yaml").read_text())
    return defaults, schema


@pytest.fixture(scope="module", params=list(PROJECTS), ids=str)
def project(request, tmp_path_factory) -> tuple[Path, dict]:
    root = render(tmp_path_factory.mktemp("z2jh") / "p", **PROJECTS[request.param])
    settings = yaml.safe_load((root / "invoke.yaml").read_text())["labdock"]
    return root, settings


def hub_module(root: Path) -> ModuleType:
    """labdock/hub.py as shipped (projects get template/labdock/ verbatim)."""
    assert (root / "labdock" / "hub.py").read_bytes() == (
        REPO / "template" / "labdock" / "hub.py"
    ).read_bytes()
    return labdock.hub


def invoke_helm(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("INVOKE_LABDOCK_")}
    return subprocess.run(
        [sys.executable, "-m", "invoke", "helm", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**clean, **env},
    )


def helm_merge(defaults: dict, overrides: dict) -> dict:
    """Values as Helm computes them: maps merged recursively, anything else replaced, null deletes."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate(values: dict, chart: tuple[dict, dict]) -> None:
    defaults, schema = chart
    validator = jsonschema.validators.validator_for(schema)(schema)
    validator.validate(helm_merge(defaults, values))


def values_for(root: Path, registry: str = "") -> dict:
    """The values `invoke helm --tag v0.1.0` writes in the project, read back as Helm reads them."""
    env = {"INVOKE_LABDOCK_REGISTRY": registry} if registry else {}
    result = invoke_helm(root, "--tag", "v0.1.0", **env)
    if result.returncode:
        raise ValueError(result.stderr.strip())
    assert "helm upgrade --install" in result.stdout
    return yaml.safe_load((root / "kubernetes" / "z2jh-values.yaml").read_text())


def test_the_merge_follows_helm():
    merged = helm_merge({"a": {"b": 1, "c": [1, 2]}, "d": 1, "e": 2}, {"a": {"c": [3]}, "d": None, "f": {}})
    assert merged == {"a": {"b": 1, "c": [3]}, "e": 2, "f": {}}


def test_chart_defaults_pass_their_own_schema(chart):
    validate({}, chart)


def test_values_pass_the_charts_schema(project, chart):
    root, settings = project
    registry = settings["registry"] or "ghcr.io/example"  # default answers: given at run time
    values = values_for(root, registry=registry)
    slug = tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]
    validate(values, chart)
    singleuser = values["singleuser"]
    assert singleuser["image"] == {
        "name": f"{registry}/{slug}",
        "tag": "0.1.0",
        "pullPolicy": "IfNotPresent",
    }
    assert singleuser["cmd"] == "jupyterhub-singleuser"
    assert singleuser["storage"]["homeMountPath"] == "/home/jovyan"
    assert values["cull"]["enabled"] is True
    if settings["gpu"] == "nvidia":
        gpu_profile = singleuser["profileList"][1]["kubespawner_override"]
        assert gpu_profile["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
        assert singleuser["cpu"] == {"limit": 4.0} and singleuser["memory"] == {"limit": "12G"}
    else:
        assert "profileList" not in singleuser


def test_default_answers_need_a_registry(tmp_path):
    root = render(tmp_path / "p")
    settings = yaml.safe_load((root / "invoke.yaml").read_text())["labdock"]
    assert settings["registry"] == ""
    with pytest.raises(ValueError, match=r"set labdock\.registry"):
        values_for(root)


@pytest.mark.parametrize(
    ("path", "wrong"),
    [
        (("cull", "timeout"), "3600"),  # a string where the schema wants an integer
        (("singleuser", "cpu", "limit"), "4"),  # a string where it wants a number
        (("singleuser", "image", "tagg"), "typo"),  # a key the chart does not know
        (("singleuser", "storage", "type"), None),  # a required key deleted
    ],
)
def test_a_wrong_value_fails_the_schema(chart, tmp_path, path, wrong):
    root = render(tmp_path / "p", registry="ghcr.io/acme", cpu_limit="2")
    values = values_for(root)
    validate(values, chart)  # right as generated
    *parents, last = path
    node = values
    for key in parents:
        node = node[key]
    node[last] = wrong
    with pytest.raises(jsonschema.ValidationError):
        validate(values, chart)


# ----------------------------------------------------------------------------- the hub's files


def test_hub_dockerfile_passes_hadolint(project):
    root, _ = project
    result = run_in(root / "hub", tool("hadolint"), "--failure-threshold", "error", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hub_compose_names_everything_after_the_prefix(project):
    root, _ = project
    hub = hub_module(root)
    slug = tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]
    prefix = f"{slug}-0f3a9c"
    env = hub.hub_environment(
        prefix=prefix, image=f"{slug}:singleuser", hub_image="hub:latest", cpus="2", memory="4g"
    )
    command = [tool("docker-compose"), *hub.compose_command(prefix, "config", "--format", "json")[2:]]
    result = subprocess.run(
        command, cwd=root, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **env}
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    names = hub.resource_names(prefix)
    assert config["name"] == names["project"]
    assert config["networks"]["hub"]["name"] == names["network"]
    assert config["volumes"]["hub-data"]["name"] == names["hub_volume"]
    service = config["services"]["hub"]
    assert service["ports"][0]["host_ip"] == "127.0.0.1"
    assert service["ports"][0]["published"] == "8000"
    assert service["environment"]["LABDOCK_HUB_NETWORK"] == names["network"]
    assert service["environment"]["LABDOCK_HUB_MEMORY"] == "4G"
    assert {key: service["environment"][key] for key in env if key in service["environment"]} == {
        key: value for key, value in env.items() if key in service["environment"]
    }


def test_hub_compose_refuses_to_start_without_its_settings(project):
    root, _ = project
    result = run_in(root, tool("docker-compose"), "-f", "hub/compose.yaml", "config", PATH="/usr/bin:/bin")
    assert result.returncode != 0 and "LABDOCK_HUB_PREFIX is not set" in result.stderr
