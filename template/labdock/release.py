"""Publishing the image: `invoke push`, which CI's publish job runs too (one path, the same tags).

Versions come from git: a release is a tag on the commit, `v1.2.0` (or `1.2.0`), and is pushed as
`1.2.0`, `1.2` and `latest`; a pre-release (`v1.3.0rc1`, `v1.3.0-rc.1`) as itself only; any other
commit as its short sha and `latest`.
"""

from __future__ import annotations

import io
import os
import re
import time

from invoke import Context, Exit, task

from . import engine, image
from .commands import run, since
from .guard import exclusive
from .project import Project

RELEASE = re.compile(r"v?(?P<major>0|[1-9][0-9]*)\.(?P<minor>0|[1-9][0-9]*)\.(?P<patch>0|[1-9][0-9]*)")
PRERELEASE = re.compile(RELEASE.pattern + r"[-.]?[0-9A-Za-z.-]+")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # what a Docker tag may be


def image_tags(version: str) -> list[str]:
    """The registry tags for a version (a git tag, a commit sha, or --tag)."""
    if match := RELEASE.fullmatch(version):
        plain = version.removeprefix("v")
        return [plain, f"{match['major']}.{match['minor']}", "latest"]
    if PRERELEASE.fullmatch(version):
        return [version.removeprefix("v")]
    if not TAG.fullmatch(version):
        raise Exit(
            f"{version!r} cannot be an image tag: use letters, digits, '.', '_' and '-' "
            "(up to 128, not starting with '.' or '-'), e.g. v1.2.0."
        )
    return [version, "latest"]


def git_version(p: Project) -> str:
    """The git tag at HEAD, else the short commit sha."""
    version = p.git("describe", "--tags", "--exact-match") or p.git("rev-parse", "--short", "HEAD")
    if not version:
        raise Exit("No version from git (no commit yet): commit first, or pass --tag VERSION.")
    return version


def registry_host(registry: str) -> str:
    first = registry.split("/")[0]
    return first if ("." in first or ":" in first or first == "localhost") else "docker.io"


def login(p: Project, host: str) -> None:
    """`docker login` with REGISTRY_USER / REGISTRY_PASSWORD when both are set (password on stdin)."""
    user, password = os.environ.get("REGISTRY_USER"), os.environ.get("REGISTRY_PASSWORD")
    if not (user and password):
        return
    result = run(
        p.c,
        "docker",
        "login",
        host,
        "--username",
        user,
        "--password-stdin",
        in_stream=io.StringIO(password + "\n"),
        hide=True,
        warn=True,
    )
    if not result.ok:
        raise Exit(f"Login to {host} as {user} failed: check REGISTRY_USER and REGISTRY_PASSWORD.")


def require_registry(p: Project) -> str:
    if not p.settings.registry:
        raise Exit(
            "No registry configured: set labdock.registry in invoke.yaml (e.g. ghcr.io/acme), "
            "or run with INVOKE_LABDOCK_REGISTRY=ghcr.io/acme."
        )
    return p.settings.registry


def publish(p: Project, version: str) -> list[str]:
    """Push the image under every tag of `version`; returns the pushed references."""
    registry = require_registry(p)
    tags = image_tags(version)
    # What is published is the singleuser image: the environment with the code and notebooks
    # inside, for user 1000, so a hub (or anyone) runs it without this folder. Built every time:
    # BuildKit's cache makes an unchanged one instant, and a tag always names the code it holds.
    local = image.build_singleuser(p)
    host = registry_host(registry)
    login(p, host)
    pushed = []
    for tag in tags:
        started = time.monotonic()
        remote = f"{registry}/{p.slug}:{tag}"
        run(p.c, "docker", "tag", local, remote, hide=True, warn=True)
        result = run(p.c, "docker", "push", remote, warn=True, hide="stderr")
        if not result.ok:
            error = result.stderr.strip()
            if any(word in error.lower() for word in ("auth", "denied", "credentials", "login")):
                raise Exit(
                    f"{host} refused the push (not logged in or no permission): set "
                    f"REGISTRY_USER and REGISTRY_PASSWORD, or run `docker login {host}`."
                )
            raise Exit(f"Pushing {remote} failed: {error.splitlines()[-1] if error else 'see above'}")
        print(f"Pushed {remote} in {since(started)}.")
        pushed.append(remote)
    return pushed


@task(help={"tag": "Version to push (default: the git tag at HEAD, else the short commit sha)"})
@exclusive
def push(c: Context, tag: str = "") -> None:
    """Push the image to labdock.registry, tagged with its version (and `latest` for releases)."""
    p = Project.load(c)
    require_registry(p)
    engine.require_engine(p)
    publish(p, tag or git_version(p))
