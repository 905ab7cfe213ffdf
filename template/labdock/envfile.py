""".env: the JupyterLab token and the settings compose.yaml reads, for containers started by
invoke and without it (VS Code's devcontainer, plain `docker compose up`).

The file is private (mode 600) and never committed. It is rewritten as a whole (written aside,
then moved into place), so an interrupted task leaves the old file or the new one, never half.
Lines the user added are kept.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

from invoke import Exit

TOKEN = "LABDOCK_TOKEN"  # compose.yaml passes it to the server as JUPYTER_TOKEN
SETTINGS_PREFIX = "LABDOCK_"
SETTINGS_HEADER = "# invoke.yaml's settings for compose, written by `invoke up` / `invoke prepare`:"
TOKEN_COMMENT = "# Created by `invoke up`. Keep it secret; never commit it."
PLAIN = re.compile(r"[A-Za-z0-9_./:@,+\-\[\]]*")


def parse_value(raw: str) -> str:
    """A value as compose reads it: quotes removed; escapes in double quotes resolved."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), raw[1:-1])
    return re.sub(r"\s+#.*$", "", raw)  # an unquoted value ends at a comment


def format_line(key: str, value: str) -> str:
    """KEY=value, quoted when the value needs it (compose's .env syntax: single quotes are
    literal; double quotes take backslash escapes and would expand $VARIABLES, so $ is escaped)."""
    if PLAIN.fullmatch(value):
        return f"{key}={value}"
    if "'" not in value and "\n" not in value:
        return f"{key}='{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("$", "\\$")
    return f'{key}="{escaped}"'


def read(path: Path) -> dict[str, str]:
    """The variables in a .env file ({} when there is none), checked as compose reads it: a line
    it cannot read, or a variable set twice, stops the task with the line to fix."""
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except UnicodeDecodeError:
        raise Exit(
            f"{path.name} is not text (it holds binary bytes): delete it; `invoke up` writes a new one."
        ) from None
    except OSError as error:
        raise Exit(f"Cannot read {path.name} ({error.strerror}): fix its permissions.") from None
    values: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise Exit(
                f"{path.name} line {number} is not VARIABLE=value ({line.strip()[:40]!r}): fix or delete it."
            )
        if key in first_line:
            raise Exit(
                f"{path.name} sets {key} twice (lines {first_line[key]} and {number}): keep the one you mean "
                "and delete the other."
            )
        first_line[key] = number
        values[key] = parse_value(value)
    return values


def write(path: Path, lines: list[str]) -> None:
    """Replace the file with these lines, atomically, readable by its owner only."""
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".env.", suffix=".tmp")
    except OSError as error:
        raise Exit(
            f"Cannot write {path} ({error.strerror}): labdock needs a writable project folder."
        ) from None
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write("\n".join(lines) + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def ensure_token(path: Path) -> str:
    """The server's token from .env; creates one (256 random bits) if missing."""
    token = read(path).get(TOKEN)
    if token:
        return token
    token = secrets.token_hex(32)
    existing = path.read_text().splitlines() if path.exists() else []
    write(path, [*existing, TOKEN_COMMENT, f"{TOKEN}={token}"])
    print(f"Created {path.name} with a new JupyterLab token.")
    return token


def save_settings(path: Path, settings: dict[str, str]) -> None:
    """Replace the block of LABDOCK_* settings, keeping every other line (the token too)."""
    read(path)  # a broken file is reported, not rewritten
    kept = [
        line
        for line in (path.read_text().splitlines() if path.exists() else [])
        if line != SETTINGS_HEADER
        and not (line.startswith(SETTINGS_PREFIX) and not line.startswith(TOKEN + "="))
    ]
    write(path, [*kept, SETTINGS_HEADER, *(format_line(key, value) for key, value in settings.items())])
