"""Tasks for this labdock project: `invoke --list` shows them, `invoke --help TASK` explains one.

Everything runs in Docker: the host needs only a Docker engine (with Compose and BuildKit),
Python and Invoke. Settings live in invoke.yaml (`labdock:`); each can be overridden for one
shell with INVOKE_LABDOCK_<NAME>, e.g. `INVOKE_LABDOCK_PORT=9999 invoke up`.

This file belongs to the labdock template: `copier update` keeps it current.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import io
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import webbrowser
from pathlib import Path

from invoke import Collection, Context, Exit, task

ROOT = Path(__file__).resolve().parent
ENV_FILE = ROOT / ".env"
LOCK_FILE = ROOT / "poetry.lock"
COMPOSE_FILE = ROOT / "compose.yaml"
GPU_COMPOSE_FILE = ROOT / "compose.gpu.yaml"
CONTAINER_PORT = 8888  # inside the container; the host port is labdock.port
TENSORBOARD = "tensorboard"  # the optional service in compose.yaml, and its profile
WORKSPACE = "/workspace"  # where compose.yaml mounts the project
MIN_FREE_DISK_GB = 10
HEALTH_POLL_SECONDS = 0.25
# What engines say when a GPU is requested but the NVIDIA runtime is missing.
NVIDIA_ERRORS = (
    "could not select device driver",
    "unknown or invalid runtime name: nvidia",
    "nvidia-container",
)

# Lowest-priority defaults; invoke.yaml and INVOKE_LABDOCK_* override them. The last three are
# machine-specific (a company PyPI mirror, a TLS-intercepting proxy's CA, an apt proxy), so they
# are not in invoke.yaml, where they would override a per-user ~/.invoke.yaml.
DEFAULTS = {
    "project": ROOT.name,
    "image": ROOT.name,
    "service": "lab",
    "port": 8888,
    "bind": "127.0.0.1",
    "python_version": "3.13",
    "gpu": "none",
    "gpus": "all",
    "cpus": "",
    "memory": "",
    "tensorboard": False,
    "tensorboard_port": 6006,
    "registry": "",
    "healthy_timeout": 180,
    "pypi_mirror": "",
    "ca_bundle": "",
    "apt_proxy": "",
}


# ----------------------------------------------------------------------------- helpers


def quote(arg: object) -> str:
    """Quote one argument for the shell Invoke runs commands in."""
    if os.name == "nt":
        return subprocess.list2cmdline([str(arg)])
    return shlex.quote(str(arg))


def cmd(*args: object) -> str:
    return " ".join(quote(arg) for arg in args)


def settings(c: Context):
    return c.config.labdock


def image_ref(c: Context, tag: str = "latest") -> str:
    return f"{settings(c).image}:{tag}"


def host_ids() -> tuple[int, int]:
    """UID and GID for the notebook user: the host user's, so bind-mounted files are theirs."""
    if hasattr(os, "getuid"):
        return os.getuid(), os.getgid()
    return 1000, 1000  # Windows: Docker Desktop maps ownership itself


def compose(c: Context, *args: object, gpu: bool = False, tensorboard: bool = False, **run_kwargs):
    """Run `docker compose ARGS` for this project, from any folder, with settings from invoke.yaml."""
    s = settings(c)
    files = ["-f", COMPOSE_FILE] + (["-f", GPU_COMPOSE_FILE] if gpu else [])
    profiles = ["--profile", TENSORBOARD] if tensorboard else []
    env = compose_settings(c)
    if not read_env_file().get("JUPYTER_TOKEN"):
        # compose.yaml refuses to parse without a token; only `up` uses it, and `up` creates .env
        # before it starts anything, so `down`, `ps`... may go on without one.
        env["JUPYTER_TOKEN"] = "unused-without-env-file"
    command = cmd("docker", "compose", "--project-name", s.project, *files, *profiles, *args)
    return c.run(command, env=env, **run_kwargs)


def compose_settings(c: Context) -> dict[str, str]:
    """invoke.yaml's settings as the LABDOCK_* variables compose.yaml reads."""
    s = settings(c)
    return {
        "LABDOCK_IMAGE": image_ref(c),
        "LABDOCK_PORT": str(s.port),
        "LABDOCK_BIND": s.bind,
        "LABDOCK_GPUS": str(s.gpus),
        # compose.yaml reads 0 as "no limit"
        "LABDOCK_CPUS": str(s.cpus or 0),
        "LABDOCK_MEMORY": str(s.memory or 0),
        "LABDOCK_TENSORBOARD_PORT": str(s.tensorboard_port),
    }


SETTINGS_HEADER = "# invoke.yaml's settings for compose, written by `invoke up` / `invoke prepare`:"


def save_settings_for_compose(c: Context) -> None:
    """Mirror the settings into .env, which compose reads by itself: a container started without
    invoke (VS Code's devcontainer, plain `docker compose up`) gets the same port, limits, image."""
    kept = [
        line
        for line in (ENV_FILE.read_text().splitlines() if ENV_FILE.exists() else [])
        if not line.startswith("LABDOCK_") and line != SETTINGS_HEADER
    ]
    lines = [*kept, SETTINGS_HEADER, *(f"{key}={value}" for key, value in compose_settings(c).items())]
    fd = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as env_file:
        env_file.write("\n".join(lines) + "\n")
    os.chmod(ENV_FILE, 0o600)


def read_env_file() -> dict[str, str]:
    if not ENV_FILE.exists():
        return {}
    values = {}
    for line in ENV_FILE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


def ensure_token() -> str:
    """The server's token from .env; creates one (256 random bits, file mode 600) if missing."""
    token = read_env_file().get("JUPYTER_TOKEN")
    if token:
        return token
    token = secrets.token_hex(32)
    existing = ENV_FILE.read_text() if ENV_FILE.exists() else ""
    separator = "\n" if existing and not existing.endswith("\n") else ""
    fd = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as env_file:
        env_file.write(
            f"{separator}# Created by `invoke up`. Keep it secret; never commit it.\nJUPYTER_TOKEN={token}\n"
        )
    os.chmod(ENV_FILE, 0o600)
    print(f"Created {ENV_FILE.name} with a new JupyterLab token.")
    return token


def engine_version(c: Context) -> str | None:
    """The Docker engine's version, or None when no engine answers."""
    result = c.run("docker version --format '{{.Server.Version}}'", hide=True, warn=True)
    return result.stdout.strip() if result is not None and result.ok else None


def engine_problem(c: Context) -> str | None:
    """None when a Docker engine answers, else a one-line cause and fix."""
    return None if engine_version(c) is not None else no_engine_message()


def no_engine_message() -> str:
    where = os.environ.get("DOCKER_HOST") or "the default Docker socket/context"
    return (
        f"No Docker engine reachable at {where}: start Docker (Docker Desktop, or "
        "`sudo systemctl start docker`), or point DOCKER_HOST at a running engine."
    )


def require_engine(c: Context) -> None:
    problem = engine_problem(c)
    if problem:
        raise Exit(problem)


def image_exists(c: Context, ref: str) -> bool:
    return c.run(cmd("docker", "image", "inspect", ref), hide=True, warn=True).ok


def container_id(c: Context, service: str = "") -> str:
    """The running container's id (JupyterLab's by default), or '' when it is not running."""
    service = service or settings(c).service
    result = compose(c, "ps", "-q", service, tensorboard=service == TENSORBOARD, hide=True, warn=True)
    return result.stdout.strip() if result.ok else ""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1" if host == "0.0.0.0" else host, port)) == 0


def index_args(c: Context) -> tuple[list[str], list[str]]:
    """Package-index settings as build args/secrets, and as docker-run flags for Poetry."""
    s = settings(c)
    build, run = [], []
    if s.pypi_mirror:
        build += ["--build-arg", f"PYPI_MIRROR_URL={s.pypi_mirror}"]
        run += ["-e", f"PYPI_MIRROR_URL={s.pypi_mirror}"]
    if s.ca_bundle:
        bundle = Path(s.ca_bundle).expanduser().resolve()
        if not bundle.is_file():
            raise Exit(
                f"CA bundle {s.ca_bundle} (labdock.ca_bundle) is not a file: "
                "fix INVOKE_LABDOCK_CA_BUNDLE or unset it."
            )
        build += ["--secret", f"id=ca_bundle,src={bundle}"]
        run += ["-v", f"{bundle}:/run/secrets/ca_bundle:ro"]
    return build, run


def docker_build(c: Context, target: str, ref: str, *flags: str, failure: str) -> None:
    """Build one stage of the Dockerfile with the project's Python and package-index settings."""
    index_flags, _ = index_args(c)
    s = settings(c)
    python = f"PYTHON_VERSION={s.python_version}"
    if s.apt_proxy and not re.fullmatch(r"https?://[^/:\s]+(:[0-9]+)?/?", s.apt_proxy):
        # apt ignores a proxy it cannot parse and goes direct: on a closed network, a mysterious hang.
        raise Exit(
            "labdock.apt_proxy must be a URL such as http://apt-cache.example.com:3142 "
            f"(got '{s.apt_proxy}'): fix INVOKE_LABDOCK_APT_PROXY."
        )
    # A secret, not a build arg: build args are recorded in the image's history.
    apt_flags = ["--secret", "id=apt_proxy,env=LABDOCK_APT_PROXY"] if s.apt_proxy else []
    apt_env = {"LABDOCK_APT_PROXY": s.apt_proxy} if s.apt_proxy else {}
    result = c.run(
        cmd(
            "docker",
            "build",
            "--target",
            target,
            "-t",
            ref,
            "--build-arg",
            python,
            *index_flags,
            *apt_flags,
            *flags,
            ROOT,
        ),
        env={"DOCKER_BUILDKIT": "1", **apt_env},
        warn=True,
    )
    if not result.ok:
        raise Exit(build_failure_hint(failure))


def build_builder(c: Context) -> str:
    """Build the Dockerfile's builder stage (Poetry, no project dependencies); returns its tag."""
    ref = image_ref(c, "builder")
    docker_build(c, "builder", ref, failure="The builder stage (Poetry) failed to build")
    return ref


def build_failure_hint(what: str) -> str:
    return (
        f"{what} (output above). Behind a company proxy or mirror, set "
        "INVOKE_LABDOCK_PYPI_MIRROR and/or INVOKE_LABDOCK_CA_BUNDLE and retry."
    )


def poetry_in_container(c: Context, poetry_args: str, owned_files: list[str], **run_kwargs):
    """Run Poetry in the builder stage on the project folder; written files stay the host user's."""
    builder = build_builder(c)
    _, run_flags = index_args(c)
    uid, gid = host_ids()
    script = f"poetry {poetry_args} && chown {uid}:{gid} {shlex.join(owned_files)}"
    return c.run(
        cmd(
            "docker",
            "run",
            "--rm",
            "-v",
            f"{ROOT}:{WORKSPACE}",
            "-v",
            f"{settings(c).project}-poetry-cache:/var/cache/pypoetry",
            *run_flags,
            builder,
            "sh",
            "-c",
            script,
        ),
        **run_kwargs,
    )


def lock_problem(c: Context) -> str | None:
    """None when poetry.lock exists and matches pyproject.toml, else a one-line cause and fix."""
    if not LOCK_FILE.exists():
        return "poetry.lock is missing: run `invoke lock` (the build runs it for you), then commit it."
    builder = build_builder(c)
    result = c.run(
        cmd("docker", "run", "--rm", "-v", f"{ROOT}:{WORKSPACE}:ro", builder, "poetry", "check", "--lock"),
        hide=True,
        warn=True,
    )
    if result.ok:
        return None
    output = (result.stdout + result.stderr).strip()
    if "poetry lock" in output:
        return "poetry.lock is out of date with pyproject.toml: run `invoke lock`, then commit both."
    first_line = output.splitlines()[-1] if output else "poetry check failed"
    return f"pyproject.toml has a problem ({first_line}): fix it, then run `invoke lock`."


def git_output(c: Context, *args: str) -> str:
    result = c.run(cmd("git", "-C", ROOT, *args), hide=True, warn=True)
    return result.stdout.strip() if result is not None and result.ok else ""


def git_version(c: Context) -> str:
    """The image version: the git tag at HEAD, else the short commit sha."""
    version = git_output(c, "describe", "--tags", "--exact-match") or git_output(
        c, "rev-parse", "--short", "HEAD"
    )
    if not version:
        raise Exit("No version from git (no commit yet): commit first, or pass --tag VERSION.")
    return version


def use_gpu(c: Context, gpu: bool, no_gpu: bool) -> bool:
    """Whether to add compose.gpu.yaml: --gpu or --no-gpu if given, else labdock.gpu."""
    if gpu and no_gpu:
        raise Exit("--gpu and --no-gpu contradict each other: give one of them.")
    wanted = gpu or (settings(c).gpu == "nvidia" and not no_gpu)
    if wanted and not GPU_COMPOSE_FILE.exists():
        raise Exit(
            "This project has no compose.gpu.yaml: add GPU support with "
            "`copier update --defaults --data gpu=nvidia`."
        )
    return wanted


def has_tensorboard(c: Context) -> bool:
    """Whether compose.yaml has the TensorBoard service (the `tensorboard` answer)."""
    result = compose(c, "config", "--services", tensorboard=True, hide=True, warn=True)
    return result.ok and TENSORBOARD in result.stdout.split()


def check_tensorboard_port(c: Context) -> None:
    s = settings(c)
    if not container_id(c, TENSORBOARD) and port_in_use(s.bind, int(s.tensorboard_port)):
        raise Exit(
            f"Port {s.tensorboard_port} on {s.bind} (TensorBoard) is already in use by another process: "
            "stop it, or choose another port with INVOKE_LABDOCK_TENSORBOARD_PORT=<port> "
            "(or labdock.tensorboard_port)."
        )


def tensorboard_url(c: Context) -> str:
    s = settings(c)
    host = "127.0.0.1" if s.bind in ("0.0.0.0", "::") else s.bind
    return f"http://{host}:{s.tensorboard_port}/"


def commit_time(c: Context) -> str:
    """HEAD's commit time, not the clock: the same sources build the same image (same id), so an
    unchanged rebuild neither replaces the image nor makes `up` recreate the container."""
    epoch = int(git_output(c, "log", "-1", "--format=%ct") or 0)
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def server_url(c: Context) -> str:
    """The URL of the running server, with its token."""
    result = compose(c, "port", settings(c).service, CONTAINER_PORT, hide=True, warn=True)
    address = result.stdout.strip().splitlines()[0] if result.ok and result.stdout.strip() else ""
    if not address:
        raise Exit("JupyterLab is not running: start it with `invoke up`.")
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/lab?token={server_token(c)}"


def server_token(c: Context) -> str:
    """The token the running server was started with (.env may have changed since)."""
    cid = container_id(c)
    result = c.run(
        cmd("docker", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", cid),
        hide=True,
        warn=True,
    )
    for line in result.stdout.splitlines() if result.ok else []:
        if line.startswith("JUPYTER_TOKEN="):
            return line.partition("=")[2]
    return read_env_file().get("JUPYTER_TOKEN", "")


def health(c: Context, cid: str) -> tuple[str, str]:
    """(container state, health status) of a container, e.g. ('running', 'starting')."""
    result = c.run(
        cmd(
            "docker",
            "inspect",
            "--format",
            "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
            cid,
        ),
        hide=True,
        warn=True,
    )
    state, _, status = result.stdout.strip().partition(" ") if result.ok else ("gone", "", "")
    return state, status


def since(started: float) -> str:
    """Seconds since a time.monotonic() reading, for the one-line summary ending a long step."""
    return f"{time.monotonic() - started:.1f}s"


def progress(message: str, final: bool = False) -> None:
    """One status line: rewritten in place on a terminal, printed plainly in logs."""
    if sys.stdout.isatty():
        print(f"\r{message:<70}", end="\n" if final else "", flush=True)
    else:
        print(message, flush=True)


def server_answers(host: str, port: int) -> bool:
    """True when JupyterLab answers /api (which needs no token) on its published address."""
    address = "127.0.0.1" if host == "0.0.0.0" else host
    return url_answers(f"http://{address}:{port}/api")


def url_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):
        return False


def wait_for_tensorboard(c: Context, timeout: float = 90) -> str:
    """TensorBoard's URL, once it answers (it has no healthcheck of its own)."""
    url = tensorboard_url(c)
    deadline = time.monotonic() + timeout
    while not url_answers(url):
        if time.monotonic() > deadline:
            raise Exit(
                f"TensorBoard did not answer on {url} within {timeout:.0f}s: see "
                "`docker compose logs tensorboard`, fix what it shows, then `invoke tensorboard`."
            )
        time.sleep(HEALTH_POLL_SECONDS)
    return url


def wait_until_healthy(c: Context, timeout: float) -> None:
    """Wait with visible progress until the server answers; explain a timeout or a crash.

    Healthy means what the image's HEALTHCHECK checks (/api answers), probed from the host several
    times a second: the engine's own status would lag by up to a healthcheck interval.
    """
    s = settings(c)
    start = time.monotonic()
    cid = container_id(c)
    state, status, shown = "starting", "", -1
    try:
        while (elapsed := time.monotonic() - start) < timeout:
            state, status = health(c, cid) if cid else ("gone", "")
            if status == "healthy" or (state == "running" and server_answers(s.bind, int(s.port))):
                progress(f"JupyterLab is healthy after {elapsed:.1f}s.", final=True)
                return
            if state in ("exited", "dead", "gone", "restarting"):
                break
            if sys.stdout.isatty() or int(elapsed) // 10 != shown:  # logs: one line per 10 s
                shown = int(elapsed) // 10
                progress(f"Waiting for JupyterLab to be healthy... {elapsed:.0f}s ({status or state})")
            time.sleep(HEALTH_POLL_SECONDS)
    except KeyboardInterrupt:
        progress("Interrupted.", final=True)
        raise Exit(
            "Stopped waiting; the container keeps starting: `invoke url` prints the URL once it is "
            "healthy, `invoke logs` shows its output, `invoke down` stops it.",
            code=130,
        ) from None
    progress(f"JupyterLab is {status or state} after {elapsed:.0f}s.", final=True)
    compose(c, "logs", "--tail", "30", settings(c).service, warn=True)
    if state == "running":
        raise Exit(
            f"JupyterLab did not become healthy within {timeout:.0f}s (last log lines above): fix the "
            "error they show, then `invoke up`; raise labdock.healthy_timeout for slow machines."
        )
    raise Exit(
        f"JupyterLab stopped while starting (container {state}; last log lines above): fix the "
        "error they show, then `invoke up`."
    )


def image_revision(c: Context) -> str:
    """The git commit the local image was built from (its OCI revision label)."""
    label = '{{index .Config.Labels "org.opencontainers.image.revision"}}'
    result = c.run(cmd("docker", "image", "inspect", "--format", label, image_ref(c)), hide=True, warn=True)
    return result.stdout.strip() if result.ok else ""


def project_path(path: str) -> str:
    """A host path (relative to the current folder) as the container sees it."""
    absolute = Path(path).resolve()
    try:
        relative = absolute.relative_to(ROOT)
    except ValueError:
        raise Exit(
            f"{path} is outside the project folder {ROOT}: the container sees only the project."
        ) from None
    return f"{WORKSPACE}/{relative.as_posix()}"


# ----------------------------------------------------------------------------- tasks


@task(
    help={
        "no_cache": "Rebuild every layer, ignoring the build cache",
        "pull": "Pull a newer base image first",
    }
)
def build(c: Context, no_cache: bool = False, pull: bool = False) -> None:
    """Build the JupyterLab image (runs `invoke lock` first when poetry.lock is missing)."""
    require_engine(c)
    started = time.monotonic()
    if not LOCK_FILE.exists():
        print("poetry.lock is missing: running `invoke lock` first.")
        lock(c)
    uid, gid = host_ids()
    if uid == 0:
        print(
            "WARNING: you are root on this machine, so JupyterLab will run as root in the "
            "container (to keep your files yours). Run invoke as a regular user to avoid it.",
            file=sys.stderr,
        )
    s = settings(c)
    labels = {
        "org.opencontainers.image.title": s.project,
        "org.opencontainers.image.source": git_output(c, "remote", "get-url", "origin") or ROOT.as_uri(),
        "org.opencontainers.image.revision": git_output(c, "rev-parse", "HEAD") or "unknown",
        "org.opencontainers.image.created": commit_time(c),
        "dev.labdock.lock-sha256": hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest(),
    }
    label_flags = [item for key, value in labels.items() for item in ("--label", f"{key}={value}")]
    cache_flags = [*(["--no-cache"] if no_cache else []), *(["--pull"] if pull else [])]
    ids = ["--build-arg", f"NB_UID={uid}", "--build-arg", f"NB_GID={gid}"]
    try:
        docker_build(
            c, "runtime", image_ref(c), *ids, *label_flags, *cache_flags, failure="The image build failed"
        )
    except Exit:
        # The most common cause, checked only now so that a good build does not pay for it.
        problem = lock_problem(c)
        if problem:
            raise Exit(problem) from None
        raise
    print(f"Built {image_ref(c)} in {since(started)}.")


GPU_HELP = {
    "gpu": "Reserve the NVIDIA GPUs (adds compose.gpu.yaml); the default when invoke.yaml says gpu: nvidia",
    "no-gpu": "Start without the GPUs, even when invoke.yaml says gpu: nvidia",
}


@task(
    help={
        **GPU_HELP,
        "build": "Rebuild the image first",
        "open": "Open JupyterLab in the browser once it is healthy",
    }
)
def up(
    c: Context, gpu: bool = False, no_gpu: bool = False, build_: bool = False, open_: bool = False
) -> None:
    """Start JupyterLab, wait until it is healthy and print its URL (builds the image if missing)."""
    s = settings(c)
    gpu = use_gpu(c, gpu, no_gpu)
    require_engine(c)
    ensure_token()
    save_settings_for_compose(c)
    if build_ or not image_exists(c, image_ref(c)):
        build(c)
    if not container_id(c) and port_in_use(s.bind, int(s.port)):
        raise Exit(
            f"Port {s.port} on {s.bind} is already in use by another process: stop it, or "
            f"choose another port with `INVOKE_LABDOCK_PORT=<port> invoke up` (or labdock.port)."
        )
    if s.bind not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"WARNING: JupyterLab is published on {s.bind}: anyone who can reach this machine on "
            f"port {s.port} and has the token can run code here. Use bind: 127.0.0.1 unless you "
            "need this.",
            file=sys.stderr,
        )
    with_tensorboard = bool(s.tensorboard)
    if with_tensorboard:
        check_tensorboard_port(c)
    result = compose(
        c, "up", "--detach", "--no-build", gpu=gpu, tensorboard=with_tensorboard, warn=True, hide="stderr"
    )
    if not result.ok:
        error = result.stderr.strip()
        if gpu and any(sign in error for sign in NVIDIA_ERRORS):
            raise Exit(
                "The Docker engine has no NVIDIA GPU runtime: install the NVIDIA Container "
                "Toolkit and restart Docker, or start without --gpu (and gpu: none)."
            )
        if "address already in use" in error or "port is already allocated" in error:
            raise Exit(
                f"Port {s.port} on {s.bind} is already in use: stop what uses it, or set "
                "INVOKE_LABDOCK_PORT to another port."
            )
        print(error, file=sys.stderr)
        raise Exit("`docker compose up` failed (error above).")
    wait_until_healthy(c, float(s.healthy_timeout))
    url = server_url(c)
    print(f"JupyterLab: {url}")
    if with_tensorboard:
        print(f"TensorBoard: {wait_for_tensorboard(c)}")
    if open_:
        webbrowser.open(url)


@task(help={"volumes": "Also delete the named volumes (JupyterLab settings and workspaces)"})
def down(c: Context, volumes: bool = False) -> None:
    """Stop and remove the JupyterLab container (notebooks and data stay on the host)."""
    require_engine(c)
    # With the profile: a TensorBoard started by `invoke tensorboard` stops too.
    compose(c, "down", "--remove-orphans", *(["--volumes"] if volumes else []), tensorboard=True)


@task(
    help={"follow": "Keep printing new output", "tail": "Number of lines to show from the end (default: all)"}
)
def logs(c: Context, follow: bool = False, tail: str = "all") -> None:
    """Show the JupyterLab server's output."""
    require_engine(c)
    follow_flag = ["--follow"] if follow else []
    compose(c, "logs", "--tail", tail, *follow_flag, settings(c).service, pty=follow and sys.stdout.isatty())


@task(help={"open": "Open the URL in the browser"})
def url(c: Context, open_: bool = False) -> None:
    """Print the running server's URL with its token."""
    require_engine(c)
    address = server_url(c)
    print(address)
    if open_:
        webbrowser.open(address)


@task
def prepare(c: Context) -> None:
    """Ready the project for a container started without invoke (VS Code's devcontainer, `docker
    compose up`): .env with the token and invoke.yaml's settings, and the image built if missing."""
    require_engine(c)
    ensure_token()
    save_settings_for_compose(c)
    if not image_exists(c, image_ref(c)):
        build(c)
    print(f"Ready: {ENV_FILE.name} holds the token and settings, {image_ref(c)} is built.")


@task(help={"open": "Open TensorBoard in the browser"})
def tensorboard(c: Context, open_: bool = False) -> None:
    """Start TensorBoard on runs/ (beside JupyterLab, same image) and print its URL."""
    require_engine(c)
    if not has_tensorboard(c):
        raise Exit(
            "This project has no TensorBoard service: add it with "
            "`copier update --defaults --data tensorboard=true`, then `invoke lock`."
        )
    if not image_exists(c, image_ref(c)):
        build(c)
    check_tensorboard_port(c)
    result = compose(
        c, "up", "--detach", "--no-build", TENSORBOARD, tensorboard=True, warn=True, hide="stderr"
    )
    if not result.ok:
        print(result.stderr.strip(), file=sys.stderr)
        raise Exit("`docker compose up tensorboard` failed (error above).")
    url = wait_for_tensorboard(c)
    print(f"TensorBoard: {url}")
    if open_:
        webbrowser.open(url)


@task
def shell(c: Context) -> None:
    """Open an interactive shell in the running JupyterLab container, as the notebook user."""
    require_engine(c)
    if not container_id(c):
        raise Exit("JupyterLab is not running: start it with `invoke up`.")
    compose(c, "exec", settings(c).service, "bash", pty=True, warn=True)


@task(
    name="exec",
    positional=["command"],
    help={"command": 'The command, quoted as one argument, e.g. "pytest -q"'},
)
def exec_(c: Context, command: str) -> None:
    """Run one command in the running JupyterLab container; its exit code is passed through."""
    require_engine(c)
    if not container_id(c):
        raise Exit("JupyterLab is not running: start it with `invoke up`.")
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    no_tty = [] if tty else ["-T"]
    result = compose(c, "exec", *no_tty, settings(c).service, "sh", "-c", command, pty=tty, warn=True)
    if not result.ok:
        raise Exit(code=result.exited)


@task(
    help={
        "upgrade": "Re-resolve every dependency to the newest allowed version "
        "(default: keep locked versions that still fit pyproject.toml)"
    }
)
def lock(c: Context, upgrade: bool = False) -> None:
    """Resolve pyproject.toml into poetry.lock, with Poetry in a container (no Poetry on the host)."""
    require_engine(c)
    started = time.monotonic()
    result = poetry_in_container(c, "lock" + (" --regenerate" if upgrade else ""), ["poetry.lock"], warn=True)
    if not result.ok:
        raise Exit(build_failure_hint("poetry lock failed"))
    print(f"poetry.lock is up to date ({since(started)}): commit it with pyproject.toml.")


@task(
    positional=["package"],
    help={
        "package": "A requirement, e.g. polars or 'polars>=1.0'",
        "group": "Dependency group (default: the main dependencies)",
        "restart": "Restart a running JupyterLab on the new image, so the package imports "
        "(default; running kernels stop)",
    },
)
def add(c: Context, package: str, group: str = "", restart: bool = True) -> None:
    """Add a dependency to pyproject.toml and poetry.lock (Poetry in a container), then rebuild."""
    require_engine(c)
    args = shlex.join(["add", "--lock", package, *(["--group", group] if group else [])])
    result = poetry_in_container(c, args, ["pyproject.toml", "poetry.lock"], warn=True)
    if not result.ok:
        raise Exit(f"poetry add {package} failed (output above): check the package name and version.")
    build(c)
    if restart and container_id(c):
        print("Restarting JupyterLab on the new image: running kernels stop; restart them in the page.")
        up(c)


def notebooks_under(path: Path, marked: bool) -> list[Path]:
    """The notebook at path, or those in the folder; with marked, only those marked for CI."""
    if path.is_dir():
        found = sorted(
            notebook
            for notebook in path.rglob("*.ipynb")
            if not notebook.name.endswith(".executed.ipynb") and ".ipynb_checkpoints" not in notebook.parts
        )
    elif path.is_file():
        found = [path]
    else:
        raise Exit(f"No notebook or folder at {path}.")
    return [notebook for notebook in found if not marked or is_marked_for_ci(notebook)]


def is_marked_for_ci(notebook: Path) -> bool:
    """A notebook's metadata says {"labdock": {"ci": true}} (JupyterLab: Property Inspector)."""
    try:
        metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return False
    return metadata.get("labdock", {}).get("ci") is True


@task(
    name="run-notebook",
    positional=["path"],
    help={
        "path": "A notebook, or a folder: every notebook in it",
        "marked": 'Only the notebooks whose metadata has {"labdock": {"ci": true}} (what CI runs)',
        "output": "Where to write the executed copy of one notebook (default: NAME.executed.ipynb beside it)",
        "timeout": "Seconds one cell may run (default: no limit)",
        **GPU_HELP,
    },
)
def run_notebook(
    c: Context,
    path: str,
    marked: bool = False,
    output: str = "",
    timeout: int = -1,
    gpu: bool = False,
    no_gpu: bool = False,
) -> None:
    """Execute notebooks headlessly, each in a fresh container; fails if a cell fails."""
    gpu = use_gpu(c, gpu, no_gpu)
    require_engine(c)
    notebooks = notebooks_under(Path(path), marked)
    if not notebooks:
        marker = ' marked for CI (metadata {"labdock": {"ci": true}})' if marked else ""
        print(f"No notebook{marker} in {path}: nothing to run.")
        return
    if output and len(notebooks) > 1:
        raise Exit(f"--output names one executed copy, but {path} holds {len(notebooks)} notebooks: drop it.")
    ensure_token()
    if not image_exists(c, image_ref(c)):
        build(c)
    started, failed = time.monotonic(), []
    for source in notebooks:
        target = Path(output) if output else source.with_name(source.stem + ".executed.ipynb")
        print(f"Running {source} ...", flush=True)
        result = compose(
            c,
            "run",
            "--rm",
            "--no-deps",
            "-T",
            settings(c).service,
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            f"--ExecutePreprocessor.timeout={timeout}",
            project_path(str(source)),
            "--output",
            project_path(str(target)),
            gpu=gpu,
            warn=True,
        )
        if result.ok:
            print(f"Executed copy: {target}")
        else:
            failed.append(source)
    if len(notebooks) == 1 and failed:
        raise Exit(f"{failed[0]} failed: a cell raised an error (traceback above).")
    if failed:
        names = ", ".join(str(notebook) for notebook in failed)
        raise Exit(f"{len(failed)} of {len(notebooks)} notebooks failed: {names} (tracebacks above).")
    count = f"{len(notebooks)} notebook" + ("s" if len(notebooks) > 1 else "")
    print(f"Ran {count} in {time.monotonic() - started:.1f}s.")


@task(
    help={
        "local": "Run natively with the host's Poetry (e.g. Apple-Silicon GPUs via MPS, "
        "which containers cannot reach); without it, the same as `invoke up`"
    }
)
def lab(c: Context, local: bool = False) -> None:
    """Start JupyterLab: in the container (default) or natively from the same poetry.lock."""
    if not local:
        up(c)
        return
    if not shutil.which("poetry"):
        raise Exit(
            "Poetry is not installed on this machine: install it (`pipx install poetry`), "
            "or use `invoke up` to run in a container."
        )
    if not LOCK_FILE.exists():
        raise Exit("poetry.lock is missing: run `invoke lock` first, then commit it.")
    s = settings(c)
    token = ensure_token()
    index_env = {}  # the same package-index settings as the container builds, for the host's Poetry
    if s.pypi_mirror:
        index_env["POETRY_PYPI_MIRROR_URL"] = s.pypi_mirror  # read by poetry-plugin-pypi-mirror
    if s.ca_bundle:
        index_env["REQUESTS_CA_BUNDLE"] = str(Path(s.ca_bundle).expanduser())
    with c.cd(str(ROOT)):
        c.run("poetry install --all-groups", env=index_env)  # all groups: as in the image
        print(f"JupyterLab: http://127.0.0.1:{s.port}/lab?token={token}")
        allow_root = ["--allow-root"] if host_ids()[0] == 0 else []  # Jupyter refuses root otherwise
        c.run(
            cmd(
                "poetry",
                "run",
                "jupyter",
                "lab",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={s.port}",
                *allow_root,
            ),
            env={"JUPYTER_TOKEN": token},
            pty=sys.stdout.isatty(),
        )


@task(help={"tag": "Version to push (default: the git tag at HEAD, else the short commit sha)"})
def push(c: Context, tag: str = "") -> None:
    """Tag the image with its version and `latest` and push both to labdock.registry."""
    s = settings(c)
    if not s.registry:
        raise Exit(
            "No registry configured: set labdock.registry in invoke.yaml (e.g. ghcr.io/acme), "
            "or run with INVOKE_LABDOCK_REGISTRY=ghcr.io/acme."
        )
    require_engine(c)
    version = tag or git_version(c)
    if not image_exists(c, image_ref(c)) or image_revision(c) != git_output(c, "rev-parse", "HEAD"):
        print("The image is missing or was built from another commit: building it first.")
        build(c)
    first = s.registry.split("/")[0]
    host = first if ("." in first or ":" in first or first == "localhost") else "docker.io"
    user, password = os.environ.get("REGISTRY_USER"), os.environ.get("REGISTRY_PASSWORD")
    if user and password:
        login = c.run(
            cmd("docker", "login", host, "--username", user, "--password-stdin"),
            in_stream=io.StringIO(password + "\n"),
            hide=True,
            warn=True,
        )
        if not login.ok:
            raise Exit(f"Login to {host} as {user} failed: check REGISTRY_USER and REGISTRY_PASSWORD.")
    for version_tag in (version, "latest"):
        started = time.monotonic()
        remote = f"{s.registry}/{s.image}:{version_tag}"
        c.run(cmd("docker", "tag", image_ref(c), remote), hide=True, warn=True)
        result = c.run(cmd("docker", "push", remote), warn=True, hide="stderr")
        if not result.ok:
            error = result.stderr.strip()
            if any(word in error.lower() for word in ("auth", "denied", "credentials", "login")):
                raise Exit(
                    f"{host} refused the push (not logged in or no permission): set "
                    f"REGISTRY_USER and REGISTRY_PASSWORD, or run `docker login {host}`."
                )
            raise Exit(f"Pushing {remote} failed: {error.splitlines()[-1] if error else 'see above'}")
        print(f"Pushed {remote} in {since(started)}.")


@task(help={"vcs_ref": "Template version to update to (default: its latest release)"})
def update(c: Context, vcs_ref: str = "") -> None:
    """Pull the template's improvements into this project (`copier update`), then relock if needed."""
    if not shutil.which("copier"):
        raise Exit("Copier is not installed on this machine: `pipx install copier`, then retry.")
    if git_output(c, "status", "--porcelain"):
        raise Exit(
            "The project has uncommitted changes: commit them first, so the update can merge "
            "with them and `git diff` shows what it changed."
        )
    before = (ROOT / "pyproject.toml").read_bytes()
    with c.cd(str(ROOT)):
        c.run(
            cmd(
                "copier",
                "update",
                "--defaults",
                "--trust",
                "--conflict",
                "inline",
                *(["--vcs-ref", vcs_ref] if vcs_ref else []),
            )
        )
    conflicted = git_output(c, "grep", "--untracked", "-l", "-e", "^<<<<<<< ")
    if conflicted:
        raise Exit(
            f"The update conflicts with your edits in: {', '.join(conflicted.split())}. Resolve "
            "the <<<<<<< / >>>>>>> blocks, commit, then run `invoke lock` if pyproject.toml changed."
        )
    if (ROOT / "pyproject.toml").read_bytes() != before:
        print("The update changed pyproject.toml: relocking.")
        lock(c)
    print("Updated: review with `git diff`, then commit.")


@task
def doctor(c: Context) -> None:
    """Check that this machine can build and run the project; one line per check, with the fix."""
    s = settings(c)
    failed = False

    def report(ok: bool | None, what: str, fix: str = "", required: bool = True) -> None:
        nonlocal failed
        mark = "ok" if ok else ("!!" if required else "--")
        failed = failed or (required and not ok)
        print(f"[{mark}] {what}" + (f": {fix}" if fix and not ok else ""))

    version = engine_version(c)
    problem = None if version is not None else no_engine_message()
    report(problem is None, f"Docker engine {version or ''}".strip(), problem or "")
    composed = c.run("docker compose version --short", hide=True, warn=True)
    report(
        composed.ok,
        f"Docker Compose {composed.stdout.strip()}".strip(),
        "install the Compose plugin (Docker Desktop has it)",
    )
    buildkit = c.run("docker buildx version", hide=True, warn=True)
    report(
        buildkit.ok,
        "BuildKit (buildx)",
        "install the buildx plugin (Docker Desktop has it); the Dockerfile's cache mounts need BuildKit",
    )
    if problem is None:
        lock_issue = lock_problem(c)
        report(lock_issue is None, "poetry.lock matches pyproject.toml", lock_issue or "")
    else:
        report(False, "poetry.lock matches pyproject.toml", "needs the engine (see above)")
    ours = problem is None and bool(container_id(c))  # our own server may hold the port
    busy = not ours and port_in_use(s.bind, int(s.port))
    report(
        not busy,
        f"port {s.port} on {s.bind} is free for JupyterLab",
        "stop what uses it, or set INVOKE_LABDOCK_PORT / labdock.port",
    )
    report(
        bool(read_env_file().get("JUPYTER_TOKEN")),
        ".env holds a JupyterLab token",
        "`invoke up` creates it",
        required=False,
    )
    if s.gpu == "nvidia":
        runtimes = c.run("docker info --format '{{json .Runtimes}}'", hide=True, warn=True)
        report(
            runtimes.ok and "nvidia" in runtimes.stdout,
            "NVIDIA container runtime",
            "install the NVIDIA Container Toolkit and restart Docker",
        )
    free_gb = shutil.disk_usage(ROOT).free / 1e9
    report(
        free_gb >= MIN_FREE_DISK_GB,
        f"{free_gb:.0f} GB free disk",
        f"images need space: free at least {MIN_FREE_DISK_GB} GB",
        required=False,
    )
    if failed:
        raise Exit("Some required checks failed: fix the lines marked [!!] above.")


ns = Collection(
    build,
    up,
    down,
    logs,
    url,
    tensorboard,
    shell,
    exec_,
    lock,
    add,
    run_notebook,
    lab,
    push,
    update,
    doctor,
    prepare,
)
ns.configure({"labdock": DEFAULTS})
