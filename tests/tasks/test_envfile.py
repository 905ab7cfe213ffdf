""".env: a private file, a strong token kept across runs, the user's lines kept."""

from __future__ import annotations

import re
import stat

from tests.tasks.helpers import labdock

envfile = labdock.envfile


def test_ensure_token_creates_a_private_env_file(project):
    token = envfile.ensure_token(project / ".env")
    env_file = project / ".env"
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"\nJUPYTER_TOKEN={token}\n" in env_file.read_text()
    before = env_file.read_text()
    assert envfile.ensure_token(project / ".env") == token
    assert env_file.read_text() == before


def test_ensure_token_keeps_other_settings(project):
    env_file = project / ".env"
    env_file.write_text("HF_TOKEN=hf_abc\n")
    env_file.chmod(0o644)
    token = envfile.ensure_token(project / ".env")
    assert envfile.read(project / ".env") == {"HF_TOKEN": "hf_abc", "JUPYTER_TOKEN": token}
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_ensure_token_reuses_a_quoted_token(project):
    (project / ".env").write_text("# mine\nJUPYTER_TOKEN='handmade'\n")
    assert envfile.ensure_token(project / ".env") == "handmade"


def test_ensure_token_after_a_last_line_without_newline(project):
    (project / ".env").write_text("HF_TOKEN=hf_abc")
    token = envfile.ensure_token(project / ".env")
    assert envfile.read(project / ".env") == {"HF_TOKEN": "hf_abc", "JUPYTER_TOKEN": token}
