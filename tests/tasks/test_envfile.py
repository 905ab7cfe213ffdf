""".env: a private file, a strong token kept across runs, the user's lines kept."""

from __future__ import annotations

import re
import stat

import pytest

from tests.tasks.helpers import exit_of, labdock

envfile = labdock.envfile


def test_ensure_token_creates_a_private_env_file(project):
    token = envfile.ensure_token(project / ".env")
    env_file = project / ".env"
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"\nLABDOCK_TOKEN={token}\n" in env_file.read_text()
    before = env_file.read_text()
    assert envfile.ensure_token(project / ".env") == token
    assert env_file.read_text() == before


def test_ensure_token_keeps_other_settings(project):
    env_file = project / ".env"
    env_file.write_text("HF_TOKEN=hf_abc\n")
    env_file.chmod(0o644)
    token = envfile.ensure_token(project / ".env")
    assert envfile.read(project / ".env") == {"HF_TOKEN": "hf_abc", "LABDOCK_TOKEN": token}
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_ensure_token_reuses_a_quoted_token(project):
    (project / ".env").write_text("# mine\nLABDOCK_TOKEN='handmade'\n")
    assert envfile.ensure_token(project / ".env") == "handmade"


def test_ensure_token_after_a_last_line_without_newline(project):
    (project / ".env").write_text("HF_TOKEN=hf_abc")
    token = envfile.ensure_token(project / ".env")
    assert envfile.read(project / ".env") == {"HF_TOKEN": "hf_abc", "LABDOCK_TOKEN": token}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("LABDOCK_TOKEN=abc\nthis line has no equals sign\n", ".env line 2 is not VARIABLE=value ("),
        ("LABDOCK_TOKEN=abc\nLABDOCK_TOKEN=def\n", ".env sets LABDOCK_TOKEN twice (lines 1 and 2)"),
        ("A=1\nexport A=2\n", ".env sets A twice (lines 1 and 2)"),
        ("=value\n", ".env line 1 is not VARIABLE=value"),
    ],
)
def test_a_broken_env_file_is_named_with_its_line_and_never_rewritten(project, content, message):
    env_file = project / ".env"
    env_file.write_text(content)
    error = exit_of(lambda: envfile.save_settings(env_file, {"LABDOCK_PORT": "8888"}))
    assert error.message.startswith(message)
    assert env_file.read_text() == content


def test_an_env_file_with_binary_bytes(project):
    env_file = project / ".env"
    env_file.write_bytes(b"LABDOCK_TOKEN=abc\n\xff\xfe\x00\x01\n")
    error = exit_of(lambda: envfile.ensure_token(env_file))
    assert error.message.startswith(".env is not text (it holds binary bytes): delete it")


@pytest.mark.parametrize(
    "value",
    ["plain", "", "with space", 'quote"inside', "it's", "a\\b", "line\nbreak", "#hash", "$HOME", "x=y"],
)
def test_values_are_written_so_that_they_read_back_the_same(project, value):
    env_file = project / ".env"
    envfile.save_settings(env_file, {"LABDOCK_X": value, "LABDOCK_Y": "after"})
    assert envfile.read(env_file) == {"LABDOCK_X": value, "LABDOCK_Y": "after"}
    assert len([line for line in env_file.read_text().splitlines() if line.startswith("LABDOCK_")]) == 2
