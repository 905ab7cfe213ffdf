"""`pip install` in the lab, recorded in the lock: labdock's helper on the host.

The lab's `pip` (docker/pylib/pip, also behind `%pip`) cannot change the environment itself: it
is root's, and Poetry is not in the image. It leaves a request in .labdock/pip/requests/, and this
helper, started by `invoke up` beside the server and gone when the container stops, does what
`invoke add` does (dependencies.change) and writes the output back for pip to print.

The container can write the project folder, so the helper trusts nothing in it that it did not
check when `invoke up` started it: it keeps the settings it was started with, runs Poetry and uv
from the builder image as it was then (by id), accepts only plain requirement strings, and
rebuilds the image afterwards only if the Dockerfile and the other build inputs are unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from invoke import Context, Exit

from . import dependencies, engine, guard, live, locking, transaction
from .commands import output
from .image import build_image
from .project import Checkout, Project, read_slug
from .settings import Settings

FOLDER = "pip"  # in .labdock/
AGENT_FILE = "agent.json"  # {"pid", "container"}: which server the helper serves
POLL_SECONDS = 0.1
REBUILD_DELAY = 10  # seconds without requests before the image is rebuilt (pip often comes in a row)
ACK_SECONDS = 5  # how long pip waits for the helper to take a request (docker/pylib/pip)
MAX_PACKAGES = 20
# A name with extras and a version constraint: no URLs, paths or options.
REQUIREMENT = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._,-]+\])?"
    r"((===|==|~=|!=|<=|>=|<|>|@)[A-Za-z0-9.*+!^~]+(,(===|==|~=|!=|<=|>=|<|>)[A-Za-z0-9.*+!]+)*)?$"
)
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
BUILD_INPUTS = (".dockerignore", "apt-build-packages.txt", "compose.yaml", "compose.gpu.yaml")


def folder(root: Path) -> Path:
    path = guard.state_dir(root) / FOLDER
    (path / "requests").mkdir(parents=True, exist_ok=True)
    (path / "taken").mkdir(exist_ok=True)
    return path


def build_inputs(p: Project) -> str:
    """A digest of what the image is built from: a change means the helper no longer rebuilds."""
    digest = hashlib.sha256(locking.builder_inputs(p).encode())
    for name in BUILD_INPUTS:
        path = p.root / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()


def read_agent(root: Path) -> dict:
    try:
        data = json.loads((root / guard.STATE_DIR / FOLDER / AGENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or no way to tell (Windows): assume it runs
    return True


def spawn(p: Project, cid: str) -> None:
    """Start the helper for container cid, detached: it outlives this task."""
    log = open(folder(p.root) / "agent.log", "ab")  # noqa: SIM115 - the child keeps it
    detached = {"start_new_session": True} if sys.platform != "win32" else {"creationflags": 0x208}
    helper = subprocess.Popen(
        [sys.executable, "-c", "import sys; from labdock.agent import main; main(sys.argv[1])", cid],
        cwd=p.root,
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=log,
        **detached,
    )
    log.close()
    # The settings this task checked and the checkout's names, on stdin: the helper never reads
    # invoke.yaml or .labdock/checkout.json again.
    started_with = {"settings": dataclasses.asdict(p.settings), "checkout": dataclasses.asdict(p.checkout)}
    helper.stdin.write(json.dumps(started_with).encode())
    helper.stdin.close()


def ensure(p: Project) -> None:
    """After `up`: make sure the running server has its helper (a new container gets a new one)."""
    cid = engine.container_id(p)
    if not cid:
        return
    running = read_agent(p.root)
    if running.get("container") == cid and alive(running.get("pid")):
        return
    spawn(p, cid)


# ----------------------------------------------------------------------------- requests


def parse_request(data: object) -> tuple[str, str, list[str]]:
    """(id, verb, packages) from a request, or Exit with what is wrong."""
    if not isinstance(data, dict):
        raise Exit("Not a request.")
    request_id, verb, packages = data.get("id"), data.get("verb"), data.get("packages")
    if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
        raise Exit("The request has no valid id.")
    if verb not in ("add", "remove"):
        raise Exit(f"pip here installs and uninstalls only (got {verb!r}).")
    if not isinstance(packages, list) or not packages or len(packages) > MAX_PACKAGES:
        raise Exit(f"Name 1 to {MAX_PACKAGES} packages.")
    for package in packages:
        if not isinstance(package, str) or len(package) > 200 or not REQUIREMENT.match(package):
            raise Exit(
                f"{str(package)[:80]!r} is not a package name with an optional version (such as "
                "rich or 'rich>=13'): URLs, paths and options are not recorded from the lab; use "
                "pyproject.toml and `invoke lock` on the host for those."
            )
    return request_id, verb, packages


class Helper:
    """Serves one running container's pip requests until the container stops."""

    def __init__(self, p: Project, cid: str) -> None:
        self.p, self.cid = p, cid
        self.folder = folder(p.root)
        self.builder = output(
            p.c, "docker", "image", "inspect", "--format", "{{.Id}}", locking.ensure_builder(p)
        )
        self.inputs = build_inputs(p)
        self.rebuild_at: float | None = None
        live.ensure_tools(p, cid, self.builder)  # so that the first request needs no copy

    def serve(self) -> None:
        waiter = subprocess.Popen(
            ["docker", "wait", self.cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while waiter.poll() is None or self.cid in output(self.p.c, "docker", "ps", "-q", "--no-trunc"):
                if waiter.poll() is not None:  # restarted by its restart policy: wait again
                    waiter = subprocess.Popen(["docker", "wait", self.cid], stdout=subprocess.DEVNULL)
                requests = sorted((self.folder / "requests").glob("*.json"))
                for request in requests:
                    self.handle(request)
                if not requests and self.rebuild_at is not None and time.monotonic() > self.rebuild_at:
                    self.rebuild()
                time.sleep(POLL_SECONDS)
        finally:
            waiter.kill()
            if self.rebuild_at is not None:
                self.rebuild()

    def handle(self, request: Path) -> None:
        taken = self.folder / "taken" / request.name
        try:
            os.replace(request, taken)  # pip gives up by deleting it: exactly one of us wins
        except FileNotFoundError:
            return
        try:
            request_id, verb, packages = parse_request(json.loads(taken.read_text(encoding="utf-8")))
        except (ValueError, OSError, UnicodeDecodeError):
            taken.unlink(missing_ok=True)
            return
        except Exit as error:
            request_id = request.stem if REQUEST_ID.match(request.stem) else ""
            if request_id:
                (self.folder / f"{request_id}.log").write_text(error.message + "\n", encoding="utf-8")
                self.finish(request_id, 1)
            taken.unlink(missing_ok=True)
            return
        log_path = self.folder / f"{request_id}.log"
        changed, code = False, 1
        with (
            open(log_path, "w", encoding="utf-8") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            try:
                with guard.checkout_lock(
                    self.p.root, f"pip {'install' if verb == 'add' else 'uninstall'} (from the lab)"
                ):
                    transaction.recover(self.p.root)
                    changed = dependencies.change(
                        self.p, verb, packages, build=False, builder=self.builder, cid=self.cid
                    )
                code = 0
            except Exit as error:
                print(error.message)
                code = error.code or 1
            except Exception as error:  # noqa: BLE001, RUF100 - the helper outlives any request
                print(f"labdock's helper failed: {error!r}; run `invoke {verb} ...` on the host.")
        self.finish(request_id, code)
        taken.unlink(missing_ok=True)
        if changed:
            self.rebuild_at = time.monotonic() + REBUILD_DELAY

    def finish(self, request_id: str, code: int) -> None:
        done = self.folder / f"{request_id}.done"
        done.with_suffix(".tmp").write_text(json.dumps({"code": code}), encoding="utf-8")
        os.replace(done.with_suffix(".tmp"), done)

    def rebuild(self) -> None:
        """Rebuild the image for the next `up`, after pip has its answer; only from trusted inputs."""
        self.rebuild_at = None
        if build_inputs(self.p) != self.inputs:
            print(
                "The build inputs changed since `invoke up`: not rebuilding; `invoke build` does.", flush=True
            )
            return
        with contextlib.suppress(Exit), guard.checkout_lock(self.p.root, "build (after pip in the lab)"):
            build_image(self.p)


def main(cid: str) -> None:
    root = Path.cwd()
    started_with = json.loads(sys.stdin.read())
    settings, checkout = Settings(**started_with["settings"]), Checkout(**started_with["checkout"])
    p = Project(Context(), root, read_slug(root), settings, checkout)
    place = folder(root)
    lock_fd = os.open(place / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + 15  # the helper of a replaced container is on its way out
    while not guard._try_lock(lock_fd):
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)
    helper = Helper(p, cid)
    (place / AGENT_FILE).write_text(json.dumps({"pid": os.getpid(), "container": cid}), encoding="utf-8")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} serving pip for container {cid[:12]}", flush=True)
    helper.serve()


if __name__ == "__main__":
    main(sys.argv[1])
