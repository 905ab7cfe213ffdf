"""doctor: one line per check, a non-zero exit when a required one fails."""

from __future__ import annotations

import pytest

from tests.tasks.helpers import (
    CHECK_LOCK,
    ENGINE,
    PS,
    exit_of,
    fail,
    labdock,
    matching,
    ok,
    write_lock,
)

doctor = labdock.doctor
envfile = labdock.envfile
network = labdock.network


def test_doctor_fails_without_engine(make_ctx, project, capsys):
    write_lock(project)
    c = make_ctx({ENGINE: fail()})
    error = exit_of(lambda: doctor.doctor(c))
    assert "[!!]" in error.message
    out = capsys.readouterr().out
    assert "[!!] Docker engine: No Docker engine reachable" in out
    assert "[!!] poetry.lock matches pyproject.toml: needs the engine" in out
    assert "[ok] Docker Compose" in out
    assert not matching(c, CHECK_LOCK)


def test_doctor_passes_when_everything_is_fine(make_ctx, project, capsys):
    write_lock(project)
    envfile.ensure_token(project / ".env")
    c = make_ctx({ENGINE: ok("27.3.1\n"), r"docker compose version": ok("2.29.7\n"), PS: ok("")})
    doctor.doctor(c)  # no Exit: exit code 0
    out = capsys.readouterr().out
    assert "[!!]" not in out
    for line in (
        "[ok] Docker engine 27.3.1",
        "[ok] Docker Compose 2.29.7",
        "[ok] BuildKit (buildx)",
        "[ok] poetry.lock matches pyproject.toml",
        "[ok] port 8888 on 127.0.0.1 is free for JupyterLab",
        "[ok] .env holds a JupyterLab token",
    ):
        assert line in out
    assert matching(c, CHECK_LOCK)


@pytest.mark.parametrize(
    ("responses", "line"),
    [
        ({CHECK_LOCK: fail(stdout="Run `poetry lock` to fix the lock file.")}, "[!!] poetry.lock matches"),
        ({r"docker buildx": fail()}, "[!!] BuildKit (buildx)"),
        ({r"docker info": ok('{"runc":{}}')}, "[!!] NVIDIA container runtime"),
    ],
)
def test_doctor_fails_on_a_required_check(make_ctx, project, capsys, responses, line):
    write_lock(project)
    c = make_ctx(responses, gpu="nvidia")
    error = exit_of(lambda: doctor.doctor(c))
    assert "fix the lines marked [!!]" in error.message
    assert line in capsys.readouterr().out


def test_doctor_reports_a_busy_port(make_ctx, project, monkeypatch, capsys):
    write_lock(project)
    monkeypatch.setattr(network, "port_in_use", lambda host, port: True)
    c = make_ctx({PS: ok("")})
    exit_of(lambda: doctor.doctor(c))
    assert (
        "[!!] port 8888 on 127.0.0.1 is free for JupyterLab: something else listens there"
        in capsys.readouterr().out
    )


def test_doctor_says_not_locked_yet_as_information(make_ctx, project, capsys):
    (project / "poetry.lock").unlink(missing_ok=True)
    c = make_ctx({ENGINE: ok("27.3.1\n"), PS: ok("")})
    doctor.doctor(c)  # not a failure: a fresh project
    out = capsys.readouterr().out
    assert "[..] poetry.lock: not locked yet: `invoke up` (or `invoke lock`) resolves it" in out
    assert not matching(c, r"docker build ")  # nothing built just to look


def test_doctor_reports_a_stale_image(make_ctx, project, monkeypatch, capsys):
    write_lock(project)
    monkeypatch.setattr(
        labdock.image, "stale_reason", lambda p: "Dockerfile changed since the image was built"
    )
    c = make_ctx({PS: ok("")})
    exit_of(lambda: doctor.doctor(c))
    assert (
        "[!!] the image is built from the project's current files: Dockerfile changed since the image was "
        "built: `invoke build` (or `invoke up`) rebuilds it"
    ) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("version", "warned"),
    [
        ("20.10.24+dfsg1", "moby/moby#45610"),
        ("27.5.1", "moby/moby#45610"),
        ("28.0.1", "CVE-2025-54388"),
        ("28.3.3", ""),
        ("29.1.0", ""),
        ("unknown", ""),
    ],
)
def test_engines_that_expose_loopback_ports(version, warned):
    exposure = doctor.loopback_exposure(version)
    assert (warned in exposure) if warned else exposure == ""


def test_doctor_warns_about_such_an_engine_but_does_not_fail(make_ctx, project, capsys):
    write_lock(project)
    c = make_ctx({ENGINE: ok("20.10.24+dfsg1\n"), PS: ok("")})
    doctor.doctor(c)  # optional: no exit
    assert (
        "[--] Docker Engine 20.10.24+dfsg1 keeps loopback ports private: before 28.0.0"
        in capsys.readouterr().out
    )
    desktop = make_ctx({ENGINE: ok("27.5.1\n"), PS: ok(""), r"docker info": ok("Docker Desktop\n")})
    doctor.doctor(desktop)
    assert "keeps loopback ports private" not in capsys.readouterr().out


def test_doctor_port_held_by_our_own_server(make_ctx, project, capsys):
    write_lock(project)
    doctor.doctor(make_ctx({PS: ok("abc123\n")}))
    assert (
        "[ok] port 8888 on 127.0.0.1: this project's JupyterLab is serving on it" in capsys.readouterr().out
    )
