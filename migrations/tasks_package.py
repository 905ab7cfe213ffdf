"""labdock 0.2.0 migration: tasks.py becomes the project's own file; labdock's tasks move to labdock/.

Before 0.2.0 the template owned tasks.py, a single module with every task. From 0.2.0 the tasks
live in the template-owned package labdock/, and tasks.py is a short file the project owns (it
loads labdock's tasks; `copier update` never touches it again). Copier cannot replace a file it
now skips, so this script does, in two stages (copier runs it with STAGE=before, then after):

- before the update: if tasks.py holds changes this script cannot carry over (an edited labdock
  task or helper, or a task of yours that calls labdock's old internals), it stops the update
  with exact instructions; nothing has changed yet.
- after the update: an unmodified tasks.py is replaced by the new one; the tasks, helpers and
  imports you added are moved into it, and your tasks are added to the collection.

Running it again, or on a project already on the new layout, changes nothing. No network.

Usage: python tasks_package.py NEW_TASKS_PY [PROJECT_DIR]   (STAGE=before|after in the environment)
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Fingerprints of every top-level statement of every released tasks.py before 0.2.0, and the
# names it defined or imported (see legacy_tasks.json for how they were made).
LEGACY = json.loads((Path(__file__).parent / "legacy_tasks.json").read_text(encoding="utf-8"))
ENTRY_MARKER = "from labdock import namespace"


def fingerprint(node: ast.stmt) -> str:
    """The statement as code (comments and layout aside), the same on every Python version."""
    return hashlib.sha256(ast.unparse(node).encode()).hexdigest()


def defined_names(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
    return set()


def collection_call(node: ast.stmt) -> ast.Call | None:
    """The Collection(...) call of `ns = Collection(...)`, the old file's list of tasks."""
    if (
        isinstance(node, ast.Assign)
        and [getattr(target, "id", None) for target in node.targets] == ["ns"]
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", None) == "Collection"
    ):
        return node.value
    return None


@dataclass
class Plan:
    """What to do with a legacy tasks.py."""

    imports: list[ast.stmt] = field(default_factory=list)  # the user's imports
    statements: list[ast.stmt] = field(default_factory=list)  # the user's code, in order
    tasks: list[str] = field(default_factory=list)  # the user's tasks, for ns.add_task
    problems: list[str] = field(default_factory=list)  # why it cannot be moved automatically


def plan(source: str) -> Plan:
    tree = ast.parse(source)
    known, legacy_names, legacy_imports = (
        set(LEGACY["fingerprints"]),
        set(LEGACY["defined"]),
        set(LEGACY["imported"]),
    )
    result = Plan()
    body = tree.body[1:] if ast.get_docstring(tree) is not None else tree.body
    for node in body:
        if fingerprint(node) in known:
            continue  # labdock's own code, as released
        if call := collection_call(node):
            result.tasks += [
                arg.id for arg in call.args if isinstance(arg, ast.Name) and arg.id not in legacy_names
            ]
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            result.imports.append(node)
            continue
        changed = defined_names(node) & legacy_names
        if changed:
            result.problems.append(f"you changed labdock's {', '.join(sorted(changed))}")
            continue
        result.statements.append(node)
    mine = {name for node in result.imports + result.statements for name in defined_names(node)}
    used = {n.id for node in result.statements for n in ast.walk(node) if isinstance(n, ast.Name)}
    internals = sorted((used & legacy_names) - mine - legacy_imports)
    if internals:
        result.problems.append(f"your code uses labdock's old internals ({', '.join(internals)})")
    # The old file's imports your code relies on (os, Path, task, ...) come along.
    needed = (used & legacy_imports) - mine
    result.imports = [*legacy_import_lines(needed), *result.imports]
    return result


def legacy_import_lines(names: set[str]) -> list[ast.stmt]:
    lines = []
    for statement in LEGACY["imports"]:
        node = ast.parse(statement).body[0]
        kept = [alias for alias in node.names if (alias.asname or alias.name).split(".")[0] in names]
        if kept:
            node.names = kept
            lines.append(node)
    return lines


def merged(new_tasks: str, old_source: str, moved: Plan) -> str:
    """The new tasks.py with the user's imports, code and tasks from the old one."""
    if not (moved.imports or moved.statements or moved.tasks):
        return new_tasks
    lines = old_source.splitlines()

    def text(node: ast.stmt) -> str:
        start = node.decorator_list[0].lineno if getattr(node, "decorator_list", None) else node.lineno
        return "\n".join(lines[start - 1 : node.end_lineno])

    already = {name for node in ast.parse(new_tasks).body for name in defined_names(node)}
    imports = [ast.unparse(node) for node in moved.imports if not defined_names(node) <= already]
    head, marker, tail = new_tasks.partition(ENTRY_MARKER + "\n")
    block = ["", "", "# Moved here from your previous tasks.py by the labdock 0.2.0 update."]
    block += [part for node in moved.statements for part in ("", text(node))]
    block += [""] + [f"ns.add_task({name})" for name in moved.tasks if name not in old_source_adds(moved)]
    return (
        head
        + "\n".join(imports)
        + ("\n" if imports else "")
        + marker
        + tail.rstrip()
        + "\n".join(block)
        + "\n"
    )


def old_source_adds(moved: Plan) -> set[str]:
    """Tasks the user's own code already adds with ns.add_task(...)."""
    return {
        node.args[0].id
        for statement in moved.statements
        for node in ast.walk(statement)
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "add_task"
        and node.args
        and isinstance(node.args[0], ast.Name)
    }


def main(new_tasks_path: Path, project: Path, stage: str) -> int:
    tasks = project / "tasks.py"
    if not tasks.is_file():
        return 0
    source = tasks.read_text(encoding="utf-8")
    if ENTRY_MARKER in source:
        print("tasks.py already loads labdock/: nothing to migrate.")
        return 0
    try:
        moved = plan(source)
    except SyntaxError as error:
        moved = Plan(problems=[f"it does not parse ({error.msg}, line {error.lineno})"])
    if moved.problems:
        if stage == "before":
            print(
                "labdock 0.2.0 moves its tasks into the labdock/ package and makes tasks.py yours, "
                f"but tasks.py cannot be carried over: {'; '.join(moved.problems)}. Move your own "
                "tasks into a file of your own (e.g. my_tasks.py, importing only invoke), undo "
                "your edits of labdock's code in tasks.py (`git diff` shows them against a fresh "
                "render), commit, and run the update again; then import your tasks in the new "
                "tasks.py and add them with ns.add_task (its comments show how).",
                file=sys.stderr,
            )
            return 1
        return 0  # the update was stopped before: never here
    if stage == "after":
        tasks.write_text(merged(new_tasks_path.read_text(encoding="utf-8"), source, moved), encoding="utf-8")
        kept = ", ".join(moved.tasks + [n for s in moved.statements for n in defined_names(s)]) or "nothing"
        print(f"tasks.py now loads labdock's tasks from labdock/; kept from your old tasks.py: {kept}.")
    return 0


if __name__ == "__main__":
    arguments = sys.argv[1:]
    sys.exit(
        main(
            Path(arguments[0]),
            Path(arguments[1] if len(arguments) > 1 else "."),
            os.environ.get("STAGE", "after"),
        )
    )
