"""Links the container cannot follow: `up` stops on a broken one before anything starts, warns
about one that leaves the project; `doctor` reports both. Real links in a real folder."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.tasks.helpers import exit_of, labdock, matching, write_lock

links = labdock.links

pytestmark = pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")


@pytest.mark.parametrize("place", ["notebooks", "notebooks/shared", "data/raw", "src/models", "runs"])
def test_up_stops_on_a_broken_link_before_starting_anything(make_ctx, project, place):
    link = project / place
    if link.is_dir():
        os.rename(link, project / f"{place}-moved")
    os.symlink("/nowhere/at/all", link)
    c = make_ctx()
    error = exit_of(lambda: labdock.server.up(c))
    assert error.message == (
        f"{place} is a link to /nowhere/at/all, which does not exist: point it at a folder that does, "
        "or remove it, then `invoke up`."
    )
    assert not matching(c, r"docker (build|compose)")


def test_up_names_the_first_broken_link_and_counts_the_others(make_ctx, project):
    for name in ("a", "b", "c"):
        os.symlink(f"/missing/{name}", project / "notebooks" / name)
    error = exit_of(lambda: labdock.server.up(make_ctx()))
    assert error.message.startswith("notebooks/a is a link to /missing/a")
    assert error.message.endswith("(2 more: `invoke doctor` lists them).")


def test_a_link_inside_the_project_is_fine_and_one_outside_is_a_warning(project, tmp_path):
    os.symlink("../data", project / "notebooks" / "data")  # relative, inside: the container follows it
    assert links.broken(project) == [] and links.outside(project) == []
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, project / "data" / "corpus")
    assert links.broken(project) == []
    assert links.outside(project) == [
        f"data/corpus links to {elsewhere.resolve()}, outside the project: the container sees only the "
        "project folder, so it is empty in JupyterLab (move or copy the files into the project)"
    ]


def test_links_deeper_down_and_missing_folders_are_not_looked_at(project):
    deep = project / "data" / "a" / "b"
    deep.mkdir(parents=True)
    os.symlink("/missing", deep / "link")  # data/ may hold millions of files: one level only
    shutil.rmtree(project / "notebooks")  # a folder the user removed is not an error here
    assert links.broken(project) == [] and links.outside(project) == []


def test_doctor_reports_a_broken_link_as_a_problem(make_ctx, project, capsys):
    write_lock(project)
    os.symlink("/nowhere", project / "notebooks" / "shared")
    exit_of(lambda: labdock.doctor.doctor(make_ctx()))
    assert (
        "[!!] links in the project lead to existing files: notebooks/shared is a link to /nowhere, which "
        "does not exist" in capsys.readouterr().out
    )
