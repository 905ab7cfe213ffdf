"""JupyterLab in a real browser: Debian's Chromium, headless, driven by Playwright.

A project started with `invoke up` is opened the way a user opens it (the URL with its token);
the starter notebook's first cell runs in the page and its output is read back from the page.
Without the token, the page must be the login form, not the lab. Screenshots are kept as test
artefacts; LABDOCK_SCREENSHOT=docs/jupyterlab.png also copies the final one there (the README's).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from tests.e2e.harness import Project, new_project, read_token, record, remove_project_state

# Debian's chromium (.ci/engine.sh installs it); e.g. /usr/bin/google-chrome on GitHub's runners.
CHROMIUM = os.environ.get("LABDOCK_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 180_000  # a first JupyterLab load and kernel start on a busy 2-core machine
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def project(engine, tmp_path_factory) -> Project:
    proj = new_project(tmp_path_factory.mktemp("browser"), project_name="Browser Check", stack="minimal")
    proj.invoke("up")
    yield proj
    remove_project_state(proj)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser-artefacts")
    print(f"browser screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def page():
    assert Path(CHROMIUM).exists(), (
        "Debian's chromium is not installed: .ci/engine.sh's install_chromium does it"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],  # root, no GPU, small /dev/shm
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        browser.close()


def test_without_the_token_the_browser_gets_the_login_form(project, page: Page, artefacts):
    page.goto(f"http://127.0.0.1:{project.answers['jupyter_port']}/lab")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.locator("#password_input")).to_be_visible()
    assert page.locator(".jp-LabShell").count() == 0
    page.screenshot(path=artefacts / "login.png")
    record("browser", "without the token", f"login page: {page.title()!r}")


def test_starter_notebook_runs_its_first_cell_in_the_page(project, page: Page, artefacts):
    port, token = project.answers["jupyter_port"], read_token(project.root)
    started = time.monotonic()
    page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/getting-started.ipynb?token={token}")
    expect(page.locator(".jp-LabShell")).to_be_visible()
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook).to_be_visible()
    # The status bar names the kernel once the session is connected and the kernel idle.
    expect(page.locator(".jp-StatusBar-Widget").filter(has_text="| Idle").first).to_be_visible()
    loaded = time.monotonic() - started

    cell = notebook.locator(".jp-CodeCell").first
    cell.locator(".jp-InputArea-editor").click()
    expect(cell).to_have_class(re.compile(r"\bjp-mod-active\b"))
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea-output")
    expected = "Hello, world, from Browser Check!"
    expect(output).to_contain_text(expected)
    expect(cell.locator(".jp-InputPrompt")).to_contain_text("[1]")  # ran once, in this kernel
    ran = time.monotonic() - started - loaded

    shot = artefacts / "jupyterlab.png"
    page.screenshot(path=shot)
    if os.environ.get("LABDOCK_SCREENSHOT"):
        shutil.copy(shot, REPO / os.environ["LABDOCK_SCREENSHOT"])
    record("browser", "page title", page.title())
    record("browser", "first cell's output, read from the page", output.inner_text().strip())
    record("browser", "lab + notebook + idle kernel; cell run", f"{loaded:.1f} s; {ran:.1f} s")
    record("browser", "screenshot", str(shot))
    # The image turns off JupyterLab's news and update checks: no toast asks about them.
    assert page.get_by_text("official Jupyter news").count() == 0
    schema = requests.get(
        f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:notification",
        headers={"Authorization": f"token {token}"},
        timeout=10,
    ).json()["schema"]["properties"]  # the server folds overrides.json into the defaults
    assert (schema["fetchNews"]["default"], schema["checkForUpdates"]["default"]) == ("false", False)
