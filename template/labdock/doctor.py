"""`invoke doctor`: can this machine build and run the project? One line per check, with the fix."""

from __future__ import annotations

import re
import shutil

from invoke import Context, Exit, task

from . import engine, envfile, image, locking, network
from .project import Project

MIN_FREE_DISK_GB = 10


class Report:
    """Prints one line per check: [ok], [!!] (required, failed), [--] (optional, failed) or [..]
    (information, with what to do)."""

    def __init__(self) -> None:
        self.failed = False

    def info(self, what: str) -> None:
        print(f"[..] {what}")

    def check(self, ok: bool, what: str, fix: str = "", required: bool = True) -> None:
        mark = "ok" if ok else ("!!" if required else "--")
        self.failed = self.failed or (required and not ok)
        print(f"[{mark}] {what}" + (f": {fix}" if fix and not ok else ""))


def loopback_exposure(version: str) -> str:
    """'' for a Docker Engine that keeps ports published on 127.0.0.1 to the host, else the fix.

    Before 28.0.0, hosts on the same local network could reach them by routing to the engine's
    bridge (moby/moby#45610); before 28.3.3, again after a firewalld reload (CVE-2025-54388).
    """
    numbers = tuple(int(part) for part in re.findall(r"[0-9]+", version)[:3])
    if len(numbers) < 3:
        return ""
    if numbers < (28, 0, 0):
        return (
            "before 28.0.0, hosts on your local network can reach ports published on 127.0.0.1 "
            "(moby/moby#45610): upgrade Docker Engine, or firewall this machine"
        )
    if numbers < (28, 3, 3):
        return (
            "before 28.3.3, a firewalld reload lets the local network reach ports published on "
            "127.0.0.1 (CVE-2025-54388): upgrade Docker Engine"
        )
    return ""


@task
def doctor(c: Context) -> None:
    """Check that this machine can build and run the project; one line per check, with the fix."""
    p = Project.load(c)
    s = p.settings
    report = Report()
    version = engine.engine_version(p)
    problem = None if version is not None else engine.no_engine_message()
    report.check(problem is None, f"Docker engine {version or ''}".strip(), problem or "")
    composed = c.run("docker compose version --short", hide=True, warn=True)
    report.check(
        composed.ok,
        f"Docker Compose {composed.stdout.strip()}".strip(),
        "install the Compose plugin (Docker Desktop has it)",
    )
    buildkit = c.run("docker buildx version", hide=True, warn=True)
    report.check(
        buildkit.ok,
        "BuildKit (buildx)",
        "install the buildx plugin (Docker Desktop has it); the Dockerfile's cache mounts need BuildKit",
    )
    if problem is None and not p.lock_file.exists():
        report.info("poetry.lock: not locked yet: `invoke up` (or `invoke lock`) resolves it; commit it")
    elif problem is None:
        lock_issue = locking.lock_problem(p, quiet=True)
        report.check(lock_issue is None, "poetry.lock matches pyproject.toml", lock_issue or "")
        if lock_issue is None:
            stale = image.stale_reason(p)
            report.check(
                not stale or stale == "there is no image yet",
                "the image is built from the project's current files",
                f"{stale}: `invoke build` (or `invoke up`) rebuilds it",
            )
    else:
        report.check(False, "poetry.lock matches pyproject.toml", "needs the engine (see above)")
    if problem is None and engine.container_id(p):
        report.check(True, f"port {s.port} on {s.bind}: this project's JupyterLab is serving on it")
    else:
        report.check(
            not network.port_in_use(s.bind, s.port),
            f"port {s.port} on {s.bind} is free for JupyterLab",
            "something else listens there: stop it, or set INVOKE_LABDOCK_PORT / labdock.port",
        )
    if version is not None and (exposure := loopback_exposure(version)):
        desktop = (
            "Docker Desktop"
            in c.run("docker info --format '{{.OperatingSystem}}'", hide=True, warn=True).stdout
        )
        if not desktop:  # Docker Desktop's engine runs in a VM that the local network cannot route to
            report.check(
                False, f"Docker Engine {version} keeps loopback ports private", exposure, required=False
            )
    report.check(
        bool(envfile.read(p.env_file).get(envfile.TOKEN)),
        ".env holds a JupyterLab token",
        "`invoke up` creates it",
        required=False,
    )
    if s.gpu == "nvidia":
        runtimes = c.run("docker info --format '{{json .Runtimes}}'", hide=True, warn=True)
        report.check(
            runtimes.ok and "nvidia" in runtimes.stdout,
            "NVIDIA container runtime",
            "install the NVIDIA Container Toolkit and restart Docker",
        )
    free_gb = shutil.disk_usage(p.root).free / 1e9
    report.check(
        free_gb >= MIN_FREE_DISK_GB,
        f"{free_gb:.0f} GB free disk",
        f"images need space: free at least {MIN_FREE_DISK_GB} GB",
        required=False,
    )
    if report.failed:
        raise Exit("Some required checks failed: fix the lines marked [!!] above.")
