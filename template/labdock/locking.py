"""Poetry in a container: poetry.lock. Poetry runs in the Dockerfile's builder stage on a copy of
pyproject.toml and poetry.lock (transaction.py), so the host needs neither Poetry nor a matching
Python, and an interrupted or failed run leaves the project's files as they were.

Also: what poetry.lock says to install (`requirements`), and which packages a change of the lock
adds or removes (`changes`), for the running server (live.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from invoke import Exit, Result

from . import engine, transaction
from .commands import run, since
from .project import WORKSPACE, Project
from .stages import docker_build, failure_hint, index_args, index_env
from .transaction import Interrupts

BUILDER_INPUTS_LABEL = "dev.labdock.builder-inputs"
UNCHANGED = "pyproject.toml and poetry.lock are unchanged"

# What Poetry prints while it works, as opposed to why it failed.
PROGRESS = (
    "Updating dependencies",
    "Resolving dependencies",
    "Writing lock file",
    "Using version",
    "Creating virtualenv",
    "You can also run your poetry command with -v",
)
# Signs that the package index was not reached (or refused us), not that the request was wrong.
NETWORK_SIGNS = (
    "All attempts to connect to",
    "CERTIFICATE_VERIFY_FAILED",
    "SSLError",
    "SSL:",
    "Max retries exceeded",
    "Failed to establish a new connection",
    "Connection refused",
    "Connection reset",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Read timed out",
    "ProxyError",
    "401 Client Error",
    "403 Client Error",
    "407 Proxy",
    "502 Server Error",
    "503 Server Error",
)
# Poetry's PyPI source asks PyPI's JSON API, which some mirrors and proxies do not serve.
INDEX_SIGN = re.compile(r"Package \S+ \(\S+\) not found")

# Run in the builder stage: removes the Poetry container named by argv[1] when the task's
# process ends, however it ends (even killed), unless told first that Poetry is done.
WATCHER = (
    "import subprocess, sys\n"
    "if not sys.stdin.buffer.read():\n"
    "    subprocess.run(['docker', 'rm', '-f', sys.argv[1]], stdout=subprocess.DEVNULL,"
    " stderr=subprocess.DEVNULL)\n"
)


# ----------------------------------------------------------------------------- the builder stage


def builder_inputs(p: Project) -> str:
    """A digest of what the builder stage is built from (the Dockerfile, docker/, the apt lists)."""
    digest = hashlib.sha256()
    files = [p.root / "Dockerfile", p.root / "apt-packages.txt", p.root / "r-packages.txt"]
    files += sorted(path for path in (p.root / "docker").rglob("*") if path.is_file())
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(p.root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def ensure_builder(p: Project, quiet: bool = False) -> str:
    """The builder stage's image (Poetry, uv), built only when its inputs changed; returns its tag.

    `docker build` takes most of a second even when every layer is cached, on every lock and add.
    quiet: without the build's output.
    """
    # Poetry's containers bind-mount this folder, which a remote engine cannot see.
    if p.remote:
        raise Exit(
            "Poetry (invoke lock, add, the lock check) is not supported on a remote engine yet: run it "
            "where the files are (on the engine's host), or with a local engine, and commit poetry.lock."
        )
    engine.ensure_volume(p, p.poetry_cache_volume)  # Poetry's cache, labelled as this checkout's
    ref = p.image("builder")
    inputs = builder_inputs(p)
    if engine.image_label(p, ref, BUILDER_INPUTS_LABEL) != inputs:
        docker_build(
            p,
            "builder",
            ref,
            "--label",
            f"{BUILDER_INPUTS_LABEL}={inputs}",
            failure="The builder stage (Poetry) failed to build",
            quiet=quiet,
        )
    return ref


# ----------------------------------------------------------------------------- Poetry's container


def container_name(p: Project) -> str:
    """A name for one Poetry run, so that an interrupt can remove exactly that container."""
    return f"{p.slug}-poetry-{secrets.token_hex(4)}"


@contextlib.contextmanager
def lifeline(name: str) -> Iterator[Callable[[], None]]:
    """A watcher process (in a session of its own, so that it outlives a killed task) that
    removes container `name` when this process ends or when the yielded cut() is called."""
    detached = {"start_new_session": True} if sys.platform != "win32" else {"creationflags": 0x200}
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **detached,
    )

    def cut() -> None:
        with contextlib.suppress(OSError):
            watcher.stdin.close()  # EOF with nothing written: remove the container

    try:
        yield cut
    finally:
        with contextlib.suppress(OSError, ValueError):
            watcher.stdin.write(b"done")
            watcher.stdin.close()


def poetry(
    p: Project, folder: Path, script: str, interrupts: Interrupts, builder: str = "", **run_kwargs
) -> Result:
    """Run a Poetry shell script in the builder stage, on the staging folder mounted at /workspace.

    The container is named and watched: Ctrl-C, SIGTERM and the end of this process remove it,
    so no Poetry keeps running after the task.
    """
    with interrupts.step(f"before Poetry ran; {UNCHANGED}."):
        builder = builder or ensure_builder(p)
    _, run_flags = index_args(p)
    name = container_name(p)
    with lifeline(name) as cut, interrupts.cancel_with(cut):
        return run(
            p.c,
            "docker",
            "run",
            "--rm",
            "--name",
            name,
            "-v",
            f"{folder}:{WORKSPACE}",
            "-v",
            f"{p.poetry_cache_volume}:/var/cache/pypoetry",
            *run_flags,
            builder,
            "sh",
            "-c",
            script,
            env=index_env(p),  # the mirror URL (it may hold a password) never on a command line
            warn=True,
            **run_kwargs,
        )


def explain(result: Result, what: str) -> str:
    """One line: why Poetry failed, in Poetry's own words, and whether the files changed."""
    text = (result.stdout or "") + "\n" + (result.stderr or "")
    if any(sign in text for sign in NETWORK_SIGNS) or INDEX_SIGN.search(text):
        return (
            failure_hint(f"{what} failed: the package index did not answer as expected") + f" ({UNCHANGED}.)"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = " ".join(line for line in lines if not line.startswith(PROGRESS))
    if len(reason) > 300:
        reason = reason[:300].rsplit(" ", 1)[0] + " ... (Poetry's full explanation above)"
    if "Could not find a matching version of package" in reason:
        reason += " (check the name and the version on PyPI)"
    return f"{what} failed: {reason or f'Poetry exited with code {result.exited}'}. {UNCHANGED}."


# ----------------------------------------------------------------------------- the lock file


def conflict_problem(p: Project) -> str | None:
    """A one-line cause and fix when pyproject.toml or poetry.lock holds git conflict markers."""
    return transaction.conflict_problem(p.root)


def lock_problem(p: Project, quiet: bool = False) -> str | None:
    """None when poetry.lock exists and matches pyproject.toml, else a one-line cause and fix.
    quiet: without the builder stage's build output (doctor prints one line per check)."""
    if not p.lock_file.exists():
        return "poetry.lock is missing: run `invoke lock` (the build runs it for you), then commit it."
    if problem := conflict_problem(p):
        return problem
    builder = ensure_builder(p, quiet=quiet)
    result = run(
        p.c,
        "docker",
        "run",
        "--rm",
        "-v",
        f"{p.root}:{WORKSPACE}:ro",
        builder,
        "poetry",
        "check",
        "--lock",
        hide=True,
        warn=True,
    )
    if result.ok:
        return None
    text = (result.stdout + result.stderr).strip()
    if "poetry lock" in text:
        return "poetry.lock is out of date with pyproject.toml: run `invoke lock`, then commit both."
    if "poetry.lock" in text:
        return f"poetry.lock is not a valid lock file ({text.splitlines()[-1]}): run `invoke lock`."
    last_line = text.splitlines()[-1] if text else "poetry check failed"
    return f"pyproject.toml has a problem ({last_line}): fix it, then run `invoke lock`."


def refuse_conflicts(p: Project) -> None:
    if problem := conflict_problem(p):
        raise Exit(problem)


def lock(p: Project, upgrade: bool = False, interrupts: Interrupts | None = None) -> None:
    """Resolve pyproject.toml into poetry.lock (a fresh lock is left alone unless upgrading)."""
    refuse_conflicts(p)
    started = time.monotonic()
    # `poetry check --lock` takes a second; resolving again, even keeping every version, can
    # take half a minute from an empty cache.
    script = "poetry lock --regenerate" if upgrade else "poetry check --lock >/dev/null 2>&1 || poetry lock"
    with contextlib.ExitStack() as stack:
        interrupts = interrupts or stack.enter_context(Interrupts())
        folder = stack.enter_context(transaction.staging(p.root))
        result = poetry(p, folder, script, interrupts)
        interrupts.check(f"Poetry was stopped; {UNCHANGED}.")
        if not result.ok:
            raise Exit(explain(result, "poetry lock" + (" --regenerate" if upgrade else "")))
        changed = transaction.replace(p.root, transaction.staged(folder))
    if changed:
        print(f"poetry.lock is up to date ({since(started)}): commit it with pyproject.toml.")
    else:
        print("poetry.lock already matches pyproject.toml; `invoke lock --upgrade` moves to newer versions.")


# ----------------------------------------------------------------------------- what the lock installs


def load_lock(data: bytes | None) -> dict:
    """poetry.lock parsed ({} when there is none)."""
    return tomllib.loads(data.decode("utf-8")) if data else {}


def _key(package: dict) -> tuple:
    files = sorted(entry.get("hash", "") for entry in package.get("files", []))
    return (package.get("version"), tuple(files), repr(package.get("source")))


# Optional groups of the template's pyproject.toml: locked, but not in the image `invoke up` runs.
OPTIONAL_GROUPS = {"hub"}


def _installed(lock: dict) -> dict[str, dict]:
    """The lock's packages the runtime image installs: every group but the optional ones
    (extras-only packages are left out too)."""
    return {
        normalize(package["name"]): package
        for package in lock.get("package", [])
        if not package.get("optional", False) and not set(package.get("groups", ["main"])) <= OPTIONAL_GROUPS
    }


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def changes(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """Packages to install (new, or another version) and to remove, from lock `old` to `new`."""
    before, after = _installed(old), _installed(new)
    install = sorted(
        name for name, package in after.items() if name not in before or _key(before[name]) != _key(package)
    )
    remove = sorted(name for name in before if name not in after)
    return install, remove


def changes_from(installed: dict[str, str], new: dict) -> tuple[list[str], list[str]]:
    """Packages to install and to remove to bring an environment (name -> version) to lock `new`.
    Packages whose markers exclude the environment are listed too: the installer skips them."""
    present = {normalize(name): version for name, version in installed.items()}
    after = _installed(new)
    install = sorted(name for name, package in after.items() if present.get(name) != package.get("version"))
    remove = sorted(name for name in present if name not in after)
    return install, remove


def _markers(package: dict) -> str:
    markers = package.get("markers")
    if isinstance(markers, dict):  # one marker per group: installed where any of them holds
        values = list(markers.values())
        markers = "" if any(not value for value in values) else " or ".join(f"({value})" for value in values)
    return markers or ""


def requirements(lock: dict, names: list[str] | None = None) -> str:
    """Pinned, hashed requirements (as `poetry export` writes them) for the lock's packages, or
    for the named ones: installers skip those whose markers exclude this platform."""
    packages = _installed(lock)
    lines, indexes = [], set()
    for name in sorted(packages if names is None else names):
        package = packages[name]
        source = package.get("source") or {}
        if source.get("type") not in (None, "legacy"):
            raise Exit(
                f"{package['name']} comes from a {source.get('type')} source, which cannot be installed "
                "into the running server: rebuild instead (`invoke up --build`)."
            )
        if source.get("url"):
            indexes.add(source["url"])
        line = f"{package['name']}=={package['version']}"
        if markers := _markers(package):
            line += f" ; {markers}"
        hashes = [entry["hash"] for entry in package.get("files", []) if entry.get("hash")]
        lines.append(" \\\n    ".join([line, *(f"--hash={value}" for value in hashes)]))
    head = [f"--extra-index-url {url}" for url in sorted(indexes)]
    return "\n".join(head + lines) + "\n"


def lock_digest(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()
