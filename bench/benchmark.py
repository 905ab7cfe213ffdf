"""Benchmark labdock's image build against a naive single-stage Dockerfile, in the same run.

    python3 bench/benchmark.py [--stack minimal] [--python 3.11] [--out bench/results.md] [--no-prune]

Renders a project into a temporary folder, then times three builds per variant (first/cold build,
rebuild after a src/ edit, rebuild after a new dependency), and reports sizes, ratios, whether
Poetry is left in the image and which user the runtime runs as. Package-index settings come from
the environment (INVOKE_LABDOCK_PYPI_MIRROR, INVOKE_LABDOCK_CA_BUNDLE), for both variants alike.
Without --no-prune it runs `docker builder prune -af` before each variant's first build: only on
an engine that nothing else uses.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import copier

REPO = Path(__file__).resolve().parents[1]
LABDOCK, BUILDER, NAIVE = "bench:latest", "bench:builder", "bench-naive"  # slug "bench" from "Bench"
CACHE_VOLUME = "bench-poetry-cache"  # created by `invoke lock`
NEW_DEPENDENCY = '    "six (>=1.16)",\n'
MODULE = "src/bench/__init__.py"  # package "bench"
INVOKE = [sys.executable, "-m", "invoke"]
# Official python:X-slim images have pip: this does nothing there. Debian-built stand-ins for them
# (as on labdock's CI machine) have only pip's wheel, which can run and install itself.
PIP_GUARD = (
    "RUN command -v pip || { whl=$(ls /usr/share/python-wheels/pip-*.whl) "
    '&& python "$whl/pip" install --no-index "$whl"; }\n'
)
created: set[str] = set()  # ids of the images this run built: removed at the end if left untagged


def sh(*args: object, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with this environment plus BuildKit; on failure show its output and stop."""
    argv = [str(arg) for arg in args]
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and result.returncode:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"Failed (exit {result.returncode}): {' '.join(argv)}")
    return result


def timed(*args: object, cwd: Path) -> float:
    start = time.monotonic()
    sh(*args, cwd=cwd)
    seconds = time.monotonic() - start
    for ref in (LABDOCK, BUILDER, NAIVE):
        found = sh("docker", "image", "inspect", "-f", "{{.Id}}", ref, check=False)
        created.update([found.stdout.strip()] if found.returncode == 0 else [])
    print(f"  {seconds:7.1f}s  {' '.join(str(arg) for arg in args)}", flush=True)
    return seconds


def naive_files(py: str) -> tuple[str, list[str]]:
    """The "seed article" Dockerfile, with this network's package-index settings if any."""
    mirror, bundle = os.environ.get("INVOKE_LABDOCK_PYPI_MIRROR"), os.environ.get("INVOKE_LABDOCK_CA_BUNDLE")
    arg, mount, exports, flags = "", "", [], []
    if mirror:
        arg = "ARG PYPI_MIRROR_URL\n"
        exports += ["POETRY_PYPI_MIRROR_URL=$PYPI_MIRROR_URL", "PIP_INDEX_URL=$PYPI_MIRROR_URL"]
        flags += ["--build-arg", f"PYPI_MIRROR_URL={mirror}"]
    if bundle:
        mount = "--mount=type=secret,id=ca_bundle "
        exports += ["PIP_CERT=/run/secrets/ca_bundle", "REQUESTS_CA_BUNDLE=/run/secrets/ca_bundle"]
        flags += ["--secret", f"id=ca_bundle,src={Path(bundle).expanduser().resolve()}"]
    export = f"export {' '.join(exports)} && " if exports else ""
    dockerfile = (
        f"FROM python:{py}-slim\n{PIP_GUARD}WORKDIR /app\nCOPY . .\n{arg}"
        f"RUN {mount}{export}pip install poetry==2.5.1 poetry-plugin-pypi-mirror==0.6.5 \\\n"
        "    && poetry config virtualenvs.create false && poetry install --no-root --with dev\n"
        "CMD jupyter lab --ip=0.0.0.0 --allow-root --no-browser\n"
    )
    return dockerfile, flags


def go_cold(prune: bool) -> None:
    sh("docker", "image", "rm", LABDOCK, BUILDER, NAIVE, check=False)  # by tag: never another's image
    if prune:
        sh("docker", "builder", "prune", "-af")


def scenarios(build, ref: str, module: Path, change_dependencies) -> tuple[list[float], dict]:
    """First build, facts about that image, rebuild after a src/ edit, after a dependency change."""
    times = [build()]
    facts = image_facts(ref)
    module.write_text(module.read_text() + "\n# edited by the benchmark\n")
    times.append(build())
    change_dependencies()
    times.append(build())
    return times, facts


def image_facts(ref: str) -> dict:
    size = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", ref).stdout)
    poetry = sh("docker", "run", "--rm", "--entrypoint", "sh", ref, "-c", "command -v poetry || echo absent")
    uid = sh("docker", "run", "--rm", "--entrypoint", "id", ref, "-u").stdout.strip()
    user = f"{uid} ({'root' if uid == '0' else 'not root'})"
    return {"size": size, "poetry": poetry.stdout.strip(), "user": user}


def report(args: argparse.Namespace, lab: tuple, naive: tuple) -> str:
    first = "cold build (builder cache pruned)" if args.prune else "first build (shared cache)"
    rows = [first, f"rebuild after editing {MODULE}", "rebuild after adding a dependency (six)"]
    engine = sh("docker", "version", "--format", "{{.Server.Version}}").stdout.strip()
    commit = sh("git", "-C", REPO, "rev-parse", "--short", "HEAD").stdout.strip()
    lines = [
        f"# labdock vs a naive Dockerfile: stack {args.stack}, Python {args.python}",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, labdock {commit} (working tree), Docker {engine}. "
        f"Command: `python3 bench/benchmark.py --stack {args.stack} --python {args.python}"
        f"{'' if args.prune else ' --no-prune'}`",
        "",
        "| scenario | labdock | naive | ratio (naive/labdock) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {row} | {a:.1f}s | {b:.1f}s | {b / a:.1f}x |"
        for row, a, b in zip(rows, lab[0], naive[0], strict=True)
    ]
    a, b = lab[1]["size"], naive[1]["size"]
    lines.append(f"| image size (first build) | {a / 1e6:.0f} MB | {b / 1e6:.0f} MB | {b / a:.1f}x |")
    lines.append(f"| Poetry in the final image | {lab[1]['poetry']} | {naive[1]['poetry']} | |")
    lines.append(f"| runtime user id (`id -u`) | {lab[1]['user']} | {naive[1]['user']} | |")
    lines += [
        "",
        "- labdock: `invoke build` (includes its `poetry check --lock` in the builder stage); multi-stage, "
        "allowlisted context (pyproject.toml, poetry.lock, src/, docker/), Poetry in the builder only, "
        "dependencies installed from the lock with a Poetry cache mount, venv copied into a slim runtime "
        "running as the host user's UID. The dependency change is relocked with `invoke lock` (not timed).",
        "- naive: one stage, `COPY . .` of the whole project before installing (only .git ignored), "
        "Poetry installed with pip into the system Python and left there, `poetry install` into it, "
        "no cache mounts, runs as root. Same base image, lock file and package-index settings. Its first "
        "line installs pip when the base image lacks it (not on official images; a cached layer after "
        "the first build).",
        "- Times are wall-clock seconds of one run each; every scenario starts from the previous one.",
    ]
    if not args.prune:
        lines.append(
            "- First builds ran on a shared engine without pruning: build cache and cache mounts left by "
            "other builds may have helped either variant (mostly labdock: its builder stage is shared "
            "with other labdock projects, and its Poetry cache mount keeps their downloads). The "
            "project's pyproject.toml is unique to the run, so its dependency layers are built anew."
        )
    if os.getuid() == 0:
        lines.append(
            "- This run was as root, so `invoke build` gave the runtime UID 0 (it warns about it); "
            "run as a regular user, labdock's runtime runs as that user's UID."
        )
    return "\n".join(lines) + "\n"


def render(args: argparse.Namespace, project: Path) -> None:
    """Render the project from this checkout, commit it (`invoke build` labels the commit), lock it."""
    answers = {"project_name": "Bench", "stack": args.stack, "python_version": args.python}
    # A pyproject.toml unique to this run: no layer from its COPY on can come from an earlier run.
    answers["description"] = f"labdock benchmark {uuid.uuid4().hex}"
    copier.run_copy(
        src_path=str(REPO),
        dst_path=str(project),
        data=answers,
        defaults=True,
        unsafe=True,
        vcs_ref="HEAD",
        quiet=True,
    )
    sh("git", "init", "-q", cwd=project)
    sh("git", "add", "-A", cwd=project)
    sh("git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "x", cwd=project)
    sh(*INVOKE, "lock", cwd=project)


def clean_up(tmp: Path) -> None:
    sh("docker", "image", "rm", LABDOCK, BUILDER, NAIVE, check=False)
    for image in created:  # earlier builds' images, untagged since; an id still tagged is someone else's
        tags = sh("docker", "image", "inspect", "-f", "{{len .RepoTags}}", image, check=False).stdout
        if tags.strip() == "0":
            sh("docker", "image", "rm", image, check=False)
    sh("docker", "volume", "rm", "-f", CACHE_VOLUME, check=False)
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="minimal", choices=["minimal", "scipy", "pytorch"])
    parser.add_argument("--python", default="3.11")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.md")
    parser.add_argument("--no-prune", dest="prune", action="store_false", help="keep the builder cache")
    args = parser.parse_args()
    for ref in (LABDOCK, BUILDER, NAIVE):
        if sh("docker", "image", "inspect", ref, check=False).returncode == 0:
            raise SystemExit(f"{ref} already exists: remove it first (this script removes what it builds).")
    tmp = Path(tempfile.mkdtemp(prefix="labdock-bench-"))
    project = tmp / "bench"
    pyproject, lockfile, module = (project / name for name in ("pyproject.toml", "poetry.lock", MODULE))
    try:
        render(args, project)
        originals = {path: path.read_text() for path in (pyproject, lockfile, module)}

        def add_dependency() -> None:
            head = "dependencies = [\n"
            pyproject.write_text(pyproject.read_text().replace(head, head + NEW_DEPENDENCY, 1))
            sh(*INVOKE, "lock", cwd=project)

        print("labdock:", flush=True)
        go_cold(args.prune)
        lab = scenarios(lambda: timed(*INVOKE, "build", cwd=project), LABDOCK, module, add_dependency)
        relocked = {path: path.read_text() for path in (pyproject, lockfile)}
        for path, text in originals.items():
            path.write_text(text)
        dockerfile, flags = naive_files(args.python)
        (project / "Dockerfile.naive").write_text(dockerfile)
        (project / "Dockerfile.naive.dockerignore").write_text(".git\n")  # instead of the allowlist

        def naive_build() -> float:
            return timed("docker", "build", "-f", "Dockerfile.naive", "-t", NAIVE, *flags, ".", cwd=project)

        print("naive:", flush=True)
        go_cold(args.prune)
        naive = scenarios(naive_build, NAIVE, module, lambda: [p.write_text(t) for p, t in relocked.items()])
        text = report(args, lab, naive)
        print("\n" + text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    finally:
        clean_up(tmp)


if __name__ == "__main__":
    main()
