"""Actions are pinned by commit SHA, and the Dependabot configs that keep them current are valid.

A tag such as `@v6` is moved to other code by whoever controls the action's repository; a commit
SHA is not. The `# vX.Y.Z` comment says which release the SHA is, and Dependabot rewrites both.
Checked for the generated project's workflow and for this repository's own.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.rendering import render

REPO = Path(__file__).resolve().parents[1]
GENERATED_TEMPLATE = "template/{% if ci %}.github{% endif %}/workflows/ci.yml.jinja"

# owner/repo[/path]@<full commit SHA> # vX.Y.Z
PINNED = re.compile(r"(?P<action>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@[0-9a-f]{40} # v\d+\.\d+\.\d+")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<value>.*?)\s*$")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("workflows") / "p")


@pytest.fixture(params=["generated", "repository"])
def root(request, project) -> Path:
    return project if request.param == "generated" else REPO


def workflows(root: Path) -> list[Path]:
    found = sorted((root / ".github" / "workflows").glob("*.y*ml"))
    assert found, f"no workflow in {root / '.github' / 'workflows'}"
    return found


def uses_lines(text: str) -> list[str]:
    """The text after `uses:` on every line that has one (YAML parsing would drop the comment)."""
    return [m["value"] for line in text.splitlines() if (m := USES_LINE.match(line))]


def uses_keys(node: object) -> list[str]:
    """Every `uses` value in the parsed workflow, to prove the line scan missed none."""
    if isinstance(node, dict):
        own = [node["uses"]] if isinstance(node.get("uses"), str) else []
        return own + [v for child in node.values() for v in uses_keys(child)]
    if isinstance(node, list):
        return [v for child in node for v in uses_keys(child)]
    return []


def pin_problems(text: str) -> list[str]:
    """The `uses:` values of a workflow that are not pinned as owner/repo@<sha> # vX.Y.Z."""
    lines = uses_lines(text)
    problems = [value for value in lines if not PINNED.fullmatch(value)]
    if len(lines) != len(uses_keys(yaml.safe_load(text))):
        problems.append("a `uses:` written in a form this check cannot read (flow style?)")
    return problems


def test_every_action_is_pinned_to_a_commit_with_its_version(root):
    for path in workflows(root):
        text = path.read_text()
        assert uses_lines(text), f"{path} uses no action: nothing was checked"
        problems = pin_problems(text)
        assert not problems, (
            f"{path}: not pinned: {problems}; write owner/repo@<40-hex commit of the release> # vX.Y.Z"
        )


@pytest.mark.parametrize(
    "uses",
    [
        "actions/checkout@v6",
        "actions/checkout@d23441a # v6.1.0",
        "actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803",
        "actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803 # v6",
        "actions/checkout@main # v6.1.0",
    ],
)
def test_pin_check_refuses_tags_short_shas_and_missing_versions(uses):
    good = "actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803 # v6.1.0"
    workflow = "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: {}\n"
    assert pin_problems(workflow.format(good)) == []
    assert pin_problems(workflow.format(uses)) == [uses]
    flow = "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [{uses: actions/checkout@v6}]\n"
    assert pin_problems(flow)


def test_actions_used_by_both_workflows_are_pinned_alike(project):
    """Dependabot updates this repository's workflow, not the template's: a bump must be copied."""
    pins: dict[str, set[str]] = {}
    for path in workflows(project) + workflows(REPO):
        for value in uses_lines(path.read_text()):
            if m := PINNED.fullmatch(value):
                pins.setdefault(m["action"], set()).add(value)
    differing = {action: sorted(values) for action, values in pins.items() if len(values) > 1}
    assert not differing, (
        f"pinned differently: {differing}; give {GENERATED_TEMPLATE} and .github/workflows the same pin"
    )


def check_jsonschema(*args: str) -> subprocess.CompletedProcess:
    local = Path(sys.executable).parent / "check-jsonschema"
    assert local.exists(), "check-jsonschema is not installed: run the tests through nox"
    return subprocess.run([str(local), *args], capture_output=True, text=True)


def test_dependabot_config_passes_the_schema(root):
    config = root / ".github" / "dependabot.yml"
    result = check_jsonschema("--builtin-schema", "vendor.dependabot", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_schema_refuses_a_broken_config(tmp_path):
    # Poetry projects use package-ecosystem "pip"; "poetry" is a common mistake.
    config = tmp_path / "dependabot.yml"
    config.write_text(
        "version: 2\nupdates:\n  - package-ecosystem: poetry\n    directory: /\n"
        "    schedule:\n      interval: weekly\n"
    )
    result = check_jsonschema("--builtin-schema", "vendor.dependabot", str(config))
    assert result.returncode == 1 and "'poetry' is not one of" in result.stdout


def test_dependabot_watches_the_workflows_and_the_python_dependencies(root):
    updates = yaml.safe_load((root / ".github" / "dependabot.yml").read_text())["updates"]
    watched = {u["package-ecosystem"]: root / u["directory"].lstrip("/") for u in updates}
    assert {"github-actions", "pip"} <= set(watched)
    assert workflows(watched["github-actions"])
    assert (watched["pip"] / "pyproject.toml").is_file()
    for update in updates:
        group = update["groups"][next(iter(update["groups"]))]
        assert update["schedule"]["interval"] == "weekly" and group["update-types"] == ["minor", "patch"]
