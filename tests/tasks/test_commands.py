"""Command lines reach programs as written, whatever the arguments hold: sh quoting on Linux and
macOS (checked by a real sh), cmd.exe quoting on Windows (checked by a model of cmd.exe's
percent and caret phases and of CommandLineToArgvW, as documented by Microsoft)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.tasks.helpers import labdock

commands = labdock.commands

HOSTILE = [
    "plain",
    "with space",
    "C:\\Program Files\\Docker\\docker.exe",
    "a&b",
    "a|b",
    "a && calc",
    "%PATH%",
    "100%",
    "^caret^",
    'say "hi"',
    '"',
    "",
    "trailing\\",
    'back\\"slash',
    "<in >out",
    "(parens)",
    "!bang!",
    "ünï €",
]


def cmd_exe(line: str, environment: dict[str, str]) -> str:
    """What cmd.exe /c hands to a program after its two phases: %VAR% of a defined variable is
    expanded; then, outside double quotes, a caret makes the next character literal and an
    unescaped & | < > would end the command or redirect it (an error here); inside double quotes
    everything is literal."""
    expanded = re.sub(r"%([^%]+)%", lambda m: environment.get(m[1], m[0]), line)
    out, quoted, i = [], False, 0
    while i < len(expanded):
        char = expanded[i]
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "^" and i + 1 < len(expanded):
            i += 1
            char = expanded[i]
        elif not quoted and char in "&|<>":
            raise ValueError(f"cmd.exe would treat {char!r} as an operator in {line!r}")
        out.append(char)
        i += 1
    return "".join(out)


def command_line_to_argv(line: str) -> list[str]:
    """CommandLineToArgvW: backslashes are literal unless before a quote; 2n backslashes + quote
    give n and toggle quoting; 2n+1 give n and a literal quote."""
    args, current, quoted, i, started = [], [], False, 0, False
    while i < len(line):
        char = line[i]
        if char == "\\":
            j = i
            while j < len(line) and line[j] == "\\":
                j += 1
            count = j - i
            if j < len(line) and line[j] == '"':
                current.append("\\" * (count // 2))
                if count % 2:
                    current.append('"')
                    i = j + 1
                else:
                    i = j
                started = True
                continue
            current.append("\\" * count)
            i, started = j, True
            continue
        if char == '"':
            quoted, started = not quoted, True
        elif char in " \t" and not quoted:
            if started:
                args.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
        i += 1
    if started:
        args.append("".join(current))
    return args


@pytest.mark.parametrize("arg", HOSTILE)
def test_windows_arguments_survive_cmd_exe(arg):
    line = " ".join(commands.quote_for_cmd(a) for a in ["docker", arg, "next"])
    environment = {"PATH": "C:\\Windows", "CD": "C:\\"}
    assert command_line_to_argv(cmd_exe(line, environment)) == ["docker", arg, "next"]


@pytest.mark.parametrize("arg", HOSTILE)
def test_posix_arguments_survive_sh(arg):
    line = commands.cmd(sys.executable, "-c", "import sys; print(repr(sys.argv[1:]))", arg, "next")
    shown = subprocess.run(line, shell=True, capture_output=True, text=True, check=True).stdout
    assert shown.strip() == repr([arg, "next"])
