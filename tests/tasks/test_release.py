"""push: versions and tags, login with the password on stdin only, registry errors."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.tasks.helpers import (
    GIT_SHORT_SHA,
    GIT_TAG,
    LOGIN,
    PUSH,
    args_of,
    call_of,
    commands,
    exit_of,
    fail,
    labdock,
    matching,
    ok,
    pairs,
    position,
    write_lock,
)

release = labdock.release
SINGLEUSER = r"docker build --target singleuser"


@pytest.fixture(autouse=True)
def locked(project):
    """A locked project: push builds the singleuser image from the lock."""
    write_lock(project)


def test_push_logs_in_with_the_password_on_stdin_only(make_ctx, monkeypatch, capsys):
    password = "s3cr3t-Pa55word"
    monkeypatch.setenv("REGISTRY_USER", "bob")
    monkeypatch.setenv("REGISTRY_PASSWORD", password)
    c = make_ctx({GIT_TAG: ok("v1.2.0\n")})
    release.push(c)
    login = call_of(c, LOGIN)
    assert shlex.split(login.args[0]) == [
        *("docker", "login", "127.0.0.1:5000", "--username", "bob", "--password-stdin"),
    ]
    assert login.kwargs["in_stream"].getvalue() == password + "\n"
    assert not [command for command in commands(c) if password in command]
    remote = "127.0.0.1:5000/team/unit-demo"
    # A release tag v1.2.0: the version, major.minor and latest (what CI's publish job pushes too).
    tags = ["1.2.0", "1.2", "latest"]
    assert matching(c, r"docker tag ") == [f"docker tag unit-demo:singleuser {remote}:{tag}" for tag in tags]
    assert matching(c, PUSH) == [f"docker push {remote}:{tag}" for tag in tags]
    assert position(c, LOGIN) < position(c, PUSH)
    assert re.search(rf"Pushed {re.escape(remote)}:latest in [0-9.]+s\.", capsys.readouterr().out)


def test_push_version_falls_back_to_the_commit(make_ctx):
    c = make_ctx({GIT_TAG: fail("fatal: no tag exactly matches"), GIT_SHORT_SHA: ok("abc1234\n")})
    release.push(c)
    assert matching(c, PUSH)[0] == "docker push 127.0.0.1:5000/team/unit-demo:abc1234"
    assert not matching(c, LOGIN)  # no REGISTRY_USER/REGISTRY_PASSWORD: docker's own login


def test_push_publishes_the_singleuser_image_built_for_user_1000(make_ctx, project):
    c = make_ctx()
    release.push(c, tag="2024.1")
    assert not matching(c, r"git .* (describe|rev-parse --short)")
    built = args_of(c, SINGLEUSER)
    assert {("--build-arg", "NB_UID=1000"), ("-t", "unit-demo:singleuser")} <= pairs(built)
    assert position(c, SINGLEUSER) < position(c, r"docker tag ")
    assert (
        matching(c, r"docker tag ")[0]
        == "docker tag unit-demo:singleuser 127.0.0.1:5000/team/unit-demo:2024.1"
    )
    assert matching(c, PUSH)[0] == "docker push 127.0.0.1:5000/team/unit-demo:2024.1"


def test_push_without_a_version(make_ctx):
    c = make_ctx({r"git ": fail("fatal: not a git repository")})
    error = exit_of(lambda: release.push(c))
    assert "No version from git" in error.message
    assert "--tag VERSION" in error.message
    assert not matching(c, PUSH)


def test_push_without_registry(make_ctx):
    c = make_ctx(registry="")
    error = exit_of(lambda: release.push(c, tag="1.0"))
    assert "labdock.registry" in error.message
    assert "INVOKE_LABDOCK_REGISTRY" in error.message
    assert commands(c) == []


def test_push_refused_for_missing_credentials(make_ctx):
    c = make_ctx({PUSH: fail("unauthorized: no basic auth credentials")})
    error = exit_of(lambda: release.push(c, tag="1.0"))
    assert "127.0.0.1:5000 refused the push" in error.message
    assert "REGISTRY_USER" in error.message
    assert "REGISTRY_PASSWORD" in error.message
    assert "docker login 127.0.0.1:5000" in error.message
    assert len(matching(c, PUSH)) == 1  # stops at the first refusal


def test_push_login_failure(make_ctx, monkeypatch):
    monkeypatch.setenv("REGISTRY_USER", "bob")
    monkeypatch.setenv("REGISTRY_PASSWORD", "wrong")
    c = make_ctx({LOGIN: fail("Error response from daemon: login attempt failed")})
    error = exit_of(lambda: release.push(c, tag="1.0"))
    assert "Login to 127.0.0.1:5000 as bob failed" in error.message
    assert "REGISTRY_USER and REGISTRY_PASSWORD" in error.message
    assert not matching(c, PUSH)


def test_push_other_failure_shows_the_last_error_line(make_ctx):
    c = make_ctx({PUSH: fail("retrying in 5 seconds\ndial tcp 127.0.0.1:5000: connection refused")})
    error = exit_of(lambda: release.push(c, tag="1.0"))
    assert error.message == (
        "Pushing 127.0.0.1:5000/team/unit-demo:1.0 failed: dial tcp 127.0.0.1:5000: connection refused"
    )


@pytest.mark.parametrize(
    ("version", "tags"),
    [
        ("v1.2.0", ["1.2.0", "1.2", "latest"]),
        ("1.2.0", ["1.2.0", "1.2", "latest"]),
        ("v10.0.3", ["10.0.3", "10.0", "latest"]),
        ("v1.3.0rc1", ["1.3.0rc1"]),
        ("v1.3.0-rc.1", ["1.3.0-rc.1"]),
        ("abc1234", ["abc1234", "latest"]),
        ("nightly", ["nightly", "latest"]),
    ],
)
def test_image_tags_are_one_rule_for_ci_and_laptops(version, tags):
    assert release.image_tags(version) == tags


@pytest.mark.parametrize("version", ["v1.0 beta", "-x", ".hidden", "a/b", "x" * 129])
def test_a_version_that_cannot_be_a_tag_is_refused(version):
    error = exit_of(lambda: release.image_tags(version))
    assert "cannot be an image tag" in error.message
