"""The running server's environment: the install as root, its script, which lock it matches, and
`up` keeping a server that `add` brought to the current lock."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess

import pytest

from tests.tasks.helpers import COMPOSE_UP, PS, RUNNING, call_of, labdock, ok, write_lock

live = labdock.live
CID = "f" * 64
REQUIREMENTS = "rich==14.1.0 \\\n    --hash=sha256:abc\n"


def test_install_runs_uv_as_root_with_the_requirements_on_stdin(make_ctx, project, load, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    c = make_ctx({r"docker image inspect --format '\{\{\.Id\}\}'": ok("sha256:" + "1" * 64)},
                 pypi_mirror="https://pypi.corp.example/simple", ca_bundle=str(bundle))  # fmt: skip
    live.install(load(c), CID, "unit-demo:builder", REQUIREMENTS, ["tabulate"])
    call = call_of(c, r"docker exec -i -u 0 ")
    args = shlex.split(call.args[0])
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()[:16]
    assert args[args.index(CID) :] == [CID, "sh", "-c", live.INSTALL_SCRIPT]
    assert {
        "LABDOCK_UV=/opt/labdock/tools/uv-1111111111111111",
        "LABDOCK_REMOVE=tabulate",
        "LABDOCK_MODE=install",
        "UV_DEFAULT_INDEX",  # its value in the environment, never on a command line
        f"SSL_CERT_FILE=/opt/labdock/tools/ca-{digest}.pem",
    } <= set(args)
    assert call.kwargs["in_stream"].read() == REQUIREMENTS  # never a file the notebook user could swap
    assert call.kwargs["env"] == {"UV_DEFAULT_INDEX": "https://pypi.corp.example/simple"}


def test_feed_hands_over_everything_at_once():
    feed = live.Feed("x" * 100_000)
    assert len(feed.read(1)) == 100_000
    assert feed.read(1) == ""


@pytest.fixture
def fake_uv(tmp_path):
    """A uv that records its arguments and its stdin."""
    uv = tmp_path / "uv"
    uv.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\ncat >> {tmp_path}/stdin\n')
    uv.chmod(0o755)
    return uv


def script(tmp_path, uv, mode: str, remove: str = "", stdin: str = "", extra: dict | None = None):
    env = {"PATH": "/usr/bin:/bin", "LABDOCK_UV": str(uv), "LABDOCK_MODE": mode, "LABDOCK_REMOVE": remove,
           **(extra or {})}  # fmt: skip
    result = subprocess.run(
        ["sh", "-c", live.INSTALL_SCRIPT], input=stdin, env=env, capture_output=True, text=True
    )
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return result.returncode, calls


def test_the_script_installs_first_then_removes(tmp_path, fake_uv):
    code, calls = script(tmp_path, fake_uv, "install", "tabulate six", REQUIREMENTS)
    assert code == 0
    assert calls == ["pip install --no-build --no-deps --require-hashes -r -", "pip uninstall tabulate six"]
    assert (tmp_path / "stdin").read_text() == REQUIREMENTS


@pytest.mark.parametrize("missing", ["uv", "ca"])
def test_the_script_asks_for_tools_it_lacks(tmp_path, fake_uv, missing):
    uv = tmp_path / "nothing" if missing == "uv" else fake_uv
    extra = {"SSL_CERT_FILE": str(tmp_path / "no-ca.pem")} if missing == "ca" else {}
    assert script(tmp_path, uv, "install", extra=extra) == (live.MISSING_TOOLS, [])


def test_container_lock(make_ctx, project, load):
    c = make_ctx({r"docker container inspect --format .*lock-sha256": ok("from-the-image-label\n")})
    p = load(c)
    assert live.container_lock(p, CID) == "from-the-image-label"
    live.record(p, CID, "brought-up-to-date")
    assert live.container_lock(p, CID) == "brought-up-to-date"
    assert live.container_lock(p, "another container") == "from-the-image-label"


@pytest.fixture
def kept_server(project, make_ctx, load):
    """A server that `add` brought to the current lock, and the image rebuilt from that lock."""
    lock = write_lock(project)
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    live.record(load(make_ctx()), CID, digest)
    return {
        PS: ok(CID + "\n"),
        r"docker image inspect --format .*lock-sha256": ok(digest + "\n"),
        r"docker compose .* config --hash lab": ok("lab 0a1b\n"),
        r"docker container inspect --format .*config-hash": ok("0a1b\n"),
    }


def test_up_keeps_a_server_brought_to_the_current_lock(make_ctx, load, kept_server):
    assert live.up_flags(load(make_ctx(kept_server)), gpu=False) == ["--no-recreate"]
    c = make_ctx({**RUNNING, **kept_server})
    labdock.server.up(c)
    assert "--no-recreate" in shlex.split(call_of(c, COMPOSE_UP).args[0])


@pytest.mark.parametrize(
    "change",
    [
        {PS: ok("another container\n")},  # not the server `add` reached
        {r"docker compose .* config --hash lab": ok("lab 9999\n")},  # a setting changed: recreate
        {r"docker image inspect --format .*lock-sha256": ok("other\n")},  # the image is not rebuilt yet
    ],
)
def test_up_recreates_otherwise(make_ctx, load, kept_server, change):
    assert live.up_flags(load(make_ctx({**kept_server, **change})), gpu=False) == []


def test_up_recreates_after_the_lock_changed(make_ctx, load, kept_server, project):
    (project / "poetry.lock").write_text("# another lock\n")
    assert live.up_flags(load(make_ctx(kept_server)), gpu=False) == []


def test_live_file(project, make_ctx, load):
    live.record(load(make_ctx()), CID, "abc")
    assert json.loads((project / ".labdock" / "live.json").read_text()) == {"container": CID, "lock": "abc"}


def test_a_server_add_reached_is_not_called_stale_for_its_lock(project, make_ctx, load, capsys):
    lock = write_lock(project)
    p = load(make_ctx())
    assert live.synced_files(p, CID) == set()
    live.record(p, CID, hashlib.sha256(lock.read_bytes()).hexdigest())
    assert live.synced_files(p, CID) == {"pyproject.toml", "poetry.lock"}
    assert live.synced_files(p, "another container") == set()
    built_before = labdock.image.encode_inputs({**labdock.image.inputs(p), "poetry.lock": "0" * 16})
    c = make_ctx({r"docker container inspect --format .*dev\.labdock\.inputs": ok(built_before + "\n")})
    labdock.container.warn_if_stale(load(c), CID)
    assert "WARNING" not in capsys.readouterr().err
    labdock.container.warn_if_stale(load(c), "another container")
    assert "built before poetry.lock changed" in capsys.readouterr().err
