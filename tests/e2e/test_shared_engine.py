"""One engine, many checkouts and users (issue 15): two copies of the same project (same name,
same slug) in two folders, a third run by another OS user, all on the one engine; and a project
from the release that named everything after the slug, moving its JupyterLab state over.

The tests of the pair run in file order: A is up first; B, a copy of A's folder (its .labdock/
included), is refused A's port, then starts with `port: auto`.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import (
    HostUser,
    Project,
    checkout_name,
    docker,
    git_commit,
    image_of,
    new_project,
    notebook,
    read_token,
    record,
    remove_project_state,
)

THEME = "/lab/api/settings/@jupyterlab/apputils-extension:themes"
OTHER_UID = OTHER_GID = 1234  # the account tests/e2e/test_security.py uses too


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def inspect(name: str) -> dict:
    return json.loads(docker("inspect", name).stdout)[0]


def url_of(project: Project) -> tuple[str, str]:
    """(base URL, token) of the running server, as `invoke url` prints it."""
    printed = project.invoke("url").stdout.strip().splitlines()[-1]
    base, _, token = printed.partition("/lab?token=")
    return base, token


def api(base: str, token: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method, base + path, headers={"Authorization": f"token {token}"}, timeout=10, **kwargs
    )


def healthy(name: str, timeout: float = 20) -> bool:
    """The engine's healthcheck says healthy (it checks every 5 s: `invoke up` returns as soon as
    /api answers, before the engine's status catches up)."""
    deadline = time.monotonic() + timeout
    while inspect(name)["State"].get("Health", {}).get("Status") != "healthy":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


@pytest.fixture(scope="module")
def pair(engine, tmp_path_factory):
    """Checkout A, locked, committed and up; B, a copy of A's folder (not started)."""
    base = tmp_path_factory.mktemp("shared")
    a = new_project(base / "a", project_name="Shared Engine Alpha", stack="minimal", python_version="3.13")
    a.invoke("lock")
    git_commit(a.root)
    started = a.invoke("up")
    record("shared engine", "invoke up, checkout A (s)", f"{started.seconds:.1f}")
    b = Project(Path(shutil.copytree(a.root, base / "b" / "project", symlinks=True)), dict(a.answers))
    yield a, b
    for project in (b, a):
        remove_project_state(project)


def test_a_copied_folder_is_told_apart_and_refused_the_port_of_the_original(pair):
    a, b = pair
    result = b.invoke("up", check=False)
    assert f"This folder is a copy of {a.root}: it gets containers, images and volumes of its own" in (
        result.stderr
    )
    port = a.answers["jupyter_port"]
    assert result.returncode != 0
    assert last_line(result) == (
        f"Port {port} on 127.0.0.1 is already in use by the JupyterLab of another checkout, {a.root} "
        "(user root): stop it, or choose another port: labdock.port: auto picks a free one (or "
        "INVOKE_LABDOCK_PORT=<port> for one run)."
    )
    record("failure messages", "invoke up, port of another checkout", last_line(result))
    assert checkout_name(b.root) != checkout_name(a.root)


def test_both_copies_run_side_by_side_each_serving_its_own_notebooks(pair):
    a, b = pair
    (b.root / "invoke.yaml").write_text(
        (b.root / "invoke.yaml").read_text().replace(f"port: {a.answers['jupyter_port']}", "port: auto")
    )
    started = b.invoke("up")
    record("shared engine", "invoke up, checkout B, port auto (s)", f"{started.seconds:.1f}")
    base_a, token_a = url_of(a)
    base_b, token_b = url_of(b)
    assert base_a != base_b and base_a.endswith(f":{a.answers['jupyter_port']}")
    assert url_of(b) == (base_b, token_b)  # the port auto picked is kept
    for name in (checkout_name(a.root), checkout_name(b.root)):
        assert healthy(f"{name}-lab-1")
    saved = api(
        base_a,
        token_a,
        "PUT",
        "/api/contents/notebooks/only-in-a.ipynb",
        json={"type": "notebook", "content": notebook("print('a')")},
    )
    assert saved.status_code == 201
    assert (a.root / "notebooks" / "only-in-a.ipynb").is_file()
    assert not (b.root / "notebooks" / "only-in-a.ipynb").exists()
    listed_b = {
        item["name"] for item in api(base_b, token_b, "GET", "/api/contents/notebooks").json()["content"]
    }
    assert "getting-started.ipynb" in listed_b and "only-in-a.ipynb" not in listed_b
    for project in (a, b):  # each container mounts its own folder, under its own names
        mounts = inspect(f"{checkout_name(project.root)}-lab-1")["Mounts"]
        assert [m["Source"] for m in mounts if m["Destination"] == "/workspace"] == [str(project.root)]
        labels = inspect(f"{checkout_name(project.root)}-lab-1")["Config"]["Labels"]
        assert (labels["dev.labdock.folder"], labels["dev.labdock.user"]) == (str(project.root), "root")


def test_a_dependency_change_in_one_never_touches_the_other(pair):
    a, b = pair
    b_name = checkout_name(b.root)
    b_image = inspect(image_of(b))["Id"]
    b_container = inspect(f"{b_name}-lab-1")["Id"]
    a_image = inspect(image_of(a))["Id"]
    pyproject = a.root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = []", 'dependencies = ["tomli-w==1.2.0"]', 1)
    )
    a.invoke("lock")
    built = a.invoke("build")
    record("shared engine", "build after a dependency edit in A (s)", f"{built.seconds:.1f}")
    a.invoke("up")
    assert inspect(image_of(a))["Id"] != a_image
    assert a.invoke("exec", "python -c 'import tomli_w'").returncode == 0
    assert inspect(image_of(b))["Id"] == b_image  # B's image, untouched
    assert inspect(f"{b_name}-lab-1")["Id"] == b_container and healthy(f"{b_name}-lab-1")  # B's server too
    assert b.invoke("exec", "python -c 'import tomli_w'", check=False).returncode != 0


def test_down_volumes_in_one_leaves_the_others_volumes(pair):
    a, b = pair
    b_volumes = {f"{checkout_name(b.root)}_{v}" for v in ("jupyter-state", "python-cache")}
    a.invoke("down", "--volumes")
    names = set(docker("volume", "ls", "--format", "{{.Name}}").stdout.split())
    assert b_volumes <= names
    assert not {f"{checkout_name(a.root)}_{v}" for v in ("jupyter-state", "python-cache")} & names
    assert healthy(f"{checkout_name(b.root)}-lab-1")


def test_a_resource_of_another_checkout_is_never_reused(pair, tmp_path):
    """A folder whose .labdock/ gives it B's names, with an id of its own (what an undetected copy
    would be): the first task stops with one line naming B's folder, before anything starts."""
    _, b = pair
    c = Project(Path(shutil.copytree(b.root, tmp_path / "c" / "project", symlinks=True)), dict(b.answers))
    saved = json.loads((b.root / ".labdock" / "checkout.json").read_text())
    stolen = {**saved, "id": "0123456789ab", "folder": str(c.root), "origin": str(c.root)}
    (c.root / ".labdock" / "checkout.json").write_text(json.dumps(stolen))
    result = c.invoke("up", check=False)
    assert result.returncode != 0
    line = last_line(result)
    assert line.startswith(
        f"{checkout_name(b.root)}-lab-1 on the Docker engine belongs to another checkout: {b.root}"
    )
    assert "it is never reused" in line and "delete .labdock/ here" in line
    record("failure messages", "invoke up, names of another checkout", line)
    assert healthy(f"{checkout_name(b.root)}-lab-1")


def test_the_user_setting_names_a_second_user(pair):
    _, b = pair
    doctor = b.invoke("doctor", check=False, env={"INVOKE_LABDOCK_USER": "bob"})
    assert "[..] this checkout on the engine: shared-engine-alpha-bob-" in doctor.stdout
    assert "(user bob)" in doctor.stdout


# ----------------------------------------------------------------------------- another OS user


def other_user() -> HostUser:
    """UID 1234 in the docker group (made if needed); the tests run as root (.ci/run)."""
    if os.geteuid() != 0:
        pytest.fail("a second OS user needs root to create it; .ci/run runs the tests as root")
    try:
        pwd.getpwuid(OTHER_UID)
    except KeyError:
        subprocess.run(["groupadd", "--gid", str(OTHER_GID), "labdock-e2e"], check=True)
        subprocess.run(
            ["useradd", "--uid", str(OTHER_UID), "--gid", str(OTHER_GID), "--no-create-home", "labdock-e2e"],
            check=True,
        )
    return HostUser(OTHER_UID, OTHER_GID, [grp.getgrnam("docker").gr_gid])


def test_another_os_user_gets_resources_of_their_own(pair):
    _, b = pair
    user = other_user()
    base = Path(tempfile.mkdtemp(prefix="labdock-shared-user-", dir="/var/tmp"))
    base.chmod(0o755)
    try:
        root = Path(
            shutil.copytree(
                b.root, base / "project", symlinks=True, ignore=shutil.ignore_patterns(".labdock", ".env")
            )
        )
        site, home = base / "site", base / "home"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "invoke==3.0.3"], check=True
        )
        plugins = home / ".docker" / "cli-plugins"
        plugins.mkdir(parents=True)
        ours = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins"
        for plugin in ours.glob("docker-*"):
            (plugins / plugin.name).symlink_to(plugin.resolve())
        for path in (root, home):
            for item in [path, *path.rglob("*")]:
                os.chown(item, user.uid, user.gid, follow_symlinks=False)
        env = {
            "HOME": str(home),
            "DOCKER_CONFIG": str(home / ".docker"),
            "PYTHONPATH": str(site),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "USER": "root",
            "INVOKE_LABDOCK_PORT": "auto",
        }
        other = Project(
            root,
            dict(b.answers),
            env=env,
            python=shutil.which("python3.11", path="/usr/bin") or "/usr/bin/python3",
            user=user,
        )
        try:
            started = other.invoke("up")
            record("shared engine", "invoke up, another OS user (s)", f"{started.seconds:.1f}")
            name = checkout_name(root)
            assert name.startswith("shared-engine-alpha-labdock-e2e-")  # the account's name, not $USER
            labels = inspect(f"{name}-lab-1")["Config"]["Labels"]
            assert labels["dev.labdock.user"] == "labdock-e2e"
            assert inspect(f"{name}-lab-1")["Config"]["User"].startswith(f"{OTHER_UID}:")
            assert read_token(root) and healthy(f"{checkout_name(b.root)}-lab-1")
            assert image_of(other) != image_of(b)
        finally:
            remove_project_state(other)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------------------- from the release before


def test_the_first_up_keeps_the_jupyterlab_state_of_the_release_before(engine, tmp_path):
    """A project the previous release ran: compose project and volumes named after the slug, its
    server still up. The first `invoke up` stops that server, copies its JupyterLab settings into
    this checkout's volumes, and leaves the old volumes (other clones may need them)."""
    project = new_project(
        tmp_path, project_name="Shared Legacy Alpha", stack="minimal", python_version="3.13"
    )
    slug, port = project.answers["project_slug"], project.answers["jupyter_port"]
    token = "5e" * 32
    (project.root / ".env").write_text(f"LABDOCK_TOKEN={token}\n")  # as the earlier release left it
    old = {
        **os.environ,
        "LABDOCK_PROJECT": slug,
        "LABDOCK_IMAGE": f"{slug}:latest",
        "LABDOCK_PORT": str(port),
        "LABDOCK_TOKEN": token,
    }
    old_compose = ["docker", "compose", "--project-name", slug, "-f", "compose.yaml"]
    try:
        project.invoke("build")
        assert json.loads((project.root / ".labdock" / "checkout.json").read_text())["legacy"] is True
        docker("tag", image_of(project), f"{slug}:latest")
        subprocess.run(
            [*old_compose, "up", "--detach", "--wait"],
            cwd=project.root,
            env=old,
            check=True,
            capture_output=True,
        )
        base = f"http://127.0.0.1:{port}"
        dark = {"raw": json.dumps({"theme": "JupyterLab Dark"})}
        assert api(base, token, "PUT", THEME, json=dark).status_code == 204
        started = time.monotonic()
        result = project.invoke("up")
        record(
            "shared engine",
            "first up after the rename (stop, copy, start) (s)",
            f"{time.monotonic() - started:.1f}",
        )
        assert (
            "Copied JupyterLab's settings and workspaces from the previous release's volumes" in result.stdout
        )
        assert (
            docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={slug}").stdout.strip() == ""
        )
        assert json.loads(api(base, token, "GET", THEME).json()["raw"]) == {"theme": "JupyterLab Dark"}
        volumes = set(docker("volume", "ls", "--format", "{{.Name}}").stdout.split())
        assert {f"{slug}_jupyter-state", f"{slug}_python-cache"} <= volumes  # left for other clones
        assert f"{checkout_name(project.root)}_jupyter-state" in volumes
        again = project.invoke("up")
        assert "Copied" not in again.stdout  # once
        doctor = project.invoke("doctor", check=False)
        assert (
            f"[..] volumes of the previous release ({slug}_jupyter-state, {slug}_python-cache)"
            in doctor.stdout
        )
    finally:
        subprocess.run([*old_compose, "down", "--volumes"], cwd=project.root, env=old, capture_output=True)
        docker("rmi", f"{slug}:latest", check=False)
        remove_project_state(project)
