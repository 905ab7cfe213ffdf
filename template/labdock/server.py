"""The JupyterLab server's life: start it and wait until it is healthy, print its URL, stop it;
ready a project for containers started without invoke; run it natively (`lab --local`).

On a remote engine (project.py's Project.remote) the project lives in a volume there: `up`
waits for the engine's healthcheck (`compose up --wait`, no probe from here), then sends this
folder's changes (sync.py); `url` prints the `ssh -L` command that reaches the server."""

from __future__ import annotations

import shutil
import sys
import time
import webbrowser

from invoke import Context, Exit, Result, task

from . import agent, engine, envfile, legacy, links, live, network, overrides, remote, sync, tensorboard
from .commands import cmd, progress, run, warn
from .engine import GPU_HELP, compose
from .guard import exclusive
from .image import build_image, ensure_image
from .project import CONTAINER_PORT, SERVICE, TENSORBOARD, Project, host_ids
from .settings import AUTO

HEALTH_POLL_SECONDS = 0.25
MOVED = "Port {port}, which JupyterLab had, is taken now: it gets another one (`invoke url` prints it)."


def prepare_env(p: Project) -> str:
    """.env with the token and the settings compose reads; returns the token."""
    token = envfile.ensure_token(p.env_file)
    envfile.save_settings(p.env_file, engine.compose_settings(p))
    return token


def check_port(p: Project) -> None:
    """Before a local start: is the host port free (or this project's server's)? With `port:
    auto`, a remembered port that something else took now is given up for a new one."""
    s, port = p.settings, p.port
    if p.remote or port is None or engine.container_id(p) or not network.port_in_use(s.bind, port):
        return
    if s.port == AUTO:
        print(MOVED.format(port=port))
        p.remember_port(None)
        return
    raise Exit(engine.port_taken(p, port, s.bind))


def port_error(error: str) -> bool:
    return "address already in use" in error or "port is already allocated" in error


def compose_up(p: Project, gpu: bool) -> Result:
    """`docker compose up`; on a remote engine with --wait: healthy as the engine sees it."""
    s = p.settings
    wait = ["--wait", "--wait-timeout", str(int(s.healthy_timeout))] if p.remote else []
    try:
        keep = live.up_flags(p, gpu)  # a server that `add` brought to the current lock keeps running
        up = ["up", "--detach", "--no-build", *wait, *keep]
        return compose(p, *up, gpu=gpu, tensorboard=s.tensorboard, warn=True, hide="stderr")
    except KeyboardInterrupt:
        raise Exit(
            "Interrupted while (re)starting JupyterLab: the server may be down. `invoke up` starts "
            "it again (and removes what the interruption left).",
            code=130,
        ) from None


def check_links(p: Project) -> None:
    """Stop on a link the container cannot follow; warn about one that leaves the project."""
    if problems := links.broken(p.root):
        more = f" ({len(problems) - 1} more: `invoke doctor` lists them)" if len(problems) > 1 else ""
        raise Exit(f"{problems[0]}, then `invoke up`{more}.")
    for line in links.outside(p.root):
        warn(line + ".")


def start(p: Project, gpu: bool = False, rebuild: bool = False) -> str:
    """Start JupyterLab (and TensorBoard when enabled), wait until healthy; returns its URL."""
    s = p.settings
    if not p.remote:  # a remote engine gets a copy of the files, without links (remote.py)
        check_links(p)
    prepare_env(p)
    if rebuild:
        build_image(p)
    else:
        ensure_image(p)
    if p.checkout.legacy:
        legacy.move_legacy_state(p)  # once: the state of the release that named things after the slug
    check_port(p)
    if not network.is_loopback(s.bind):
        warn(
            f"JupyterLab is published on {s.bind}: anyone who can reach this machine on port "
            f"{p.port_text()} and has the token can run code here. Use bind: 127.0.0.1 unless you need this."
        )
    if s.tensorboard and not p.remote:
        tensorboard.check_port(p)
    engine.remove_leftovers(p)  # of an earlier start that failed or was interrupted
    prepare_env(p)  # the port may have changed (port: auto)
    result = compose_up(p, gpu)
    if not result.ok and port_error(result.stderr) and s.port == AUTO and p.port is not None:
        engine.remove_leftovers(p)
        print(MOVED.format(port=p.port))
        p.remember_port(None)
        prepare_env(p)
        result = compose_up(p, gpu)
    if not result.ok:
        error = result.stderr.strip()
        lowered = error.lower()
        if p.remote and ("healthy" in lowered or "timeout" in lowered or "exited" in lowered):
            compose(p, "logs", "--tail", "30", SERVICE, warn=True)
            raise Exit(
                f"JupyterLab did not become healthy within {s.healthy_timeout:.0f}s (last log lines above): "
                "fix the error they show, then `invoke up`; raise labdock.healthy_timeout for slow machines."
            )
        engine.remove_leftovers(p)  # nothing half-made stays
        if gpu and engine.is_nvidia_error(error):
            raise Exit(engine.no_gpu_runtime("invoke up"))
        if port_error(error):
            raise Exit(engine.port_taken(p, p.port, s.bind) if p.port else error.splitlines()[-1])
        if not error:
            raise Exit(
                f"`docker compose up` failed without a message (exit {result.exited}): try `invoke up` again."
            )
        print(error, file=sys.stderr)
        raise Exit("`docker compose up` failed (error above): the server is down; fix it, then `invoke up`.")
    if p.port is None:  # port: auto, first start: the engine picked one
        p.remember_port(published_port(p))
    if p.remote:
        progress("JupyterLab is healthy (the engine's healthcheck).", final=True)
    else:
        wait_until_healthy(p)
        agent.ensure(p)  # `pip install` in the lab goes through it (it needs the mounted folder)
    url = server_url(p)
    if p.remote:
        sync.push_on_up(p)
    print(f"JupyterLab: {url}")
    if s.tensorboard:
        print(f"TensorBoard: {tensorboard_address(p)}")
    if p.remote:
        print(f"The server listens on the engine's host: reach it from here with\n  {tunnel(p)}")
    return url


def tensorboard_address(p: Project) -> str:
    """TensorBoard's URL: probed here on a local engine; on a remote one, `up --wait` saw it running."""
    if not p.remote:
        return tensorboard.wait_until_answering(p)
    return f"http://127.0.0.1:{p.settings.tensorboard_port}/"


def tunnel(p: Project) -> str:
    """The ssh command that brings the server's port(s) from the engine's host to this machine."""
    port = published_port(p) or p.port
    forwards = [(port, port)]
    if p.settings.tensorboard and engine.container_id(p, TENSORBOARD):
        forwards.append((p.settings.tensorboard_port, p.settings.tensorboard_port))
    try:
        return cmd(*remote.tunnel_command(p.endpoint, forwards))
    except ValueError:
        return f"(forward port {port} of the engine's host to this machine's 127.0.0.1:{port})"


def server_answers(bind: str, port: int) -> bool:
    """True when JupyterLab answers /api (which needs no token) on its published address."""
    return network.url_answers(f"http://{network.url_host(bind)}:{port}/api")


def wait_until_healthy(p: Project) -> None:
    """Wait with visible progress until the server answers; explain a timeout or a crash.

    Healthy means what the image's HEALTHCHECK checks (/api answers), probed from the host several
    times a second: the engine's own status would lag by up to a healthcheck interval.
    """
    timeout = p.settings.healthy_timeout
    start_time = time.monotonic()
    cid = engine.container_id(p)
    state, status, shown = "starting", "", -1
    try:
        while (elapsed := time.monotonic() - start_time) < timeout:
            state, status = engine.health(p, cid) if cid else ("gone", "")
            if status == "healthy" or (
                state == "running" and p.port and server_answers(p.settings.bind, p.port)
            ):
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
    compose(p, "logs", "--tail", "30", SERVICE, warn=True)
    if state == "running":
        raise Exit(
            f"JupyterLab did not become healthy within {timeout:.0f}s (last log lines above): fix the "
            "error they show, then `invoke up`; raise labdock.healthy_timeout for slow machines."
        )
    raise Exit(
        f"JupyterLab stopped while starting (container {state}; last log lines above): fix the "
        "error they show, then `invoke up`."
    )


def server_token(p: Project) -> str:
    """The token the running server was started with (.env may have changed since)."""
    cid = engine.container_id(p)
    token = engine.container_env(p, cid).get("JUPYTER_TOKEN") if cid else None  # as the server has it
    return token or envfile.read(p.env_file).get(envfile.TOKEN, "")


def published(p: Project) -> str:
    """Where the running server is published ('127.0.0.1:8888'), '' when it is not running."""
    result = compose(p, "port", SERVICE, CONTAINER_PORT, hide=True, warn=True)
    return result.stdout.strip().splitlines()[0] if result.ok and result.stdout.strip() else ""


def published_port(p: Project) -> int | None:
    address = published(p)
    return network.split_address(address)[1] if address else None


def server_url(p: Project) -> str:
    """The URL of the running server, with its token (remembering the port `port: auto` got).
    On a remote engine, the URL through the tunnel (`invoke url` prints its command)."""
    address = published(p)
    if not address:
        raise Exit("JupyterLab is not running: start it with `invoke up`.")
    host, port = network.split_address(address)
    p.remember_port(port)
    if p.remote:
        host = "127.0.0.1"  # the tunnel's end on this machine
    return f"http://{network.url_host(host)}:{port}/lab?token={server_token(p)}"


# ----------------------------------------------------------------------------- tasks


@task(
    help={
        **GPU_HELP,
        "build": "Rebuild the image first",
        "open": "Open JupyterLab in the browser once it is healthy",
    }
)
@exclusive
def up(
    c: Context, gpu: bool = False, no_gpu: bool = False, build_: bool = False, open_: bool = False
) -> None:
    """Start JupyterLab, wait until it is healthy and print its URL (builds the image if missing)."""
    p = Project.load(c)
    with_gpu = engine.use_gpu(p, gpu, no_gpu)
    engine.require_engine(p)
    url = start(p, gpu=with_gpu, rebuild=build_)
    if open_:
        webbrowser.open(url)


@task(
    help={
        "volumes": "Also delete the named volumes (JupyterLab settings and workspaces, Poetry's cache; "
        "on a remote engine the project's copy there)",
        "force": "With --volumes on a remote engine: delete them even with changes not synced here",
    }
)
@exclusive
def down(c: Context, volumes: bool = False, force: bool = False) -> None:
    """Stop and remove the JupyterLab container (notebooks and data stay on the host)."""
    p = Project.load(c)
    engine.require_engine(p)
    if volumes and p.remote and not force:
        pending = sync.unsynced(p)
        if pending:
            raise Exit(
                f"The engine's workspace has changes not synced here ({sync.names(pending)}): "
                "`invoke sync` first, or `invoke down --volumes --force` to delete them."
            )
    # With the profile: a TensorBoard started by `invoke tensorboard` stops too.
    compose(p, "down", "--remove-orphans", *(["--volumes"] if volumes else []), tensorboard=True)
    if volumes:  # Poetry's cache is this checkout's too, though not Compose's
        run(p.c, "docker", "volume", "rm", "--force", p.poetry_cache_volume, hide=True, warn=True)


@task(help={"open": "Open the URL in the browser"})
def url(c: Context, open_: bool = False) -> None:
    """Print the running server's URL with its token (on a remote engine, first the ssh command
    that reaches it)."""
    p = Project.load(c)
    engine.require_engine(p)
    address = server_url(p)
    if p.remote:
        print(f"The server listens on the engine's host: reach it from here with\n  {tunnel(p)}")
    print(address)
    if open_:
        webbrowser.open(address)


@task
@exclusive
def prepare(c: Context) -> None:
    """Write .env and build a missing image, for containers started without invoke (VS Code, compose).

    .env gets the token and invoke.yaml's settings, which compose reads by itself; compose.gpu.yaml
    (gpu projects) the GPU request of the gpu and gpus settings.
    """
    p = Project.load(c)
    engine.require_engine(p)
    prepare_env(p)
    if p.settings.gpu == "nvidia":
        overrides.write_gpu_override(p)
    if p.remote:
        overrides.write_remote_override(p)
    ensure_image(p)
    print(f"Ready: {p.env_file.name} holds the token and settings, {p.image()} is built.")


@task(
    help={
        "local": "Run natively with the host's Poetry (e.g. Apple-Silicon GPUs via MPS, "
        "which containers cannot reach); without it, the same as `invoke up`"
    }
)
@exclusive
def lab(c: Context, local: bool = False) -> None:
    """Start JupyterLab: in the container (default) or natively from the same poetry.lock."""
    p = Project.load(c)
    if not local:
        engine.require_engine(p)
        start(p, gpu=engine.use_gpu(p, False, False))
        return
    if not shutil.which("poetry"):
        raise Exit(
            "Poetry is not installed on this machine: install it (`pipx install poetry`), "
            "or use `invoke up` to run in a container."
        )
    if not p.lock_file.exists():
        raise Exit("poetry.lock is missing: run `invoke lock` first, then commit it.")
    s = p.settings
    token = envfile.ensure_token(p.env_file)
    index_env = {}  # the same package-index settings as the container builds, for the host's Poetry
    if s.pypi_mirror:
        index_env["POETRY_PYPI_MIRROR_URL"] = s.pypi_mirror  # read by poetry-plugin-pypi-mirror
    if s.ca_bundle:
        index_env["REQUESTS_CA_BUNDLE"] = s.ca_bundle
    port = p.port if p.port and not network.port_in_use(s.bind, p.port) else None
    port = port or network.free_port(s.bind)  # port: auto
    with c.cd(str(p.root)):
        c.run("poetry install", env=index_env)  # every group but the optional hub one: as in the image
        print(f"JupyterLab: http://{network.url_host(s.bind)}:{port}/lab?token={token}")
        allow_root = ["--allow-root"] if host_ids()[0] == 0 else []  # Jupyter refuses root otherwise
        c.run(
            cmd(
                "poetry",
                "run",
                "jupyter",
                "lab",
                "--no-browser",
                f"--ip={s.bind}",
                f"--port={port}",
                *allow_root,
            ),
            env={"JUPYTER_TOKEN": token},
            pty=sys.stdout.isatty(),
        )
