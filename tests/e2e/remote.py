"""The test engine reached as a remote one, and folders the engine cannot see.

.ci/engine.sh's sshd_start runs a private sshd on 127.0.0.1 whose logins reach the CI engine, and
writes the ssh host alias `labdock-remote` (key, port, known hosts, multiplexing) Included from
~/.ssh/config: the docker CLI then reaches the engine with DOCKER_HOST=ssh://labdock-remote, like a
laptop driving a GPU server.

Engine and client share this machine's file system, so a bind mount of the checkout would still
"work" over ssh. PrivateFolder takes that away: a tmpfs mounted over a folder in a private mount
namespace, where the test's commands run (nsenter), while the engine, in the machine's own
namespace, sees only the empty folder underneath. Whatever reaches a container from there went
through the Docker API (a build context, a tar stream), never through a bind mount.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ALIAS = "labdock-remote"
DOCKER_HOST = f"ssh://{ALIAS}"
START_HINT = "start it with `source .ci/engine.sh && sshd_start` (.ci/run does)"


def remote_env() -> dict[str, str]:
    """The environment for docker commands that drive the engine over ssh."""
    return {**os.environ, "DOCKER_HOST": DOCKER_HOST}


def docker_remote(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], env=remote_env(), capture_output=True, text=True, check=check, **kwargs
    )


def check_remote_engine() -> str:
    """The engine's id as seen over ssh; fails the test run (never skips) when ssh cannot reach it."""
    alias = subprocess.run(["ssh", "-G", ALIAS], capture_output=True, text=True)
    if "port 22\n" in alias.stdout or alias.returncode != 0:
        pytest.fail(f"No ssh host alias {ALIAS} in ~/.ssh/config: {START_HINT}.")
    result = docker_remote("info", "--format", "{{.ID}}", check=False)
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(f"The engine does not answer at DOCKER_HOST={DOCKER_HOST}: {START_HINT}. {result.stderr}")
    return result.stdout.strip()


class PrivateFolder:
    """A folder whose content only commands run through run() see (a tmpfs in a private mount
    namespace); the test reads and writes it at .view. Needs root, as CI has."""

    def __init__(self, path: Path, size: str = "512m"):
        if os.geteuid() != 0:
            pytest.fail("PrivateFolder needs root (unshare/nsenter); .ci/run runs as root.")
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        # unshare makes the new namespace's mounts private: the tmpfs never shows outside it.
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sleep", "infinity"]
        )
        own = os.readlink("/proc/self/ns/mnt")
        for _ in range(100):
            if os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != own:
                break
            time.sleep(0.02)
        else:
            self.close()
            pytest.fail("unshare did not create a mount namespace")
        try:
            self.nsenter(["mount", "-t", "tmpfs", "-o", f"size={size}", "labdock-private", str(path)])
        except subprocess.CalledProcessError:
            self.close()
            raise

    @property
    def view(self) -> Path:
        """The folder as the namespace sees it, for the test's own reads and writes."""
        return Path(f"/proc/{self.holder.pid}/root{self.path}")

    def nsenter(self, argv: list[str], cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
        # nsenter's own --wd opens the folder before it enters the namespace: the one underneath.
        where = ["env", "-C", str(cwd or self.path)]
        prefix = ["nsenter", "--target", str(self.holder.pid), "--mount", "--", *where]
        kwargs.setdefault("check", True)
        return subprocess.run([*prefix, *argv], **kwargs)

    def run(
        self, *argv: str, cwd: Path | None = None, env: dict | None = None, check: bool = True, **kwargs
    ) -> subprocess.CompletedProcess:
        """Run a command in the namespace, as the remote engine's client: DOCKER_HOST=ssh://..."""
        started = time.monotonic()
        result = self.nsenter(
            list(argv),
            cwd=cwd,
            env={**remote_env(), **(env or {})},
            check=False,
            capture_output=True,
            **{"text": True, **kwargs},
        )
        result.seconds = time.monotonic() - started
        text = isinstance(result.stdout, str)
        print(f"$ {' '.join(argv)[:200]}  ({result.seconds:.2f}s, exit {result.returncode})")
        if text:
            print(result.stdout[-2000:], result.stderr[-2000:], sep="\n")
        if check:
            assert result.returncode == 0, f"{argv[:6]} failed: {result.stderr[-3000:]}"
        return result

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(10)
