"""End-to-end harness: run invoke like a user, a real registry, figures for the report."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

from tests.rendering import render

FIGURES: list[tuple[str, str, str]] = []  # (project, figure, value): printed after the run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def record(project: str, figure: str, value: str) -> None:
    FIGURES.append((project, figure, value))


@dataclass
class HostUser:
    """A host account other than the test's own, with access to the engine's socket."""

    uid: int
    gid: int
    groups: list[int]

    def subprocess_args(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": self.groups}


@dataclass
class Project:
    """A rendered project and the invoke command line run in it."""

    root: Path
    answers: dict
    env: dict = field(default_factory=dict)
    python: str = sys.executable  # with invoke installed
    user: HostUser | None = None  # run as this host user instead of the test's own

    @property
    def name(self) -> str:
        return f"{self.answers['stack']}-py{self.answers['python_version']}"

    def invoke(
        self,
        *args: str,
        check: bool = True,
        cwd: Path | None = None,
        env: dict | None = None,
        timeout: float = 1800,
    ) -> subprocess.CompletedProcess:
        """Run `invoke ARGS` in the project like a user; echo its output into the test log."""
        started = time.monotonic()
        as_user = self.user.subprocess_args() if self.user else {}
        result = subprocess.run(
            [self.python, "-m", "invoke", *args],
            cwd=cwd or self.root,
            env={**os.environ, **self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            **as_user,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result.seconds = time.monotonic() - started
        print(f"$ invoke {' '.join(args)}  ({result.seconds:.1f}s, exit {result.returncode})")
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        if check:
            assert result.returncode == 0, (
                f"invoke {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result


def new_project(folder: Path, **answers: object) -> Project:
    """A project rendered into folder/project (with a free JupyterLab port unless one is given);
    its answers include the defaults and derived ones (project_slug, package_name...)."""
    answers.setdefault("jupyter_port", free_port())
    root = render(folder / "project", **answers)
    recorded = yaml.safe_load((root / ".copier-answers.yml").read_text())
    defaults = {key: value for key, value in recorded.items() if not key.startswith("_")}
    return Project(root, {**defaults, **answers})


def bridge_gateway() -> str:
    """The host's address as containers on the default bridge (and builds) reach it."""
    configured = docker(
        "network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"
    )
    if configured.stdout.strip():
        return configured.stdout.strip()
    # Engines that found the bridge already up leave the gateway out of IPAM: ask a container.
    routes = docker("run", "--rm", "python:3.13-slim", "cat", "/proc/net/route").stdout.splitlines()[1:]
    gateway = next(int(fields[2], 16) for fields in map(str.split, routes) if fields[1] == "00000000")
    return socket.inet_ntoa(gateway.to_bytes(4, "little"))


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


class Registry:
    """Debian's docker-registry on 127.0.0.1 (loopback needs no TLS), optionally with htpasswd."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None):
        binary = shutil.which("docker-registry")
        if not binary:
            pytest.fail("docker-registry is not installed (apt-get install docker-registry; .ci/run does)")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        auth = ""
        if users:
            htpasswd = workdir / "htpasswd"
            lines = [
                subprocess.run(
                    ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True
                ).stdout.strip()
                for user, password in users.items()
            ]
            htpasswd.write_text("\n".join(lines) + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: labdock-test\n    path: {htpasswd}\n"
        config = workdir / "registry.yml"
        config.write_text(
            f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "
            f"{workdir / 'storage'}\nhttp:\n  addr: {self.address}\n{auth}"
        )
        self.process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "registry.log").open("w"),
        )
        for _ in range(50):
            try:
                requests.get(f"http://{self.address}/v2/", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        pytest.fail(f"docker-registry did not start: {(workdir / 'registry.log').read_text()}")

    def tags(self, repository: str, auth: tuple[str, str] | None = None) -> list[str]:
        response = requests.get(f"http://{self.address}/v2/{repository}/tags/list", auth=auth, timeout=5)
        response.raise_for_status()
        return response.json()["tags"] or []

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def notebook(*code_cells: str) -> dict:
    """A notebook (nbformat 4.5) with these code cells, as the contents API and .ipynb files hold it."""
    cells = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": code}
        for code in code_cells
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return {"cells": cells, "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}


def read_token(root: Path) -> str:
    """The JupyterLab token in the project's .env ('' while there is none)."""
    env_file = root / ".env"
    lines = env_file.read_text().splitlines() if env_file.exists() else []
    values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return values.get("LABDOCK_TOKEN", "")


def git_head(root: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def git_commit(root: Path, message: str = "Initial commit") -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    # --allow-empty: a step may leave nothing to commit (e.g. `invoke lock` on the shipped lock).
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=root, check=True, env=env)


def checkout_name(root: Path) -> str:
    """What the checkout in root is called on the engine (compose project; images NAME:latest and
    NAME:builder; volumes NAME_*): fixed by its first task in .labdock/checkout.json."""
    return json.loads((root / ".labdock" / "checkout.json").read_text())["name"]


def image_of(project: Project) -> str:
    return f"{checkout_name(project.root)}:latest"


def remove_project_state(project: Project) -> None:
    """Leave the engine as we found it: containers, volumes and the project's images (everything
    labelled with its folder, and what an earlier release named after the slug)."""
    project.invoke("down", "--volumes", check=False)
    folder = f"label=dev.labdock.folder={project.root}"
    images = docker("images", "--quiet", "--filter", folder, check=False).stdout.split()
    if images:
        docker("rmi", "-f", *set(images), check=False)
    volumes = docker("volume", "ls", "--quiet", "--filter", folder, check=False).stdout.split()
    slug = project.answers["project_slug"]
    legacy = [f"{slug}-poetry-cache", f"{slug}_jupyter-state", f"{slug}_python-cache"]
    docker("volume", "rm", "-f", *volumes, *legacy, check=False)
