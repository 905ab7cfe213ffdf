"""A remote engine over ssh (DOCKER_HOST=ssh://labdock-remote), with no bind mount of the checkout.

Every client command runs in a PrivateFolder (tests/e2e/remote.py): the engine cannot read the
folder, so what reaches a container went through the Docker API. First plain docker and compose
over ssh; then remote mode as docs/remote-engines.md designs it, driven with plain commands and
template/labdock/remote.py on a rendered project: the workspace volume, tar streams both ways,
readiness from the engine's healthcheck, the server reached through `ssh -L`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import docker, free_port, new_project, notebook, record, remove_project_state
from tests.e2e.remote import PrivateFolder, docker_remote
from tests.standalone import load

remote = load("remote")


def seconds(started: float) -> str:
    return f"{time.monotonic() - started:.2f} s"


# ----------------------------------------------------------------------------- docker over ssh


def test_docker_reaches_the_engine_over_ssh(remote_engine):
    timings = []
    for _ in range(5):
        started = time.monotonic()
        docker_remote("ps", "-q")
        timings.append(time.monotonic() - started)
    local = []
    for _ in range(5):
        started = time.monotonic()
        docker("ps", "-q")
        local.append(time.monotonic() - started)
    record("remote", "docker ps over ssh (multiplexed)", f"{sorted(timings)[2]:.2f} s")
    record("remote", "docker ps on the local socket", f"{sorted(local)[2]:.2f} s")
    version = docker_remote("version", "--format", "{{.Server.Version}}").stdout.strip()
    assert version == docker("version", "--format", "{{.Server.Version}}").stdout.strip()


def test_build_compose_and_exec_over_ssh(remote_engine, private_folder: PrivateFolder):
    """The build context is streamed (the engine cannot see the folder), compose waits for the
    engine's healthcheck, exec runs in the container: all through ssh."""
    name = f"labdock-remote-check-{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    (private_folder.view / "marker.txt").write_text(marker)
    (private_folder.view / "Dockerfile").write_text("FROM python:3.13-slim\nCOPY marker.txt /marker.txt\n")
    port = free_port()
    (private_folder.view / "compose.yaml").write_text(
        f"name: {name}\n"
        "services:\n"
        "  web:\n"
        f"    image: {name}:latest\n"
        "    command: [python3, -m, http.server, '8000']\n"
        "    ports: ['127.0.0.1:" + str(port) + ":8000']\n"
        "    healthcheck:\n"
        "      test: [CMD, python3, -c, \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000')\"]\n"
        "      interval: 1s\n"
    )
    assert not (private_folder.path / "marker.txt").exists()  # outside the namespace: an empty folder
    try:
        built = private_folder.run(
            "docker", "build", "-q", "-t", f"{name}:latest", ".", env={"DOCKER_BUILDKIT": "1"}
        )
        record("remote", "docker build over ssh (one COPY)", f"{built.seconds:.2f} s")
        up = private_folder.run("docker", "compose", "up", "--detach", "--wait", "--no-build")
        record("remote", "compose up --wait over ssh (1 s healthcheck)", f"{up.seconds:.2f} s")
        inside = private_folder.run("docker", "compose", "exec", "-T", "web", "cat", "/marker.txt")
        assert inside.stdout == marker
        state = json.loads(docker("inspect", f"{name}-web-1").stdout)[0]["State"]
        assert state["Health"]["Status"] == "healthy"
    finally:
        private_folder.run("docker", "compose", "down", "--volumes", check=False)
        docker("rmi", "-f", f"{name}:latest", check=False)


# ----------------------------------------------------------------------------- remote mode


class RemoteProject:
    """A rendered project in a PrivateFolder, driven the way remote-mode tasks will drive it."""

    def __init__(self, folder: PrivateFolder, root: Path, slug: str, port: int):
        self.folder, self.root, self.slug, self.port = folder, root, slug, port
        self.token = uuid.uuid4().hex
        self.record = ""  # the last sync's state, as invoke would keep it in a file

    @property
    def view(self) -> Path:
        return Path(f"/proc/{self.folder.holder.pid}/root{self.root}")

    def compose(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        files = ["-f", "compose.yaml", "-f", "compose.remote.yaml"]
        return self.folder.run("docker", "compose", *files, *args, cwd=self.root, **kwargs)

    def exec_bytes(self, argv: list[str], stdin: bytes = b"") -> bytes:
        result = self.folder.nsenter(
            [
                "docker",
                "compose",
                "-f",
                "compose.yaml",
                "-f",
                "compose.remote.yaml",
                "exec",
                "-T",
                "lab",
                *argv,
            ],
            cwd=self.root,
            env={**os.environ, "DOCKER_HOST": "ssh://labdock-remote"},
            input=stdin,
            capture_output=True,
        )
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        return result.stdout

    def host_files(self) -> dict[str, str]:
        git = ["git", "ls-files", "-co", "--exclude-standard", "-z"]
        listed = self.folder.nsenter(git, cwd=self.root, capture_output=True, text=True).stdout.split("\0")
        return remote.host_manifest(self.view, [path for path in listed if path])

    def engine_files(self) -> tuple[str, dict[str, str]]:
        return remote.parse_manifest(self.exec_bytes(remote.engine_manifest_command()).decode())

    def sync(self, push: bool = True, fetch: bool = True):
        """One sync as `invoke sync` would do it: 2 ssh calls to look, 1 per direction to copy."""
        host = self.host_files()
        volume, engine = self.engine_files()
        base = remote.read_base(self.record, volume)
        plan = remote.plan_sync(base, host, engine)
        if push and (plan.push or plan.delete_on_engine):
            self.exec_bytes(
                remote.engine_apply_command(plan.delete_on_engine), remote.pack(self.view, plan.push)
            )
        if fetch and plan.fetch:
            remote.unpack(self.exec_bytes(remote.engine_pack_command(plan.fetch)), self.view, plan.fetch)
        if fetch:
            for path in plan.delete_here:
                (self.view / path).unlink()
        files = remote.base_after(base, host, engine, plan, pushed=push, fetched=fetch)
        self.record = remote.base_record(volume, files)
        return plan


@pytest.fixture(scope="module")
def remote_project(remote_engine, tmp_path_factory):
    """Rendered and locked like any project; then moved where the engine cannot see it, built
    over ssh with `invoke build` (the context is streamed) and started in remote mode."""
    local = new_project(
        tmp_path_factory.mktemp("remote-local"), project_name="Remote Check Alpha", stack="minimal"
    )
    folder = PrivateFolder(tmp_path_factory.mktemp("remote-private") / "private")
    project = RemoteProject(
        folder, folder.path / "project", local.answers["project_slug"], local.answers["jupyter_port"]
    )
    try:
        local.invoke("lock")
        shutil.copytree(local.root, project.view, symlinks=True)
        # The token under both names compose.yaml has used (JUPYTER_TOKEN, then LABDOCK_TOKEN).
        env = f"JUPYTER_TOKEN={project.token}\nLABDOCK_TOKEN={project.token}\nLABDOCK_PORT={project.port}\n"
        (project.view / ".env").write_text(env)
        (project.view / "compose.remote.yaml").write_text(remote.compose_override(["lab"]))
        built = folder.run(sys.executable, "-m", "invoke", "build", cwd=project.root)
        record("remote", "invoke build over ssh (stack minimal, cached)", f"{built.seconds:.1f} s")
        yield project
    finally:
        if (project.view / "compose.remote.yaml").exists():
            project.compose("down", "--volumes", check=False)
        folder.close()
        remove_project_state(local)


def test_up_waits_for_the_engines_healthcheck_without_a_bind_mount(remote_project):
    up = remote_project.compose("up", "--detach", "--wait", "--no-build")
    record("remote", "compose up --wait over ssh (image healthcheck)", f"{up.seconds:.2f} s")
    container = f"{remote_project.slug}-lab-1"
    details = json.loads(docker("inspect", container).stdout)[0]
    assert details["State"]["Health"]["Status"] == "healthy"
    mounts = {mount["Destination"]: mount for mount in details["Mounts"]}
    assert mounts["/workspace"]["Type"] == "volume"
    assert mounts["/workspace"]["Name"] == f"{remote_project.slug}_workspace"
    assert not [mount for mount in details["Mounts"] if mount["Type"] == "bind"]
    # What a bind mount would have shown: the engine's view of the checkout is an empty folder.
    assert list(remote_project.root.parent.iterdir()) == []


def test_the_checkout_reaches_the_container_by_a_tar_stream(remote_project):
    started = time.monotonic()
    plan = remote_project.sync()
    record("remote", "first sync (whole checkout) over ssh", seconds(started))
    assert (
        "pyproject.toml" in plan.push
        and f"src/{remote_project.slug.replace('-', '_')}/__init__.py" in plan.push
    )
    assert not (plan.fetch or plan.conflicts)
    _, engine = remote_project.engine_files()
    assert engine == remote_project.host_files()  # the same files, byte for byte
    assert ".env" not in engine  # the token stays here
    owners = remote_project.exec_bytes(["stat", "-c", "%u %U", "notebooks", "src", "pyproject.toml"])
    user = remote_project.exec_bytes(["id", "-u"]).decode().strip()
    assert {line.split()[0] for line in owners.decode().splitlines()} == {user}  # the notebook user's


def test_an_edit_on_the_host_reaches_the_container_on_sync(remote_project):
    package = remote_project.slug.replace("-", "_")
    module = remote_project.view / "src" / package / "__init__.py"
    marker = uuid.uuid4().hex
    module.write_text(module.read_text() + f"\nMARKER = {marker!r}\n")
    started = time.monotonic()
    plan = remote_project.sync()
    record("remote", "sync of one edited file over ssh", seconds(started))
    assert plan.push == [f"src/{package}/__init__.py"] and not plan.fetch
    imported = remote_project.exec_bytes(["python", "-c", f"import {package}; print({package}.MARKER)"])
    assert imported.decode().strip() == marker


def test_a_notebook_saved_in_the_lab_is_fetched_back(remote_project):
    local_port = free_port()
    tunnel_argv = remote.tunnel_command("ssh://labdock-remote", [(local_port, remote_project.port)])
    tunnel = subprocess.Popen([*tunnel_argv[:1], "-o", "ExitOnForwardFailure=yes", *tunnel_argv[1:]])
    try:
        url = f"http://127.0.0.1:{local_port}"
        auth = {"Authorization": f"token {remote_project.token}"}
        deadline = time.monotonic() + 20
        while True:
            try:
                status = requests.get(f"{url}/api/status", headers=auth, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the ssh -L tunnel never answered"
                time.sleep(0.2)
        assert status.status_code == 200
        saved = requests.put(
            f"{url}/api/contents/notebooks/from-the-lab.ipynb",
            json={"type": "notebook", "format": "json", "content": notebook("print('saved in the lab')")},
            headers=auth,
            timeout=10,
        )
        assert saved.status_code == 201, saved.text  # a new file in a folder the sync created
    finally:
        tunnel.terminate()
        tunnel.wait(10)
    host_copy = remote_project.view / "notebooks" / "from-the-lab.ipynb"
    assert not host_copy.exists()  # saved into the volume only, until a sync
    started = time.monotonic()
    plan = remote_project.sync()
    record("remote", "sync fetching a notebook saved in the lab", seconds(started))
    assert plan.fetch == ["notebooks/from-the-lab.ipynb"] and not plan.push
    assert "saved in the lab" in host_copy.read_text()


def test_an_edit_on_both_sides_is_a_conflict_and_nothing_is_overwritten(remote_project):
    path = "notebooks/from-the-lab.ipynb"
    (remote_project.view / path).write_text("edited here\n")
    remote_project.exec_bytes(["sh", "-c", f"echo edited there > {path}"])
    plan = remote_project.sync()
    assert plan.conflicts == [path] and not (plan.push or plan.fetch)
    assert (remote_project.view / path).read_text() == "edited here\n"
    assert remote_project.exec_bytes(["cat", path]) == b"edited there\n"


def test_a_new_volume_never_deletes_files_here(remote_project):
    """After `down --volumes` the volume is new and empty: files are pushed again, not deleted."""
    remote_project.compose("down", "--volumes")
    remote_project.compose("up", "--detach", "--wait", "--no-build")
    plan = remote_project.sync()
    assert not plan.delete_here and "notebooks/from-the-lab.ipynb" in plan.push
    assert (remote_project.view / "notebooks/from-the-lab.ipynb").read_text() == "edited here\n"
