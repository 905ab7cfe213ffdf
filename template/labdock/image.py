"""The image: build the Dockerfile's stages with the project's settings, label what it was built
from, and build it when a task needs it."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import urllib.parse

from invoke import Context, Exit, task

from . import engine, locking
from .commands import since, warn
from .guard import exclusive
from .project import Project, host_ids
from .stages import docker_build


def commit_time(p: Project) -> str:
    """HEAD's commit time, not the clock: the same sources build the same image (same id), so an
    unchanged rebuild neither replaces the image nor makes `up` recreate the container."""
    epoch = int(p.git("log", "-1", "--format=%ct") or 0)
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def without_credentials(url: str) -> str:
    """A git remote URL without the user and password it may carry (https://user:token@host/...)."""
    parts = urllib.parse.urlsplit(url)
    if "://" not in url or "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def labels(p: Project) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": p.slug,
        "org.opencontainers.image.source": without_credentials(p.git("remote", "get-url", "origin"))
        or p.root.as_uri(),
        "org.opencontainers.image.revision": p.git("rev-parse", "HEAD") or "unknown",
        "org.opencontainers.image.created": commit_time(p),
        "dev.labdock.lock-sha256": hashlib.sha256(p.lock_file.read_bytes()).hexdigest(),
    }


def build_image(p: Project, no_cache: bool = False, pull: bool = False) -> None:
    """Build the runtime image (locking first when poetry.lock is missing)."""
    started = time.monotonic()
    if not p.lock_file.exists():
        print("poetry.lock is missing: running `invoke lock` first.")
        locking.lock(p)
    uid, gid = host_ids()
    if uid == 0:
        warn(
            "you are root on this machine, so JupyterLab will run as root in the container (to "
            "keep your files yours). Run invoke as a regular user to avoid it."
        )
    label_flags = [item for key, value in labels(p).items() for item in ("--label", f"{key}={value}")]
    cache_flags = [*(["--no-cache"] if no_cache else []), *(["--pull"] if pull else [])]
    if cache := p.settings.build_cache:
        cache_flags += ["--cache-from", cache, "--cache-to", f"{cache},mode=max"]
    ids = ["--build-arg", f"NB_UID={uid}", "--build-arg", f"NB_GID={gid}"]
    try:
        docker_build(
            p, "runtime", p.image(), *ids, *label_flags, *cache_flags, failure="The image build failed"
        )
    except Exit:
        # The most common cause, checked only now so that a good build does not pay for it.
        problem = locking.lock_problem(p)
        if problem:
            raise Exit(problem) from None
        raise
    print(f"Built {p.image()} in {since(started)}.")


def ensure_image(p: Project) -> None:
    """Build the image if there is none yet."""
    if not engine.image_exists(p, p.image()):
        build_image(p)


@task(
    help={
        "no_cache": "Rebuild every layer, ignoring the build cache",
        "pull": "Pull a newer base image first",
    }
)
@exclusive
def build(c: Context, no_cache: bool = False, pull: bool = False) -> None:
    """Build the JupyterLab image (runs `invoke lock` first when poetry.lock is missing)."""
    p = Project.load(c)
    engine.require_engine(p)
    build_image(p, no_cache=no_cache, pull=pull)
