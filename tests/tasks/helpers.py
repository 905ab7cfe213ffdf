"""Helpers for the unit tests of the generated project's task package (template/labdock/) with
invoke.MockContext: no Docker runs. One test module per module of the package.

The template is rendered once per test module (copier's Python API, this checkout with its
uncommitted changes); each test works on its own copy of the project, so the files tasks write
(.env, poetry.lock) never leak between tests. The package is imported from template/labdock (it
is copied into projects verbatim) with its project folder pointed at the copy. Settings come from
the rendered invoke.yaml, overlaid per test, as Invoke merges them.

Every expected Exit is checked for its message and a non-zero code.
"""

from __future__ import annotations

import importlib
import re
import shlex
import sys
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from unittest.mock import DEFAULT

import pytest
from invoke import Exit, MockContext, Result

from tests.rendering import REPO

sys.path.insert(0, str(REPO / "template"))
labdock = importlib.import_module("labdock")

ANSWERS = {"project_name": "Unit Demo", "registry": "127.0.0.1:5000/team"}
ENGINE_CHECK = "docker version --format '{{.Server.Version}}'"
LOCK_CONTENT = "# poetry.lock of the unit tests\n"

# Patterns for MockContext's run dict, matched (re.match) against the command strings.
ENGINE = r"docker version"
IMAGE_INSPECT = r"docker image inspect"
HEALTH = r"docker inspect --format '\{\{\.State"
SERVER_ENV = r"docker inspect --format '\{\{range \.Config\.Env"
PS = r"docker compose .* ps -q"
PORT = r"docker compose .* port "
COMPOSE_UP = r"docker compose .* up "
COMPOSE_EXEC = r"docker compose .* exec "
COMPOSE_RUN = r"docker compose .* run "
SERVICES = r"docker compose .* config --services"
BUILDER = r"docker build --target builder"
RUNTIME = r"docker build --target runtime"
POETRY = r"docker run .* sh -c 'poetry "
CHECK_LOCK = r"docker run .* poetry check --lock"
GIT_SHA = r"git .* rev-parse HEAD"
GIT_SHORT_SHA = r"git .* rev-parse --short HEAD"
GIT_TAG = r"git .* describe --tags"
GIT_ORIGIN = r"git .* remote get-url origin"
GIT_TIME = r"git .* log -1 --format=%ct"
LOGIN = r"docker login"
PUSH = r"docker push"


def ok(stdout: str = "") -> Result:
    return Result(stdout=stdout, exited=0)


def fail(stderr: str = "", stdout: str = "", exited: int = 1) -> Result:
    return Result(stdout=stdout, stderr=stderr, exited=exited)


# A running, healthy server on 127.0.0.1:8888.
RUNNING = {PS: ok("abc123\n"), HEALTH: ok("running healthy"), PORT: ok("127.0.0.1:8888\n")}


def commands(c: MockContext) -> list[str]:
    return [call.args[0] for call in c.run.call_args_list]


def matching(c: MockContext, pattern: str) -> list[str]:
    return [command for command in commands(c) if re.match(pattern, command)]


def call_of(c: MockContext, pattern: str):
    """The one c.run call whose command matches pattern."""
    calls = [call for call in c.run.call_args_list if re.match(pattern, call.args[0])]
    assert len(calls) == 1, f"{pattern!r} ran {len(calls)} times in {commands(c)}"
    return calls[0]


def args_of(c: MockContext, pattern: str) -> list[str]:
    """The arguments of the one command matching pattern, as the shell splits them."""
    return shlex.split(call_of(c, pattern).args[0])


def position(c: MockContext, pattern: str) -> int:
    return next(i for i, command in enumerate(commands(c)) if re.match(pattern, command))


def pairs(args: list[str]) -> set[tuple[str, str]]:
    """Adjacent argument pairs, e.g. ('--build-arg', 'NB_UID=1234')."""
    return set(pairwise(args))


def exit_of(action: Callable[[], object]) -> Exit:
    """The Exit that action raises; it must carry a non-zero code."""
    with pytest.raises(Exit) as info:
        action()
    assert info.value.code != 0, f"exit code 0 for {info.value.message!r}"
    return info.value


def write_lock(project: Path) -> Path:
    lock_file = project / "poetry.lock"
    lock_file.write_text(LOCK_CONTENT)
    return lock_file


def on_command(c: MockContext, pattern: str, action: Callable[[], object]) -> None:
    """Run action whenever c.run gets a command matching pattern (the mocked result still applies)."""

    def side_effect(command: str, *args: object, **kwargs: object):
        if re.match(pattern, command):
            action()
        return DEFAULT

    c.run.side_effect = side_effect


def staging_of(command: str) -> Path:
    """The staging folder a Poetry run works on (mounted at /workspace)."""
    args = shlex.split(command)
    mount = next(value for flag, value in pairwise(args) if flag == "-v" and value.endswith(":/workspace"))
    return Path(mount.removesuffix(":/workspace"))


def on_poetry(c: MockContext, action: Callable[[Path], object]) -> None:
    """Run action(staging folder) whenever Poetry runs: what Poetry would write to its copy."""

    def side_effect(command: str, *args: object, **kwargs: object):
        if re.match(POETRY, command):
            action(staging_of(command))
        return DEFAULT

    c.run.side_effect = side_effect


class FakeLifeline:
    """Stands in for locking.lifeline (a watcher process): records the containers it watched and
    whether the watch was cut (what Ctrl-C does)."""

    def __init__(self) -> None:
        self.watched: list[str] = []
        self.cut: list[str] = []

    def __call__(self, name: str):
        import contextlib

        @contextlib.contextmanager
        def watch():
            self.watched.append(name)
            yield lambda: self.cut.append(name)

        return watch()


class FakeClock:
    """Stands in for the time module: sleep() advances monotonic() at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1


class Tty:
    def isatty(self) -> bool:
        return True


def run_task(name: str, c: MockContext, *args: object, **kwargs: object) -> object:
    """Run one task of the generated project by its `invoke` name."""
    return labdock.namespace()[name](c, *args, **kwargs)
