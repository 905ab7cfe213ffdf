"""Building the Dockerfile's stages with the project's package-index settings (a PyPI mirror, a
CA bundle, an apt proxy): the image (image.py) and the builder stage Poetry runs in (locking.py)."""

from __future__ import annotations

from pathlib import Path

from invoke import Exit

from .commands import label_flags, run
from .project import Project


def index_args(p: Project) -> tuple[list[str], list[str]]:
    """Package-index settings as build flags, and as docker-run flags for Poetry's containers.

    All are secrets or mounts, never build arguments (those are recorded in the image), and the
    mirror URL (which may hold credentials) never appears on a command line: it travels in the
    environment (index_env).
    """
    s = p.settings
    build, run_flags = [], []
    if s.pypi_mirror:
        build += ["--secret", "id=pypi_mirror,env=LABDOCK_PYPI_MIRROR"]
        run_flags += ["-e", "PYPI_MIRROR_URL"]
    if s.ca_bundle:
        build += ["--secret", f"id=ca_bundle,src={s.ca_bundle}"]
        run_flags += ["-v", f"{s.ca_bundle}:/run/secrets/ca_bundle:ro"]
    return build, run_flags


def index_env(p: Project) -> dict[str, str]:
    """The environment the flags of index_args read their values from."""
    s = p.settings
    env = {"LABDOCK_APT_PROXY": s.apt_proxy} if s.apt_proxy else {}
    if s.pypi_mirror:
        env |= {"LABDOCK_PYPI_MIRROR": s.pypi_mirror, "PYPI_MIRROR_URL": s.pypi_mirror}
    return env


def failure_hint(what: str) -> str:
    return (
        f"{what} (output above). Behind a company proxy or mirror, set "
        "INVOKE_LABDOCK_PYPI_MIRROR and/or INVOKE_LABDOCK_CA_BUNDLE and retry."
    )


def docker_build(
    p: Project,
    target: str,
    ref: str,
    *flags: str,
    failure: str,
    quiet: bool = False,
    context: Path | None = None,
) -> None:
    """Build one stage of the project's Dockerfile (or the Dockerfile in `context`, e.g. hub/)
    with the project's package-index settings."""
    index_flags, _ = index_args(p)
    apt_proxy = p.settings.apt_proxy
    # A secret, not a build arg: build args are recorded in the image's history.
    apt_flags = ["--secret", "id=apt_proxy,env=LABDOCK_APT_PROXY"] if apt_proxy else []
    # A cache backend needs a buildx builder of its own (docker-container), which keeps the image
    # unless told to load it into the engine.
    load = ["--load"] if p.settings.build_cache else []
    # Whose image it is (project.py): another checkout's is never reused (engine.claim).
    owner = label_flags(p.labels())
    result = run(
        p.c,
        "docker",
        "build",
        *(["--target", target] if target else []),
        "-t",
        ref,
        *index_flags,
        *apt_flags,
        *load,
        *owner,
        *flags,
        context or p.root,
        env={"DOCKER_BUILDKIT": "1", **index_env(p)},
        warn=True,
        hide=quiet,
    )
    if not result.ok:
        raise Exit(failure_hint(failure))
