"""Resource limits and TensorBoard on a real engine.

One project (minimal stack) answers cpu_limit=1.5, memory_limit=1g and tensorboard=true. The limits
must reach the running container (docker inspect), and follow invoke.yaml's settings when they
change later without re-rendering; TensorBoard must answer on its own loopback port and show a run
written from inside JupyterLab's container (proof that both share the project folder).
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.e2e.harness import (
    Project,
    checkout_name,
    docker,
    free_port,
    new_project,
    record,
    remove_project_state,
)

SLUG = "limits-board"
ENGINE_NAME = {}  # the checkout's compose project, once the fixture ran a task
WRITE_RUN = (
    'python -c \'import tensorboard.summary as s; w = s.Writer("runs/e2e"); '
    '[w.add_scalar("loss", 1 / step, step=step) for step in (1, 2, 3)]; w.close()\''
)


@pytest.fixture(scope="module")
def project(engine, tmp_path_factory) -> Project:
    proj = new_project(
        tmp_path_factory.mktemp("limits"),
        project_name="Limits Board",
        stack="minimal",
        python_version="3.13",
        cpu_limit="1.5",
        memory_limit="1g",
        tensorboard=True,
        tensorboard_port=free_port(),
    )
    assert proj.answers["project_slug"] == SLUG
    started = proj.invoke("up")
    ENGINE_NAME["project"] = checkout_name(proj.root)
    record("limits + tensorboard", "lock + build + up (s)", f"{started.seconds:.1f}")
    yield proj
    remove_project_state(proj)


def container(service: str) -> str:
    labels = [
        f"label=com.docker.compose.project={ENGINE_NAME['project']}",
        f"label=com.docker.compose.service={service}",
    ]
    ids = docker("ps", "-q", *(arg for label in labels for arg in ("--filter", label))).stdout.split()
    return ids[0] if ids else ""


def limits() -> tuple[int, int]:
    host_config = json.loads(docker("inspect", container("lab")).stdout)[0]["HostConfig"]
    return host_config["NanoCpus"], host_config["Memory"]


def test_answers_become_limits_and_settings_change_them(project):
    assert limits() == (1_500_000_000, 1024**3)
    record("limits + tensorboard", "answers cpu 1.5, memory 1g: NanoCpus, Memory", str(limits()))
    # Later, in invoke.yaml's terms (here the INVOKE_LABDOCK_* form): no re-rendering.
    project.invoke("up", env={"INVOKE_LABDOCK_CPUS": "1", "INVOKE_LABDOCK_MEMORY": "512m"})
    assert limits() == (1_000_000_000, 512 * 1024**2)
    project.invoke("up", env={"INVOKE_LABDOCK_CPUS": "", "INVOKE_LABDOCK_MEMORY": ""})
    assert limits() == (0, 0)  # empty: no limit
    record("limits + tensorboard", "settings 1 / 512m, then empty", "(1e9, 536870912), then (0, 0)")
    project.invoke("up")  # back to the answers for the next tests
    assert limits() == (1_500_000_000, 1024**3)


def board(project: Project, path: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{project.answers['tensorboard_port']}{path}", timeout=10)


def wait_for_run(project: Project, run: str, timeout: float = 90) -> float:
    started = time.monotonic()
    while run not in board(project, "/data/runs").json():  # TensorBoard rescans runs/ every 5 s
        assert time.monotonic() - started < timeout, f"TensorBoard never showed the run {run}"
        time.sleep(0.5)
    return time.monotonic() - started


def test_up_starts_tensorboard_which_shows_runs_written_in_jupyterlab(project):
    bound = docker("port", container("tensorboard"), "6006").stdout.split()
    assert bound == [f"127.0.0.1:{project.answers['tensorboard_port']}"]  # loopback only
    assert board(project, "/").status_code == 200
    project.invoke("exec", WRITE_RUN)
    seconds = wait_for_run(project, "e2e")
    tags = board(project, "/data/plugin/scalars/tags").json()
    assert "loss" in tags["e2e"], tags
    record(
        "limits + tensorboard", "a run written in the lab container, seen by TensorBoard", f"{seconds:.1f} s"
    )


def test_tensorboard_task_alone_and_down_stops_it(project):
    project.invoke("down")
    assert not container("tensorboard") and not container("lab")
    result = project.invoke("tensorboard")
    assert f"TensorBoard: http://127.0.0.1:{project.answers['tensorboard_port']}/" in result.stdout
    assert container("tensorboard") and not container("lab")
    assert board(project, "/").status_code == 200  # the task returns once it answers
    project.invoke("down")
    assert not container("tensorboard")
