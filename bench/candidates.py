"""Which installer fills the image's environment from poetry.lock? The candidates, side by side.

    nox -s candidates                  # or: python bench/candidates.py [--runs 1]

Each candidate is labdock's generated project with only the install step swapped; everything else
(base image, stages, the two layers, lock, package-index settings) stays the same:
  uv      `poetry export` per layer, then `uv pip sync --require-hashes` (what labdock ships)
  pip     the same exports, `pip install --require-hashes --no-compile` (pip cache mount)
  poetry  `poetry sync --only lab`, then `poetry sync`, Poetry's cache mounted; the
          layers are keyed by pyproject.toml + poetry.lock, since Poetry installs from those
Per candidate: cold build (build cache pruned), rebuild after adding tqdm (lock prepared once,
untimed), image size. Writes bench/candidates.md and .json. Prunes the build cache too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from benchmark import INVOKE, REPO, SLUG, add_to_pyproject, sh, timed

UV_LINE = 'with-index.sh uv pip sync --quiet --require-hashes "$1"'
PIP_LINE = 'with-index.sh pip install --quiet --no-compile --require-hashes --no-deps -r "$1"'
UV_CACHE = "--mount=type=cache,target=/root/.cache/uv"


def use_pip(project: Path) -> None:
    script = project / "docker" / "install-env.sh"
    text = script.read_text().replace("python -m venv --without-pip", "python -m venv")
    script.write_text(text.replace(UV_LINE, PIP_LINE))
    dockerfile = project / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace(UV_CACHE, "--mount=type=cache,target=/root/.cache/pip")
    )


def poetry_layer(args: str) -> str:
    return (
        "RUN --mount=type=bind,from=builder,source=/opt/poetry,target=/opt/poetry \\\n"
        "    --mount=type=cache,target=/var/cache/pypoetry \\\n"
        "    --mount=type=secret,id=ca_bundle \\\n"
        "    { [ -x /opt/venv/bin/python ] || python -m venv /opt/venv; } \\\n"
        "    && cd /opt/labdock/project && POETRY_CACHE_DIR=/var/cache/pypoetry \\\n"
        f"    with-index.sh /opt/poetry/bin/poetry sync --no-interaction --no-root {args}\n"
    )


def use_poetry(project: Path) -> None:
    dockerfile = project / "Dockerfile"
    text = dockerfile.read_text()
    start = text.index("COPY --from=requirements /requirements/lab.txt")
    end = text.index("ARG NB_USER")
    layers = (
        "COPY pyproject.toml poetry.lock /opt/labdock/project/\n"
        + poetry_layer("--only lab")
        + poetry_layer("")
        + "RUN echo /workspace/src >\"$(python -c 'import sysconfig; "
        'print(sysconfig.get_path("purelib"))\')/project-src.pth"\n\n'
    )
    dockerfile.write_text(text[:start] + layers + text[end:])


CANDIDATES = {"uv": lambda project: None, "pip": use_pip, "poetry": use_poetry}


def images(project: Path) -> list[str]:
    """A project's local images: named after its checkout (.labdock/checkout.json, made by its
    first task; each copy below is a checkout of its own, with a fresh image)."""
    record = project / ".labdock" / "checkout.json"
    name = json.loads(record.read_text())["name"] if record.exists() else SLUG
    return [f"{name}:latest", f"{name}:builder"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "candidates")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="labdock-candidates-"))
    figures: dict[str, dict[str, list[float]]] = {}

    def record(figure: str, name: str, value: float) -> None:
        figures.setdefault(figure, {}).setdefault(name, []).append(value)

    try:
        source = tmp / "source"
        data = "--data=project_name=Bench"
        sh("copier", "copy", "--trust", "--defaults", "--vcs-ref=HEAD", "--quiet", data, REPO, source)
        sh(*INVOKE, "lock", cwd=source)
        locked = {name: (source / name).read_text() for name in ("pyproject.toml", "poetry.lock")}
        add_to_pyproject(source / "pyproject.toml", "tqdm (>=4.66)")
        sh(*INVOKE, "lock", cwd=source)
        with_tqdm = {name: (source / name).read_text() for name in ("pyproject.toml", "poetry.lock")}
        for run in range(args.runs):
            for name, patch in CANDIDATES.items():
                print(f"run {run + 1}: {name}", flush=True)
                project = tmp / f"{name}-{run}"
                shutil.copytree(source, project, symlinks=True, ignore=shutil.ignore_patterns(".labdock"))
                for file, text in locked.items():
                    (project / file).write_text(text)
                patch(project)
                sh("docker", "builder", "prune", "-af")
                build = lambda p=project: sh(*INVOKE, "build", cwd=p)  # noqa: E731
                record("cold build (s)", name, timed(f"{name} cold", build))
                inspected = sh("docker", "image", "inspect", "-f", "{{.Size}}", images(project)[0])
                size = int(inspected.stdout) / 1e6
                record("image size (MB)", name, size)
                for file, text in with_tqdm.items():
                    (project / file).write_text(text)
                rebuild = timed(f"{name} rebuild, tqdm added", build)
                record("rebuild after adding a dependency (s)", name, rebuild)
                sh("docker", "image", "rm", *images(project), check=False)
        rows = [
            {"figure": figure, **{name: round(statistics.median(values), 2) for name, values in by.items()}}
            for figure, by in figures.items()
        ]
        result = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "runs": args.runs,
                  "figures": rows, "raw": figures}  # fmt: skip
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        lines = [
            "# Installing poetry.lock into the image: the candidates (stack scipy)",
            "",
            f"{result['date']}; median of {args.runs} run(s). Command: `python bench/candidates.py`. "
            "Only the install step differs (see the script's docstring).",
            "",
            "| figure | " + " | ".join(CANDIDATES) + " |",
            "|---" * (len(CANDIDATES) + 1) + "|",
        ]
        for row in rows:
            lines.append(
                f"| {row['figure']} | " + " | ".join(f"{row[name]:.1f}" for name in CANDIDATES) + " |"
            )
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        sh("docker", "image", "rm", *images(tmp / "source"), check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
