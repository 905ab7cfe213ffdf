"""Command lines and what the user sees of them: quoting, one-line progress, timed summaries."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping

from invoke import Context, Result

# cmd.exe's own metacharacters: outside double quotes a caret makes each one literal. The double
# quote itself is escaped too, so cmd never sees a quoted region where carets would be literal.
CMD_METACHARACTERS = re.compile(r'([()%!^"<>&|])')


def quote_for_cmd(arg: str) -> str:
    """One argument for cmd.exe /c (how Invoke runs commands on Windows): first quoted for the
    program's own argument parsing (CommandLineToArgvW rules), then every cmd.exe metacharacter
    escaped with a caret, so `&`, `|`, `%VAR%`, `^` and quotes reach the program as written."""
    return CMD_METACHARACTERS.sub(r"^\1", subprocess.list2cmdline([arg]) or '""')


def quote(arg: object) -> str:
    """Quote one argument for the shell Invoke runs commands in (cmd.exe on Windows, sh elsewhere)."""
    if os.name == "nt":
        return quote_for_cmd(str(arg))
    return shlex.quote(str(arg))


def cmd(*args: object) -> str:
    """One command line from arguments, each quoted."""
    return " ".join(quote(arg) for arg in args)


def label_flags(labels: Mapping[str, str]) -> list[str]:
    """`--label KEY=VALUE` for each label (docker build, volume create, run)."""
    return [item for key, value in labels.items() for item in ("--label", f"{key}={value}")]


def run(c: Context, *args: object, **kwargs: object) -> Result:
    """Run a command given as separate arguments (quoted here), with Invoke's run options."""
    return c.run(cmd(*args), **kwargs)


def output(c: Context, *args: object) -> str:
    """What a quiet command printed, stripped; '' when it failed."""
    result = run(c, *args, hide=True, warn=True)
    return result.stdout.strip() if result is not None and result.ok else ""


def since(started: float) -> str:
    """Seconds since a time.monotonic() reading, for the one-line summary ending a long step."""
    return f"{time.monotonic() - started:.1f}s"


def progress(message: str, final: bool = False) -> None:
    """One status line: rewritten in place on a terminal, printed plainly in logs."""
    if sys.stdout.isatty():
        print(f"\r{message:<70}", end="\n" if final else "", flush=True)
    else:
        print(message, flush=True)


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)
