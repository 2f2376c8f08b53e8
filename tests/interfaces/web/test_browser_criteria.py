"""The per-criterion table in a real headless Chromium: the certification selector works from
the keyboard without JavaScript, and the status is readable without colour. Screenshots in
out/test-artifacts/portal/ (see test_browser.py)."""

from __future__ import annotations

from tests.interfaces.web.conftest import Portal
from tests.interfaces.web.test_browser import (  # noqa: F401  (fixtures)
    _login_with_keyboard,
    _shot,
    _tab_to,
    browser,
    pytestmark,
    server,
)
from tests.interfaces.web.test_criteria_table import INTERCO, LINKS, _graded


def test_selector_from_the_keyboard_without_javascript(portal: Portal, server: str, browser: object) -> None:  # noqa: F811
    _graded(portal, "A", "alice-routing-1", [("lan", "pass", [LINKS]), ("wan", "fail", [INTERCO])])
    ctx = browser
    page = ctx.new_page()  # type: ignore[attr-defined]
    _login_with_keyboard(page, server, "jury", portal.passwords["assessor"])
    ctx.route("**/*.js", lambda route: route.abort())  # type: ignore[attr-defined]  # no script needed
    page.goto(f"{server}/candidates/{portal.candidate_ids['A']}")
    assert page.locator("tr.crit").count() > 2
    _shot(page, "criteria-table")
    page.focus("#certification")
    page.keyboard.press("ArrowDown")  # the first certification after "every one"
    chosen = page.evaluate("document.getElementById('certification').value")
    _tab_to(page, "Afficher")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(f"?certification={chosen}#criteria")
    ids = [page.evaluate("(e) => e.id", h) for h in page.query_selector_all("tr.crit")]
    assert ids and all(i.startswith(f"crit-{chosen}-") for i in ids)
    # the status is a word inside the badge (the colour only repeats it)
    badge = page.locator(f"#crit-{INTERCO} .badge") if chosen == "igs" else page.locator(f"#crit-{LINKS} .badge")
    assert badge.inner_text().strip().endswith(("Non acquis", "Acquis"))
    _shot(page, f"criteria-table-{chosen}")
    page.close()
