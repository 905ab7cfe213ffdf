"""System packages, the R kernel and an apt proxy, on a real engine.

One project (minimal stack, r_kernel on) lists a Debian package in apt-packages.txt and a build-only
one in apt-build-packages.txt, and builds through an HTTP proxy for apt given the way a user on a
company network gives it: INVOKE_LABDOCK_APT_PROXY. The proxy (proxy.py) runs on the host and logs
what passes through it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import (
    Project,
    bridge_gateway,
    docker,
    free_port,
    image_of,
    notebook,
    read_token,
    record,
    remove_project_state,
)
from tests.rendering import render

RUNTIME_PACKAGE, BUILD_ONLY_PACKAGE = "jq", "file"


class AptProxy:
    """proxy.py on all host addresses; containers reach it through the bridge's gateway."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "proxy.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--hostname", "0.0.0.0", "--port", str(self.port)],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://{bridge_gateway()}:{self.port}"
        for _ in range(50):
            try:
                requests.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        pytest.fail(f"proxy.py did not start: {self.log.read_text()}")

    def requests_to(self, host: str) -> int:
        return sum(host in line for line in self.log.read_text().splitlines())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def apt_proxy(tmp_path_factory) -> AptProxy:
    proxy = AptProxy(tmp_path_factory.mktemp("apt-proxy"))
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def project(engine, apt_proxy, tmp_path_factory) -> Project:
    answers = {
        "project_name": "System Packages",
        "stack": "minimal",
        "python_version": "3.13",
        "r_kernel": True,
        "jupyter_port": free_port(),
    }
    root = render(tmp_path_factory.mktemp("sysdeps") / "project", **answers)
    answers.update(project_slug="system-packages", package_name="system_packages")
    listings = {"apt-packages.txt": RUNTIME_PACKAGE, "apt-build-packages.txt": BUILD_ONLY_PACKAGE}
    for name, package in listings.items():
        with (root / name).open("a") as listing:
            # A unique comment: the apt step really runs (through the proxy), whatever is cached.
            listing.write(f"{package}  # added by the test run {uuid.uuid4().hex}\n")
    proj = Project(root, answers, env={"INVOKE_LABDOCK_APT_PROXY": apt_proxy.url})
    built = proj.invoke("build")
    record("system-packages", "lock + build, R and apt (s)", f"{built.seconds:.1f}")
    yield proj
    remove_project_state(proj)


def run_in_image(project: Project, script: str) -> subprocess.CompletedProcess:
    return docker("run", "--rm", image_of(project), "sh", "-c", script, check=False)


def test_listed_package_is_in_the_image_and_build_only_one_is_not(project):
    assert run_in_image(project, f"{RUNTIME_PACKAGE} --version").stdout.startswith("jq-")
    absent = run_in_image(project, f"command -v {BUILD_ONLY_PACKAGE} || echo absent")
    assert absent.stdout.strip() == "absent"


def test_apt_went_through_the_proxy_which_the_image_does_not_record(project, apt_proxy):
    seen = apt_proxy.requests_to("deb.debian.org")
    record("system-packages", "apt requests through the proxy", str(seen))
    assert seen > 0, apt_proxy.log.read_text()[-2000:]
    history = docker("history", "--no-trunc", image_of(project)).stdout
    config = docker("image", "inspect", image_of(project)).stdout
    address = apt_proxy.url.removeprefix("http://")
    assert address not in history
    assert address not in config
    leftovers = run_in_image(project, "grep -ri proxy /etc/apt /run 2>/dev/null || true")
    assert leftovers.stdout.strip() == ""


def test_r_kernel_is_registered_and_runs_a_notebook(project):
    project.invoke("up")
    port, token = project.answers["jupyter_port"], read_token(project.root)
    specs = requests.get(
        f"http://127.0.0.1:{port}/api/kernelspecs", headers={"Authorization": f"token {token}"}, timeout=10
    ).json()
    assert {"ir", "python3"} <= set(specs["kernelspecs"]), specs["kernelspecs"].keys()
    assert specs["kernelspecs"]["ir"]["spec"]["language"] == "R"

    r_notebook = notebook("cat(6 * 7)")
    r_notebook["metadata"]["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    path = project.root / "notebooks" / "r-check.ipynb"
    path.write_text(json.dumps(r_notebook))
    result = project.invoke("run-notebook", "notebooks/r-check.ipynb")
    record("system-packages", "R notebook run (s)", f"{result.seconds:.1f}")
    executed = json.loads((project.root / "notebooks" / "r-check.executed.ipynb").read_text())
    outputs = executed["cells"][0]["outputs"]
    printed = "".join("".join(output.get("text", "")) for output in outputs)  # text: str or lines
    assert printed == "42", outputs
