"""Bad answers are refused through the copier CLI with a message naming what is allowed, and
nothing is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.rendering import REPO

BAD_ANSWERS = [
    ("project_name=!!!", "project_slug must be lowercase letters and digits"),
    ("project_name=   ", "project_name must not be empty"),
    ("project_slug=Tumor_Seg", "project_slug must be lowercase letters and digits"),
    ("package_name=class", "package_name must not be a Python keyword"),
    ("package_name=9lives", "package_name must be a lowercase Python identifier"),
    ("jupyter_port=80", "jupyter_port must be an integer from 1024 to 65535"),
    ("jupyter_port=70000", "jupyter_port must be an integer from 1024 to 65535"),
    ("jupyter_port=abc", "jupyter_port must be an integer from 1024 to 65535"),
    ("python_version=2.7", "'2.7' is not in ['3.11', '3.12', '3.13', '3.14']"),
    ("stack=keras", "'keras' is not in ['minimal', 'scipy', 'pytorch']"),
    ("gpu=amd", "'amd' is not in ['none', 'nvidia']"),
    ("registry=ghcr.io/my team", "registry must be empty or a lowercase registry prefix"),
    ("registry=GHCR.io/Acme", "registry must be empty or a lowercase registry prefix"),
    ("author_email=nobody", "author_email must look like name@example.com"),
    ("cpu_limit=four", "cpu_limit must be empty (no limit) or a positive number of CPUs"),
    ("cpu_limit=0", "cpu_limit must be empty (no limit) or a positive number of CPUs"),
    ("cpu_limit=-2", "cpu_limit must be empty (no limit) or a positive number of CPUs"),
    ("memory_limit=12", "memory_limit must be empty (no limit) or a positive size with a unit k, m or g"),
    ("memory_limit=12GB", "memory_limit must be empty (no limit) or a positive size with a unit k, m or g"),
    ("memory_limit=0g", "memory_limit must be empty (no limit) or a positive size with a unit k, m or g"),
    ("tensorboard=true;tensorboard_port=22", "tensorboard_port must be an integer from 1024 to 65535"),
    ("tensorboard=true;tensorboard_port=8888", "tensorboard_port must differ from jupyter_port (8888)"),
]


def copier_copy(dst: Path, *data: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref=HEAD"]
    args += [f"--data={item}" for items in data for item in items.split(";")]  # ";" joins answers
    return subprocess.run([*args, str(REPO), str(dst)], capture_output=True, text=True)


@pytest.mark.parametrize(("answer", "message"), BAD_ANSWERS, ids=[a for a, _ in BAD_ANSWERS])
def test_bad_answer_is_refused_and_nothing_written(tmp_path, answer, message):
    dst = tmp_path / "project"
    result = copier_copy(dst, answer)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert not dst.exists()


def test_good_answers_are_accepted(tmp_path):
    dst = tmp_path / "project"
    result = copier_copy(
        dst,
        "project_name=Tumor Segmentation",
        "jupyter_port=1024",
        "registry=127.0.0.1:5000/team",
        "python_version=3.14",
        "cpu_limit=0.5",
        "memory_limit=1.5g",
        "tensorboard=true",
        "tensorboard_port=7007",
    )
    assert result.returncode == 0, result.stderr
    assert "package_name: tumor_segmentation" in (dst / ".copier-answers.yml").read_text()
