"""Remote Docker engines (DOCKER_HOST=ssh://..., or a Docker context on another machine).

A remote engine's bind mounts name folders on *its* host, which does not have this checkout, and
a port it publishes on 127.0.0.1 is its own loopback, not this machine's. So in remote mode:
  - the project lives in a named volume (`workspace`) on the engine instead of a bind mount
    (compose_override); tasks copy files in and out with tar streams through `docker compose
    exec` as the notebook user (pack, unpack, engine_*_command), and a three-way comparison
    with the state of the last sync decides what goes which way (plan_sync);
  - readiness is the image's healthcheck, as the engine sees it (`docker compose up --wait`);
  - the server is reached through an ssh tunnel (tunnel_command).
docs/remote-engines.md in the labdock repository explains the choice and its trade-offs.

Plain functions only: no Invoke, no subprocess, no other labdock module. The tasks run the
commands these functions spell out.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

WORKSPACE = "/workspace"  # where compose.yaml mounts the project in the container
WORKSPACE_VOLUME = "workspace"  # the volume that holds it on a remote engine
# Never synced in either direction: tools' caches, and the folders for large files (data/, the
# TensorBoard runs/), which stay on the engine's side (`docker compose cp` copies one explicitly).
SKIPPED = frozenset(
    {
        ".git",
        ".ipynb_checkpoints",
        ".virtual_documents",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".venv",
        "data",
        "runs",
    }
)
VOLUME_ID_FILE = ".labdock-volume"  # in the workspace: which volume the last sync's state is about
SKIPPED_FILES = frozenset({".env", VOLUME_ID_FILE})  # the token stays here; the id, there
LOCAL_SCHEMES = ("unix", "npipe", "fd")
NETWORK_SCHEMES = ("tcp", "http", "https")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


# ----------------------------------------------------------------------------- which engine


def context_endpoint(inspect_output: str) -> str:
    """The engine address from `docker context inspect` (no name: the current context).

    With DOCKER_HOST set, the CLI reports the "default" context with DOCKER_HOST as its host, so
    this one call gives the endpoint every docker command of the task will use."""
    try:
        contexts = json.loads(inspect_output)
        return str(contexts[0]["Endpoints"]["docker"]["Host"])
    except (ValueError, LookupError, TypeError):
        raise ValueError(
            "`docker context inspect` gave no engine address: check `docker context ls`, or set DOCKER_HOST."
        ) from None


def is_remote(docker_host: str, context_endpoint: str = "") -> bool:
    """Whether the engine runs on another machine, so that this folder cannot be bind-mounted.

    DOCKER_HOST wins over the context, as it does for the docker CLI. ssh:// is remote even to
    localhost (its logins may see another file system); tcp:// is remote unless on loopback."""
    endpoint = (docker_host or "").strip() or (context_endpoint or "").strip()
    if not endpoint:
        return False  # the platform's default socket
    parts = urlsplit(endpoint)
    if parts.scheme in LOCAL_SCHEMES:
        return False
    if parts.scheme == "ssh":
        return True
    if parts.scheme in NETWORK_SCHEMES:
        return (parts.hostname or "") not in LOOPBACK_HOSTS
    raise ValueError(
        f"Docker engine address {endpoint!r} has an unknown scheme: use unix://, npipe://, "
        "tcp:// or ssh:// (DOCKER_HOST or `docker context use`)."
    )


def remote_mode(setting: object, docker_host: str, context_endpoint: str = "") -> bool:
    """The `remote` setting: auto (the default: from the engine's address), true or false
    (for engines the address does not tell, e.g. a unix socket forwarded from another machine)."""
    text = str(setting).strip().lower()
    if text in ("", "auto"):
        return is_remote(docker_host, context_endpoint)
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ValueError(f"labdock.remote must be auto, true or false (got {setting!r}).")


# ----------------------------------------------------------------------------- reaching the server


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str = ""
    port: int | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def ssh_target(endpoint: str) -> SshTarget:
    """Where to ssh to reach the engine's host: ssh://[user@]host[:port] as the docker CLI reads
    it (host may be an alias of ~/.ssh/config); for tcp://host:port, the same host on ssh's port."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("ssh", *NETWORK_SCHEMES) or not parts.hostname:
        raise ValueError(f"{endpoint!r} names no remote host: expected ssh://[user@]host[:port].")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{endpoint!r} has an invalid port.") from None
    if parts.scheme == "ssh":
        return SshTarget(parts.hostname, parts.username or "", port)
    return SshTarget(parts.hostname)


def tunnel_command(endpoint: str, forwards: Iterable[tuple[int, int]]) -> list[str]:
    """The ssh command that makes ports published on the engine host's loopback reachable here.

    forwards: (local port, port on the engine's host) pairs, e.g. JupyterLab and TensorBoard.
    -N: forward only, no remote command; both ends on loopback, like `invoke up` locally."""
    target = ssh_target(endpoint)
    argv = ["ssh", "-N"]
    for local, remote in forwards:
        for port in (local, remote):
            if not 0 < int(port) < 65536:
                raise ValueError(f"Port {port} is out of range (1 to 65535).")
        argv += ["-L", f"127.0.0.1:{int(local)}:127.0.0.1:{int(remote)}"]
    if target.port:
        argv += ["-p", str(target.port)]
    return [*argv, target.destination]


# ----------------------------------------------------------------------------- compose


SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def yaml_string(text: str) -> str:
    """A YAML double-quoted scalar (JSON's escaping is valid YAML); `$` doubled for Compose."""
    return json.dumps(text.replace("$", "$$"), ensure_ascii=False)


def compose_override(
    services: Iterable[str],
    health_service: str = "lab",
    volume: str = WORKSPACE_VOLUME,
    start_period: str = "60s",
    labels: Mapping[str, str] | None = None,
) -> str:
    """compose.remote.yaml: the remote-mode override, added after compose.yaml (and the GPU one).
    services: those of compose.yaml that mount the project (lab; tensorboard when it has it).

    Compose merges a service's volumes by their target, so this replaces the bind mount of the
    project at /workspace with the volume, for every service that mounts it; labels go on the
    volume (the checkout's, project.py). start_interval
    makes the engine check health every second while the server starts (engines >= 25; older
    ones ignore it and check every 5 s), so `up --wait` returns about as soon as /api answers."""
    names = list(services)
    for name in [*names, health_service, volume]:
        if not SERVICE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid compose service or volume name.")
    lines = [
        "# Remote engine: written by invoke, do not edit (it is rewritten on each run). The",
        "# engine's host has no copy of this folder, so the project lives in a volume there;",
        "# `invoke sync` copies files between it and this folder.",
        "services:",
    ]
    for name in names:
        lines += [
            f"  {name}:",
            "    volumes:",
            "      - type: volume",
            f"        source: {volume}",
            f"        target: {WORKSPACE}",
        ]
        if name == health_service:
            lines += ["    healthcheck:", f"      start_period: {start_period}", "      start_interval: 1s"]
    lines += ["volumes:", f"  {volume}:"]
    if labels:
        lines += ["    labels:"]
        lines += [f"      {yaml_string(key)}: {yaml_string(value)}" for key, value in labels.items()]
    return "\n".join([*lines, ""])


# ----------------------------------------------------------------------------- sync


def in_scope(path: str) -> bool:
    """Whether a project-relative POSIX path is synced (not under SKIPPED, not .env)."""
    parts = PurePosixPath(path).parts
    return (
        bool(parts)
        and not path.startswith("/")
        and ".." not in parts
        and not SKIPPED.intersection(parts)
        and parts[-1] not in SKIPPED_FILES
    )


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def host_manifest(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """{path: sha256} of this folder's files among paths (e.g. `git ls-files -co
    --exclude-standard`: tracked and new, not ignored), those in scope that exist."""
    manifest = {}
    for path in paths:
        file = root / path
        if in_scope(path) and file.is_file() and not file.is_symlink():
            manifest[path] = digest(file.read_bytes())
    return manifest


# Run by the container's Python: the volume's id (made on first use) and {path: sha256} of the
# workspace's files, with the same scope as in_scope().
ENGINE_MANIFEST_SCRIPT = """\
import hashlib, json, os, sys, uuid
root, skipped, skipped_files = sys.argv[1], set(sys.argv[2].split(",")), set(sys.argv[3].split(","))
id_file = os.path.join(root, sys.argv[4])
if not os.path.exists(id_file):
    with open(id_file, "w") as handle:
        handle.write(uuid.uuid4().hex)
with open(id_file) as handle:
    volume = handle.read().strip()
found = {}
for folder, dirs, files in os.walk(root):
    dirs[:] = [d for d in dirs if d not in skipped]
    for name in files:
        path = os.path.join(folder, name)
        if name in skipped_files or os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as handle:
            found[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
json.dump({"volume": volume, "files": found}, sys.stdout)
"""


def engine_manifest_command(workspace: str = WORKSPACE) -> list[str]:
    """The command (for `docker compose exec -T SERVICE`) printing the workspace's manifest."""
    return [
        "python",
        "-c",
        ENGINE_MANIFEST_SCRIPT,
        workspace,
        ",".join(sorted(SKIPPED)),
        ",".join(sorted(SKIPPED_FILES)),
        VOLUME_ID_FILE,
    ]


def parse_manifest(output: str) -> tuple[str, dict[str, str]]:
    """(volume id, {path: sha256}) from engine_manifest_command's output, in scope."""
    try:
        manifest = json.loads(output)
        volume, files = str(manifest["volume"]), dict(manifest["files"])
    except (ValueError, LookupError, TypeError):
        raise ValueError(
            "The container printed no file list (is it running? `invoke logs` shows why not)."
        ) from None
    return volume, {path: sha for path, sha in files.items() if in_scope(path)}


def base_record(volume: str, files: Mapping[str, str]) -> str:
    """The state after a sync, as this folder keeps it (JSON text) for the next one."""
    return json.dumps({"volume": volume, "files": dict(sorted(files.items()))}, indent=1) + "\n"


def read_base(record: str, volume: str) -> dict[str, str]:
    """The last sync's state, if it was with this very volume; else none. After `down --volumes`
    the new volume is empty: with the old state, every file would look deleted in the container
    (and be deleted here); with none, they are all copied in again."""
    try:
        saved = json.loads(record) if record.strip() else {}
        return dict(saved["files"]) if saved.get("volume") == volume else {}
    except (ValueError, LookupError, TypeError, AttributeError):
        return {}  # unreadable: compare without it (differences become conflicts, never losses)


@dataclass
class SyncPlan:
    """What one sync does, file by file (project-relative POSIX paths, sorted)."""

    push: list[str] = field(default_factory=list)  # new or changed here only: copy to the engine
    fetch: list[str] = field(default_factory=list)  # new or changed in the container only: copy here
    delete_on_engine: list[str] = field(default_factory=list)  # deleted here, unchanged there
    delete_here: list[str] = field(default_factory=list)  # deleted there, unchanged here
    conflicts: list[str] = field(default_factory=list)  # changed on both sides, differently

    @property
    def empty(self) -> bool:
        return not (self.push or self.fetch or self.delete_on_engine or self.delete_here or self.conflicts)


def plan_sync(
    base: Mapping[str, str],
    host: Mapping[str, str],
    engine: Mapping[str, str],
    ignored: Iterable[str] = (),
) -> SyncPlan:
    """Compare this folder (host) and the workspace volume (engine) with the state both had at
    the last sync (base), path by path: a side that differs from base changed; when only one
    side changed, its version wins; when both changed to different contents, it is a conflict
    and nothing is copied. ignored: engine paths this folder's .gitignore excludes (results
    written in the container stay there)."""
    skip = set(ignored) - set(host)
    plan = SyncPlan()
    for path in sorted((set(base) | set(host) | set(engine)) - skip):
        was, here, there = base.get(path), host.get(path), engine.get(path)
        if here == there:
            continue
        if there == was:  # only this folder changed
            (plan.push if here is not None else plan.delete_on_engine).append(path)
        elif here == was:  # only the container's copy changed
            (plan.fetch if there is not None else plan.delete_here).append(path)
        else:
            plan.conflicts.append(path)
    return plan


def base_after(
    base: Mapping[str, str],
    host: Mapping[str, str],
    engine: Mapping[str, str],
    plan: SyncPlan,
    pushed: bool = True,
    fetched: bool = True,
) -> dict[str, str]:
    """The base to record once the plan's push side (pushed) and/or fetch side (fetched) is
    applied: paths now equal on both sides, at their content; conflicts keep their old base."""
    after = dict(base)
    for path in set(host) | set(engine) | set(base):
        if path in plan.conflicts:
            continue
        if pushed and (path in plan.push or path in plan.delete_on_engine):
            state = host.get(path)
        elif fetched and (path in plan.fetch or path in plan.delete_here):
            state = engine.get(path)
        elif host.get(path) == engine.get(path):
            state = host.get(path)
        else:
            continue  # still differs: keep the old base, so the next sync sees the same change
        if state is None:
            after.pop(path, None)
        else:
            after[path] = state
    return after


def pack(root: Path, paths: Iterable[str]) -> bytes:
    """A tar archive of these files of this folder (regular files, mode and mtime kept; owner
    left to whoever extracts it: the notebook user in the container)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(paths):
            if not in_scope(path):
                raise ValueError(f"{path} is outside what is synced.")
            info = archive.gettarinfo(str(root / path), arcname=path)
            if not info.isfile():
                raise ValueError(f"{path} is not a regular file.")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with (root / path).open("rb") as handle:
                archive.addfile(info, handle)
    return buffer.getvalue()


def pack_files(files: Mapping[str, Path]) -> bytes:
    """A tar archive of files of this machine under the absolute paths they get in a container,
    {"/workspace/pyproject.toml": Path("pyproject.toml")}, for `tar -x -C /` there (as root:
    ownership is left to the extracting user, modes kept)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for target, source in sorted(files.items()):
            name = PurePosixPath(target)
            if not name.is_absolute() or ".." in name.parts or len(name.parts) < 2:
                raise ValueError(f"{target} is not an absolute path in the container.")
            info = archive.gettarinfo(str(source), arcname=name.relative_to("/").as_posix())
            if not info.isfile():
                raise ValueError(f"{source} is not a regular file.")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with Path(source).open("rb") as handle:
                archive.addfile(info, handle)
    return buffer.getvalue()


def engine_apply_command(deleted: Iterable[str], workspace: str = WORKSPACE) -> list[str]:
    """The command (for `docker compose exec -T SERVICE`, the archive from pack() on stdin)
    that writes the pushed files and removes those deleted here. As the notebook user: the
    files and any new folders are theirs, so JupyterLab can save next to them."""
    for path in deleted:
        if not in_scope(path):
            raise ValueError(f"{path} is outside what is synced.")
    script = 'cd "$1" && shift && tar -x -f - --no-same-owner --no-same-permissions && rm -f -- "$@"'
    return ["sh", "-c", script, "sh", workspace, *sorted(deleted)]


def engine_pack_command(paths: Iterable[str], workspace: str = WORKSPACE) -> list[str]:
    """The command (for `docker compose exec -T SERVICE`) that prints a tar archive of these
    workspace files on stdout, for unpack()."""
    names = sorted(paths)
    for path in names:
        if not in_scope(path):
            raise ValueError(f"{path} is outside what is synced.")
    return ["tar", "-c", "-f", "-", "-C", workspace, "--", *names]


def unpack(archive: bytes, root: Path, expected: Iterable[str]) -> list[str]:
    """Write the files of an archive from engine_pack_command into this folder; returns their
    paths. Only the regular files that were asked for are written (no links, nothing outside
    the folder, whatever the container put in the archive); each one replaces its file whole."""
    wanted = set(expected)
    written = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as members:
        for member in members:
            name = PurePosixPath(member.name).as_posix()
            if member.isdir():
                continue
            if name not in wanted or not member.isfile() or not in_scope(name):
                raise ValueError(f"The container's archive holds {member.name!r}, which was not asked for.")
            data = members.extractfile(member).read()
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.labdock-partial")
            partial.write_bytes(data)
            partial.chmod(0o644 | (member.mode & 0o111))
            partial.replace(target)
            written.append(name)
    missing = wanted - set(written)
    if missing:
        raise ValueError(f"The container's archive lacks {', '.join(sorted(missing))}.")
    return written
