"""Bad answers are refused through the copier CLI with a message naming what is allowed, and
nothing is written.

The bad answers are derived from copier.yml, not copied from it: each question's choices, and
per kind of validator (printable text, regular expression, number range, reserved names) values
that break it, each expected to give that validator's own message.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.rendering import REPO, choices, questions, render_from, snapshot

QUESTIONS = questions()
# Values tried against each regular expression; those it refuses become bad answers.
NEAR_MISSES = [
    "Tumor_Seg",
    "UPPER",
    "9lives",
    "two--dashes",
    "-lead",
    "trail-",
    "with space",
    "ok\n",
    "café",
    "01234",
    "1e3",
    "abc",
    "-2",
    "+8888",
    "\uff18\uff18\uff18\uff18",  # fullwidth 8888: int() reads it, the validator must not
    "12GB",
    "0g",
    "nobody",
    "a@b",
    "ghcr.io/my team",
    "GHCR.io/Acme",
    "host:0123/x",
    "a//b",
]
UNPRINTABLE = [
    "line\nbreak",
    "carriage\rreturn",
    "tab\there",
    "escape\x1b[2J",
    "rtl\u202eoverride",
    "nul\x00",
]


def validator(name: str) -> str:
    return " ".join(QUESTIONS[name].get("validator", "").split())


def branches(name: str) -> list[tuple[str, list[str]]]:
    """(condition, message) for each message of a validator: the Jinja tag before it, and its
    literal text split around its Jinja expressions (the echoed answer after "(got" left out)."""
    parts = re.split(r"(\{%.*?%\})", validator(name))
    found = []
    for tag, text in zip(parts[1::2], parts[2::2], strict=False):
        literal = [piece.strip() for piece in re.split(r"\{\{.*?\}\}", text.split(" (got ")[0])]
        if any(literal):
            found.append((tag, [piece for piece in literal if piece]))
    return found


def message(name: str, marker: str) -> list[str]:
    """The message whose condition or text contains marker (exactly one must)."""
    found = [text for tag, text in branches(name) if marker in tag or any(marker in piece for piece in text)]
    assert len(found) == 1, (name, marker, branches(name))
    return found[0]


def regex(name: str) -> re.Pattern:
    """The validator's first regular expression, as Jinja reads the string ('\\\\Z' is \\Z)."""
    pattern = re.search(r"regex_search\((['\"])(.+?)\1\)", validator(name)).group(2)
    return re.compile(pattern.replace("\\\\", "\\"))


def when_enabled(name: str) -> dict[str, bool]:
    """Answers that make the question asked at all (`when: "{{ flag }}"`)."""
    flag = re.fullmatch(r"\{\{ (\w+) \}\}", str(QUESTIONS[name].get("when", "")))
    return {flag.group(1): True} if flag else {}


def bad_answers() -> list[tuple[str, dict, list[str]]]:
    """(id, answers, expected message) for every kind of validator in copier.yml."""
    cases = []

    def add(name: str, value: str, expected: list[str]) -> None:
        cases.append((f"{name}={value!r}", {**when_enabled(name), name: value}, expected))

    for name, spec in QUESTIONS.items():
        text = validator(name)
        if allowed := choices(spec):
            add(name, "nope", [f"'nope' is not in {[str(value) for value in allowed]}"])
        if "must not be empty" in text:
            add(name, "   ", message(name, "must not be empty"))
        if "isprintable" in text:
            for value in UNPRINTABLE:
                add(name, value, message(name, "printable"))
        if limit := re.search(rf"{name} \| length > (\d+)", text):
            # One character too many, and otherwise valid where a pattern applies too.
            size, default = int(limit.group(1)) + 1, str(spec.get("default", ""))
            longer = ["a" * size, "a" * (size - len(default)) + default]
            if "regex_search(" in text:
                longer.sort(key=lambda value: not regex(name).search(value))
            add(name, longer[0], message(name, limit.group(0)))
        for refused in re.findall(rf"elif {name} \| regex_search\('\[(.+?)\]'\)", text):
            for char in refused:  # characters a validator refuses anywhere in the answer
                add(name, f"Ann {char} Bob", message(name, f"regex_search('[{refused}]')"))
        if "regex_search(" in text and "isprintable" not in text and "reserved" not in text:
            pattern, expected = regex(name), message(name, "regex_search(")
            for value in NEAR_MISSES:
                if not pattern.search(value):
                    add(name, value, expected)
        if bounds := re.search(rf"\(?([\d.]+) <= {name} \| (?:int|float) <= ([\d.]+)", text):
            low, high = bounds.groups()
            below = str(int(low) - 1) if low.isdigit() else "0.001"
            add(name, below, message(name, f"<= {name} |"))
            add(name, str(int(float(high)) + 1), message(name, f"<= {name} |"))
        if smallest := re.search(r">= (\d+)\)", text):  # a size in bytes
            add(name, f"{int(smallest.group(1)) // 1048576 - 1}m", message(name, smallest.group(0)))
        if other := re.search(r"must differ from (\w+)", text):
            add(name, str(QUESTIONS[other.group(1)]["default"]), message(name, "must differ"))
        if include := re.search(r"include '(.+?)'", text):
            reserved = yaml.safe_load((REPO / include.group(1)).read_text())
            keywords = re.search(r"keywords = \[(.+?)\]", text).group(1)
            add(name, re.findall(r"'([a-z]\w*)'", keywords)[0], message(name, "keyword"))
            for module in ("os", "sys", "tomllib", "annotationlib"):
                assert module in reserved["stdlib"]
                add(name, module, message(name, "standard-library"))
            for group, names in reserved["stacks"].items():
                add(name, names[0], [*message(name, "reserved.stacks"), f"({group})"])
            for taken in reserved["project"]:
                add(name, taken, message(name, "tasks use"))
    return cases


BAD_ANSWERS = bad_answers()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return snapshot(tmp_path_factory.mktemp("template"))


def copier_copy(template: Path, dst: Path, answers: dict) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "copier", "copy", "--trust", "--defaults"]
    args += [
        f"--data={key}={str(value).lower() if value is True else value}" for key, value in answers.items()
    ]
    return subprocess.run([*args, str(template), str(dst)], capture_output=True, text=True)


def test_every_kind_of_validator_has_bad_answers():
    kinds = {
        "choices": [name for name, spec in QUESTIONS.items() if choices(spec)],
        "validated": [name for name in QUESTIONS if validator(name)],
    }
    covered = {case_id.split("=")[0] for case_id, _, _ in BAD_ANSWERS}
    assert set(kinds["choices"]) | set(kinds["validated"]) <= covered
    assert len(BAD_ANSWERS) >= 60


@pytest.mark.parametrize(
    ("answers", "expected"), [c[1:] for c in BAD_ANSWERS], ids=[c[0] for c in BAD_ANSWERS]
)
def test_bad_answer_is_refused_and_nothing_written(template, tmp_path, answers, expected):
    """Through copier's API (fast): the validator's message, and no folder."""
    dst = tmp_path / "project"
    with pytest.raises(ValueError, match=r"^Validation error for question|is not in") as refused:
        render_from(template, dst, **answers)
    text = " ".join(str(refused.value).split())
    assert all(piece in text for piece in expected), (expected, text)
    assert not dst.exists()


# The first bad answer of each question again through the CLI, as a user sees it.
FIRST_PER_QUESTION: dict[str, tuple] = {}
for case in BAD_ANSWERS:
    FIRST_PER_QUESTION.setdefault(case[0].split("=")[0], case)
CLI_CASES = list(FIRST_PER_QUESTION.values())


@pytest.mark.parametrize(("answers", "expected"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_the_cli_prints_the_message_and_writes_nothing(template, tmp_path, answers, expected):
    dst = tmp_path / "project"
    result = copier_copy(template, dst, answers)
    assert result.returncode != 0
    stderr = " ".join(result.stderr.split())
    assert all(piece in stderr for piece in expected), (expected, result.stderr[-2000:])
    # copier's CLI ends a refused --data answer with the message as its last line (after a
    # traceback it prints itself; asked interactively, it shows the message and asks again).
    assert expected[0] in result.stderr.strip().splitlines()[-1]
    assert not dst.exists()


def test_reserved_names_cover_this_python_and_every_stack(template, tmp_path):
    reserved = yaml.safe_load((REPO / "validators" / "reserved-package-names.yml").read_text())
    assert set(sys.stdlib_module_names) <= set(reserved["stdlib"])
    listed = {name for names in reserved["stacks"].values() for name in names}
    for stack in choices(QUESTIONS["stack"]):
        root = render_from(template, tmp_path / stack, stack=stack, tensorboard=True)
        groups = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["poetry"]["group"]
        installed = {name for group in groups.values() for name in group["dependencies"]}
        # import names: scikit-learn is imported as sklearn
        assert {name.replace("scikit-learn", "sklearn") for name in installed} <= listed, stack


def test_good_answers_are_accepted(template, tmp_path):
    dst = tmp_path / "project"
    answers = {
        "project_name": "Tumor Segmentation",
        "jupyter_port": "1024",
        "registry": "127.0.0.1:5000/team",
        "python_version": "3.14",
        "cpu_limit": "0.5",
        "memory_limit": "1.5g",
        "tensorboard": True,
        "tensorboard_port": "65535",
        "author_email": "o'brien+lab@example.co.uk",
        "author_name": "Équipe Vision 🙂",
    }
    result = copier_copy(template, dst, answers)
    assert result.returncode == 0, result.stderr
    recorded = yaml.safe_load((dst / ".copier-answers.yml").read_text())
    assert (recorded["project_slug"], recorded["package_name"]) == (
        "tumor-segmentation",
        "tumor_segmentation",
    )


@pytest.mark.parametrize(
    "registry",
    [
        "ghcr.io/acme",
        "docker.io/team/sub",
        "acme",
        "my_team/x.y",
        "localhost:5000",
        "[::1]:5000/team",
        "a--b/c__d",
    ],
)
def test_registry_prefixes_in_docker_syntax_are_accepted(template, tmp_path, registry):
    result = copier_copy(template, tmp_path / "p", {"registry": registry})
    assert result.returncode == 0, result.stderr


def test_the_git_checkout_refuses_an_octal_port():
    """The same refusal when copier clones this repository (as users run it), extensions loaded."""
    copy = [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref=HEAD"]
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run(
            [*copy, "--data=jupyter_port=01234", str(REPO), f"{folder}/p"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    assert result.returncode != 0 and "without a leading zero" in result.stderr
