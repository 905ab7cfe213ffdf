"""The running server's environment: a dependency change reaches it without a restart.

`invoke add` (and `remove`, and `%pip install` in the lab) installs exactly what the new
poetry.lock says into the running container's /opt/venv, as root through `docker exec`, so the
running kernels import the new package at once and keep their state. The image has no pip and
its environment stays root-owned: uv (from the builder stage, checked by its digest) is copied
into the container's own file system, never run from the project folder the notebooks can write.

The container's environment then matches a lock its image was not built from: .labdock/live.json
records which, so that `up` keeps that container (`up_flags`) and the stale-image check compares
the right lock (`environment_lock`).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from invoke import Exit, Result

from . import engine, guard
from .commands import output, run
from .project import SERVICE, Project

TOOLS = "/opt/labdock/tools"  # root-owned, in the container's own file system
LIVE_FILE = "live.json"  # in .labdock/: {"container": id, "lock": sha256 of the lock it matches}
LOCK_LABEL = "dev.labdock.lock-sha256"  # the lock an image was built from (image.py)
UV_IN_BUILDER = "/opt/poetry/bin/uv"
MISSING_TOOLS = 97  # the install script's exit code when uv (or the CA bundle) must be copied in
NEEDS_BUILD = ("Building source distributions is disabled", "--no-build")  # uv: a package has no wheel

# Runs as root in the lab container. Requirements come on stdin (never from a file the notebook
# user could swap); `uv pip install --no-deps` installs exactly the pinned, hashed packages given.
# Installing comes first: uv downloads everything before it changes anything, so a failed
# download leaves the environment as it was; removing is local and does not fail that way.
# --no-build: a wheel installs without running any of its code; a source distribution would run
# its build as root here, so such a package waits for the image build instead (NEEDS_BUILD).
INSTALL_SCRIPT = """set -e
[ -x "$LABDOCK_UV" ] || exit 97
[ -z "$SSL_CERT_FILE" ] || [ -f "$SSL_CERT_FILE" ] || exit 97
export UV_CACHE_DIR=/opt/labdock/tools/cache
if [ "$LABDOCK_MODE" = install ]; then
    "$LABDOCK_UV" pip install --no-build --no-deps --require-hashes -r -
fi
if [ -n "$LABDOCK_REMOVE" ]; then
    # shellcheck disable=SC2086 # one word per package
    "$LABDOCK_UV" pip uninstall $LABDOCK_REMOVE
fi
"""


class Feed:
    """Text for a command's stdin. Invoke reads a stream that is not a terminal one byte per
    10 ms (seconds for a requirements list): this hands it everything on the first read."""

    def __init__(self, text: str) -> None:
        self.text = text

    def read(self, size: int = -1) -> str:
        text, self.text = self.text, ""
        return text


def container_lock(p: Project, cid: str) -> str:
    """The digest of the lock the running container's environment matches ('' when unknown)."""
    live = read_live(p)
    if live.get("container") == cid:
        return str(live.get("lock", ""))
    return engine.label(p, "container", cid, LOCK_LABEL)


INSTALLED = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))"
)


def installed(p: Project, cid: str) -> dict[str, str]:
    """name -> version of every distribution in the running container's environment."""
    text = output(p.c, "docker", "exec", cid, "python", "-c", INSTALLED)
    try:
        found = json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        found = {}
    if not found:
        raise Exit("Could not list the running JupyterLab's packages: restart it with `invoke up --build`.")
    return found


def read_live(p: Project) -> dict:
    try:
        data = json.loads((p.root / guard.STATE_DIR / LIVE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(p: Project, cid: str, lock_digest: str) -> None:
    """The running container cid now matches the lock with this digest."""
    path = guard.state_dir(p.root) / LIVE_FILE
    path.write_text(json.dumps({"container": cid, "lock": lock_digest}) + "\n", encoding="utf-8")


def tool_paths(p: Project, builder_id: str) -> tuple[str, str]:
    """Where uv and the CA bundle live in the container (named by content: a new builder or a
    new bundle gets a new path, so an old copy is never used by mistake)."""
    uv = f"{TOOLS}/uv-{builder_id.removeprefix('sha256:')[:16]}"
    bundle = p.settings.ca_bundle
    ca = f"{TOOLS}/ca-{bundle_digest(bundle)[:16]}.pem" if bundle else ""
    return uv, ca


def bundle_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def copy_tools(p: Project, cid: str, builder: str, uv: str, ca: str) -> None:
    """Copy uv out of the builder image (and the CA bundle) into the container, written by root
    from the first byte: `docker cp` would make them the notebook user's, who could then rewrite
    what root runs next. Binary streams, so subprocess rather than Invoke."""
    holder = output(p.c, "docker", "create", builder)
    try:
        exported = subprocess.run(
            ["docker", "cp", f"{holder}:{UV_IN_BUILDER}", "-"], capture_output=True, check=False
        )
    finally:
        run(p.c, "docker", "rm", holder, hide=True, warn=True)
    if exported.returncode != 0:
        raise Exit(f"Could not copy uv out of {builder}: {exported.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(exported.stdout)) as archive:
        binary = archive.extractfile(archive.getmembers()[0]).read()
    copies = [(uv, binary, "755")]
    if ca:
        copies.append((ca, Path(p.settings.ca_bundle).read_bytes(), "644"))
    for path, data, mode in copies:
        # Written under a temporary name and renamed, so that a copy cut short is never used.
        script = f'mkdir -p -m 755 {TOOLS} && cat >"$0.tmp" && chmod {mode} "$0.tmp" && mv "$0.tmp" "$0"'
        copied = subprocess.run(
            ["docker", "exec", "-i", "-u", "0", cid, "sh", "-c", script, path],
            input=data,
            capture_output=True,
            check=False,
        )
        if copied.returncode != 0:
            error = copied.stderr.decode(errors="replace").strip()
            raise Exit(f"Could not copy {Path(path).name} into the server's container: {error}")


def ensure_tools(p: Project, cid: str, builder: str) -> None:
    """uv (and the CA bundle) in the container, copied in if missing."""
    builder_id = output(p.c, "docker", "image", "inspect", "--format", "{{.Id}}", builder)
    uv, ca = tool_paths(p, builder_id)
    check = f'[ -x "{uv}" ] && [ -z "{ca}" -o -f "{ca}" ]'
    if not run(p.c, "docker", "exec", "-u", "0", cid, "sh", "-c", check, hide=True, warn=True).ok:
        copy_tools(p, cid, builder, uv, ca)


def install(p: Project, cid: str, builder: str, requirements: str, remove: list[str]) -> Result:
    """Change the running container's environment: install the pinned requirements, then
    uninstall `remove`."""
    builder_id = output(p.c, "docker", "image", "inspect", "--format", "{{.Id}}", builder)
    uv, ca = tool_paths(p, builder_id)
    env = ["-e", f"LABDOCK_UV={uv}", "-e", f"LABDOCK_REMOVE={' '.join(remove)}"]
    env += ["-e", f"LABDOCK_MODE={'install' if requirements.strip() else 'none'}"]
    if p.settings.pypi_mirror:  # its value from the environment: a mirror URL may hold a password
        env += ["-e", "UV_DEFAULT_INDEX"]
    if ca:
        env += ["-e", f"SSL_CERT_FILE={ca}"]

    def attempt() -> Result:
        return run(
            p.c,
            "docker",
            "exec",
            "-i",
            "-u",
            "0",
            *env,
            cid,
            "sh",
            "-c",
            INSTALL_SCRIPT,
            in_stream=Feed(requirements),
            env={"UV_DEFAULT_INDEX": p.settings.pypi_mirror} if p.settings.pypi_mirror else {},
            warn=True,
        )

    result = attempt()
    if result.exited == MISSING_TOOLS:
        copy_tools(p, cid, builder, uv, ca)
        result = attempt()
    return result


def synced_files(p: Project, cid: str) -> set[str]:
    """The image inputs that container cid has caught up with without a new image: pyproject.toml
    and poetry.lock, when `add` brought its environment to the current lock."""
    lock = p.lock_file.read_bytes() if p.lock_file.exists() else b""
    live = read_live(p)
    if live.get("container") == cid and live.get("lock") == hashlib.sha256(lock).hexdigest():
        return {"pyproject.toml", "poetry.lock"}
    return set()


def up_flags(p: Project, gpu: bool) -> list[str]:
    """`docker compose up` flags that keep a running server whose environment was brought to the
    current lock by `add`: its image changed since it started, but nothing it runs did."""
    live = read_live(p)
    cid = engine.container_id(p)
    if not cid or live.get("container") != cid:
        return []
    lock = p.lock_file.read_bytes() if p.lock_file.exists() else b""
    digest = hashlib.sha256(lock).hexdigest()
    if live.get("lock") != digest or engine.image_label(p, p.image(), LOCK_LABEL) != digest:
        return []
    wanted = engine.compose(p, "config", "--hash", SERVICE, gpu=gpu, hide=True, warn=True)
    current = engine.label(p, "container", cid, "com.docker.compose.config-hash")
    if not wanted.ok or current not in wanted.stdout.split():
        return []
    return ["--no-recreate"]
