"""The daily workflow on a real engine: lock, build, up, HTTP, exec, notebooks, push, down.

Two projects, chosen to cover both stacks' extremes and both stand-in Pythons: stack minimal on
Python 3.11 and stack scipy on Python 3.13. Tests in this module run in order per project.
"""

from __future__ import annotations

import json
import os
import re
import tomllib

import pytest
import requests

from tests.e2e.harness import (
    Project,
    checkout_name,
    docker,
    free_port,
    git_commit,
    git_head,
    image_of,
    notebook,
    record,
    remove_project_state,
)
from tests.rendering import render

PROJECTS = [
    {"project_name": "E2E Minimal", "stack": "minimal", "python_version": "3.11"},
    {"project_name": "E2E Scipy", "stack": "scipy", "python_version": "3.13"},
]
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]{64})")


@pytest.fixture(scope="module", params=PROJECTS, ids=lambda a: f"{a['stack']}-py{a['python_version']}")
def project(request, engine, registry, tmp_path_factory) -> Project:
    answers = {**request.param, "jupyter_port": free_port(), "registry": f"{registry.address}/labdock"}
    root = render(tmp_path_factory.mktemp("e2e") / answers["stack"], **answers)
    answers.update(
        project_slug=answers["project_name"].lower().replace(" ", "-"),
        package_name=answers["project_name"].lower().replace(" ", "_"),
    )
    git_commit(root)
    proj = Project(root, answers)
    yield proj
    remove_project_state(proj)


@pytest.fixture(scope="module")
def server(project) -> dict:
    """The running server: its base URL and token, from the URL `invoke up` printed."""
    result = project.invoke("up")
    match = URL.search(result.stdout)
    assert match, f"invoke up printed no URL:\n{result.stdout}"
    record(project.name, "invoke up to healthy (image built)", f"{result.seconds:.1f} s")
    return {"base": f"http://127.0.0.1:{match[1]}", "token": match[2]}


def test_lock_writes_a_standard_lock_owned_by_the_user(project):
    result = project.invoke("lock")
    record(project.name, "invoke lock", f"{result.seconds:.1f} s")
    lock = project.root / "poetry.lock"
    data = tomllib.loads(lock.read_text())
    names = {package["name"] for package in data["package"]}
    assert {"jupyterlab", "ipykernel"} <= names
    if project.answers["stack"] == "scipy":
        assert {"numpy", "pandas", "scikit-learn", "seaborn"} <= names
    assert not any("source" in package for package in data["package"]), "mirror URLs leaked into the lock"
    assert lock.stat().st_uid == os.getuid()
    git_commit(project.root, "Lock dependencies")


def test_build_labels_the_image(project):
    result = project.invoke("build")
    image = image_of(project)
    inspect = json.loads(docker("image", "inspect", image).stdout)[0]
    labels = inspect["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == git_head(project.root)
    assert len(labels["dev.labdock.lock-sha256"]) == 64
    assert labels["org.opencontainers.image.created"].endswith("Z")
    record(project.name, "invoke build (first for this project)", f"{result.seconds:.1f} s")
    record(project.name, "image size", f"{inspect['Size'] / 1e6:.0f} MB")
    assert (
        "poetry"
        not in docker("run", "--rm", "--entrypoint", "sh", image, "-c", "ls /opt /usr/local/bin").stdout
    ), "Poetry leaked into the runtime image"


def test_api_answers_and_requires_the_token(project, server):
    assert requests.get(f"{server['base']}/api", timeout=5).status_code == 200
    assert requests.get(f"{server['base']}/api/contents", timeout=5).status_code == 403
    with_token = requests.get(
        f"{server['base']}/api/contents", timeout=5, headers={"Authorization": f"token {server['token']}"}
    )
    assert with_token.status_code == 200
    assert {item["name"] for item in with_token.json()["content"]} >= {"notebooks", "src", "tasks.py"}


def test_port_is_published_on_loopback_only(project, server):
    container = docker(
        "ps", "-q", "--filter", f"label=com.docker.compose.project={checkout_name(project.root)}"
    )
    bindings = docker("port", container.stdout.strip(), "8888").stdout.split()
    assert bindings and all(b.startswith("127.0.0.1:") for b in bindings), bindings


def test_exec_imports_the_package_and_passes_exit_codes(project, server):
    project.invoke("exec", f"python -c 'import {project.answers['package_name']}'")
    assert project.invoke("exec", "exit 3", check=False).returncode == 3


def test_notebook_written_on_the_host_is_listed(project, server):
    (project.root / "notebooks" / "from-host.ipynb").write_text(json.dumps(notebook()))
    listing = requests.get(
        f"{server['base']}/api/contents/notebooks",
        timeout=5,
        headers={"Authorization": f"token {server['token']}"},
    ).json()
    assert "from-host.ipynb" in {item["name"] for item in listing["content"]}


def test_files_the_server_creates_belong_to_the_invoking_user(project, server):
    """Run as root here (CI): the files must be root's; test_security.py runs as UID 1234."""
    headers = {"Authorization": f"token {server['token']}"}
    requests.put(
        f"{server['base']}/api/contents/notebooks/by-server.ipynb",
        headers=headers,
        timeout=5,
        json={"type": "notebook", "content": notebook()},
    ).raise_for_status()
    created = project.root / "notebooks" / "by-server.ipynb"
    assert (created.stat().st_uid, created.stat().st_gid) == (os.getuid(), os.getgid())
    record(project.name, "server-created file owned by", f"uid {created.stat().st_uid} (invoking user)")


def test_url_prints_the_same_url(project, server):
    result = project.invoke("url", cwd=project.root / "notebooks")  # from a subfolder
    assert f"{server['base']}/lab?token={server['token']}" in result.stdout


def test_push_reaches_the_registry(project, server, registry):
    result = project.invoke("push")
    repository = f"labdock/{project.answers['project_slug']}"
    sha = git_head(project.root)[:7]
    assert set(registry.tags(repository)) >= {sha, "latest"}
    record(project.name, "pushed", f"{registry.address}/{repository}:{sha} ({result.seconds:.1f} s)")


def test_down_leaves_no_container(project, server):
    project.invoke("down")
    running = docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={checkout_name(project.root)}"
    )
    assert running.stdout.strip() == ""
