"""pip in this lab: `pip install NAME` adds NAME to the project, the way `invoke add NAME` does.

The environment (/opt/venv) is the image's, installed from poetry.lock and owned by root: a plain
pip could not write it, and what it installed would be gone after the next build. So this pip
asks labdock's helper on the host (started by `invoke up`) to lock the package with Poetry,
install it into this running server (kernels keep their state and can import it at once) and
record it in pyproject.toml and poetry.lock. `pip uninstall` removes likewise. `pip list`,
`pip freeze` and `pip show` answer from the environment. Standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from importlib import metadata
from pathlib import Path

WORKSPACE = Path(os.environ.get("LABDOCK_WORKSPACE", "/workspace"))
PIP = WORKSPACE / ".labdock" / "pip"
ACK_SECONDS = 5  # the helper takes a request within a poll (0.1 s) when it runs
QUIET = {"-q", "--quiet", "-y", "--yes", "--no-cache-dir", "--disable-pip-version-check", "--no-input"}
UPGRADE = {"-U", "--upgrade"}


def fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


def host_command(verb: str, packages: list[str]) -> str:
    return " && ".join(f"invoke {verb} {package}" for package in packages) or f"invoke {verb} NAME"


def read_agent() -> dict:
    try:
        return json.loads((PIP / "agent.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def ask_helper(verb: str, packages: list[str]) -> int:
    """Leave the request for the helper, then print its output as it comes; its exit code."""
    serving = str(read_agent().get("container", ""))
    if not serving.startswith(socket.gethostname()):
        return fail(
            "labdock's helper is not running for this server, so pip cannot install here: run "
            f"`{host_command(verb, packages)}` on the host (no restart needed), or `invoke up` to start "
            "the helper."
        )
    request_id = uuid.uuid4().hex
    request = PIP / "requests" / f"{request_id}.json"
    pending = request.with_name(f".{request_id}.tmp")
    pending.write_text(json.dumps({"id": request_id, "verb": verb, "packages": packages}), encoding="utf-8")
    os.replace(pending, request)
    deadline = time.monotonic() + ACK_SECONDS
    while request.exists():
        if time.monotonic() > deadline:
            try:
                request.unlink()  # not taken: withdraw it (the helper takes it by renaming)
            except FileNotFoundError:
                break  # taken just now
            return fail(
                "labdock's helper did not answer (is `invoke up` still running the server?): run "
                f"`{host_command(verb, packages)}` on the host, or `invoke up` to restart the helper."
            )
        time.sleep(0.05)
    log, done = PIP / f"{request_id}.log", PIP / f"{request_id}.done"
    shown = 0
    while True:
        finished = done.exists()
        if log.exists():
            text = log.read_text(encoding="utf-8", errors="replace")
            print(text[shown:], end="", flush=True)
            shown = len(text)
        if finished:
            break
        time.sleep(0.1)
    code = json.loads(done.read_text(encoding="utf-8")).get("code", 1)
    for path in (log, done):
        path.unlink(missing_ok=True)
    return int(code)


def split(args: list[str], allowed: set[str]) -> tuple[list[str], set[str], list[str]]:
    """(packages, options, refused) of an install or uninstall command line."""
    packages, options, refused = [], set(), []
    for arg in args:
        if arg.startswith("-"):
            (options.add(arg) if arg in allowed else refused.append(arg))
        elif "/" in arg or "\\" in arg or arg.startswith(".") or "://" in arg:
            refused.append(arg)
        else:
            packages.append(arg)
    return packages, options, refused


def install(args: list[str]) -> int:
    packages, options, refused = split(args, QUIET | UPGRADE)
    if refused:
        return fail(
            f"pip in this lab records packages in poetry.lock and takes names only (`pip install rich` or "
            f"'rich>=13'), not {' '.join(refused)}: for that, edit pyproject.toml on the host and run "
            "`invoke lock`."
        )
    if not packages:
        return fail("Name a package: pip install NAME")
    if options & UPGRADE:  # Poetry's way to say "the newest version"
        packages = [
            f"{name}@latest" if name.replace("-", "").replace("_", "").replace(".", "").isalnum() else name
            for name in packages
        ]
    return ask_helper("add", packages)


def uninstall(args: list[str]) -> int:
    packages, _, refused = split(args, QUIET)
    if refused or not packages:
        return fail("pip in this lab uninstalls packages by name: pip uninstall NAME")
    return ask_helper("remove", packages)


def installed() -> list[metadata.Distribution]:
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in found:
            found[name.lower()] = dist
    return sorted(found.values(), key=lambda dist: dist.metadata["Name"].lower())


def show(names: list[str]) -> int:
    for index, name in enumerate(names):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return fail(f"WARNING: Package(s) not found: {name}")
        if index:
            print("---")
        requires = sorted(
            {req.split(";")[0].split("[")[0].split(" ")[0].strip("<>=!~") for req in dist.requires or []}
        )
        print(
            f"Name: {dist.metadata['Name']}\nVersion: {dist.version}\n"
            f"Summary: {dist.metadata['Summary'] or ''}"
        )
        print(f"Location: {dist.locate_file('')}\nRequires: {', '.join(requires)}")
    return 0


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "install":
        return install(rest)
    if command == "uninstall":
        return uninstall(rest)
    if command == "list":
        for dist in installed():
            print(f"{dist.metadata['Name']:<40} {dist.version}")
        return 0
    if command == "freeze":
        for dist in installed():
            print(f"{dist.metadata['Name']}=={dist.version}")
        return 0
    if command == "show":
        return show(rest)
    if command in ("--version", "-V"):
        print("pip (labdock: install and uninstall go through poetry.lock; see `pip help`)")
        return 0
    print(
        "pip in this lab: `pip install NAME` / `pip uninstall NAME` change the project's dependencies "
        "(pyproject.toml, poetry.lock) and this running server, as `invoke add` / `invoke remove` do "
        "on the host; `pip list`, `pip freeze`, `pip show NAME` read the environment."
    )
    return 0 if command in ("", "help", "-h", "--help") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
