"""doctor: one line per check, a non-zero exit when a required one fails."""

from __future__ import annotations

import json
import shlex

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
from tests.tasks.test_gpu import SMI_470_T4, SMI_550_A100, SMI_580_4090, TORCH_CPU, TORCH_CU128

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
        "[!!] port 8888 on 127.0.0.1 is free for JupyterLab: another process listens there: stop it, "
        "or set labdock.port: auto" in capsys.readouterr().out
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


# ----------------------------------------------------------------------------- GPUs: the driver and torch

NVIDIA_RUNTIME = {r"docker info --format '\{\{json \.Runtimes": ok('{"nvidia":{},"runc":{}}')}
SMI_RUN = r"docker compose .* run --rm --no-deps -T lab nvidia-smi"
TORCH_RUN = r"docker compose .* run --rm --no-deps -T lab python -c"


@pytest.mark.parametrize(
    ("smi", "torch", "line", "fails"),
    [
        (SMI_580_4090, TORCH_CU128, "[ok] NVIDIA driver 580", False),
        (SMI_550_A100, TORCH_CU128, "[--] the NVIDIA driver runs the image's torch: driver 550.54.15", False),
        (SMI_470_T4, TORCH_CU128, "[!!] the NVIDIA driver runs the image's torch: driver 470.182.03", True),
        (
            SMI_550_A100,
            TORCH_CPU,
            "[!!] the NVIDIA driver runs the image's torch: torch in the image is a CPU build",
            True,
        ),
    ],
)
def test_doctor_checks_the_driver_against_the_images_torch(
    make_ctx, project, capsys, smi, torch, line, fails
):
    """nvidia-smi in a container with the GPU request (recorded outputs), torch/version.py read
    without importing torch."""
    write_lock(project)
    c = make_ctx({**NVIDIA_RUNTIME, SMI_RUN: ok(smi), TORCH_RUN: ok(torch), PS: ok("")}, gpu="nvidia")
    if fails:
        exit_of(lambda: doctor.doctor(c))
    else:
        doctor.doctor(c)
    out = capsys.readouterr().out
    assert line in out, out
    assert str(project / "compose.gpu.yaml") in shlex.split(matching(c, SMI_RUN)[0])  # with the GPU request


def test_doctor_names_the_missing_gpu_runtime_in_the_container(make_ctx, project, capsys):
    write_lock(project)
    error = 'could not select device driver "nvidia" with capabilities: [[gpu]]'
    c = make_ctx({**NVIDIA_RUNTIME, SMI_RUN: fail(error), PS: ok("")}, gpu="nvidia")
    exit_of(lambda: doctor.doctor(c))
    assert "[!!] the container sees the GPUs (nvidia-smi): The Docker engine has no NVIDIA GPU runtime" in (
        capsys.readouterr().out
    )


def test_doctor_skips_the_cuda_check_with_gpus_none(make_ctx, project):
    write_lock(project)
    c = make_ctx({**NVIDIA_RUNTIME, PS: ok("")}, gpu="nvidia", gpus="none")
    doctor.doctor(c)
    assert not matching(c, SMI_RUN)


# ----------------------------------------------------------------------------- remote engines, checkouts


def test_doctor_on_a_remote_engine(make_ctx, project, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@gpu.example.org")
    monkeypatch.setattr(network, "port_in_use", lambda host, port: pytest.fail("probed this machine"))
    write_lock(project)
    c = make_ctx({PS: ok("")})
    doctor.doctor(c)
    out = capsys.readouterr().out
    assert "[..] remote engine (ssh://me@gpu.example.org): the project lives in a volume there" in out
    assert "[..] port 8888: published on the engine's host (not checked from here)" in out
    assert "GB free disk" not in out  # this machine's disk is not the engine's
    assert not matching(c, CHECK_LOCK)  # Poetry would bind-mount this folder


def test_doctor_reports_another_checkouts_resource_and_old_volumes(make_ctx, project, capsys):
    write_lock(project)
    labels = {
        "dev.labdock.checkout": "0123456789ab",
        "dev.labdock.folder": "/srv/b",
        "dev.labdock.user": "bob",
    }
    c = make_ctx(
        {
            r"docker inspect unit-demo": ok(
                json.dumps([{"Name": "unit-demo_jupyter-state", "Labels": labels}])
            ),
            r"docker volume ls --quiet": ok("unit-demo_jupyter-state\n"),
            PS: ok(""),
        }
    )
    exit_of(lambda: doctor.doctor(c))
    out = capsys.readouterr().out
    assert "[!!] nothing of this checkout's names belongs to another checkout: unit-demo_jupyter-state" in out
    assert "/srv/b (user bob)" in out
    assert "[..] this checkout on the engine: unit-demo (user tester)" in out
    assert "[..] volumes of the previous release (unit-demo_jupyter-state)" in out
