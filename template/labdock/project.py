"""The project a task works on: its folder, what the template rendered into it, its settings, and
who it is on the Docker engine.

Every task starts with `Project.load(c)`: it reads the project's name from pyproject.toml and
checks the settings (settings.py) before anything is written or started.

One engine serves many checkouts (two clones, two users on a GPU server, a laptop and a server
driving the same remote engine). Everything a task makes there (compose project, containers,
images, volumes, network) is named after this checkout, `<slug>-<user>-<hash>` (the hash of
this machine, folder and user), and labelled with its id, folder and user. The name is fixed at
the first run and kept in .labdock/checkout.json, so moving the folder keeps its containers and
volumes; a copy of the folder (with .labdock/) is told apart because the folder it records still
exists and records the same id: the copy gets names of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from invoke import Context, Exit

from . import remote as remote_module
from . import settings as settings_module
from . import transaction
from .commands import output
from .settings import AUTO, Settings

# The project folder: labdock/ sits at its top, beside tasks.py.
ROOT = Path(__file__).resolve().parents[1]

SERVICE = "lab"  # JupyterLab's service in compose.yaml
TENSORBOARD = "tensorboard"  # the optional TensorBoard service in compose.yaml, and its profile
CONTAINER_PORT = 8888  # JupyterLab's port inside the container; the host port is a setting
WORKSPACE = "/workspace"  # where compose.yaml mounts the project

STATE_DIR = ".labdock"  # per-checkout state, git-ignored (guard.py keeps its lock there too)
CHECKOUT_FILE = "checkout.json"
# Labels on everything this checkout makes on the engine.
CHECKOUT_LABEL = "dev.labdock.checkout"  # the checkout's id
FOLDER_LABEL = "dev.labdock.folder"  # its folder when the resource was made
USER_LABEL = "dev.labdock.user"


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


# ----------------------------------------------------------------------------- the checkout


def login_name() -> str:
    """This user's login name: from the account database on POSIX (USER may be inherited from
    whoever started the process), else the environment; `uid1234` without an account."""
    if hasattr(os, "getuid"):
        import pwd

        try:
            return pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            return f"uid{os.getuid()}"
    return os.environ.get("USERNAME") or os.environ.get("USER") or "user"


def name_part(user: str) -> str:
    """A user name as part of a compose project and image name: lowercase letters, digits, '-'."""
    return re.sub(r"[^a-z0-9]+", "-", user.lower()).strip("-")[:16].strip("-") or "user"


def checkout_name(slug: str, user: str, host: str, folder: str) -> str:
    digest = hashlib.sha256(f"{host}\0{folder}\0{user}".encode()).hexdigest()[:8]
    return f"{slug}-{name_part(user)}-{digest}"


@dataclass
class Checkout:
    """Who this checkout is on the engine (see the module's docstring)."""

    name: str  # compose project; images <name>:latest, <name>:builder; volumes <name>_*
    id: str  # made at the first run; the CHECKOUT_LABEL of everything this checkout makes
    user: str
    folder: str  # the folder now
    origin: str  # the folder at the first run: labels that must never change (volumes, network)
    legacy: bool = False  # used by a release that named everything after the slug (see engine.py)
    ports: dict = field(default_factory=dict)  # host ports picked for `port: auto`, by service

    def record(self) -> dict:
        return {
            "name": self.name,
            "id": self.id,
            "user": self.user,
            "folder": self.folder,
            "origin": self.origin,
            "host": socket.gethostname(),
            "legacy": self.legacy,
            "ports": self.ports,
        }


def read_record(path: Path) -> dict | None:
    """A checkout.json's content; None when missing or unreadable (then it is made anew)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    wanted = {"name": str, "id": str, "user": str, "folder": str, "origin": str}
    if not isinstance(record, dict) or not all(isinstance(record.get(k), t) for k, t in wanted.items()):
        return None
    return record


def write_record(root: Path, checkout: Checkout) -> None:
    """Replace .labdock/checkout.json atomically."""
    folder = root / STATE_DIR
    try:
        folder.mkdir(exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".checkout.", suffix=".tmp")
        with os.fdopen(fd, "w") as stream:
            json.dump(checkout.record(), stream, indent=1)
            stream.write("\n")
        os.replace(temporary, folder / CHECKOUT_FILE)
    except OSError as error:
        raise Exit(
            f"Cannot write {folder / CHECKOUT_FILE} ({error.strerror}): labdock needs a writable "
            "project folder."
        ) from None


def note(message: str) -> None:
    print(message, file=sys.stderr)


def load_checkout(root: Path, slug: str, user_setting: str = "") -> Checkout:
    """This checkout's identity: the recorded one, else a new one (recorded). A different user
    working in the same folder gets an identity of their own (not recorded: the file is the
    first user's)."""
    user = user_setting or login_name()
    folder = str(root)
    path = root / STATE_DIR / CHECKOUT_FILE
    record = read_record(path)

    def new(legacy: bool) -> Checkout:
        name = checkout_name(slug, user, socket.gethostname(), folder)
        return Checkout(name, secrets.token_hex(6), user, folder, folder, legacy)

    if record is None:
        # An .env with a token was written by an earlier release, which named the engine's
        # resources after the slug: `up` moves their JupyterLab state over (engine.py).
        env_file = root / ".env"
        legacy = env_file.is_file() and "TOKEN=" in env_file.read_text(errors="replace")
        checkout = new(legacy)
        write_record(root, checkout)
        return checkout
    if record["user"] != user:
        return new(False)
    ports = record.get("ports") if isinstance(record.get("ports"), dict) else {}
    checkout = Checkout(
        record["name"], record["id"], user, folder, record["origin"], record.get("legacy") is True, ports
    )
    if record["folder"] == folder:
        return checkout
    original = read_record(Path(record["folder"]) / STATE_DIR / CHECKOUT_FILE)
    if original is not None and original["id"] == record["id"]:
        checkout = new(False)
        note(
            f"This folder is a copy of {record['folder']}: it gets containers, images and volumes of its "
            f"own ({checkout.name})."
        )
    else:
        checkout = Checkout(checkout.name, checkout.id, user, folder, checkout.origin, checkout.legacy, ports)
        note(f"This checkout moved from {record['folder']}: it keeps its containers, images and volumes.")
    write_record(root, checkout)
    return checkout


def docker_config_context() -> str:
    """The Docker CLI's current context when DOCKER_HOST is not set ('' or 'default': the local socket)."""
    if os.environ.get("DOCKER_CONTEXT"):
        return os.environ["DOCKER_CONTEXT"]
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        return str(json.loads(config.read_text(encoding="utf-8")).get("currentContext") or "")
    except (OSError, ValueError, AttributeError):
        return ""


@dataclass(frozen=True)
class Project:
    c: Context
    root: Path
    slug: str
    settings: Settings

    checkout: Checkout

    @classmethod
    def load(cls, c: Context, root: Path | None = None) -> Project:
        root = root or ROOT
        transaction.settle(root)  # finish a dependency change a killed task left half done
        slug = read_slug(root)
        settings = settings_module.load(c, root)
        return cls(c, root, slug, settings, load_checkout(root, slug, settings.user))

    # --------------------------------------------------------------------- names on the engine
    # The one place that names what this checkout makes on the engine. Registry tags for
    # `invoke push` stay <registry>/<slug>:<version> (release.py): the checkout is local only.

    @property
    def compose_project(self) -> str:
        return self.checkout.name

    def image(self, tag: str = "latest") -> str:
        """The local image (`invoke build` tags it :latest; the builder stage :builder)."""
        return f"{self.checkout.name}:{tag}"

    @property
    def poetry_cache_volume(self) -> str:
        return f"{self.checkout.name}-poetry-cache"

    def labels(self, lasting: bool = False) -> dict[str, str]:
        """The labels of what this checkout makes: its id, folder and user. lasting: for volumes
        and the network, whose labels must never change (Compose would offer to recreate them,
        data lost), the folder of the first run instead of today's."""
        folder = self.checkout.origin if lasting else self.checkout.folder
        return {CHECKOUT_LABEL: self.checkout.id, FOLDER_LABEL: folder, USER_LABEL: self.checkout.user}

    # --------------------------------------------------------------------- the host port

    @property
    def port(self) -> int | None:
        """JupyterLab's host port: the setting, or with `port: auto` the one picked before (None:
        none yet, the engine picks a free one)."""
        if self.settings.port != AUTO:
            return int(self.settings.port)
        remembered = self.checkout.ports.get(SERVICE)
        return remembered if isinstance(remembered, int) else None

    def remember_port(self, port: int | None) -> None:
        """Keep (or, with None, forget) the port `port: auto` picked, for the next `up`."""
        if self.settings.port != AUTO or self.checkout.ports.get(SERVICE) == port:
            return
        if port is None:
            self.checkout.ports.pop(SERVICE, None)
        else:
            self.checkout.ports[SERVICE] = port
        self.save_checkout()

    def port_text(self) -> str:
        return str(self.port) if self.port else "auto"

    def save_checkout(self) -> None:
        """Record a change of the checkout (ports, legacy), unless the record is another user's."""
        recorded = read_record(self.root / STATE_DIR / CHECKOUT_FILE)
        if recorded is not None and recorded["id"] == self.checkout.id:
            write_record(self.root, self.checkout)

    # --------------------------------------------------------------------- the engine

    @cached_property
    def endpoint(self) -> str:
        """The engine's address: DOCKER_HOST, else the current Docker context's ('' : the local default)."""
        if os.environ.get("DOCKER_HOST"):
            return os.environ["DOCKER_HOST"]
        if docker_config_context() in ("", "default"):
            return ""
        try:
            return remote_module.context_endpoint(output(self.c, "docker", "context", "inspect"))
        except ValueError as error:
            raise Exit(str(error)) from None

    @cached_property
    def remote(self) -> bool:
        """Whether the engine runs on another machine (the `remote` setting, else its address):
        then the project lives in a volume there, not in a bind mount of this folder."""
        if self.settings.remote != AUTO:
            return self.settings.remote == "true"
        try:
            return remote_module.is_remote(self.endpoint)
        except ValueError as error:
            raise Exit(str(error)) from None

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
        """The GPU request, written by the tasks from the gpu settings (gpu.py); git-ignored."""
        return self.root / "compose.gpu.yaml"

    @property
    def remote_compose_file(self) -> Path:
        """The remote-engine override (remote.py), written by the tasks; git-ignored."""
        return self.root / "compose.remote.yaml"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def relative_path(self, path: str) -> str:
        """A host path (relative to the current folder) as a POSIX path in the project."""
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            raise Exit(
                f"{path} is outside the project folder {self.root}: the container sees only the project."
            ) from None

    def container_path(self, path: str) -> str:
        """A host path (relative to the current folder) as the container sees it (on a remote
        engine, its copy in the workspace volume: the same path)."""
        return f"{WORKSPACE}/{self.relative_path(path)}"


def host_ids() -> tuple[int, int]:
    """UID and GID for the notebook user: the host user's, so bind-mounted files are theirs."""
    if hasattr(os, "getuid"):
        return os.getuid(), os.getgid()
    return 1000, 1000  # Windows: Docker Desktop maps ownership itself
