"""The project a task works on: its folder, what the template rendered into it, its settings.

Every task starts with `Project.load(c)`: it reads the project's name from pyproject.toml and
checks the settings (settings.py) before anything is written or started.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from invoke import Context, Exit

from . import settings as settings_module
from . import transaction
from .commands import output
from .settings import Settings

# The project folder: labdock/ sits at its top, beside tasks.py.
ROOT = Path(__file__).resolve().parents[1]

SERVICE = "lab"  # JupyterLab's service in compose.yaml
TENSORBOARD = "tensorboard"  # the optional TensorBoard service in compose.yaml, and its profile
CONTAINER_PORT = 8888  # JupyterLab's port inside the container; the host port is a setting
WORKSPACE = "/workspace"  # where compose.yaml mounts the project


def read_slug(root: Path) -> str:
    """The project's short name: pyproject.toml's [project] name (rendered from project_slug)."""
    path = root / "pyproject.toml"
    try:
        name = tomllib.loads(path.read_text(encoding="utf-8"))["project"]["name"]
    except FileNotFoundError:
        raise Exit(f"No pyproject.toml in {root}: run invoke inside a labdock project.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        if conflict := transaction.conflict_problem(root):
            raise Exit(conflict) from None
        raise Exit(f"pyproject.toml does not parse ({error}): fix it, then retry.") from None
    except (KeyError, TypeError):
        raise Exit("pyproject.toml has no [project] name: restore it (it names the image).") from None
    return str(name)


@dataclass(frozen=True)
class Project:
    c: Context
    root: Path
    slug: str
    settings: Settings

    @classmethod
    def load(cls, c: Context, root: Path | None = None) -> Project:
        root = root or ROOT
        transaction.settle(root)  # finish a dependency change a killed task left half done
        return cls(c, root, read_slug(root), settings_module.load(c, root))

    # --------------------------------------------------------------------- names on the engine

    @property
    def compose_project(self) -> str:
        return self.slug

    def image(self, tag: str = "latest") -> str:
        """The local image (`invoke build` tags it :latest)."""
        return f"{self.slug}:{tag}"

    @property
    def poetry_cache_volume(self) -> str:
        return f"{self.slug}-poetry-cache"

    def git(self, *args: str) -> str:
        """What a git command in the project printed ('' when it failed, e.g. no repository)."""
        return output(self.c, "git", "-C", self.root, *args)

    # --------------------------------------------------------------------- files

    @property
    def env_file(self) -> Path:
        return self.root / ".env"

    @property
    def lock_file(self) -> Path:
        return self.root / "poetry.lock"

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"

    @property
    def compose_file(self) -> Path:
        return self.root / "compose.yaml"

    @property
    def gpu_compose_file(self) -> Path:
        return self.root / "compose.gpu.yaml"

    def container_path(self, path: str) -> str:
        """A host path (relative to the current folder) as the container sees it."""
        absolute = Path(path).resolve()
        try:
            relative = absolute.relative_to(self.root)
        except ValueError:
            raise Exit(
                f"{path} is outside the project folder {self.root}: the container sees only the project."
            ) from None
        return f"{WORKSPACE}/{relative.as_posix()}"


def host_ids() -> tuple[int, int]:
    """UID and GID for the notebook user: the host user's, so bind-mounted files are theirs."""
    if hasattr(os, "getuid"):
        return os.getuid(), os.getgid()
    return 1000, 1000  # Windows: Docker Desktop maps ownership itself
