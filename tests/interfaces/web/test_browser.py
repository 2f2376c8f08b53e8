"""Each role's main path in a real headless Chromium (Debian's, driven by Playwright), with the
keyboard only; screenshots are kept in out/test-artifacts/portal/ (git-ignored, like the
real-lab browser test's; LABKIT_TEST_ARTIFACTS moves them).

The portal runs in uvicorn on 127.0.0.1 (a free port) over the same fixture as the other
portal tests: a real database and the real use cases, with fake labs.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interfaces.web.conftest import PROJECT, Portal

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("LABKIT_TEST_ARTIFACTS", PROJECT / "out" / "test-artifacts" / "portal"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists() or shutil.which("chromium") is None,
                                reason="needs Debian's chromium")


@pytest.fixture
def server(portal: Portal) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(portal.client.app, host="127.0.0.1", port=port, log_level="warning",
                                       lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM),
                                                   headless=True, args=ARGS, locale="fr-FR",
                                                   viewport={"width": 1280, "height": 900})
        try:
            yield ctx
        finally:
            ctx.close()


def _shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _login_with_keyboard(page: object, base: str, login: str, password: str) -> None:
    p = page
    p.goto(f"{base}/login")  # type: ignore[attr-defined]
    # the login field has the focus (autofocus): type, Tab to the password, Enter submits.
    # Autofocus lands a moment after the load event on a busy machine: wait for it, or the
    # first keystrokes go nowhere (seen once: "identifiant ou mot de passe incorrect").
    p.wait_for_function("document.activeElement && document.activeElement.id === 'login'")  # type: ignore[attr-defined]
    p.keyboard.type(login)  # type: ignore[attr-defined]
    assert p.input_value("#login") == login  # type: ignore[attr-defined]
    p.keyboard.press("Tab")  # type: ignore[attr-defined]
    assert p.evaluate("document.activeElement.id") == "password"  # type: ignore[attr-defined]
    p.keyboard.type(password)  # type: ignore[attr-defined]
    with p.expect_navigation():  # type: ignore[attr-defined]
        p.keyboard.press("Enter")  # type: ignore[attr-defined]


def _tab_to(page: object, text: str, limit: int = 60) -> None:
    """Press Tab until the focused element's text is ``text``; its focus ring must be visible."""
    for _ in range(limit):
        page.keyboard.press("Tab")  # type: ignore[attr-defined]
        if page.evaluate("document.activeElement.textContent.trim()") == text:  # type: ignore[attr-defined]
            style = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")  # type: ignore[attr-defined]
            assert style not in ("none", ""), f"no visible focus on {text!r}"
            return
    raise AssertionError(f"{text!r} cannot be reached with Tab")


def test_trainer_candidate_assessor_in_chromium(portal: Portal, server: str, browser: object) -> None:
    from playwright.sync_api import expect

    ctx = browser
    # trainer: dashboard with live updates (the polling script runs under the CSP)
    page = ctx.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    _login_with_keyboard(page, server, "formateur", portal.passwords["trainer"])
    assert page.url.endswith("/cohorts"), page.text_content("main")
    assert page.evaluate("document.documentElement.lang") == "fr"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Aller au contenu"  # skip link first
    _tab_to(page, "bts1")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("#updated")).to_contain_text("Mis à jour à", timeout=15000)  # no eval: the CSP forbids it
    assert page.locator('tr[data-id] td[data-field="grade"]').first.text_content() == "10/10"
    _shot(page, "trainer-dashboard")
    page.close()

    # candidate A: brief, access, a self-check started from the keyboard, its hints shown
    ctx.clear_cookies()  # type: ignore[attr-defined]
    page = ctx.new_page()  # type: ignore[attr-defined]
    portal.ops.passing["bts1-01"] = False
    _login_with_keyboard(page, server, portal.logins["A"], portal.passwords["A"])
    assert page.url.endswith("/me")
    assert "Sujet de Alice Martin" in page.text_content("main")
    _tab_to(page, "Lancer l'auto-vérification")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    portal.exam.wait_idle()
    page.wait_for_selector("text=Le routeur doit relayer le ping.", timeout=15000)
    _shot(page, "candidate-selfcheck")
    page.close()

    # assessor: a report, read-only
    ctx.clear_cookies()  # type: ignore[attr-defined]
    page = ctx.new_page()  # type: ignore[attr-defined]
    _login_with_keyboard(page, server, "jury", portal.passwords["assessor"])
    page.goto(f"{server}/runs")
    assert page.locator("text=Voir le rapport").count() >= 4
    with page.expect_navigation():
        page.locator("text=Voir le rapport").first.click()
    assert "Rapport de preuves" in page.text_content("body")
    _shot(page, "assessor-report")
    page.goto(f"{server}/recordings/{portal.recording_ids['B']}")
    assert "secret-of-bob.durand" in page.text_content("pre.console")
    _shot(page, "assessor-recording")
    assert [e for e in errors if "Content Security Policy" in e] == []


def test_candidate_page_follows_a_launch(portal: Portal, server: str, browser: object) -> None:
    """While the candidate's lab is being launched the page waits, then shows the brief by itself."""
    from playwright.sync_api import expect

    from labkit.adapters.db import repo

    with portal.db.session() as s:
        repo.set_candidate_status(s, portal.candidate_ids["B"], "launching")
    page = browser.new_page()  # type: ignore[attr-defined]
    _login_with_keyboard(page, server, portal.logins["B"], portal.passwords["B"])
    assert "Le sujet s'affichera quand votre laboratoire sera prêt." in page.text_content("main")
    with portal.db.session() as s:
        repo.set_candidate_status(s, portal.candidate_ids["B"], "up")
    expect(page.locator(".brief")).to_contain_text("Sujet de Bob Durand", timeout=15000)
    _shot(page, "candidate-lab-ready")
