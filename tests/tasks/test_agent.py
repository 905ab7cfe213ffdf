"""`pip install` in the lab: the helper on the host (agent.py) and the lab's pip (docker/pylib/pip),
talking through files in .labdock/pip/ as they do across the container's bind mount."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from invoke import Exit

from tests.rendering import REPO
from tests.tasks.helpers import PS, exit_of, labdock, ok, write_lock

agent = labdock.agent
PIP = REPO / "template" / "docker" / "pylib" / "pip" / "__main__.py"
CID = socket.gethostname() + "0" * 40  # the lab's pip knows its container by its hostname
REAL_SPAWN = agent.spawn  # the project fixture replaces it: no helper process in most tests


# ----------------------------------------------------------------------------- requests


@pytest.mark.parametrize("package", ["rich", "rich>=13", "rich[jupyter]==14.1.0", "Django~=5.1",
                                     "numpy@latest", "scikit-learn>=1.6,<2", "a.b_c-d"])  # fmt: skip
def test_requests_with_plain_requirements(package):
    assert agent.parse_request({"id": "a" * 32, "verb": "add", "packages": [package]}) == (
        "a" * 32,
        "add",
        [package],
    )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"id": "a" * 32, "verb": "add", "packages": ["--index-url=https://evil"]}, "is not a package name"),
        (
            {"id": "a" * 32, "verb": "add", "packages": ["git+https://example.com/x.git"]},
            "is not a package name",
        ),
        ({"id": "a" * 32, "verb": "add", "packages": ["../src"]}, "is not a package name"),
        ({"id": "a" * 32, "verb": "add", "packages": ["rich; touch /tmp/x"]}, "is not a package name"),
        ({"id": "a" * 32, "verb": "add", "packages": ["x"] * 21}, "Name 1 to 20 packages"),
        ({"id": "a" * 32, "verb": "add", "packages": []}, "Name 1 to 20 packages"),
        ({"id": "a" * 32, "verb": "lock", "packages": ["x"]}, "installs and uninstalls only"),
        ({"id": "../../x", "verb": "add", "packages": ["x"]}, "no valid id"),
        (["add", "x"], "Not a request"),
    ],
)
def test_requests_refused(request_, message):
    assert message in exit_of(lambda: agent.parse_request(request_)).message


# ----------------------------------------------------------------------------- the helper


@pytest.fixture
def helper(make_ctx, load, project, monkeypatch):
    write_lock(project)
    calls = {"change": [], "build": []}

    def change(p, verb, packages, group="", build=True, builder="", cid=None):
        calls["change"].append((verb, packages, build, builder, cid))
        print(f"Added {packages[0]} in pyproject.toml and poetry.lock (0.1s).")
        if packages[0] == "nothing-such":
            raise Exit(
                "poetry add nothing-such failed: Could not find a matching version of package nothing-such."
            )
        return True

    monkeypatch.setattr(agent.dependencies, "change", change)
    monkeypatch.setattr(agent, "build_image", lambda p: calls["build"].append(p))
    monkeypatch.setattr(agent.live, "ensure_tools", lambda p, cid, builder: None)
    c = make_ctx({r"docker image inspect --format '\{\{\.Id\}\}'": ok("sha256:builder-id\n")})
    made = agent.Helper(load(c), CID)
    made.calls = calls
    return made


def request(helper, verb: str, *packages: str) -> str:
    request_id = os.urandom(16).hex()
    path = helper.folder / "requests" / f"{request_id}.json"
    path.write_text(json.dumps({"id": request_id, "verb": verb, "packages": list(packages)}))
    helper.handle(path)
    return request_id


def answer(helper, request_id: str) -> tuple[str, int]:
    log = (helper.folder / f"{request_id}.log").read_text()
    return log, json.loads((helper.folder / f"{request_id}.done").read_text())["code"]


def test_a_request_is_served_like_invoke_add(helper):
    request_id = request(helper, "add", "rich")
    assert answer(helper, request_id) == ("Added rich in pyproject.toml and poetry.lock (0.1s).\n", 0)
    # the builder as it was when `invoke up` started the helper, the helper's own container, no build yet
    assert helper.calls["change"] == [("add", ["rich"], False, "sha256:builder-id", CID)]
    assert not list((helper.folder / "taken").iterdir())
    assert helper.calls["build"] == []
    assert helper.rebuild_at is not None


def test_a_failed_request_answers_why(helper):
    log, code = answer(helper, request(helper, "add", "nothing-such"))
    assert code == 1
    assert log.endswith("Could not find a matching version of package nothing-such.\n")
    assert helper.rebuild_at is None


def test_a_refused_request_answers_why(helper):
    log, code = answer(helper, request(helper, "add", "--index-url=https://evil.example"))
    assert code == 1
    assert "URLs, paths and options are not recorded from the lab" in log
    assert helper.calls["change"] == []


def test_a_withdrawn_request_is_ignored(helper):
    helper.handle(helper.folder / "requests" / f"{'b' * 32}.json")  # pip deleted it: gave up
    assert helper.calls["change"] == []


def test_the_image_is_rebuilt_from_the_inputs_trusted_at_start(helper, project, capsys):
    request(helper, "add", "rich")
    helper.rebuild()
    assert len(helper.calls["build"]) == 1
    request(helper, "add", "rich")
    (project / "Dockerfile").write_text((project / "Dockerfile").read_text() + "USER root\n")
    helper.rebuild()
    assert len(helper.calls["build"]) == 1  # the container may have written the Dockerfile
    assert "The build inputs changed since `invoke up`: not rebuilding" in capsys.readouterr().out


def test_ensure_starts_one_helper_per_container(make_ctx, load, project, monkeypatch):
    started = []
    monkeypatch.setattr(agent, "spawn", lambda p, cid: started.append(cid))
    agent.ensure(load(make_ctx({PS: ok("")})))
    assert started == []  # no server, no helper
    agent.ensure(load(make_ctx({PS: ok(CID + "\n")})))
    assert started == [CID]
    (agent.folder(project) / agent.AGENT_FILE).write_text(json.dumps({"pid": os.getpid(), "container": CID}))
    agent.ensure(load(make_ctx({PS: ok(CID + "\n")})))
    assert started == [CID]  # already served
    agent.ensure(load(make_ctx({PS: ok("a new container\n")})))
    assert started == [CID, "a new container"]


def test_the_helper_starts_with_the_settings_and_names_the_task_checked(make_ctx, load, project, monkeypatch):
    """What spawn hands over on stdin is what main serves with (the checkout's names included)."""
    handed = {}

    class FakePopen:
        def __init__(self, argv, cwd, **kwargs):
            handed["argv"], handed["cwd"], self.stdin = argv, cwd, self
            handed["stdin"] = b""

        def write(self, data: bytes) -> None:
            handed["stdin"] += data

        def close(self) -> None:
            pass

    monkeypatch.setattr(agent.subprocess, "Popen", FakePopen)
    p = load(make_ctx(memory="2g"))  # a setting from this run, not invoke.yaml
    p.checkout.name = "unit-demo-tester-0123abcd"
    REAL_SPAWN(p, CID)
    assert handed["cwd"] == project and handed["argv"][-1] == CID

    served = []

    class FakeHelper:
        def __init__(self, p, cid) -> None:
            served.append((p, cid))

        def serve(self) -> None:
            pass

    monkeypatch.setattr(agent, "Helper", FakeHelper)
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(handed["stdin"].decode()))
    monkeypatch.chdir(project)
    agent.main(CID)
    ((helper_p, cid),) = served
    assert cid == CID and helper_p.root == project
    assert helper_p.settings == p.settings and helper_p.settings.memory == "2g"
    assert helper_p.checkout == p.checkout
    assert helper_p.image() == "unit-demo-tester-0123abcd:latest"


# ----------------------------------------------------------------------------- the lab's pip


def pip(project, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABDOCK_WORKSPACE": str(project)}
    return subprocess.run(
        [sys.executable, str(PIP), *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def serving(helper, project):
    """The helper serving requests in a thread, as its process does."""
    (helper.folder / agent.AGENT_FILE).write_text(json.dumps({"pid": os.getpid(), "container": CID}))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            for path in sorted((helper.folder / "requests").glob("*.json")):
                helper.handle(path)
            time.sleep(0.05)

    thread = threading.Thread(target=serve)
    thread.start()
    yield helper
    stop.set()
    thread.join()


def test_pip_install_goes_through_the_helper(serving, project):
    result = pip(project, "install", "-q", "rich")
    assert (result.returncode, result.stdout) == (0, "Added rich in pyproject.toml and poetry.lock (0.1s).\n")
    assert serving.calls["change"][0][:2] == ("add", ["rich"])
    assert sorted(path.name for path in serving.folder.iterdir()) == ["agent.json", "requests", "taken"]


def test_pip_uninstall_and_upgrade(serving, project):
    assert pip(project, "uninstall", "-y", "rich").returncode == 0
    assert pip(project, "install", "--upgrade", "rich").returncode == 0
    assert [call[:2] for call in serving.calls["change"]] == [("remove", ["rich"]), ("add", ["rich@latest"])]


def test_pip_reports_the_helpers_failure(serving, project):
    result = pip(project, "install", "nothing-such")
    assert result.returncode == 1
    assert "Could not find a matching version of package nothing-such" in result.stdout


@pytest.mark.parametrize("args", [("install", "-r", "requirements.txt"), ("install", "-e", "."),
                                  ("install", "./dist/x.whl"), ("install", "--user", "rich")])  # fmt: skip
def test_pip_refuses_what_it_cannot_record(project, args):
    result = pip(project, *args)
    assert result.returncode == 1
    assert "edit pyproject.toml on the host and run `invoke lock`" in result.stderr


def test_pip_without_a_helper_names_the_host_command(project):
    result = pip(project, "install", "rich")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "labdock's helper is not running for this server, so pip cannot install here: run "
        "`invoke add rich` on the host (no restart needed), or `invoke up` to start the helper."
    )


def test_pip_gives_up_on_a_helper_that_does_not_answer(project, monkeypatch):
    folder = agent.folder(project)
    (folder / agent.AGENT_FILE).write_text(json.dumps({"pid": 1, "container": CID}))
    result = pip(project, "install", "rich")
    assert result.returncode == 1
    assert "labdock's helper did not answer" in result.stderr
    assert not list((folder / "requests").iterdir())  # withdrawn: a helper started later never runs it


def test_pip_list_and_freeze_read_the_environment(project):
    listed = pip(project, "list")
    assert listed.returncode == 0
    assert any(line.split()[0] == "pytest" for line in listed.stdout.splitlines())
    frozen = pip(project, "freeze").stdout.splitlines()
    assert any(line.startswith("pytest==") for line in frozen)
    assert "Name: pytest" in pip(project, "show", "pytest").stdout
