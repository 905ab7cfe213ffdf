"""A remote engine over ssh (DOCKER_HOST=ssh://labdock-remote), with no bind mount of the checkout.

Every client command runs in a PrivateFolder (tests/e2e/remote.py): the engine cannot read the
folder, so what reaches a container went through the Docker API. First plain docker and compose
over ssh; then a project's own tasks in remote mode (docs/remote-engines.md): `invoke up` waits
for the engine's healthcheck and sends the checkout into the workspace volume, `invoke sync`
carries edits both ways (conflicts left alone), `invoke url` prints the `ssh -L` command that
reaches the server, `invoke down --volumes` refuses while the lab has unsynced work.
"""

from __future__ import annotations

import json
import shlex
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
    """A rendered project in a PrivateFolder, its tasks run there with DOCKER_HOST=ssh://..."""

    def __init__(self, folder: PrivateFolder, root: Path, answers: dict):
        self.folder, self.root, self.answers = folder, root, answers

    @property
    def view(self) -> Path:
        return Path(f"/proc/{self.folder.holder.pid}/root{self.root}")

    def invoke(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.folder.run(sys.executable, "-m", "invoke", *args, cwd=self.root, check=check)

    @property
    def name(self) -> str:
        return json.loads((self.view / ".labdock" / "checkout.json").read_text())["name"]

    def container(self) -> dict:
        return json.loads(docker("inspect", f"{self.name}-lab-1").stdout)[0]

    def in_lab(self, command: str) -> str:
        return self.invoke("exec", command).stdout


@pytest.fixture(scope="module")
def remote_project(remote_engine, tmp_path_factory):
    """Rendered and locked like any project (Poetry needs a local engine for now), then moved
    where the engine cannot see it and started over ssh with `invoke up`."""
    local = new_project(
        tmp_path_factory.mktemp("remote-local"), project_name="Remote Check Alpha", stack="minimal"
    )
    folder = PrivateFolder(tmp_path_factory.mktemp("remote-private") / "private")
    project = RemoteProject(folder, folder.path / "project", local.answers)
    try:
        local.invoke("lock")
        shutil.copytree(local.root, project.view, symlinks=True, ignore=shutil.ignore_patterns(".labdock"))
        up = project.invoke("up")
        record("remote", "invoke up over ssh (build cached, first sync)", f"{up.seconds:.1f} s")
        yield project, up
    finally:
        if (project.view / "compose.remote.yaml").exists():
            project.invoke("down", "--volumes", "--force", check=False)
        folder.close()
        remove_project_state(local)
        docker(
            "rmi",
            "-f",
            *docker("images", "-q", "--filter", f"label=dev.labdock.folder={project.root}").stdout.split(),
            check=False,
        )


def test_up_is_healthy_by_the_engines_healthcheck_without_a_bind_mount(remote_project):
    project, up = remote_project
    assert "JupyterLab is healthy (the engine's healthcheck)." in up.stdout
    details = project.container()
    assert details["State"]["Health"]["Status"] == "healthy"  # `up --wait` returned on it
    mounts = {mount["Destination"]: mount for mount in details["Mounts"]}
    assert mounts["/workspace"]["Type"] == "volume"
    assert mounts["/workspace"]["Name"] == f"{project.name}_workspace"
    assert not [mount for mount in details["Mounts"] if mount["Type"] == "bind"]
    # What a bind mount would have shown: the engine's view of the checkout is an empty folder.
    assert list(project.root.parent.iterdir()) == []
    assert f"ssh -N -L 127.0.0.1:{project.answers['jupyter_port']}:127.0.0.1:" in up.stdout


def test_up_sent_the_checkout_as_the_notebook_user(remote_project):
    project, up = remote_project
    assert "Synced this folder to the engine's workspace (" in up.stdout
    package = project.answers["package_name"]
    listed = project.in_lab(f"stat -c '%u %n' pyproject.toml notebooks src/{package}/__init__.py; id -u")
    *owners, user = listed.split("\n")[:-1]
    assert {line.split()[0] for line in owners} == {user}  # the notebook user's: the lab can save there
    assert project.in_lab("test -e .env || echo no-env").strip() == "no-env"  # the token stays here


def test_an_edit_here_arrives_on_sync(remote_project):
    project, _ = remote_project
    package = project.answers["package_name"]
    module = project.view / "src" / package / "__init__.py"
    marker = uuid.uuid4().hex
    module.write_text(module.read_text() + f"\nMARKER = {marker!r}\n")
    synced = project.invoke("sync")
    record("remote", "invoke sync, one edited file", f"{synced.seconds:.2f} s")
    assert "1 sent, 0 fetched" in synced.stdout
    assert project.in_lab(f"python -c 'import {package}; print({package}.MARKER)'").strip() == marker


def test_run_notebook_over_ssh_sends_the_changes_and_brings_the_executed_copy_back(remote_project):
    """The engine runs the workspace volume's copy: run-notebook sends this folder's changes (an
    edited module, a new notebook) first, and the executed copy comes back here."""
    project, _ = remote_project
    package = project.answers["package_name"]
    module = project.view / "src" / package / "__init__.py"
    marker = uuid.uuid4().hex
    module.write_text(module.read_text() + f"\nRUN_MARKER = {marker!r}\n")  # not synced yet
    cells = notebook("factor = 1", f"import {package}\nprint({package}.RUN_MARKER, factor * 2)")
    cells["cells"][0]["metadata"]["tags"] = ["parameters"]
    (project.view / "notebooks" / "remote-run.ipynb").write_text(json.dumps(cells))
    result = project.invoke("run-notebook", "notebooks/remote-run.ipynb", "-p", "factor=21")
    record("remote", "invoke run-notebook -p over ssh (sync, run, fetch)", f"{result.seconds:.1f} s")
    executed = json.loads((project.view / "notebooks" / "remote-run.executed.ipynb").read_text())
    printed = "".join("".join(output.get("text", "")) for output in executed["cells"][-1]["outputs"])
    assert printed == f"{marker} 42\n"
    assert marker in project.in_lab("cat notebooks/remote-run.executed.ipynb")  # it ran there
    assert "0 sent, 0 fetched" in project.invoke("sync").stdout  # both sides agree afterwards


def test_a_notebook_saved_in_the_lab_arrives_on_sync(remote_project):
    project, _ = remote_project
    url = project.invoke("url")
    lines = url.stdout.strip().splitlines()
    tunnel = shlex.split(lines[-2])
    assert tunnel[:2] == ["ssh", "-N"] and tunnel[-1] == "labdock-remote"
    base, _, token = lines[-1].partition("/lab?token=")
    ssh = subprocess.Popen([*tunnel[:1], "-o", "ExitOnForwardFailure=yes", *tunnel[1:]])
    try:
        auth = {"Authorization": f"token {token}"}
        deadline = time.monotonic() + 20
        while True:
            try:
                status = requests.get(f"{base}/api/status", headers=auth, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the ssh -L tunnel never answered"
                time.sleep(0.2)
        assert status.status_code == 200
        saved = requests.put(
            f"{base}/api/contents/notebooks/from-the-lab.ipynb",
            json={"type": "notebook", "format": "json", "content": notebook("print('saved in the lab')")},
            headers=auth,
            timeout=10,
        )
        assert saved.status_code == 201, saved.text
    finally:
        ssh.terminate()
        ssh.wait(10)
    host_copy = project.view / "notebooks" / "from-the-lab.ipynb"
    assert not host_copy.exists()  # in the volume only, until a sync
    synced = project.invoke("sync")
    record("remote", "invoke sync, a notebook saved in the lab", f"{synced.seconds:.2f} s")
    assert "0 sent, 1 fetched" in synced.stdout
    assert "saved in the lab" in host_copy.read_text()


def test_an_edit_on_both_sides_is_a_conflict_left_alone(remote_project):
    project, _ = remote_project
    path = "notebooks/from-the-lab.ipynb"
    (project.view / path).write_text("edited here\n")
    project.in_lab(f"echo edited there > {path}")
    result = project.invoke("sync", check=False)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"Changed here and in the engine's workspace, left as they are on both sides: {path}.")
    )
    assert (project.view / path).read_text() == "edited here\n"
    assert project.in_lab(f"cat {path}") == "edited there\n"


def test_down_volumes_refuses_while_the_lab_has_unsynced_work(remote_project):
    project, _ = remote_project
    result = project.invoke("down", "--volumes", check=False)
    assert result.returncode == 1
    assert (
        "The engine's workspace has changes not synced here (notebooks/from-the-lab.ipynb)" in result.stderr
    )
    assert project.container()["State"]["Status"] == "running"


def test_a_new_volume_never_deletes_files_here(remote_project):
    """After `down --volumes --force` the volume is new and empty: `up` sends everything again."""
    project, _ = remote_project
    project.invoke("sync", "--prefer", "here")
    project.invoke("down", "--volumes", "--force")
    up = project.invoke("up")
    record("remote", "invoke up over ssh, new volume", f"{up.seconds:.1f} s")
    assert (project.view / "notebooks/from-the-lab.ipynb").read_text() == "edited here\n"
    assert project.in_lab("cat notebooks/from-the-lab.ipynb") == "edited here\n"
