"""project.py: one engine, many checkouts. The names of what a checkout makes on the engine
(compose project, images, volumes) come from its slug, its user and a hash of its machine and
folder, fixed at the first run in .labdock/checkout.json; a moved folder keeps them, a copied
one gets its own; the labels name the checkout's id, folder and user; `port: auto` remembers."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest

from tests.tasks.helpers import exit_of, labdock, ok

project_module = labdock.project
REAL_NAME = project_module.checkout_name  # the conftest names everything after the slug


@pytest.fixture
def named(project, monkeypatch):
    """The real names (the conftest patches them to the slug for the other modules' tests)."""
    monkeypatch.setattr(project_module, "checkout_name", REAL_NAME)


def record(root: Path) -> dict:
    return json.loads((root / ".labdock" / "checkout.json").read_text())


def test_names_combine_slug_user_and_a_hash_of_machine_and_folder():
    name = REAL_NAME("unit-demo", "alice", "gpu-01", "/home/alice/unit-demo")
    assert re.fullmatch(r"unit-demo-alice-[0-9a-f]{8}", name)
    assert REAL_NAME("unit-demo", "alice", "gpu-01", "/home/alice/unit-demo") == name  # stable
    others = {
        REAL_NAME("unit-demo", "bob", "gpu-01", "/home/alice/unit-demo"),  # another user
        REAL_NAME("unit-demo", "alice", "gpu-01", "/home/alice/unit-demo-2"),  # another clone
        REAL_NAME("unit-demo", "alice", "laptop", "/home/alice/unit-demo"),  # another machine
    }
    assert name not in others and len(others) == 3


@pytest.mark.parametrize(
    ("user", "part"),
    [("alice", "alice"), ("Alice.Smith", "alice-smith"), ("DOMAIN\\bob", "domain-bob"), ("___", "user")],
)
def test_user_names_become_valid_name_parts(user, part):
    assert project_module.name_part(user) == part
    name = REAL_NAME("x", user, "h", "/f")
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", name)  # a compose project and an image repository name


def test_every_engine_name_derives_from_the_checkout(named, make_ctx, load, project):
    p = load(make_ctx())
    name = p.compose_project
    assert name == REAL_NAME("unit-demo", "tester", socket.gethostname(), str(project))
    assert (p.image(), p.image("builder")) == (f"{name}:latest", f"{name}:builder")
    assert p.poetry_cache_volume == f"{name}-poetry-cache"
    assert record(project)["name"] == name


def test_the_first_run_records_the_checkout(named, make_ctx, load, project):
    p = load(make_ctx())
    saved = record(project)
    assert saved["folder"] == saved["origin"] == str(project)
    assert saved["user"] == "tester" and re.fullmatch(r"[0-9a-f]{12}", saved["id"])
    assert p.labels() == {
        "dev.labdock.checkout": saved["id"],
        "dev.labdock.folder": str(project),
        "dev.labdock.user": "tester",
    }
    assert load(make_ctx()).checkout.id == saved["id"]  # the next run reads it


def test_a_moved_folder_keeps_its_names(named, make_ctx, load, project, tmp_path, monkeypatch, capsys):
    first = load(make_ctx())
    moved = tmp_path / "elsewhere" / "unit-demo"
    moved.parent.mkdir()
    shutil.move(project, moved)
    monkeypatch.setattr(project_module, "ROOT", moved)
    p = load(make_ctx())
    assert (p.compose_project, p.checkout.id) == (first.compose_project, first.checkout.id)
    assert f"This checkout moved from {project}: it keeps its containers" in capsys.readouterr().err
    # Containers and images are labelled with the folder now; volumes and the network keep the
    # first one (Compose would offer to recreate them, data lost, if their labels changed).
    assert p.labels()["dev.labdock.folder"] == str(moved)
    assert p.labels(lasting=True)["dev.labdock.folder"] == str(project)
    assert record(moved)["folder"] == str(moved)


def test_a_copied_folder_gets_names_of_its_own(named, make_ctx, load, project, tmp_path, monkeypatch, capsys):
    first = load(make_ctx())
    copy = Path(shutil.copytree(project, tmp_path / "copy" / "unit-demo"))
    assert record(copy)["id"] == first.checkout.id  # .labdock/ came along
    monkeypatch.setattr(project_module, "ROOT", copy)
    p = load(make_ctx())
    assert p.compose_project != first.compose_project and p.checkout.id != first.checkout.id
    assert p.compose_project == REAL_NAME("unit-demo", "tester", socket.gethostname(), str(copy))
    assert f"This folder is a copy of {project}: it gets containers, images and volumes of its own" in (
        capsys.readouterr().err
    )
    assert record(project)["id"] == first.checkout.id  # the original is untouched


def test_another_user_in_the_same_folder_is_another_checkout(named, make_ctx, load, project, monkeypatch):
    first = load(make_ctx())
    monkeypatch.setattr(project_module, "login_name", lambda: "bob")
    p = load(make_ctx())
    assert p.compose_project != first.compose_project and "-bob-" in p.compose_project
    assert p.checkout.user == "bob"
    assert record(project)["id"] == first.checkout.id  # the first user's record stays theirs


def test_the_user_setting_overrides_the_login_name(named, make_ctx, load, project):
    p = load(make_ctx(user="Alice.S"))
    assert "-alice-s-" in p.compose_project and p.labels()["dev.labdock.user"] == "Alice.S"


def test_a_broken_record_is_made_anew(named, make_ctx, load, project):
    (project / ".labdock").mkdir(exist_ok=True)
    (project / ".labdock" / "checkout.json").write_text("{not json")
    p = load(make_ctx())
    assert record(project)["id"] == p.checkout.id


def test_a_state_folder_that_cannot_be_written_is_one_line(named, make_ctx, load, project):
    (project / ".labdock").write_text("a file where the folder belongs")  # root can write anywhere else
    error = exit_of(lambda: load(make_ctx()))
    assert error.message.startswith(f"Cannot write {project / '.labdock' / 'checkout.json'} (")
    assert error.message.endswith("labdock needs a writable project folder.")


@pytest.mark.parametrize(
    ("env_text", "legacy"),
    [(None, False), ("LABDOCK_TOKEN=abc\n", True), ("JUPYTER_TOKEN=abc\n", True), ("OTHER=1\n", False)],
)
def test_a_checkout_an_earlier_release_used_is_marked_legacy(make_ctx, load, project, env_text, legacy):
    """An .env with a token, and no record yet: an earlier release ran here and named everything
    after the slug; `up` moves its JupyterLab state over once (test_engine.py)."""
    if env_text is not None:
        (project / ".env").write_text(env_text)
    assert load(make_ctx()).checkout.legacy is legacy


# ----------------------------------------------------------------------------- port: auto


def test_port_auto_is_remembered_per_checkout(make_ctx, load, project):
    p = load(make_ctx(port="auto"))
    assert p.port is None and p.port_text() == "auto"  # nothing picked yet: the engine picks
    p.remember_port(49123)
    assert load(make_ctx(port="auto")).port == 49123
    assert record(project)["ports"] == {"lab": 49123}
    assert load(make_ctx(port=9999)).port == 9999  # a fixed port is the setting's


def test_a_fixed_port_is_never_remembered(make_ctx, load, project):
    p = load(make_ctx(port=9999))
    p.remember_port(49123)
    assert "lab" not in record(project).get("ports", {})


# ----------------------------------------------------------------------------- which engine


@pytest.mark.parametrize(
    ("docker_host", "setting", "remote"),
    [
        ("", "auto", False),
        ("unix:///var/run/docker.sock", "auto", False),
        ("ssh://me@gpu.example.org", "auto", True),
        ("tcp://127.0.0.1:2375", "auto", False),
        ("tcp://10.0.0.5:2376", "auto", True),
        ("unix:///run/forwarded.sock", "true", True),
        ("ssh://me@gpu.example.org", "false", False),
    ],
)
def test_remote_mode_from_the_engines_address(make_ctx, load, monkeypatch, docker_host, setting, remote):
    if docker_host:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    assert load(make_ctx(remote=setting)).remote is remote


def test_remote_mode_from_the_current_context(make_ctx, load, monkeypatch, tmp_path):
    config = tmp_path / "docker-config"
    config.mkdir(exist_ok=True)
    (config / "config.json").write_text('{"currentContext": "gpu-box"}')
    inspect = json.dumps([{"Name": "gpu-box", "Endpoints": {"docker": {"Host": "ssh://me@gpu-box"}}}])
    c = make_ctx({r"docker context inspect": ok(inspect)})
    p = load(c)
    assert (p.remote, p.endpoint) == (True, "ssh://me@gpu-box")


def test_no_context_lookup_for_the_local_default(make_ctx, load):
    c = make_ctx()
    assert load(c).remote is False
    assert c.run.call_args_list == []  # DOCKER_HOST unset, no context: no docker call at all
