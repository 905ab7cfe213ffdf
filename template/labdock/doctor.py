"""`invoke doctor`: can this machine build and run the project? One line per check, with the fix."""

from __future__ import annotations

import re
import shutil

from invoke import Context, Exit, task

from . import engine, envfile, gpu, image, legacy, links, locking, network, overrides
from .project import SERVICE, Project
from .settings import AUTO

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


def cuda_check(p: Project, report: Report) -> None:
    """gpu: nvidia: nvidia-smi in a container with the GPU request (right for remote engines
    too, and it tests the NVIDIA Container Toolkit), and the CUDA version the image's torch was
    built for (read from torch/version.py, without importing torch)."""
    if not engine.image_exists(p, p.image()):
        report.info("CUDA driver check: needs the image: `invoke build`, then `invoke doctor` again")
        return
    smi = engine.compose(
        p, "run", "--rm", "--no-deps", "-T", SERVICE, "nvidia-smi", gpu=True, hide=True, warn=True
    )
    if not smi.ok:
        error = (smi.stderr or smi.stdout).strip()
        fix = (
            engine.no_gpu_runtime("invoke up")
            if engine.is_nvidia_error(error)
            else f"nvidia-smi failed in the container ({error.splitlines()[-1] if error else 'no output'})"
        )
        report.check(False, "the container sees the GPUs (nvidia-smi)", fix)
        return
    try:
        driver = gpu.parse_nvidia_smi(smi.stdout)
    except ValueError as error:
        report.check(False, "the container sees the GPUs (nvidia-smi)", str(error))
        return
    probe_argv = ["python", "-c", gpu.TORCH_VERSION_PROBE]
    probe = engine.compose(p, "run", "--rm", "--no-deps", "-T", SERVICE, *probe_argv, hide=True, warn=True)
    installed, torch_cuda = gpu.parse_torch_version_file(probe.stdout if probe.ok else "")
    if not installed:
        cuda = driver.cuda or "unknown"
        report.check(True, f"NVIDIA driver {driver.version} (CUDA {cuda}); no torch in the image to check")
        return
    verdict = gpu.check_driver(driver, torch_cuda)
    if verdict.level == "ok":
        report.check(True, f"NVIDIA {verdict.message}")
    else:  # warn: runs through minor version compatibility, with limits
        what = "the NVIDIA driver runs the image's torch"
        report.check(False, what, verdict.message, required=verdict.level == "fail")


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
    if p.remote:
        report.info(
            f"remote engine ({p.endpoint or 'labdock.remote: true'}): the project lives in a volume there; "
            "`invoke sync` copies changes both ways, `invoke url` prints the ssh command to reach the server"
        )
    report.info(f"this checkout on the engine: {p.compose_project} (user {p.checkout.user})")
    if problem is None:
        clash = engine.foreign(p, engine.inspect(p, engine.known_names(p)))
        report.check(not clash, "nothing of this checkout's names belongs to another checkout", clash)
        if old := legacy.legacy_volumes(p):
            report.info(
                f"volumes of the previous release ({', '.join(old)}): `invoke up` copied (or copies) their "
                f"JupyterLab state; remove them with `docker volume rm {' '.join(old)}` once no checkout of "
                f"{p.slug} needs them"
            )
    if problem is None and p.remote:
        report.info("poetry.lock check: needs a local engine (Poetry on a remote one is not supported yet)")
    elif problem is None and not p.lock_file.exists():
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
    running = problem is None and engine.container_id(p)
    if running:
        report.check(True, f"port {p.port_text()} on {s.bind}: this project's JupyterLab is serving on it")
    elif p.remote:
        report.info(f"port {p.port_text()}: published on the engine's host (not checked from here)")
    elif p.port is None:
        report.check(True, f"port: auto on {s.bind}: `invoke up` picks a free one")
    else:
        taken = network.port_in_use(s.bind, p.port)
        holder = engine.port_holder(p, p.port) if taken and problem is None else "something else"
        report.check(
            not taken or s.port == AUTO,
            f"port {p.port} on {s.bind} (auto) is taken now: `invoke up` picks another"
            if taken and s.port == AUTO
            else f"port {p.port} on {s.bind} is free for JupyterLab",
            f"{holder} listens there: stop it, or set labdock.port: auto (or INVOKE_LABDOCK_PORT=<port>)",
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
        has_runtime = runtimes.ok and "nvidia" in runtimes.stdout
        report.check(
            has_runtime,
            "NVIDIA container runtime",
            "install the NVIDIA Container Toolkit on the engine's host and restart Docker",
        )
        if has_runtime and overrides.gpu_selection(p) != gpu.NONE:
            cuda_check(p, report)
    if not p.remote:  # a remote engine gets a copy of the files, without links
        broken = links.broken(p.root)
        report.check(not broken, "links in the project lead to existing files", "; ".join(broken))
        for line in links.outside(p.root):
            report.check(False, "links stay inside the project", line, required=False)
    if not p.remote:  # the disk that fills up is the engine's
        free_gb = shutil.disk_usage(p.root).free / 1e9
        report.check(
            free_gb >= MIN_FREE_DISK_GB,
            f"{free_gb:.0f} GB free disk",
            f"images need space: free at least {MIN_FREE_DISK_GB} GB",
            required=False,
        )
    if report.failed:
        raise Exit("Some required checks failed: fix the lines marked [!!] above.")
