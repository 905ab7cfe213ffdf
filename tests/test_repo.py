"""The template repository passes its own pre-commit checks (as committed, nothing rewritten)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests import precommit

REPO = Path(__file__).resolve().parents[1]


def test_repository_passes_its_own_precommit_hooks(tmp_path):
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    copy = tmp_path / "labdock"
    for name in filter(None, tracked.stdout.split("\0")):
        if (REPO / name).is_file():  # a file deleted in the work tree is still listed
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True)
    result = precommit.run_all_files(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    changed = subprocess.run(["git", "diff", "--stat"], cwd=copy, capture_output=True, text=True)
    assert changed.stdout == ""
