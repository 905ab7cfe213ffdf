"""The image: build the Dockerfile's stages with the project's settings, label what it was built
from, and build it when a task needs it."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import urllib.parse

from invoke import Context, Exit, task

from . import engine, locking
from .commands import label_flags, since, warn
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


# What the runtime image is built from: the files in its build context (.dockerignore lets only
# these in), the Dockerfile, and the user it is built for. Recorded in a label, compared before
# the image is used, so a changed lock, Dockerfile or package list is never served silently.
INPUTS = (
    "Dockerfile",
    "pyproject.toml",
    "poetry.lock",
    "apt-packages.txt",
    "apt-build-packages.txt",
    "r-packages.txt",
    "docker",
)
INPUTS_LABEL = "dev.labdock.inputs"


def inputs(p: Project) -> dict[str, str]:
    """name -> short sha256 of every input there is (a folder: of its files), and the user ids."""
    found = {}
    for name in INPUTS:
        path = p.root / name
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for file in files:
            if file.is_file():
                digest.update(file.relative_to(p.root).as_posix().encode() + b"\0" + file.read_bytes())
        if any(file.is_file() for file in files):
            found[name] = digest.hexdigest()[:16]
    found["user"] = "{}:{}".format(*host_ids())
    return found


def encode_inputs(values: dict[str, str]) -> str:
    return ";".join(f"{name}={value}" for name, value in values.items())


def changed_inputs(p: Project, recorded: str) -> list[str]:
    """The inputs that differ from what an image's label records (all of them without a label)."""
    before = dict(item.partition("=")[::2] for item in recorded.split(";") if "=" in item)
    now = inputs(p)
    return sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name))


def stale_reason(p: Project) -> str:
    """'' when the local image is built from the project's current files, else what differs."""
    if not engine.image_exists(p, p.image()):
        return "there is no image yet"
    recorded = engine.image_label(p, p.image(), INPUTS_LABEL)
    if not recorded:
        return "the image does not record what it was built from"
    changed = changed_inputs(p, recorded)
    return f"{', '.join(changed)} changed since the image was built" if changed else ""


def labels(p: Project) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": p.slug,
        "org.opencontainers.image.source": without_credentials(p.git("remote", "get-url", "origin"))
        or p.root.as_uri(),
        "org.opencontainers.image.revision": p.git("rev-parse", "HEAD") or "unknown",
        "org.opencontainers.image.created": commit_time(p),
        "dev.labdock.lock-sha256": hashlib.sha256(p.lock_file.read_bytes()).hexdigest(),
        INPUTS_LABEL: encode_inputs(inputs(p)),
    }


def build_image(p: Project, no_cache: bool = False, pull: bool = False) -> None:
    """Build the runtime image (locking first when poetry.lock is missing)."""
    if not p.lock_file.exists():
        print("poetry.lock is missing: running `invoke lock` first.")
        locking.lock(p)
    started = time.monotonic()  # "Built in" counts the build alone
    uid, gid = host_ids()
    if uid == 0:
        warn(
            "you are root on this machine, so JupyterLab will run as root in the container (to "
            "keep your files yours). Run invoke as a regular user to avoid it."
        )
    flags = label_flags(labels(p))
    cache_flags = [*(["--no-cache"] if no_cache else []), *(["--pull"] if pull else [])]
    if cache := p.settings.build_cache:
        cache_flags += ["--cache-from", cache, "--cache-to", f"{cache},mode=max"]
    ids = ["--build-arg", f"NB_UID={uid}", "--build-arg", f"NB_GID={gid}"]
    try:
        docker_build(p, "runtime", p.image(), *ids, *flags, *cache_flags, failure="The image build failed")
    except Exit:
        if p.remote:  # the lock check runs Poetry on this folder, which a remote engine cannot see
            raise
        # The most common cause, checked only now so that a good build does not pay for it.
        problem = locking.lock_problem(p)
        if problem:
            raise Exit(problem) from None
        raise
    print(f"Built {p.image()} in {since(started)}.")


def build_singleuser(p: Project) -> str:
    """The image a JupyterHub serves (and `invoke push` publishes): the runtime environment with
    the project's code and notebooks inside, for user 1000; returns its local tag."""
    ref = p.image("singleuser")
    started = time.monotonic()
    if not p.lock_file.exists():
        print("poetry.lock is missing: running `invoke lock` first.")
        locking.lock(p)
    flags = label_flags(labels(p))
    ids = ["--build-arg", "NB_UID=1000", "--build-arg", "NB_GID=1000"]
    docker_build(p, "singleuser", ref, *ids, *flags, failure="The singleuser image failed to build")
    print(f"Built {ref} in {since(started)}.")
    return ref


def ensure_image(p: Project) -> None:
    """Build the image when it is missing or was built from other files (a failed build, an
    edited lock or Dockerfile, a `copier update`): a stale image is never used silently."""
    reason = stale_reason(p)
    if reason:
        if reason != "there is no image yet":
            print(f"Rebuilding the image: {reason}.")
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
