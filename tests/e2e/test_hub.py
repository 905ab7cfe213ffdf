"""The team hub on a real engine: JupyterHub with DockerSpawner serving the project's image.

One project ("Hub Check Alpha", stack minimal, Python 3.13) is locked and built with its tasks, and
`invoke hub` builds the singleuser and hub images and starts the team hub (the test login, 1 CPU
and 1 GiB per user), as a user does; reconfigured hubs are started again with `invoke hub` and other
settings. The authentication tests start extra hubs of their own, under other resource prefixes, with
the rendered labdock/hub.py's compose command and environment (one checkout has one `invoke hub`).
Everything is real: users log in through the hub's login form, servers are containers on the engine,
code runs in the project's kernel over the Jupyter websocket protocol. Tests run in order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest
import requests
import websocket

from tests.e2e.harness import (
    Project,
    checkout_name,
    docker,
    free_port,
    git_commit,
    image_of,
    record,
    remove_project_state,
)
from tests.rendering import REPO, render
from tests.tasks.helpers import labdock

ANSWERS = {"project_name": "Hub Check Alpha", "stack": "minimal", "python_version": "3.13"}
SLUG, PACKAGE = "hub-check-alpha", "hub_check_alpha"
PASSWORD = "hub-check-shared-password"
FIGURE = "hub (minimal-py3.13)"


def load_hub_module(root: Path) -> ModuleType:
    """labdock/hub.py as the project has it (copied verbatim from the template)."""
    assert (root / "labdock" / "hub.py").read_bytes() == (
        REPO / "template" / "labdock" / "hub.py"
    ).read_bytes()
    return labdock.hub


def run(
    argv: list[str], cwd: Path, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = subprocess.run(
        argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=1200
    )
    result.seconds = time.monotonic() - started
    print(f"$ {' '.join(argv)}  ({result.seconds:.1f}s, exit {result.returncode})")
    print(result.stdout[-2000:], result.stderr[-3000:], sep="\n")
    if check:
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def index_flags() -> tuple[list[str], dict]:
    """The package-index settings as `invoke build` passes them (BuildKit secrets)."""
    flags, env = [], {"DOCKER_BUILDKIT": "1"}
    if mirror := os.environ.get("INVOKE_LABDOCK_PYPI_MIRROR"):
        flags += ["--secret", "id=pypi_mirror,env=LABDOCK_PYPI_MIRROR"]
        env["LABDOCK_PYPI_MIRROR"] = mirror
    if bundle := os.environ.get("INVOKE_LABDOCK_CA_BUNDLE"):
        flags += ["--secret", f"id=ca_bundle,src={bundle}"]
    return flags, env


# `invoke hub`'s settings for the hub fixture; tests start it again with some of them changed.
HUB_SETTINGS = {"hub_auth": "shared-password", "cpus": "1", "memory": "1g"}


def invoke_hub(project: Project, port: int, **settings: str) -> subprocess.CompletedProcess:
    env = {f"INVOKE_LABDOCK_{key.upper()}": str(value) for key, value in {**HUB_SETTINGS, **settings}.items()}
    return project.invoke(
        "hub", env={**env, "INVOKE_LABDOCK_HUB_PORT": str(port), "LABDOCK_HUB_PASSWORD": PASSWORD}
    )


def hub_prefix(slug: str) -> str:
    """The resource prefix `invoke hub` used: its compose project's name, less `-hub`."""
    projects = docker(
        "ps",
        "--filter",
        "label=com.docker.compose.service=hub",
        "--format",
        '{{.Label "com.docker.compose.project"}}',
    ).stdout.split()
    mine = [name.removesuffix("-hub") for name in projects if name.startswith(slug)]
    assert len(mine) == 1, projects
    return mine[0]


class Hub:
    """One checkout's hub: its prefix, port and the environment compose starts it with."""

    def __init__(self, project: Project, hub: ModuleType, images: dict, suffix: str, port: int = 0) -> None:
        self.project, self.module, self.images = project, hub, images
        self.prefix = f"{SLUG}-{suffix}"
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env: dict = {}

    def environment(self, **settings) -> dict:
        defaults = {
            "prefix": self.prefix,
            "image": self.images["singleuser"],
            "hub_image": self.images["hub"],
            "port": self.port,
            "auth": "shared-password",
            "shared_password": PASSWORD,
            "docker_host": os.environ.get("DOCKER_HOST", ""),
        }
        return self.module.hub_environment(**{**defaults, **settings})

    def start(self, check: bool = True, env: dict | None = None, **settings) -> subprocess.CompletedProcess:
        """Start (or reconfigure) the hub; env, when given, replaces hub.py's environment."""
        self.env = env if env is not None else self.environment(**settings)
        command = self.module.compose_command(self.prefix, *self.module.UP)
        return run(command, self.project.root, self.env, check=check)

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(self.module.compose_command(self.prefix, *args), self.project.root, self.env, check=check)

    def remove(self) -> None:
        """Everything this hub made: its compose project, users' containers and volumes."""
        if self.env:
            run(self.module.down_command(self.prefix, volumes=True), self.project.root, self.env, check=False)
        leftovers = docker(*self.module.user_containers_command(self.prefix)[1:], check=False).stdout.split()
        if leftovers:
            docker("rm", "-f", *leftovers, check=False)
        volumes = docker(*self.module.user_volumes_command(self.prefix)[1:], check=False).stdout.split()
        volumes = [name for name in volumes if name.startswith(f"{self.prefix}-user-")]
        if volumes:
            docker("volume", "rm", "-f", *volumes, check=False)
        docker("network", "rm", self.module.resource_names(self.prefix)["network"], check=False)


class HubUser:
    """A user logged in through the hub's login form, with an API token of their own."""

    def __init__(self, hub: Hub, name: str, password: str = PASSWORD) -> None:
        self.hub, self.name = hub, name
        self.session = requests.Session()
        self.session.get(f"{hub.base}/hub/login", timeout=10)
        response = self.session.post(
            f"{hub.base}/hub/login",
            data={"username": name, "password": password, "_xsrf": self.session.cookies.get("_xsrf")},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, f"login of {name} failed: {response.status_code}"
        created = self.session.post(
            f"{hub.base}/hub/api/users/{name}/tokens",
            headers={"X-XSRFToken": self.session.cookies.get("_xsrf")},
            json={"note": "labdock e2e"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        self.token = created.json()["token"]
        self.headers = {"Authorization": f"token {self.token}"}

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """The hub's REST API as this user."""
        return requests.request(
            method, f"{self.hub.base}/hub/api{path}", headers=self.headers, timeout=60, **kwargs
        )

    def server(self, method: str, path: str, user: str = "", **kwargs) -> requests.Response:
        """A single-user server's API (this user's by default) through the hub's proxy."""
        url = f"{self.hub.base}/user/{user or self.name}/api{path}"
        return requests.request(method, url, headers=self.headers, timeout=60, **kwargs)

    def servers(self) -> dict:
        return self.api("GET", f"/users/{self.name}").json()["servers"]

    def start_server(self, timeout: float = 180) -> float:
        """Spawn this user's server; seconds until its API answers through the proxy."""
        started = time.monotonic()
        response = self.api("POST", f"/users/{self.name}/server")
        assert response.status_code in (201, 202), response.text
        while time.monotonic() - started < timeout:
            if self.server("GET", "").status_code == 200:
                return time.monotonic() - started
            time.sleep(0.05)
        pytest.fail(f"{self.name}'s server did not answer within {timeout:.0f}s")

    def stop_server(self, timeout: float = 60) -> None:
        response = self.api("DELETE", f"/users/{self.name}/server")
        assert response.status_code in (202, 204), response.text
        deadline = time.monotonic() + timeout
        while self.servers():
            assert time.monotonic() < deadline, f"{self.name}'s server did not stop within {timeout:.0f}s"
            time.sleep(0.2)

    def run_in_kernel(self, code: str, timeout: float = 60) -> str:
        """Execute code in a new kernel of the project's Python; its printed output."""
        kernel = self.server("POST", "/kernels", json={"name": "python3"})
        assert kernel.status_code == 201, kernel.text
        kernel_id = kernel.json()["id"]
        url = f"ws://127.0.0.1:{self.hub.port}/user/{self.name}/api/kernels/{kernel_id}/channels"
        connection = websocket.create_connection(
            url, header=[f"Authorization: token {self.token}"], timeout=timeout
        )
        message_id, output, errors = uuid.uuid4().hex, [], []
        header = {
            "msg_id": message_id,
            "username": self.name,
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
            "date": "",
        }
        content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}}
        request = {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": "shell",
        }
        try:
            connection.send(json.dumps({**request, "buffers": []}))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = json.loads(connection.recv())
                if message.get("parent_header", {}).get("msg_id") != message_id:
                    continue
                kind = message["msg_type"]
                if kind == "stream":
                    output.append(message["content"]["text"])
                elif kind == "error":
                    errors.append("\n".join(message["content"]["traceback"]))
                elif kind == "status" and message["content"]["execution_state"] == "idle":
                    break
        finally:
            connection.close()
            self.server("DELETE", f"/kernels/{kernel_id}")
        assert not errors, errors
        return "".join(output)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def project(engine, tmp_path_factory) -> Project:
    answers = {**ANSWERS, "jupyter_port": free_port()}
    root = render(tmp_path_factory.mktemp("hub") / "project", **answers)
    git_commit(root)
    proj = Project(root, {**answers, "project_slug": SLUG, "package_name": PACKAGE})
    result = proj.invoke("lock")
    record(FIGURE, "invoke lock", f"{result.seconds:.1f} s")
    git_commit(root, "Lock dependencies")
    result = proj.invoke("build")
    record(FIGURE, "invoke build (runtime)", f"{result.seconds:.1f} s")
    yield proj
    remove_project_state(proj)


@pytest.fixture(scope="module")
def hub_module(project) -> ModuleType:
    return load_hub_module(project.root)


@pytest.fixture(scope="module")
def hub(project, hub_module) -> Hub:
    """The team hub as `invoke hub` starts it, with the test login, 1 CPU and 1 GiB per user."""
    port = free_port()
    team_hub = None
    try:
        result = invoke_hub(project, port)
        record(FIGURE, "invoke hub (both images built, healthy)", f"{result.seconds:.1f} s")
        assert "JupyterHub is up after" in result.stdout
        prefix = hub_prefix(SLUG)
        assert prefix == checkout_name(project.root)  # the checkout's own names, as everywhere
        images = {"singleuser": f"{prefix}:singleuser", "hub": f"{prefix}-hub:latest"}
        team_hub = Hub(project, hub_module, images, "", port=port)
        team_hub.prefix = prefix
        team_hub.env = team_hub.environment(**{"cpus": "1", "memory": "1g"})
        yield team_hub
    finally:
        if team_hub:
            team_hub.compose("logs", "--tail", "60", check=False)
        project.invoke("hub", "--down", "--volumes", check=False)
        if team_hub:
            team_hub.remove()


@pytest.fixture(scope="module")
def images(hub) -> dict:
    return hub.images


@pytest.fixture(scope="module")
def users(hub) -> dict[str, HubUser]:
    return {name: HubUser(hub, name) for name in ("alice", "bob")}


# ----------------------------------------------------------------------------- the image


def test_runtime_target_stays_cached_when_src_and_notebooks_change(project):
    """The build context now holds src/ and notebooks/ (for the singleuser target): the runtime
    image `invoke up` uses must not be rebuilt when they change."""
    image = image_of(project)
    before = docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    module = project.root / "src" / PACKAGE / "__init__.py"
    starter = project.root / "notebooks" / "getting-started.ipynb"
    original = module.read_text(), starter.read_text()
    try:
        module.write_text(original[0] + "\nEDITED = True\n")
        starter.write_text(original[1].replace('"# ', '"# Edited: ', 1))
        project.invoke("build")
        assert docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip() == before
    finally:
        module.write_text(original[0])
        starter.write_text(original[1])


def test_singleuser_image_holds_the_project_and_runs_as_uid_1000(project, images):
    image = images["singleuser"]
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["Cmd"] == ["jupyterhub-singleuser", "--KernelManager.transport=ipc"]
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/home/jovyan"
    assert "JUPYTERHUB_SERVICE_URL" in " ".join(config["Healthcheck"]["Test"])
    probe = (
        f"import os, {PACKAGE}, jupyterhub; print(os.getuid(), {PACKAGE}.__file__, "
        "sorted(os.listdir('/workspace/notebooks')))"
    )
    result = docker("run", "--rm", "--entrypoint", "python", image, "-c", probe)
    uid, path, notebooks = result.stdout.split(" ", 2)
    assert uid == "1000"
    assert path == f"/workspace/src/{PACKAGE}/__init__.py"
    assert "getting-started.ipynb" in notebooks


def test_singleuser_image_refuses_root(project, images):
    flags, env = index_flags()
    command = [
        "docker",
        "build",
        "--target",
        "singleuser",
        "-t",
        f"{SLUG}:root-refused",
        "--build-arg",
        "NB_UID=0",
    ]
    result = run([*command, *flags, "."], project.root, env, check=False)
    assert result.returncode != 0
    assert "must not run as root" in result.stdout + result.stderr


def test_healthcheck_follows_the_base_url(images):
    """Started as a hub would start it (JUPYTERHUB_SERVICE_URL with a /user/<name>/ prefix) but
    without a hub, the server's /api is answered only under that prefix: the probe must use it."""
    name = f"{SLUG}-health-{uuid.uuid4().hex[:6]}"
    command = "jupyter lab --ip=0.0.0.0 --port=8899 --no-browser --ServerApp.base_url=/user/someone/"
    env = ["-e", "JUPYTERHUB_SERVICE_URL=http://0.0.0.0:8899/user/someone/", "-e", "JUPYTER_TOKEN=x"]
    docker("run", "-d", "--name", name, *env, images["singleuser"], *command.split())
    try:
        deadline = time.monotonic() + 120
        status = ""
        while time.monotonic() < deadline and status != "healthy":
            status = docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
            time.sleep(1)
        assert status == "healthy"
    finally:
        docker("rm", "-f", name, check=False)


# ----------------------------------------------------------------------------- the hub


def test_two_users_get_their_own_containers_of_the_project_image(hub, users):
    names = hub.module.resource_names(hub.prefix)
    for user in users.values():
        seconds = user.start_server()
        record(FIGURE, f"spawn {user.name} (new volume) until ready", f"{seconds:.1f} s")
    containers = {}
    for user in users.values():
        container = names["user_container"].format(username=user.name)
        info = json.loads(docker("container", "inspect", container).stdout)[0]
        containers[user.name] = info["Id"]
        assert info["Config"]["Image"] == hub.images["singleuser"]
        assert info["Config"]["Labels"]["dev.labdock.hub"] == hub.prefix
        assert list(info["NetworkSettings"]["Networks"]) == [names["network"]]
        mounts = {mount["Destination"]: mount for mount in info["Mounts"]}
        assert mounts["/home/jovyan"]["Name"] == names["user_volume"].format(username=user.name)
        host = info["HostConfig"]
        assert host["NanoCpus"] == 10**9 or host["CpuQuota"] == 100_000  # 1 CPU
        assert host["Memory"] == 1024**3
        assert host["Init"] is True
        assert info["Config"]["User"] == "1000:1000"
    assert containers["alice"] != containers["bob"]
    published = docker("port", f"{names['project']}-hub-1", "8000").stdout.split()
    assert published and all(binding.startswith("127.0.0.1:") for binding in published), published


def test_each_server_runs_the_project_package_in_its_kernel(hub, users):
    for user in users.values():
        listing = user.server("GET", "/contents/notebooks")
        assert listing.status_code == 200, listing.text
        assert "getting-started.ipynb" in {item["name"] for item in listing.json()["content"]}
        code = f"import os, {PACKAGE}; print({PACKAGE}.greet({user.name!r}), os.getuid(), os.getcwd())"
        output = user.run_in_kernel(code)
        assert output.strip() == f"Hello, {user.name}, from Hub Check Alpha! 1000 /home/jovyan"


def test_a_users_token_cannot_reach_another_users_server(hub, users):
    alice, bob = users["alice"], users["bob"]
    assert alice.server("GET", "/contents").status_code == 200
    assert alice.server("GET", "/contents", user="bob").status_code == 403
    assert bob.server("GET", "/contents", user="alice").status_code == 403
    forbidden = alice.server(
        "PUT", "/contents/intrusion.txt", user="bob", json={"type": "file", "format": "text", "content": "x"}
    )
    assert forbidden.status_code == 403
    assert bob.server("GET", "/contents/intrusion.txt").status_code == 404


def test_a_users_file_survives_stopping_and_restarting_the_server(hub, users):
    alice = users["alice"]
    content = f"kept across restarts {uuid.uuid4().hex}"
    saved = alice.server(
        "PUT", "/contents/keep.txt", json={"type": "file", "format": "text", "content": content}
    )
    assert saved.status_code in (200, 201), saved.text
    container = hub.module.resource_names(hub.prefix)["user_container"].format(username="alice")
    alice.stop_server()
    assert docker("container", "inspect", container, check=False).returncode != 0, (
        "the stopped server's container is left"
    )
    seconds = alice.start_server()
    record(FIGURE, "spawn alice (existing volume) until ready", f"{seconds:.1f} s")
    kept = alice.server("GET", "/contents/keep.txt")
    assert kept.status_code == 200 and kept.json()["content"] == content


def test_the_idle_culler_stops_an_idle_server(hub):
    """The hub restarted with a 10 s timeout (checked every 5 s): a server nobody uses is stopped."""
    invoke_hub(hub.project, hub.port, hub_cull_timeout="10")  # the culler looks every 5 s
    carol = HubUser(hub, "carol")
    carol.start_server()
    started = time.monotonic()
    while carol.servers():
        assert time.monotonic() - started < 90, "the idle server was not culled within 90 s"
        time.sleep(1)
    record(FIGURE, "idle server culled (timeout 10 s)", f"after {time.monotonic() - started:.0f} s")
    container = hub.module.resource_names(hub.prefix)["user_container"].format(username="carol")
    assert docker("container", "inspect", container, check=False).returncode != 0


def test_the_gpu_choice_reaches_the_engine(hub):
    """No GPU here: with gpus 0,1 the hub asks the engine for exactly those NVIDIA devices, and an
    engine without the NVIDIA runtime refuses the container (what a GPU server would grant)."""
    invoke_hub(hub.project, hub.port, gpu="nvidia", gpus="0,1")
    dave = HubUser(hub, "dave")
    response = dave.api("POST", "/users/dave/server")
    deadline = time.monotonic() + 60
    while response.status_code == 202 and dave.servers() and time.monotonic() < deadline:
        time.sleep(0.5)  # a slow spawn finishes (or fails) in the background
    logs = hub.compose("logs", "hub").stdout
    assert 'could not select device driver "nvidia"' in logs, logs[-3000:]
    assert not dave.servers()


# ----------------------------------------------------------------------------- authentication


def test_shared_password_login_refuses_a_non_loopback_bind(project, hub_module, images):
    """The check exists twice: in hub.py (the task stops first) and in the hub itself, which
    exits before serving when compose publishes it beyond loopback with the test login."""
    refused = Hub(project, hub_module, images, uuid.uuid4().hex[:6])
    with pytest.raises(ValueError, match="loopback only"):
        refused.environment(bind="0.0.0.0")
    stopped = project.invoke(
        "hub",
        env={
            "INVOKE_LABDOCK_HUB_AUTH": "shared-password",
            "INVOKE_LABDOCK_HUB_BIND": "0.0.0.0",
            "LABDOCK_HUB_PASSWORD": PASSWORD,
        },
        check=False,
    )
    assert stopped.returncode == 1 and "serves loopback only, not 0.0.0.0" in stopped.stderr
    env = {**refused.environment(), "LABDOCK_HUB_BIND": "0.0.0.0"}  # as if compose were run by hand
    try:
        result = refused.start(check=False, env=env)
        assert result.returncode != 0
        logs = refused.compose("logs", "hub").stdout
        assert "shared-password authenticator is for tests and serves loopback only" in logs
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{refused.base}/hub/login", timeout=5)
    finally:
        refused.remove()


def test_native_authenticator_needs_an_admins_approval(project, hub_module, images):
    """The team login: users sign up, cannot log in until an admin approves them, then can."""
    team = Hub(project, hub_module, images, uuid.uuid4().hex[:6])

    def post_form(session: requests.Session, path: str, **data: str) -> requests.Response:
        session.get(f"{team.base}{path}", timeout=10)
        data["_xsrf"] = session.cookies.get("_xsrf")
        return session.post(f"{team.base}{path}", data=data, allow_redirects=False, timeout=10)

    def sign_up(name: str, password: str, expect: str) -> requests.Session:
        session = requests.Session()
        page = post_form(
            session,
            "/hub/signup",
            username=name,
            signup_password=password,
            signup_password_confirmation=password,
        )
        assert page.status_code == 200 and expect in page.text
        return session

    try:
        team.start(auth="native", admins=["lead"])
        lead = sign_up("lead", "Lead-Password-2026", expect="The signup was successful")  # an admin
        amy = sign_up("amy", "Amy-Password-2026", expect="Your information has been sent to the admin")
        assert (
            post_form(lead, "/hub/login", username="lead", password="Lead-Password-2026").status_code == 302
        )
        waiting = post_form(amy, "/hub/login", username="amy", password="Amy-Password-2026")
        assert waiting.status_code == 200 and "has not been authorized" in waiting.text
        approved = lead.get(f"{team.base}/hub/authorize/amy", allow_redirects=False, timeout=10)
        assert approved.status_code == 302
        assert post_form(amy, "/hub/login", username="amy", password="Amy-Password-2026").status_code == 302
        wrong = post_form(requests.Session(), "/hub/login", username="amy", password="Not-Her-Password-1")
        assert wrong.status_code == 200 and re.search("Invalid username or password", wrong.text)
    finally:
        team.remove()
