"""The run-time settings (invoke.yaml's `labdock:` section), loaded and checked in one place.

Only what a user may change without re-rendering the project lives here: ports, bind address,
GPUs, limits, registry, package-index settings. Names the template rendered (the project's slug,
the Python version) are read from the rendered files (see project.py), never repeated here.

Each setting can be overridden for one shell with INVOKE_LABDOCK_<NAME>. labdock reads those
variables itself: Invoke would cast them to the type of the value in invoke.yaml before any task
runs, so `INVOKE_LABDOCK_PORT=abc` would end in a traceback and `...TENSORBOARD=false` read as true.
Every value is checked before a task writes or starts anything; a bad one ends the task with one
line naming where it came from, the value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from invoke import Context, Exit

try:
    import yaml
except ImportError:  # Invoke ships its own copy
    from invoke.vendor import yaml

PREFIX = "INVOKE_LABDOCK_"
PROJECT_FILE = "invoke.yaml"

# Taken out of the environment when tasks.py loads the tasks (namespace()), before Invoke reads it.
ENVIRONMENT: dict[str, str] = {}


def take_environment(environ: os._Environ | dict = os.environ) -> dict[str, str]:
    """Move the INVOKE_LABDOCK_* variables out of `environ` into ENVIRONMENT (see the docstring)."""
    for name in [name for name in environ if name.startswith(PREFIX)]:
        ENVIRONMENT[name] = environ.pop(name)
    return ENVIRONMENT


# Settings that earlier versions of the template had, and where their value comes from now.
RETIRED = {
    "project": "the compose project is named after pyproject.toml's [project] name",
    "image": "the image is named after pyproject.toml's [project] name",
    "service": "the JupyterLab service is compose.yaml's `lab`",
    "python_version": "the Python version is the Dockerfile's PYTHON_VERSION",
}


@dataclass(frozen=True)
class Settings:
    port: int | str = 8888  # host port of JupyterLab, or "auto": a free one, remembered per checkout
    bind: str = "127.0.0.1"  # host address the ports are published on
    gpu: str = "none"  # none | nvidia: whether `up` and `run-notebook` add compose.gpu.yaml
    gpus: str = "all"  # which GPUs: all, or indexes/UUIDs such as 0,1
    cpus: str = ""  # CPU limit, e.g. 4 or 1.5; empty: none
    memory: str = ""  # memory limit, e.g. 12g; empty: none
    tensorboard: bool = False  # `up` also starts TensorBoard
    tensorboard_port: int = 6006
    tensorboard_bind: str = "127.0.0.1"  # TensorBoard has no login: loopback unless you say so
    registry: str = ""  # e.g. ghcr.io/acme, for `invoke push`
    healthy_timeout: float = 180  # seconds `up` waits for a healthy server
    pypi_mirror: str = ""  # a PyPI simple index (mirror or proxy) for builds and locks
    ca_bundle: str = ""  # a CA bundle (PEM) for networks that intercept TLS
    apt_proxy: str = ""  # an HTTP proxy for apt, e.g. http://apt-cache.example.com:3142
    build_cache: str = ""  # a BuildKit cache backend for the image's layers, e.g. type=gha in CI
    hub_port: int = 8000  # the team hub (`invoke hub`)
    hub_bind: str = "127.0.0.1"
    hub_auth: str = "native"  # NativeAuthenticator; shared-password: tests on this machine only
    hub_admins: str = ""  # user names, comma-separated: they approve sign-ups
    hub_cull_timeout: float = 3600  # seconds before an idle user server is stopped
    hub_storage: str = "10Gi"  # each user's volume on Kubernetes (`invoke helm`)
    user: str = ""  # who this checkout's engine resources are named after; empty: your login name
    remote: str = "auto"  # auto (from the engine's address), true or false: the engine is on another machine


NAMES = tuple(field.name for field in fields(Settings))
DEFAULTS = {field.name: field.default for field in fields(Settings)}


# ----------------------------------------------------------------------------- parsers
# Each takes the raw value (a string, or what YAML made of it) and returns the parsed value, or
# raises ValueError with what is allowed.


def as_text(value: object) -> str:
    if value is None:
        return ""
    if type(value) not in (str, int, float):  # YAML made a list, a mapping, a date...
        raise ValueError("a single value (text or a number)")
    text = str(value)
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError("a single line without control characters")
    return text.strip()


def as_port(value: object) -> int:
    text = as_text(value)
    if not re.fullmatch(r"[1-9][0-9]{0,4}", text) or not 1024 <= int(text) <= 65535:
        raise ValueError("a port number from 1024 to 65535, in decimal without leading zeros")
    return int(text)


AUTO = "auto"


def as_port_or_auto(value: object) -> int | str:
    """A port, or "auto": a free loopback port picked on the first `up` and kept while it stays free."""
    if as_text(value).lower() == AUTO:
        return AUTO
    try:
        return as_port(value)
    except ValueError:
        raise ValueError(
            "auto, or a port number from 1024 to 65535, in decimal without leading zeros"
        ) from None


def as_bind(value: object) -> str:
    text = as_text(value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(
            "an IP address: 127.0.0.1 or ::1 (this machine only), 0.0.0.0 or :: (every network)"
        ) from None


def as_choice(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = as_text(value)
        if text not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return text

    return parse


def as_gpus(value: object) -> str:
    text = as_text(value).replace(" ", "")
    device = r"([0-9]+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-zA-Z/-]+)"
    if text not in ("all", "none") and not re.fullmatch(rf"{device}(,{device})*", text):
        raise ValueError("all, none, or GPU indexes or UUIDs separated by commas, such as 0,1")
    return text


def as_cpus(value: object) -> str:
    text = as_text(value)
    if text and not (re.fullmatch(r"[0-9]+(\.[0-9]+)?", text) and float(text) > 0):
        raise ValueError("empty (no limit) or a positive number of CPUs, such as 4 or 1.5")
    return text


def as_memory(value: object) -> str:
    text = as_text(value).lower()
    if text and not (re.fullmatch(r"[0-9]+(\.[0-9]+)?[kmg]", text) and float(text[:-1]) > 0):
        raise ValueError("empty (no limit) or a positive size with a unit k, m or g, such as 512m or 12g")
    return text


def as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = as_text(value).lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise ValueError("true or false")


def as_registry(value: object) -> str:
    text = as_text(value)
    component = r"[a-z0-9]+([._-][a-z0-9]+)*"
    if text and not re.fullmatch(rf"{component}(:[0-9]+)?(/{component})*", text):
        raise ValueError("empty, or a lowercase registry prefix such as ghcr.io/acme or 127.0.0.1:5000/team")
    return text


def as_user(value: object) -> str:
    text = as_text(value)
    if text and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", text):
        raise ValueError(
            "empty (your login name), or a name of at most 32 letters, digits, '.', '_' or '-', such as alice"
        )
    return text


def as_remote(value: object) -> str:
    """auto, true or false (YAML may have made a boolean of the last two)."""
    if as_text(value).lower() in (AUTO, ""):
        return AUTO
    try:
        return "true" if as_bool(value) else "false"
    except ValueError:
        raise ValueError("auto (from the engine's address), true or false") from None


def as_seconds(value: object) -> float:
    text = as_text(value)
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text) or float(text) <= 0:
        raise ValueError("a positive number of seconds, such as 180")
    return float(text)


def as_url(value: object) -> str:
    text = as_text(value)
    if text and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
        raise ValueError("empty, or a URL such as https://pypi.example.com/simple/")
    return text


def as_apt_proxy(value: object) -> str:
    text = as_text(value)
    # apt ignores a proxy it cannot parse and goes direct: on a closed network, a mysterious hang.
    if text and not re.fullmatch(r"https?://[^/:\s]+(:[0-9]+)?/?", text):
        raise ValueError("empty, or a URL such as http://apt-cache.example.com:3142")
    return text


def as_file(value: object) -> str:
    text = as_text(value)
    if text and not Path(text).expanduser().is_file():
        raise ValueError("empty, or the path of a file (a CA bundle in PEM format)")
    return str(Path(text).expanduser().resolve()) if text else ""


def as_cache(value: object) -> str:
    text = as_text(value)
    if text and not re.fullmatch(r"type=[a-z]+(,[a-z_-]+=[^,\s]+)*", text):
        raise ValueError("empty, or a BuildKit cache backend such as type=gha or type=registry,ref=REF")
    return text


def as_names(value: object) -> str:
    names = [name.strip() for name in as_text(value).split(",") if name.strip()]
    if any(not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]*", name) for name in names):
        raise ValueError("user names separated by commas (letters, digits, . _ @ -), e.g. ada,grace")
    return ",".join(names)


def as_k8s_size(value: object) -> str:
    text = as_text(value)
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?([KMGTPE]i?)?", text):
        raise ValueError("a Kubernetes size such as 10Gi or 500Mi")
    return text


PARSERS: dict[str, Callable[[object], object]] = {
    "port": as_port_or_auto,
    "bind": as_bind,
    "gpu": as_choice("none", "nvidia"),
    "gpus": as_gpus,
    "cpus": as_cpus,
    "memory": as_memory,
    "tensorboard": as_bool,
    "tensorboard_port": as_port,
    "tensorboard_bind": as_bind,
    "registry": as_registry,
    "healthy_timeout": as_seconds,
    "pypi_mirror": as_url,
    "ca_bundle": as_file,
    "apt_proxy": as_apt_proxy,
    "build_cache": as_cache,
    "hub_port": as_port,
    "hub_bind": as_bind,
    "hub_auth": as_choice("native", "shared-password"),
    "hub_admins": as_names,
    "hub_cull_timeout": as_seconds,
    "hub_storage": as_k8s_size,
    "user": as_user,
    "remote": as_remote,
}


# ----------------------------------------------------------------------------- loading


def project_file(root: Path) -> dict[str, tuple[str, str]]:
    """The project's invoke.yaml `labdock:` settings as written: name -> (text, YAML tag). The text
    matters for numbers: YAML reads `01234` as the octal 668, labdock refuses it."""
    path = root / PROJECT_FILE
    try:
        node = yaml.compose(path.read_text(encoding="utf-8")) if path.is_file() else None
    except UnicodeDecodeError:
        raise Exit(f"{PROJECT_FILE} is not UTF-8 text: save it as UTF-8.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "not YAML"
        raise Exit(
            f"{PROJECT_FILE} does not parse ({problem}{where}): fix it; quote values with "
            "special characters, e.g. bind: '::1'."
        ) from None
    written: dict[str, tuple[str, str]] = {}
    for key, value in node.value if isinstance(node, yaml.MappingNode) else []:
        if key.value == "labdock" and isinstance(value, yaml.MappingNode):
            for name, item in value.value:
                if isinstance(item, yaml.ScalarNode):
                    written[name.value] = (item.value, item.tag)
    return written


def load(c: Context, root: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings: invoke.yaml (and Invoke's other config files), then INVOKE_LABDOCK_* on top."""
    environ = take_environment() if environ is None else environ
    configured = dict(c.config.get("labdock", {}) or {})
    written = project_file(root)
    for name in configured:
        if name in RETIRED:
            raise Exit(
                f"labdock.{name} in {PROJECT_FILE} is no longer a setting ({RETIRED[name]}): delete the line."
            )
        if name not in PARSERS:
            raise Exit(f"labdock.{name} in {PROJECT_FILE} is not a setting: use one of {', '.join(NAMES)}.")
    for variable in environ:
        name = variable.removeprefix(PREFIX).lower()
        if name not in PARSERS:
            raise Exit(f"{variable} is not a labdock setting: use one of {', '.join(NAMES)} (unset it).")
    values = {}
    for name, parse in PARSERS.items():
        variable = PREFIX + name.upper()
        if variable in environ:
            raw, where = environ[variable], f"{variable}={environ[variable]!r}"
            fix = f"set {variable} to"
        else:
            raw = configured.get(name, DEFAULTS[name])
            text, tag = written.get(name, ("", ""))
            if tag.endswith((":int", ":float")) and raw == yaml.safe_load(text):
                raw = text  # the number as invoke.yaml writes it, not as YAML typed it
            source = PROJECT_FILE if name in written else "your Invoke configuration"
            where, fix = f"labdock.{name}: {raw!r} in {source}", "use"
        try:
            values[name] = parse(raw)
        except ValueError as allowed:
            raise Exit(f"{where} is not valid: {fix} {allowed}.") from None
    settings = Settings(**values)
    if settings.tensorboard_port == settings.port:  # never equal with port: auto
        raise Exit(
            f"labdock.tensorboard_port and labdock.port are both {settings.port}: give TensorBoard "
            "another port."
        )
    return settings
