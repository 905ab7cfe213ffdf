"""build: the runtime stage with the host user's ids, labels, cache flags, package-index settings;
lock problems found after a failed build."""

from __future__ import annotations

import hashlib
import os
import re
import shlex

import pytest

from tests.tasks.helpers import (
    BUILDER,
    CHECK_LOCK,
    ENGINE_CHECK,
    GIT_ORIGIN,
    GIT_SHA,
    GIT_TIME,
    IMAGE_INSPECT,
    LOCK_CONTENT,
    POETRY,
    RUNTIME,
    args_of,
    call_of,
    commands,
    exit_of,
    fail,
    labdock,
    matching,
    ok,
    on_poetry,
    pairs,
    position,
    write_lock,
)

dependencies = labdock.dependencies
image = labdock.image
STALE_REASON = image.stale_reason  # the real one (the fixtures stand in for it)


def test_build_command(make_ctx, project):
    write_lock(project)
    c = make_ctx(
        {
            GIT_SHA: ok("0123456789abcdef\n"),
            GIT_ORIGIN: ok("https://example.com/unit-demo.git\n"),
            GIT_TIME: ok("1700000000\n"),
        }
    )
    image.build(c)
    call = call_of(c, RUNTIME)
    args = shlex.split(call.args[0])
    assert args[:5] == ["docker", "build", "--target", "runtime", "-t"]
    assert args[5] == "unit-demo:latest"
    assert args[-1] == str(project)
    assert {
        ("--build-arg", "NB_UID=1234"),
        ("--build-arg", "NB_GID=5678"),
        ("--label", "org.opencontainers.image.title=unit-demo"),
        ("--label", "org.opencontainers.image.revision=0123456789abcdef"),
        ("--label", "org.opencontainers.image.source=https://example.com/unit-demo.git"),
        # the commit's time, not the clock's: an unchanged rebuild gives the same image id
        ("--label", "org.opencontainers.image.created=2023-11-14T22:13:20Z"),
        ("--label", f"dev.labdock.lock-sha256={hashlib.sha256(LOCK_CONTENT.encode()).hexdigest()}"),
    } <= pairs(args)
    assert not {"--no-cache", "--pull", "--secret"} & set(args)
    assert not any(arg.startswith("PYTHON_VERSION") for arg in args)  # the Dockerfile's own default
    assert not any(arg.startswith("PYPI_MIRROR_URL") for arg in args)
    assert call.kwargs["env"] == {"DOCKER_BUILDKIT": "1"}
    assert commands(c)[0] == ENGINE_CHECK
    assert not matching(c, CHECK_LOCK)  # a good build does not pay for the lock check


def test_long_steps_end_with_a_timed_summary(make_ctx, project, capsys):
    write_lock(project)
    c = make_ctx()
    on_poetry(c, lambda folder: (folder / "poetry.lock").write_text("# relocked\n"))
    image.build(c)
    dependencies.lock(c)
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Built unit-demo:latest in [0-9]+\.[0-9]s\.", out[0])
    assert re.fullmatch(
        r"poetry\.lock is up to date \([0-9]+\.[0-9]s\): commit it with pyproject\.toml\.", out[1]
    )


def test_build_labels_without_git(make_ctx, project):
    write_lock(project)
    c = make_ctx({r"git ": fail("fatal: not a git repository")})
    image.build(c)
    assert {
        ("--label", "org.opencontainers.image.revision=unknown"),
        ("--label", f"org.opencontainers.image.source={project.as_uri()}"),
        ("--label", "org.opencontainers.image.created=1970-01-01T00:00:00Z"),
    } <= pairs(args_of(c, RUNTIME))


@pytest.mark.parametrize(
    ("options", "flags"),
    [({"no_cache": True}, {"--no-cache"}), ({"pull": True}, {"--pull"}), ({}, set())],
)
def test_build_cache_and_pull_flags(make_ctx, project, options, flags):
    write_lock(project)
    c = make_ctx()
    image.build(c, **options)
    assert {"--no-cache", "--pull"} & set(args_of(c, RUNTIME)) == flags


def test_build_passes_mirror_and_ca_bundle(make_ctx, project, tmp_path):
    write_lock(project)
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    mirror = "https://user:s3cret@pypi.corp.example/simple"
    c = make_ctx(pypi_mirror=mirror, ca_bundle=str(bundle))
    image.build(c)
    dependencies.lock(c)  # the builder stage is built for Poetry's runs
    for pattern in (BUILDER, RUNTIME):
        assert {
            ("--secret", "id=pypi_mirror,env=LABDOCK_PYPI_MIRROR"),
            ("--secret", f"id=ca_bundle,src={bundle.resolve()}"),
        } <= pairs(args_of(c, pattern))
        assert call_of(c, pattern).kwargs["env"]["LABDOCK_PYPI_MIRROR"] == mirror
    # Secrets, never build arguments (recorded in the image); never on a command line either.
    assert not [command for command in commands(c) if "s3cret" in command or "--build-arg PYPI" in command]


def test_build_passes_the_apt_proxy_as_a_secret_only(make_ctx, project):
    write_lock(project)
    c = make_ctx(apt_proxy="http://10.0.0.2:3142")
    image.build(c)
    call = call_of(c, RUNTIME)
    assert ("--secret", "id=apt_proxy,env=LABDOCK_APT_PROXY") in pairs(shlex.split(call.args[0]))
    assert "10.0.0.2" not in call.args[0]  # never a build arg: those are recorded in the image
    assert call.kwargs["env"] == {"DOCKER_BUILDKIT": "1", "LABDOCK_APT_PROXY": "http://10.0.0.2:3142"}


@pytest.mark.parametrize(
    ("remote", "label"),
    [
        ("https://alice:ghp_t0ken@github.com/acme/lab.git", "https://github.com/acme/lab.git"),
        ("https://oauth2:glpat-x@gitlab.example.com:8443/a/b.git", "https://gitlab.example.com:8443/a/b.git"),
        ("git@github.com:acme/lab.git", "git@github.com:acme/lab.git"),
        ("ssh://git@github.com/acme/lab.git", "ssh://github.com/acme/lab.git"),
    ],
)
def test_the_source_label_never_carries_credentials(make_ctx, project, remote, label):
    write_lock(project)
    c = make_ctx({GIT_ORIGIN: ok(remote + "\n")})
    image.build(c)
    assert ("--label", f"org.opencontainers.image.source={label}") in pairs(args_of(c, RUNTIME))


def test_build_warns_root(make_ctx, project, monkeypatch, capsys):
    write_lock(project)
    monkeypatch.setattr(os, "getuid", lambda: 0)
    monkeypatch.setattr(os, "getgid", lambda: 0)
    c = make_ctx()
    image.build(c)
    assert ("--build-arg", "NB_UID=0") in pairs(args_of(c, RUNTIME))
    assert "WARNING: you are root" in capsys.readouterr().err


def test_build_without_lock_runs_lock_first(make_ctx, project):
    c = make_ctx()
    on_poetry(c, write_lock)  # what `poetry lock` writes, on its copy of the project's files
    image.build(c)
    assert matching(c, POETRY) == [matching(c, POETRY)[0]]
    assert "poetry lock" in matching(c, POETRY)[0]
    assert position(c, BUILDER) < position(c, POETRY) < position(c, RUNTIME)
    sha = hashlib.sha256(LOCK_CONTENT.encode()).hexdigest()
    assert ("--label", f"dev.labdock.lock-sha256={sha}") in pairs(args_of(c, RUNTIME))


def test_build_with_stale_lock(make_ctx, project):
    write_lock(project)
    stale = (
        "pyproject.toml changed significantly since poetry.lock was last generated. "
        "Run `poetry lock` to fix the lock file."
    )
    c = make_ctx({RUNTIME: fail(), CHECK_LOCK: fail(stdout=stale)})
    error = exit_of(lambda: image.build(c))
    assert "out of date" in error.message
    assert "`invoke lock`" in error.message
    assert position(c, RUNTIME) < position(c, CHECK_LOCK)  # checked only once the build failed


def test_build_with_invalid_pyproject(make_ctx, project):
    write_lock(project)
    bad = fail(stderr="Error: Declared dependencies are invalid\n  - bad spec")
    c = make_ctx({RUNTIME: fail(), CHECK_LOCK: bad})
    error = exit_of(lambda: image.build(c))
    assert "pyproject.toml has a problem (  - bad spec)" in error.message


@pytest.mark.parametrize(
    ("failing", "what"),
    [(BUILDER, "The builder stage (Poetry) failed to build"), (RUNTIME, "The image build failed")],
)
def test_build_failure_names_the_index_settings(make_ctx, project, failing, what):
    write_lock(project)
    c = make_ctx({failing: fail()})
    run = dependencies.lock if failing == BUILDER else image.build  # `lock` builds the builder stage
    error = exit_of(lambda: run(c))
    assert error.message.startswith(what)
    assert "INVOKE_LABDOCK_PYPI_MIRROR" in error.message
    assert "INVOKE_LABDOCK_CA_BUNDLE" in error.message


def test_build_with_a_cache_backend_loads_the_image(make_ctx, project):
    write_lock(project)
    c = make_ctx(build_cache="type=gha")
    image.build(c)
    args = args_of(c, RUNTIME)
    assert {("--cache-from", "type=gha"), ("--cache-to", "type=gha,mode=max")} <= pairs(args)
    assert "--load" in args  # a docker-container builder keeps the image unless told to load it
    plain = make_ctx()
    image.build(plain)
    assert not {"--load", "--cache-from", "--cache-to"} & set(args_of(plain, RUNTIME))


def test_the_image_records_what_it_was_built_from(make_ctx, project, load, monkeypatch):
    write_lock(project)
    c = make_ctx()
    image.build(c)
    labels = [value for flag, value in pairs(args_of(c, RUNTIME)) if flag == "--label"]
    record = next(value for value in labels if value.startswith("dev.labdock.inputs=")).partition("=")[2]
    p = load(c)
    assert image.changed_inputs(p, record) == []
    (project / "poetry.lock").write_text(LOCK_CONTENT + "# changed\n")
    (project / "apt-packages.txt").write_text("jq\n")
    assert image.changed_inputs(p, record) == ["apt-packages.txt", "poetry.lock"]
    monkeypatch.setattr(os, "getuid", lambda: 4321)
    assert "user" in image.changed_inputs(p, record)
    assert image.changed_inputs(p, "") == sorted(image.inputs(p))  # no record: everything differs


def test_a_stale_image_is_rebuilt_before_use_and_says_why(make_ctx, project, monkeypatch, capsys):
    write_lock(project)
    monkeypatch.setattr(image, "stale_reason", lambda p: "poetry.lock changed since the image was built")
    c = make_ctx()
    image.ensure_image(labdock.project.Project.load(c))
    assert matching(c, RUNTIME)
    assert "Rebuilding the image: poetry.lock changed since the image was built." in capsys.readouterr().out


def test_stale_reason_reads_the_label(make_ctx, project, load, monkeypatch):
    write_lock(project)
    monkeypatch.setattr(image, "stale_reason", STALE_REASON)
    p = load(make_ctx({r"docker image inspect --format": ok("<no value>\n")}))
    assert image.stale_reason(p) == "the image does not record what it was built from"
    current = image.encode_inputs(image.inputs(p))
    p = load(make_ctx({r"docker image inspect --format": ok(current + "\n")}))
    assert image.stale_reason(p) == ""
    p = load(make_ctx({IMAGE_INSPECT: fail()}))
    assert image.stale_reason(p) == "there is no image yet"
