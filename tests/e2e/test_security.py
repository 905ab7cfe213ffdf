"""Safe by default, nothing lost: token auth, exposure, ownership, image hygiene, persistence.

The project here is run by a host user who is not root and whose UID is not 1000 (1234, created
when the tests run as root), exactly as a user on a shared GPU server would run it. The same
checks for a root user run in test_workflow.py.
"""

from __future__ import annotations

import grp
import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
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
    free_port,
    image_of,
    notebook,
    read_token,
    record,
    remove_project_state,
)
from tests.rendering import render

UID = GID = 1234
ENDPOINTS = ["/api/contents", "/api/kernels", "/api/sessions", "/api/terminals", "/lab"]
THEME = "/lab/api/settings/@jupyterlab/apputils-extension:themes"


def host_user() -> HostUser | None:
    """UID 1234 in the docker group (created if needed); None when the tests are not root, in which
    case they already run as a non-root user and test that user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwuid(UID)
    except KeyError:
        subprocess.run(["groupadd", "--gid", str(GID), "labdock-e2e"], check=True)
        subprocess.run(
            ["useradd", "--uid", str(UID), "--gid", str(GID), "--no-create-home", "labdock-e2e"], check=True
        )
    return HostUser(UID, GID, [grp.getgrnam("docker").gr_gid])


MIRROR_SECRET = "m1rror-pa55word"
GIT_SECRET = "ghp_g1tt0ken"


@pytest.fixture(scope="module")
def project(engine) -> Project:
    user = host_user()
    uid, gid = (user.uid, user.gid) if user else (os.getuid(), os.getgid())
    # Outside pytest's private tmp dir, which other users cannot enter.
    base = Path(tempfile.mkdtemp(prefix="labdock-e2e-user-", dir="/var/tmp"))
    base.chmod(0o755)
    answers = {
        "project_name": "Safe Lab",
        "stack": "minimal",
        "python_version": "3.11",
        "jupyter_port": free_port(),
    }
    root = render(base / "project", **answers)
    answers.update(project_slug="safe-lab", package_name="safe_lab")
    # That user's own Python with invoke (root's interpreter lives in /root, closed to others).
    site = base / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "invoke==3.0.3"], check=True
    )
    home = base / "home"
    # The user's own Docker client config, with the same CLI plugins (compose, buildx) as ours.
    plugins = home / ".docker" / "cli-plugins"
    plugins.mkdir(parents=True)
    ours = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins"
    for plugin in ours.glob("docker-*"):
        (plugins / plugin.name).symlink_to(plugin.resolve())
    remote = f"https://alice:{GIT_SECRET}@example.com/a.git"
    subprocess.run(["git", "-C", root, "remote", "add", "origin", remote], check=True)
    for path in (root, home):
        for item in [path, *path.rglob("*")]:
            os.chown(item, uid, gid, follow_symlinks=False)
    # Company networks often put credentials in the mirror URL and the git remote: neither may
    # reach the image (this network's mirror, pypi.org, ignores them).
    mirror = os.environ.get("INVOKE_LABDOCK_PYPI_MIRROR", "https://pypi.org/simple/")
    env = {
        "INVOKE_LABDOCK_PYPI_MIRROR": mirror.replace("://", f"://labdock:{MIRROR_SECRET}@", 1),
        "HOME": str(home),
        "DOCKER_CONFIG": str(home / ".docker"),
        "PYTHONPATH": str(site),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    proj = Project(
        root,
        answers,
        env=env,
        python=shutil.which("python3.11", path="/usr/bin") or "/usr/bin/python3",
        user=user,
    )
    proj.uid = uid
    yield proj
    remove_project_state(proj)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server(project) -> dict:
    project.invoke("up")
    token = read_token(project.root)
    assert token, "invoke up left no token in .env"
    return {"base": f"http://127.0.0.1:{project.answers['jupyter_port']}", "token": token}


def api(server: dict, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"token {server['token']}"}
    return requests.request(method, server["base"] + path, headers=headers, timeout=10, **kwargs)


def container(project: Project) -> str:
    ids = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={checkout_name(project.root)}")
    return ids.stdout.strip()


def test_token_file_is_private_and_strong(project, server):
    env_file = project.root / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert env_file.stat().st_uid == project.uid
    assert len(server["token"]) == 64 and int(server["token"], 16) >= 0  # 256 bits, hex


def test_every_endpoint_refuses_missing_and_wrong_tokens(project, server):
    refused = tried = 0
    for endpoint in ENDPOINTS:
        for headers in ({}, {"Authorization": "token not-the-token"}):
            response = requests.get(
                server["base"] + endpoint, headers=headers, timeout=10, allow_redirects=False
            )
            tried += 1
            refused += not 200 <= response.status_code < 300
        wrong_query = requests.get(
            f"{server['base']}{endpoint}?token=wrong", timeout=10, allow_redirects=False
        )
        tried += 1
        refused += not 200 <= wrong_query.status_code < 300
        allowed = requests.get(f"{server['base']}{endpoint}?token={server['token']}", timeout=10)
        assert allowed.status_code == 200, (endpoint, allowed.status_code)
    record("security", "auth: requests refused / tried", f"{refused}/{tried}")
    assert refused == tried


def test_published_on_loopback_only_and_hardened(project, server):
    cid = container(project)
    bindings = docker("port", cid, "8888").stdout.split()
    assert bindings and all(binding.startswith("127.0.0.1:") for binding in bindings)
    host_config = json.loads(docker("inspect", cid).stdout)[0]["HostConfig"]
    assert "no-new-privileges:true" in host_config["SecurityOpt"]
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert host_config["Init"] is True
    record("security", "published ports", " ".join(bindings))


def test_server_runs_as_the_host_user_without_sudo(project, server):
    result = project.invoke("exec", "id -u; id -g; command -v sudo || echo no-sudo")
    assert result.stdout.split()[:3] == [str(project.uid), str(project.uid), "no-sudo"]


def test_files_the_server_creates_belong_to_the_host_user(project, server):
    created = [
        api(
            server,
            "PUT",
            "/api/contents/notebooks/saved.ipynb",
            json={"type": "notebook", "content": notebook()},
        ),
        api(server, "POST", "/api/contents/notebooks", json={"type": "notebook"}),
        api(server, "POST", "/api/contents/notebooks", json={"type": "directory"}),
        api(
            server,
            "PUT",
            "/api/contents/notebooks/notes.txt",
            json={"type": "file", "format": "text", "content": "hello"},
        ),
    ]
    assert all(response.status_code in (200, 201) for response in created), [r.text for r in created]
    project.invoke("exec", "touch notebooks/from-exec.txt")
    files = [path for path in (project.root / "notebooks").rglob("*")]
    owned = [
        path for path in files if path.stat().st_uid == project.uid and path.stat().st_gid == project.uid
    ]
    record("security", "ownership (uid 1234): files owned / checked", f"{len(owned)}/{len(files)}")
    assert len(files) >= 5 and owned == files


def test_image_holds_no_secret_and_no_clutter(project, server):
    image = image_of(project)
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    token_hits = saved.count(server["token"].encode())
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    config = docker("image", "inspect", image).stdout  # labels, environment, build arguments
    credentials = [
        (secret, where)
        for secret in (MIRROR_SECRET, GIT_SECRET)
        for where, text in (
            ("docker save", saved),
            ("history", history.encode()),
            ("inspect", config.encode()),
        )
        if secret.encode() in text
    ]
    record("security", "credential hits (mirror, git remote)", str(len(credentials)))
    assert credentials == []
    assert "https://example.com/a.git" in config  # the source label, without its user and password
    leaked = []
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for member in outer.getmembers():
            if member.isfile() and member.name.endswith(".tar"):
                with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                    leaked += [
                        name
                        for name in layer.getnames()
                        if name.startswith("workspace/")
                        and name.split("/")[1] in (".env", ".git", "data", "notebooks", ".ipynb_checkpoints")
                    ]
    record("security", "docker save: token hits / forbidden paths", f"{token_hits} / {len(leaked)}")
    assert token_hits == 0 and leaked == []
    sizes = docker(
        "run",
        "--rm",
        "--user",
        "0",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "du -sk /tmp /home/jovyan /root; find / -xdev \\( -name pypoetry -o -path '*/.cache/pip' "
        "-o -name poetry \\) -print",
    ).stdout.split("\n")
    kb = {line.split()[1]: int(line.split()[0]) for line in sizes if line and line[0].isdigit()}
    caches = [line for line in sizes if line.startswith("/") and not line[0].isdigit()]
    record("security", "KB in /tmp, home, /root", " ".join(f"{k}={v}" for k, v in kb.items()))
    assert all(size < 1024 for size in kb.values()), kb
    assert caches == [], caches


SIGNAL_SERVER = """
import os, signal, sys
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) != os.getpid() and b"jupyter-lab" in open(f"/proc/{pid}/cmdline", "rb").read():
        os.kill(int(pid), getattr(signal, sys.argv[1]))
"""


def test_healthcheck_turns_unhealthy_when_the_server_hangs(project, server):
    cid = container(project)
    docker("exec", cid, "python", "-c", SIGNAL_SERVER, "SIGSTOP")  # the server hangs
    try:
        assert wait_for_health(cid, "unhealthy", 60)
    finally:
        docker("exec", cid, "python", "-c", SIGNAL_SERVER, "SIGCONT")
    assert wait_for_health(cid, "healthy", 60)


def wait_for_health(cid: str, status: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker("inspect", "--format", "{{.State.Health.Status}}", cid).stdout.strip() == status:
            return True
        time.sleep(1)
    return False


def test_saves_and_settings_survive_recreation(project, server):
    cycles = {
        "down + up": lambda: project.invoke("down"),
        "build --no-cache + up": lambda: project.invoke("build", "--no-cache"),
        "SIGKILL + up": lambda: docker("kill", "--signal", "KILL", container(project)),
    }
    notebook = {
        "cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": "kept"}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    lost = 0
    for number, (name, interrupt) in enumerate(cycles.items()):
        path = f"/api/contents/notebooks/persist-{number}.ipynb"
        assert api(server, "PUT", path, json={"type": "notebook", "content": notebook}).status_code in (
            200,
            201,
        )
        theme = {"raw": json.dumps({"theme": "JupyterLab Dark" if number % 2 == 0 else "JupyterLab Light"})}
        assert api(server, "PUT", THEME, json=theme).status_code == 204
        interrupt()
        project.invoke("up")
        for earlier in range(number + 1):
            response = api(server, "GET", f"/api/contents/notebooks/persist-{earlier}.ipynb")
            kept = response.status_code == 200 and response.json()["content"]["cells"][0]["source"] == "kept"
            lost += not kept
        settings = json.loads(api(server, "GET", THEME).json()["raw"])
        assert settings == json.loads(theme["raw"]), f"JupyterLab settings lost after {name}"
    record("security", "persistence: cycles run / saves lost", f"{len(cycles)} / {lost}")
    assert lost == 0


def test_kernels_talk_over_ipc_and_the_log_has_no_warning(project, server):
    since = docker("exec", container(project), "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    kernel = api(server, "POST", "/api/kernels", json={"name": "python3"}).json()
    try:
        cid = container(project)
        deadline = time.monotonic() + 60
        listing = ""
        while time.monotonic() < deadline and "-ipc-" not in listing:
            listing = docker("exec", cid, "sh", "-c", "ls ~/.local/share/jupyter/runtime").stdout
            time.sleep(0.5)
        assert "-ipc-" in listing  # the kernel's sockets are files, not TCP ports
        # What the server logged from the kernel's start on (earlier tests save unsigned notebooks
        # through the API, which Jupyter rightly notes as "not trusted").
        logged = docker("logs", "--since", since, cid)
        logs = logged.stdout + logged.stderr
        warnings = [line for line in logs.splitlines() if "WARNING" in line or "[W " in line]
        record("security", "warning lines in the server log", str(len(warnings)))
        assert warnings == []
    finally:
        api(server, "DELETE", f"/api/kernels/{kernel['id']}")


def test_token_is_printed_only_by_up_and_url(project, server):
    for args in (["lock"], ["logs", "--tail", "50"], ["doctor"], ["down"]):
        result = project.invoke(*args, check=args[0] != "doctor")
        assert server["token"] not in result.stdout + result.stderr, args
