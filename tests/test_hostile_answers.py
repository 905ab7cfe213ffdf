"""Arbitrary text for every free-text answer: refused by a validator, or rendered as text.

A property test (hypothesis, fixed seed) gives each free-text question of copier.yml arbitrary
Unicode, hostile fragments (code in braces, quotes, line breaks, YAML words, `$`) and near-valid
values. Each `copier copy` either stops with a validator's message and writes nothing, or gives
a project in which pyproject.toml parses, every .py compiles, the package imports and its
functions only return text (in a subprocess, checked by its audit events and an empty working
folder), `docker compose config` is valid and shows the literal name, and the Dockerfile has the
same instructions as for a plain name. The named cases below pin what the property samples.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.rendering import choices, questions, render_from, snapshot, tool

QUESTIONS = questions()
# Free text: str questions without choices (names, ports, limits, registry...), from copier.yml.
FREE_TEXT = [name for name, spec in QUESTIONS.items() if spec.get("type") == "str" and not choices(spec)]
# Display text, shown to people and never parsed: where arbitrary Unicode must render.
DISPLAY = ["project_name", "description", "author_name"]

HOSTILE = [
    "{__import__('os').getcwd()}",
    "{name}",
    '"',
    "'",
    '"""',
    "\\",
    "\\n",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x1b[2J",
    "\x85",
    "\u2028",
    "\u202e",
    "\ufeff",
    "\ud800",
    "$",
    "${HOME}",
    "$$",
    "#",
    ": ",
    "- ",
    "yes",
    "on",
    "null",
    "1e3",
    "0o17",
    "{{ 7*7 }}",
    "{% raw %}",
    "`id`",
    "</script>",
    "Café",
    "Ünïcödé",
    "東京",
    "🙂",
    "🧑\u200d🔬",
    "RUN rm -rf /",
    "01234",
]
TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=6)), max_size=5).map("".join),
    st.integers(min_value=-5, max_value=99999).map(str),  # ports, CPUs
    st.from_regex(r"[a-z0-9][a-z0-9._:/-]{0,20}[kmg]?", fullmatch=True),  # slugs, registries, sizes
)
# Half the names start with a word, so that their slug (and package name) is valid more often.
TEXT = st.one_of(TEXT, TEXT.map(lambda text: "Lab " + text))
SYNTAX = "{}\"'\\$#:`"  # characters that mean something in Python, TOML, YAML or compose
VALIDATOR_MESSAGE = re.compile(r"^Validation error for question '(\w+)': \1 must ")
# What importing the plain project's package may do (audit events); calling it must do nothing.
IMPORT_CHECK = """
import json, sys
sys.dont_write_bytecode = True
sys.path.insert(0, {src!r})
events = []
sys.addaudithook(lambda event, args: events.append(event))
import {package} as package
imported, events[:] = sorted(set(events)), []
public = {{name: value for name, value in vars(package).items() if not name.startswith("_")}}
results = {{name: value() for name, value in public.items() if callable(value)}}
print(json.dumps({{"imported": imported, "called": events, "results": results,
                  "name": package.PROJECT_NAME, "file": package.__file__}}))
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return snapshot(tmp_path_factory.mktemp("template"))


def run_in(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=root, capture_output=True, text=True, env=env or None)


def instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions as Docker reads them: lines split on \\n only, comment lines
    dropped (also inside a continuation), continuations joined, whitespace normalised."""
    found, current = [], ""
    for line in dockerfile.split("\n"):
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current = " ".join((current + line).split())
        if current:
            found.append(current)
        current = ""
    return found


def jsonc(path: Path) -> dict:
    return json.loads(
        "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("//"))
    )


def import_package(root: Path, package: str, scratch: Path) -> dict:
    """Import the project's package and call its functions in a fresh interpreter, in an empty
    folder (scratch) that must stay empty; stdout must be the one JSON line it prints."""
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_CHECK.format(src=str(root / "src"), package=package)],
        cwd=scratch,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # nothing printed but the report
    assert list(scratch.iterdir()) == []  # nothing written where it ran
    return json.loads(lines[0])


def compose_config(root: Path, slug: str) -> dict:
    # LABDOCK_PROJECT as `invoke up` writes it into .env: the checkout's name, after the slug.
    env = {"PATH": "/usr/bin:/bin", "LABDOCK_TOKEN": "t" * 64, "LABDOCK_PROJECT": f"{slug}-me-0123abcd"}
    result = run_in(root, tool("docker-compose"), "config", "--format", "json", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def check_project(root: Path, answers: dict, reference: dict, scratch: Path) -> None:
    """Everything the property promises about a rendered project (answers: all of them)."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    project = pyproject["project"]
    assert project["name"] == answers["project_slug"]
    assert project["description"] == answers["description"]
    assert project["authors"] == [{"name": answers["author_name"], "email": answers["author_email"]}]
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    report = import_package(root, answers["package_name"], scratch)
    assert report["file"] == str(root / "src" / answers["package_name"] / "__init__.py")
    assert report["name"] == answers["project_name"]
    assert report["results"] == {"greet": f"Hello, world, from {answers['project_name']}!"}
    assert report["called"] == []
    assert set(report["imported"]) <= set(reference["imported"])
    compose = compose_config(root, answers["project_slug"])
    assert compose["name"] == f"{answers['project_slug']}-me-0123abcd"
    # `config` prints compose's own syntax, every literal $ written $$ again: a name with $HOME
    # that compose had expanded would print the home folder instead.
    title = compose["services"]["lab"]["labels"]["org.opencontainers.image.title"]
    assert title == answers["project_name"].replace("$", "$$")
    assert compose["services"]["lab"]["image"] == f"{answers['project_slug']}:latest"
    assert instructions((root / "Dockerfile").read_text()) == reference["dockerfile"]
    settings_ = yaml.safe_load((root / "invoke.yaml").read_text())["labdock"]
    assert "project" not in settings_ and "image" not in settings_  # read from pyproject.toml
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"] == answers["project_slug"]
    assert (settings_["cpus"], settings_["memory"]) == (answers["cpu_limit"], answers["memory_limit"])
    assert settings_["registry"] == answers["registry"]
    assert settings_["port"] == int(answers["jupyter_port"])
    if answers["tensorboard"]:
        assert settings_["tensorboard_port"] == int(answers["tensorboard_port"])
    workflow = yaml.safe_load((root / ".github" / "workflows" / "ci.yml").read_text())
    assert "invoke build" in [step.get("run") for step in workflow["jobs"]["image"]["steps"]]
    assert jsonc(root / ".devcontainer" / "devcontainer.json")["name"] == answers["project_name"]
    notebook = json.loads(next((root / "notebooks").glob("*.ipynb")).read_text())
    assert notebook["cells"][0]["source"][0] == f"# {answers['project_name']}\n"


@pytest.fixture(scope="module")
def reference(template, tmp_path_factory) -> dict:
    """What a plain name gives: the Dockerfile's instructions and the import's audit events."""
    root = render_from(template, tmp_path_factory.mktemp("plain") / "p")
    answers = yaml.safe_load((root / ".copier-answers.yml").read_text())
    report = import_package(root, answers["package_name"], tmp_path_factory.mktemp("scratch") / "s")
    assert report["called"] == [] and report["imported"]
    return {"dockerfile": instructions((root / "Dockerfile").read_text()), "imported": report["imported"]}


def copy_or_refusal(template: Path, dst: Path, answers: dict) -> tuple[dict | None, str]:
    """(all answers, "") for a rendered project; (None, message) for a validator's refusal."""
    try:
        render_from(template, dst, **answers)
    except ValueError as error:
        assert VALIDATOR_MESSAGE.match(str(error)), str(error)
        assert not dst.exists()  # nothing written
        return None, str(error)
    return yaml.safe_load((dst / ".copier-answers.yml").read_text()), ""


def test_free_text_questions_are_found():
    assert set(DISPLAY) < set(FREE_TEXT)
    assert {"project_slug", "package_name", "author_email", "jupyter_port", "registry"} < set(FREE_TEXT)


def test_any_answer_is_refused_or_rendered_as_text(template, reference, tmp_path_factory):
    figures: Counter = Counter()
    started = time.monotonic()

    @settings(
        max_examples=200,
        derandomize=True,  # the same examples on every run
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(question=st.sampled_from(DISPLAY * 3 + FREE_TEXT), value=TEXT)
    def check(question: str, value: str) -> None:
        answers = {question: value, **({"tensorboard": True} if question == "tensorboard_port" else {})}
        folder = tmp_path_factory.mktemp("any")
        recorded, _ = copy_or_refusal(template, folder / "p", answers)
        figures["examples"] += 1
        if recorded is None:
            figures["refused"] += 1
            return
        figures["rendered"] += 1
        figures[f"rendered {question}"] += 1
        figures["rendered with syntax characters"] += any(char in value for char in SYNTAX)
        assert recorded[question] == value
        check_project(folder / "p", recorded, reference, folder / "scratch")

    check()
    seconds = time.monotonic() - started
    print(f"hostile answers: {dict(figures)} in {seconds:.0f} s")
    assert figures["examples"] >= 200
    # Both outcomes are exercised, and arbitrary display text mostly renders.
    assert figures["refused"] >= 20 and figures["rendered"] >= 60, figures
    assert all(figures[f"rendered {name}"] >= 10 for name in DISPLAY), figures
    assert figures["rendered with syntax characters"] >= 10, figures


@pytest.mark.parametrize(
    "name",
    [
        "Lab {__import__('os').getcwd()}",
        'Quote " and \'single\' and """triple"""',
        "Back\\slash \\n \\u0041 \\",
        "Dollar $HOME ${PATH} $$ $",
        "Café Crème 🙂 🧑\u200d🔬",
        "# not a comment: - [yes] {on: null}",
    ],
)
def test_a_hostile_name_renders_as_text(template, reference, tmp_path, name):
    recorded, refusal = copy_or_refusal(template, tmp_path / "p", {"project_name": name})
    assert recorded is not None, refusal
    check_project(tmp_path / "p", recorded, reference, tmp_path / "scratch")


@pytest.mark.parametrize(
    ("name", "slug"),
    [("Café Crème", "cafe-creme"), ("Ünïcödé Lab", "unicode-lab"), ("東京 ML", "dong-jing-ml")],
)
def test_slugs_are_transliterated(template, tmp_path, name, slug):
    recorded, _ = copy_or_refusal(template, tmp_path / "p", {"project_name": name})
    assert (recorded["project_slug"], recorded["package_name"]) == (slug, slug.replace("-", "_"))


def test_a_long_name_is_refused_and_a_long_slug_is_bounded(template, tmp_path):
    recorded, refusal = copy_or_refusal(template, tmp_path / "long", {"project_name": "x" * 300})
    assert recorded is None and "project_name must be at most 80 characters (got 300)" in refusal
    words = " ".join(["segmentation"] * 6)  # 77 characters
    recorded, _ = copy_or_refusal(template, tmp_path / "p", {"project_name": words})
    assert recorded["project_slug"] == "-".join(["segmentation"] * 3)  # cut at a word, <= 48


@pytest.mark.parametrize("slug", ["yes", "on", "null", "true", "1e3", "2024-01-01", "0x1f", "123"])
def test_slugs_yaml_would_retype_stay_text(template, reference, tmp_path, slug):
    answers = {"project_slug": slug, "package_name": "lab"}
    recorded, refusal = copy_or_refusal(template, tmp_path / "p", answers)
    assert recorded is not None, refusal
    check_project(tmp_path / "p", recorded, reference, tmp_path / "scratch")
