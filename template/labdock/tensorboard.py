"""TensorBoard over runs/: the optional second compose service (the `tensorboard` answer)."""

from __future__ import annotations

import sys
import time
import webbrowser

from invoke import Context, Exit, task

from . import engine, network
from .commands import warn
from .engine import compose
from .guard import exclusive
from .image import ensure_image
from .project import TENSORBOARD, Project

POLL_SECONDS = 0.25


def url(p: Project) -> str:
    s = p.settings
    return f"http://{network.url_host(s.tensorboard_bind)}:{s.tensorboard_port}/"


def has_service(p: Project) -> bool:
    """Whether compose.yaml has the TensorBoard service (the `tensorboard` answer)."""
    result = compose(p, "config", "--services", tensorboard=True, hide=True, warn=True)
    return result.ok and TENSORBOARD in result.stdout.split()


def check_port(p: Project) -> None:
    s = p.settings
    if not network.is_loopback(s.tensorboard_bind):
        warn(
            f"TensorBoard is published on {s.tensorboard_bind}, and it has no login: anyone who can "
            "reach this machine can read your runs. Use tensorboard_bind: 127.0.0.1 unless you need this."
        )
    if not engine.container_id(p, TENSORBOARD) and network.port_in_use(
        s.tensorboard_bind, s.tensorboard_port
    ):
        raise Exit(
            f"Port {s.tensorboard_port} on {s.tensorboard_bind} (TensorBoard) is already in use by another "
            "process: stop it, or choose another port with INVOKE_LABDOCK_TENSORBOARD_PORT=<port> "
            "(or labdock.tensorboard_port)."
        )


def wait_until_answering(p: Project, timeout: float = 90) -> str:
    """TensorBoard's URL, once it answers (it has no healthcheck of its own)."""
    address = url(p)
    deadline = time.monotonic() + timeout
    while not network.url_answers(address):
        if time.monotonic() > deadline:
            raise Exit(
                f"TensorBoard did not answer on {address} within {timeout:.0f}s: see "
                "`docker compose logs tensorboard`, fix what it shows, then `invoke tensorboard`."
            )
        time.sleep(POLL_SECONDS)
    return address


@task(name="tensorboard", help={"open": "Open TensorBoard in the browser"})
@exclusive
def tensorboard(c: Context, open_: bool = False) -> None:
    """Start TensorBoard on runs/ (beside JupyterLab, same image) and print its URL."""
    p = Project.load(c)
    engine.require_engine(p)
    if not has_service(p):
        raise Exit(
            "This project has no TensorBoard service: add it with "
            "`copier update --defaults --data tensorboard=true`, then `invoke lock`."
        )
    ensure_image(p)
    check_port(p)
    result = compose(
        p, "up", "--detach", "--no-build", TENSORBOARD, tensorboard=True, warn=True, hide="stderr"
    )
    if not result.ok:
        print(result.stderr.strip(), file=sys.stderr)
        raise Exit("`docker compose up tensorboard` failed (error above).")
    address = wait_until_answering(p)
    print(f"TensorBoard: {address}")
    if open_:
        webbrowser.open(address)
