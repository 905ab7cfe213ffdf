"""Every task and every failure on a real engine, each failure ending in one line and a non-zero exit.

One project (stack minimal, Python 3.11: the fastest build) is locked and built once; the tests
then run in file order against it. Failure messages are asserted on the last line the user sees.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
import tomllib

import pytest
import requests

from tests.e2e.harness import (
    Project,
    Registry,
    checkout_name,
    docker,
    free_port,
    git_commit,
    git_head,
    image_of,
    notebook,
    read_token,
    record,
    remove_project_state,
)
from tests.rendering import render

USER, PASSWORD = "labdock", "s3cret-Pa55word"


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def failure(project: Project, *args: str, env: dict | None = None) -> str:
    """Run a task that must fail; returns the one line it ends with."""
    result = project.invoke(*args, check=False, env=env)
    assert result.returncode != 0, f"invoke {' '.join(args)} should have failed"
    line = last_line(result)
    record("failure messages", f"invoke {' '.join(args)}", line)
    return line


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    registry = Registry(tmp_path_factory.mktemp("auth-registry"), users={USER: PASSWORD})
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def project(engine, auth_registry, tmp_path_factory) -> Project:
    answers = {
        "project_name": "Task Tour",
        "stack": "minimal",
        "python_version": "3.11",
        "jupyter_port": free_port(),
        "registry": f"{auth_registry.address}/team",
    }
    root = render(tmp_path_factory.mktemp("tasks") / "tour", **answers)
    answers.update(project_slug="task-tour", package_name="task_tour")
    git_commit(root)
    proj = Project(root, answers)
    proj.invoke("lock")
    git_commit(root, "Lock")
    proj.invoke("build")
    yield proj
    remove_project_state(proj)


def image(project: Project) -> str:
    return image_of(project)


def test_doctor_reports_a_ready_machine(project):
    result = project.invoke("doctor")
    for check in ("Docker engine", "Docker Compose", "BuildKit", "poetry.lock matches", "is free"):
        assert any(line.startswith("[ok]") and check in line for line in result.stdout.splitlines()), check


def test_no_engine(project):
    bad = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    line = failure(project, "up", env=bad)
    assert "No Docker engine reachable at unix:///nonexistent/docker.sock" in line
    assert "DOCKER_HOST" in line
    doctor = project.invoke("doctor", check=False, env=bad)
    assert doctor.returncode != 0
    assert "[!!] Docker engine" in doctor.stdout


def test_port_already_taken(project):
    port = project.answers["jupyter_port"]
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        line = failure(project, "up")
        assert f"Port {port} on 127.0.0.1 is already in use" in line
        assert "INVOKE_LABDOCK_PORT" in line
        doctor = project.invoke("doctor", check=False)
        assert doctor.returncode != 0 and f"[!!] port {port}" in doctor.stdout


def test_a_broken_notebooks_link_stops_up_and_fails_doctor(project):
    """A notebooks/ folder linked to a path that does not exist would be empty in the lab."""
    link = project.root / "notebooks" / "shared"
    os.symlink("/nowhere/team-notebooks", link)
    try:
        line = failure(project, "up")
        assert line == (
            "notebooks/shared is a link to /nowhere/team-notebooks, which does not exist: point it at a "
            "folder that does, or remove it, then `invoke up`."
        )
        assert docker("ps", "-aq", "--filter", f"name={checkout_name(project.root)}-").stdout.strip() == ""
        doctor = project.invoke("doctor", check=False)
        assert doctor.returncode != 0
        assert "[!!] links in the project lead to existing files: notebooks/shared" in doctor.stdout
    finally:
        link.unlink()


def test_gpu_requested_on_an_engine_without_nvidia_runtime(project):
    """compose.gpu.yaml is written for the run (any project: --gpu asks for the GPUs); this
    engine has no NVIDIA runtime."""
    try:
        line = failure(project, "up", "--gpu")
        assert "no NVIDIA GPU runtime" in line and "NVIDIA Container Toolkit" in line
        assert "`invoke up --no-gpu`" in line
        assert "count: all" in (project.root / "compose.gpu.yaml").read_text()
        left = docker(
            "ps",
            "--all",
            "--quiet",
            "--filter",
            f"label=com.docker.compose.project={checkout_name(project.root)}",
            "--filter",
            "status=created",
        ).stdout.split()
        assert left == []  # no half-made container stays behind
        line = failure(project, "run-notebook", "notebooks/getting-started.ipynb", "--gpu")
        assert "no NVIDIA GPU runtime" in line
        assert "`invoke run-notebook notebooks/getting-started.ipynb --no-gpu`" in line
        left = docker(
            "ps",
            "--all",
            "--quiet",
            "--filter",
            f"label=com.docker.compose.project={checkout_name(project.root)}",
            "--filter",
            "status=created",
        ).stdout.split()
        assert left == []
    finally:
        project.invoke("down")


def test_server_never_healthy_times_out_with_its_logs(project):
    # A server that logs a line, then never answers: deterministic, unlike a real slow start.
    compose = project.root / "compose.yaml"
    original = compose.read_text()
    hanging = '    command: ["sh", "-c", "echo labdock-e2e: stuck before listening; exec sleep 3600"]\n'
    compose.write_text(original.replace("    init: true", hanging + "    init: true", 1))
    try:
        result = project.invoke("up", check=False, env={"INVOKE_LABDOCK_HEALTHY_TIMEOUT": "5"})
    finally:
        compose.write_text(original)
        project.invoke("down")
    assert result.returncode != 0
    assert "lab-1  | labdock-e2e: stuck before listening" in result.stdout, (
        "the last log lines should be shown"
    )
    line = last_line(result)
    record("failure messages", "invoke up (never healthy within 5 s)", line)
    assert "did not become healthy within 5s" in line


def test_stale_lock_is_refused(project):
    pyproject = project.root / "pyproject.toml"
    original = pyproject.read_text()
    edited = original.replace("dependencies = []", 'dependencies = ["six (>=1.16)"]', 1)
    assert edited != original, "the test must really change the dependencies"
    pyproject.write_text(edited)
    try:
        line = failure(project, "build")
        assert "poetry.lock is out of date with pyproject.toml: run `invoke lock`" in line
    finally:
        pyproject.write_text(original)


def test_missing_lock_is_created_by_build(project):
    lock = project.root / "poetry.lock"
    saved = lock.read_text()
    lock.unlink()
    result = project.invoke("build")
    assert "poetry.lock is missing: running `invoke lock` first." in result.stdout
    assert (
        tomllib.loads(lock.read_text())["metadata"]["content-hash"]
        == (tomllib.loads(saved)["metadata"]["content-hash"])
    )


def test_build_labels_follow_the_revision(project):
    (project.root / "notebooks" / "analysis.ipynb").write_text(json.dumps(notebook("print(1)")))
    git_commit(project.root, "Add an analysis notebook")  # a new revision: the label must follow it
    project.invoke("build")
    labels = json.loads(docker("image", "inspect", image(project)).stdout)[0]["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == git_head(project.root)
    # Nothing changed since: the same image (not a fresh id that would make `up` recreate the server).
    image_id = docker("image", "inspect", "-f", "{{.Id}}", image(project)).stdout
    project.invoke("build")
    assert docker("image", "inspect", "-f", "{{.Id}}", image(project)).stdout == image_id


def test_up_shell_exec_logs_url(project):
    result = project.invoke("up", cwd=project.root / "src")  # from a subfolder
    assert "JupyterLab is healthy" in result.stdout
    shell = run_in_pty(project, ["shell"], "id -u; pwd; echo done-$((6*7)); exit\n")
    assert str(os.getuid()) in shell and "/workspace" in shell and "done-42" in shell
    assert project.invoke("exec", "test -w /workspace/notebooks").returncode == 0
    assert project.invoke("exec", "exit 7", check=False).returncode == 7
    assert "Jupyter Server" in project.invoke("logs", "--tail", "200").stdout
    assert "/lab?token=" in project.invoke("url").stdout


def run_in_pty(project: Project, args: list[str], keystrokes: str, timeout: float = 60) -> str:
    """Run `invoke ARGS` on a pseudo-terminal, type keystrokes, return everything it printed."""
    pid, fd = pty.fork()
    if pid == 0:  # child: become the invoke process
        os.chdir(project.root)
        os.execvpe(sys.executable, [sys.executable, "-m", "invoke", *args], os.environ)
    output, deadline, typed = b"", time.monotonic() + timeout, False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        if not typed and (b"$ " in output or b"# " in output):  # a shell prompt
            os.write(fd, keystrokes.encode())
            typed = True
    os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    print(text)
    return text


def test_run_notebook(project):
    good = project.root / "notebooks" / "ok.ipynb"
    bad = project.root / "notebooks" / "broken.ipynb"
    good.write_text(json.dumps(notebook("import task_tour\nprint(task_tour.greet('ci'))")))
    bad.write_text(json.dumps(notebook("print('before')\n1 / 0")))
    project.invoke("run-notebook", "notebooks/ok.ipynb", "--output", "notebooks/ok.out.ipynb")
    outputs = json.loads((project.root / "notebooks" / "ok.out.ipynb").read_text())["cells"][0]["outputs"]
    assert "Hello, ci" in "".join(outputs[0]["text"])
    result = project.invoke("run-notebook", "broken.ipynb", cwd=project.root / "notebooks", check=False)
    assert result.returncode != 0
    assert "ZeroDivisionError" in result.stdout + result.stderr
    record("failure messages", "invoke run-notebook broken.ipynb", last_line(result))
    assert "broken.ipynb failed: a cell raised an error" in last_line(result)


def test_run_notebook_marked_runs_what_ci_runs(project):
    """The generated workflow's step: every notebook marked for CI under notebooks/, nothing else."""
    folder = project.root / "notebooks" / "ci"
    folder.mkdir()
    marked = notebook("print('marked ran')")
    marked["metadata"]["labdock"] = {"ci": True}
    (folder / "marked.ipynb").write_text(json.dumps(marked))
    (folder / "unmarked.ipynb").write_text(json.dumps(notebook("1 / 0")))  # would fail if run
    result = project.invoke("run-notebook", "notebooks/ci", "--marked", "--timeout", "600")
    assert (folder / "marked.executed.ipynb").exists()
    assert not (folder / "unmarked.executed.ipynb").exists()
    assert "Ran 1 notebook in" in result.stdout
    record("task tour", "invoke run-notebook notebooks/ci --marked", result.stdout.strip().splitlines()[-1])


def test_push_needs_credentials_then_pulls_back_by_digest(project, auth_registry):
    line = failure(project, "push")
    assert "REGISTRY_USER" in line and "REGISTRY_PASSWORD" in line
    creds = {"REGISTRY_USER": USER, "REGISTRY_PASSWORD": PASSWORD}
    try:
        result = project.invoke("push", "--tag", "v1-test", env=creds)
        assert PASSWORD not in result.stdout + result.stderr
        repository = f"team/{project.answers['project_slug']}"
        assert {"v1-test", "latest"} <= set(auth_registry.tags(repository, auth=(USER, PASSWORD)))
        manifest = requests.head(
            f"http://{auth_registry.address}/v2/{repository}/manifests/v1-test",
            auth=(USER, PASSWORD),
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=5,
        )
        digest = manifest.headers["Docker-Content-Digest"]
        docker("pull", f"{auth_registry.address}/{repository}@{digest}")
        record("task tour", "pushed and pulled back", f"{repository}@{digest[:19]}...")
    finally:
        docker("logout", auth_registry.address, check=False)


def test_add_a_dependency_rebuilds(project):
    project.invoke("add", "six")
    pyproject = tomllib.loads((project.root / "pyproject.toml").read_text())
    assert any(dep.startswith("six") for dep in pyproject["project"]["dependencies"])
    assert "six" in {p["name"] for p in tomllib.loads((project.root / "poetry.lock").read_text())["package"]}
    assert (project.root / "pyproject.toml").stat().st_uid == os.getuid()
    docker("run", "--rm", image(project), "python", "-c", "import six")


def test_lock_upgrade(project):
    project.invoke("lock", "--upgrade")
    assert "six" in (project.root / "poetry.lock").read_text()


def test_lab_local_runs_natively_from_the_same_lock(project, tmp_path):
    """The Apple-Silicon path: the host's Poetry installs the lock and runs JupyterLab natively."""
    port = free_port()
    # A user's shell: no active virtualenv (nox's would receive the packages), the venv in .venv/.
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env.update(INVOKE_LABDOCK_PORT=str(port), POETRY_VIRTUALENVS_IN_PROJECT="true")
    log = tmp_path / "lab-local.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "invoke", "lab", "--local"],
            cwd=project.root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: invoke, poetry and jupyter stop together
        )
    try:
        deadline, answered = time.monotonic() + 600, None
        while time.monotonic() < deadline and answered is None:
            assert process.poll() is None, log.read_text()
            time.sleep(2)
            token = read_token(project.root)  # `invoke lab` creates .env when missing
            try:
                response = requests.get(
                    f"http://127.0.0.1:{port}/api/contents",
                    timeout=2,
                    headers={"Authorization": f"token {token}"},
                )
                answered = response if response.status_code == 200 else None
            except requests.ConnectionError:
                pass
        assert answered is not None, f"invoke lab --local did not answer within 600 s:\n{log.read_text()}"
        assert "notebooks" in {item["name"] for item in answered.json()["content"]}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_down_volumes_removes_container_and_state(project):
    project.invoke("down", "--volumes")
    name = checkout_name(project.root)
    assert docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={name}").stdout.strip() == ""
    volumes = docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"{name}_jupyter-state" not in volumes
    assert f"{name}-poetry-cache" not in volumes  # Poetry's cache is the checkout's too
