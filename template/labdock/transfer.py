"""What `invoke sync` moves between this folder and a remote engine's workspace volume, and how.

Tasks copy files in and out with tar streams through `docker compose exec` as the notebook user
(pack, unpack, engine_*_command), and a three-way comparison with the state of the last sync
decides what goes which way (plan_sync). See remote.py for why a remote engine needs this.

Plain functions only: no Invoke, no subprocess. The tasks (sync.py) run the commands these
functions spell out.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .remote import WORKSPACE

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
