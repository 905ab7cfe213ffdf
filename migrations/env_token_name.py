"""labdock 0.2.0 migration: the token in `.env` is named LABDOCK_TOKEN (it was JUPYTER_TOKEN).

Like the other variables compose.yaml reads from the host (LABDOCK_IMAGE, LABDOCK_PORT, ...), the
token gets the LABDOCK_ prefix, so that a JUPYTER_TOKEN exported in the user's shell can no longer
override the project's own token. Copier never sees `.env` (it is gitignored and written by
`invoke up`), so `copier update` runs this script in the project after the update.

It renames the variable in place: the token, the rest of the file and its mode (600) are kept, so
`invoke up` restarts the server with the same token. It changes nothing unless the updated
compose.yaml reads ${LABDOCK_TOKEN}, `.env` sets JUPYTER_TOKEN and does not set LABDOCK_TOKEN yet:
running it twice, or without a `.env`, is a no-op. No network, standard library only.

Usage: python env_token_name.py [PROJECT_DIR]   (default: the current directory)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

OLD, NEW = "JUPYTER_TOKEN", "LABDOCK_TOKEN"


def migrate(project: Path) -> str:
    """Rename the token variable in project/.env; returns what was done, for the log."""
    env, compose = project / ".env", project / "compose.yaml"
    if not env.is_file():
        return "no .env: nothing to migrate"
    if not compose.is_file() or "${" + NEW not in compose.read_text(encoding="utf-8"):
        return f"compose.yaml does not read {NEW}: .env left as it is"
    with env.open(encoding="utf-8", newline="") as source:  # keep the line endings as they are
        text = source.read()
    if re.search(rf"^\s*(export\s+)?{NEW}\s*=", text, flags=re.MULTILINE):
        return f".env already sets {NEW}: nothing to migrate"
    renamed, count = re.subn(
        rf"^(\s*(?:export\s+)?){OLD}(\s*=)", rf"\g<1>{NEW}\g<2>", text, flags=re.MULTILINE
    )
    if not count:
        return f".env does not set {OLD}: nothing to migrate"
    # Writing to the existing file keeps its mode (600) and owner.
    with env.open("w", encoding="utf-8", newline="") as out:
        out.write(renamed)
    return f".env: {OLD} renamed to {NEW} (same token)"


def main(argv: list[str]) -> int:
    project = Path(argv[1]) if len(argv) > 1 else Path.cwd()
    print(f"labdock migration 0.2.0: {migrate(project)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
