"""Each role's main path on a REAL lab in a real headless Chromium (Debian's /usr/bin/chromium driven by
Playwright), against the real portal served by uvicorn on 127.0.0.1 (a free port) with a
SQLite database and a private LABKIT_HOME, on a real lab (routing-multisite, two candidates).

- trainer: keyboard-only login, roster upload, launch, the live dashboard turns 'ready';
- candidate: brief and access details, the browser terminal of the workstation (``hostname``
  typed in xterm.js shows the node's name), a self-check with hints, a submission;
- assessor: the report of the submission and the recording of the browser terminal;
- accessibility of the main pages: every form field found by its label (``get_by_label``),
  a visible focus style, text contrast (WCAG AA) computed from ``getComputedStyle``.

Screenshots go to out/test-artifacts/browser/. Everything started is stopped: the browser,
uvicorn, every console, the instances (``down_leaves_nothing``).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.db import repo
from labkit.adapters.db.database import Database
from labkit.interfaces.web import create_app
from labkit.interfaces.web.i18n import CATALOG
from labkit.settings import Settings
from labkit.usecases.exam import Exam
from labkit.usecases.lifecycle import Context
from tests.conftest import PROJECT, LabEnv, down_leaves_nothing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = PROJECT / "out" / "test-artifacts" / "browser"
WS_LIB = next((m for m in ("websockets", "wsproto") if importlib.util.find_spec(m)), None)
LAB = "routing-multisite"
WORKSTATION = "pc-hq"
FR = CATALOG["fr"]
LONG = 600_000  # ms: a launch or a grading on this shared 2-core machine

pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")]


# ----------------------------------------------------------------------------- the portal
class Server:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app: Any):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="auto", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


@dataclass
class Site:
    ctx: Context
    db: Database
    exam: Exam
    url: str
    app: Any
    passwords: dict[str, str]
    cohort: str
    cohort_id: int = 0
    creds: dict[str, str] = field(default_factory=dict)  # login -> password, from the login sheet
    shots: list[Path] = field(default_factory=list)

    def shot(self, page: Any, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("browser")
    run_dir = Path(f"/run/labkit-test-{os.getpid()}-browser")
    env = {**os.environ, "LABKIT_HOME": str(tmp / "home"), "LABKIT_RUN_DIR": str(run_dir),
           "LABKIT_PROJECT": str(PROJECT)}
    mp = pytest.MonkeyPatch()
    for k in ("LABKIT_HOME", "LABKIT_RUN_DIR", "LABKIT_PROJECT"):
        mp.setenv(k, env[k])
    settings = Settings(home=tmp / "home", run_dir=run_dir, project=PROJECT)
    ctx = Context(settings)
    db = Database(f"sqlite:///{tmp / 'labkit.db'}")
    db.upgrade()
    exam = Exam(ctx, db, selfcheck_interval=0)
    passwords = {"formateur": exam.add_user("formateur", "trainer", "Claire Formatrice")[1],
                 "jury": exam.add_user("jury", "assessor", "Jules Jury")[1]}
    app = create_app(ctx, db, exam=exam, final_check_every=0)
    server = Server(app)
    try:
        yield Site(ctx, db, exam, f"http://127.0.0.1:{server.port}", app, passwords, f"wb{os.getpid() % 100000}")
    finally:  # every step runs, whatever failed before it; the failures are reported at the end
        problems = _teardown([lambda: _consoles_idle(app), server.stop, exam.close,
                              lambda: _bring_down(LabEnv(settings, env), ctx), db.dispose])
        mp.undo()
        assert problems == []


def _teardown(steps: list[Any]) -> list[str]:
    problems = []
    for step in steps:
        try:
            left = step()
        except Exception as exc:  # noqa: BLE001 - the next steps still run
            problems.append(repr(exc))
        else:
            if left:
                problems.append(f"left behind: {left}")
    return problems


def _consoles_idle(app: Any, timeout: float = 20) -> list[str]:
    """Wait until every browser terminal's shell is reaped and its recording closed (before
    uvicorn stops); returns what is still there."""
    hub = getattr(app.state, "console_hub", None)
    if hub is None:
        return []
    deadline = time.monotonic() + timeout
    while (hub.consoles or hub.children or hub.tasks) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [f"console pid {pid}" for pid in hub.children] + [f"{len(hub.consoles)} consoles"] * bool(hub.consoles)


def _bring_down(lab_env: LabEnv, ctx: Context) -> None:
    failures = []
    for name in ctx.store.names():
        try:
            down_leaves_nothing(lab_env, name)
        except Exception as exc:  # noqa: BLE001 - bring the others down too, then fail
            failures.append(f"{name}: {exc}")
    assert failures == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Pages:
    """New browser pages, each in its own context (its own cookies); all closed after the test,
    so that no terminal's websocket outlives it."""

    def __init__(self, browser: Any, site: Site):
        self.browser, self.site, self.contexts = browser, site, []  # type: ignore[var-annotated]

    def new(self) -> Any:
        context = self.browser.new_context(base_url=self.site.url, locale="fr-FR",
                                           viewport={"width": 1280, "height": 900})
        context.set_default_timeout(30_000)
        self.contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser: Any, site: Site) -> Iterator[Pages]:
    p = Pages(browser, site)
    try:
        yield p
    finally:
        p.close()


def _login(page: Any, login: str, password: str) -> None:
    """Keyboard only: the login field has the focus, Tab to the password, Enter submits."""
    page.goto("/login")
    # autofocus lands a moment after the load event on a busy machine: wait for it
    page.wait_for_function("document.activeElement && document.activeElement.id === 'login'")
    _assert_focus_visible(page)
    page.keyboard.type(login)
    assert page.input_value("#login") == login
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    _assert_focus_visible(page)
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login" not in url)


def _assert_focus_visible(page: Any) -> None:
    style = page.evaluate("""() => { const el = document.activeElement, s = getComputedStyle(el);
        return [s.outlineStyle, parseFloat(s.outlineWidth), s.outlineColor, el.outerHTML.slice(0, 100)]; }""")
    assert style[0] != "none" and style[1] >= 2, f"no visible focus style on the focused element: {style}"


# ----------------------------------------------------------------------------- the paths
def test_trainer_creates_launches_and_watches(pages: Pages, site: Site) -> None:
    page = pages.new()
    _login(page, "formateur", site.passwords["formateur"])
    assert page.url.endswith("/cohorts")
    page.get_by_role("link", name=FR["new_cohort"]).click()
    page.get_by_label(FR["lab"]).select_option(LAB)
    page.get_by_label(FR["cohort_name"]).fill(site.cohort)
    page.get_by_label(FR["roster_file"]).set_input_files(
        {"name": "roster.csv", "mimeType": "text/csv", "buffer": b"nom\nAlice Martin\nBob Durand\n"})
    page.get_by_label(FR["seed"]).fill("2029")
    site.shot(page, "trainer-1-new-cohort")
    page.get_by_role("button", name=FR["create"]).click()
    page.wait_for_url("**/cohorts/*")
    site.cohort_id = int(page.url.split("/cohorts/")[1].split("?")[0])
    rows = page.locator("#dashboard tbody tr")
    assert rows.count() == 2
    page.get_by_role("button", name=FR["launch"]).click()
    page.wait_for_url(f"**/cohorts/{site.cohort_id}?notice=launched_notice*")
    page.evaluate("window.__sameDocument = true")
    # the dashboard updates by itself (no reload) until both labs are ready
    page.wait_for_function(f"""() => [...document.querySelectorAll('#dashboard td[data-field=status]')]
        .every(td => td.textContent.trim() === {FR['status_up']!r})""", timeout=LONG)
    assert page.evaluate("window.__sameDocument") is True
    site.shot(page, "trainer-2-dashboard-up")
    # the login sheet: one page per candidate, read as the trainer would print it
    page.goto(f"/cohorts/{site.cohort_id}/sheet")
    for section in page.locator("section").all():
        site.creds[section.locator("dd code").first.inner_text()] = section.locator(".pw").inner_text()
    assert sorted(site.creds) == ["alice.martin", "bob.durand"]
    site.shot(page, "trainer-3-login-sheet")
    assert page.js_errors == []


def _needs_launch(site: Site) -> None:
    if not site.creds:
        pytest.fail("the trainer's path did not launch the cohort")


@pytest.mark.skipif(WS_LIB is None, reason="uvicorn serves no websocket without the 'websockets' (or 'wsproto') "
                                           "package: the browser terminal cannot connect")
def test_candidate_terminal_shows_the_workstation(pages: Pages, site: Site) -> None:
    _needs_launch(site)
    page = pages.new()
    _login(page, "alice.martin", site.creds["alice.martin"])
    page.get_by_role("link", name=FR["terminal_title"].format(node=WORKSTATION)).click()
    page.wait_for_url(f"**/me/terminal?node={WORKSTATION}")
    status = page.locator("#term-status")
    page.wait_for_function("() => document.querySelector('#term-status').textContent === "
                           f"{FR['terminal_connected']!r}")
    page.wait_for_function("() => document.querySelector('.xterm-rows').textContent.includes('#')")
    trainer = _watch_live(pages, site)  # the trainer follows the session as it happens
    page.locator("#terminal").click()
    page.keyboard.type("hostname")
    page.keyboard.press("Enter")
    # the node's name alone on a line: the command's output, not the prompt
    for p in (page, trainer):
        p.wait_for_function(f"""() => [...document.querySelectorAll('.xterm-rows > div')]
            .some(row => row.textContent.trim() === {WORKSTATION!r})""", timeout=20_000)
    assert status.inner_text() == FR["terminal_connected"]
    site.shot(page, "candidate-2-terminal")
    site.shot(trainer, "trainer-4-watch-live")
    trainer.locator("#terminal").click()
    trainer.keyboard.type("echo WATCHER-TYPED")  # a viewer's keys go nowhere
    trainer.keyboard.press("Enter")
    page.keyboard.type("exit")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector('#term-status').textContent === {FR['terminal_ended']!r}")
    trainer.wait_for_function(f"() => document.querySelector('#term-status').textContent === {FR['watch_ended']!r}")
    assert "WATCHER-TYPED" not in page.locator(".xterm-rows").inner_text()
    assert "WATCHER-TYPED" not in trainer.locator(".xterm-rows").inner_text()
    # a page whose token was tampered with: the handshake is refused, the page says so
    page.route("**/me/terminal?node=*", lambda route: route.fulfill(
        response=(r := route.fetch()), body=r.text().replace('data-token="', 'data-token="0')))
    page.goto(f"/me/terminal?node={WORKSTATION}")
    page.wait_for_function(f"() => document.querySelector('#term-status').textContent === {FR['terminal_failed']!r}")
    assert page.js_errors == [] and trainer.js_errors == []


def _watch_live(pages: Pages, site: Site) -> Any:
    """The trainer opens the live view of the candidate's open console from the candidate's page."""
    with site.db.session() as s:
        cand_id = repo.candidates_of(s, site.cohort_id)[0].id
    page = pages.new()
    _login(page, "formateur", site.passwords["formateur"])
    page.goto(f"/candidates/{cand_id}")
    page.get_by_role("link", name=f"{FR['watch_live']} {WORKSTATION}").click()
    page.wait_for_url("**/recordings/*/watch")
    page.wait_for_function(f"() => document.querySelector('#term-status').textContent === {FR['watch_connected']!r}")
    return page


def test_candidate_brief_access_selfcheck_submit(pages: Pages, site: Site) -> None:
    _needs_launch(site)
    page = pages.new()
    _login(page, "alice.martin", site.creds["alice.martin"])
    assert page.url.endswith("/me")
    instance = f"{site.cohort}-01"
    brief = page.locator(".brief").inner_text()
    assert brief.split() == site.exam.lab.brief(instance, "fr").split()
    assert "ssh -p 2222 alice.martin@127.0.0.1" in page.locator("#access-title + p").inner_text()
    assert f"alice.martin+{WORKSTATION}@127.0.0.1" in page.locator("section[aria-labelledby=access-title]").inner_text()
    site.shot(page, "candidate-1-me")
    page.get_by_role("button", name=FR["selfcheck_button"]).click()
    page.wait_for_url("**/me?notice=selfcheck_started")
    page.locator("#hints-title").wait_for(timeout=LONG)  # me.js reloads the page when it is done
    verdicts = page.locator("section[aria-labelledby=hints-title] tbody tr")
    assert verdicts.count() >= 3
    site.shot(page, "candidate-3-selfcheck-hints")
    page.get_by_role("button", name=FR["submit_button"]).click()
    page.wait_for_url("**/me?notice=submit_started")
    page.locator("section[aria-labelledby=results-title] a", has_text=FR["open_report"]).wait_for(timeout=LONG)
    site.shot(page, "candidate-4-submitted")
    assert page.js_errors == []


def test_assessor_reads_the_report_and_the_recording(pages: Pages, site: Site) -> None:
    _needs_launch(site)
    with site.db.session() as s:
        cand = repo.candidates_of(s, site.cohort_id)[0]
        grade = next((r for r in repo.latest_runs(s, cand, limit=20) if r.mode == "grade"), None)
        assert grade is not None and grade.status == "complete", "the candidate's submission is not graded"
        cand_id, grade_id, score = cand.id, grade.id, (grade.score, grade.max_score)
    page = pages.new()
    _login(page, "jury", site.passwords["jury"])
    page.goto(f"/cohorts/{site.cohort_id}")
    assert page.get_by_role("button", name=FR["launch"]).count() == 0  # read-only: no action offered
    page.get_by_role("link", name="Alice Martin").click()
    page.wait_for_url(f"**/candidates/{cand_id}")
    site.shot(page, "assessor-1-candidate")
    with page.expect_navigation():
        page.locator(f"a[href='/runs/{grade_id}']").first.click()
    report = page.locator("body").inner_text()
    assert "Alice Martin" in report and f"{score[0]}" in report and f"{score[1]}" in report
    site.shot(page, "assessor-2-report")
    if WS_LIB is None:
        return  # no browser terminal ran (see the skipped terminal test): no recording to read
    page.goto(f"/candidates/{cand_id}")
    row = page.locator("tr", has=page.locator("td", has_text="web")).filter(has_text=WORKSTATION).first
    row.get_by_role("link", name=FR["view"]).click()
    page.wait_for_url("**/recordings/*")
    text = page.locator("main").inner_text()
    assert "hostname" in text and WORKSTATION in text
    site.shot(page, "assessor-3-recording")
    assert page.js_errors == []


# ----------------------------------------------------------------------------- accessibility
FIELDS_JS = """() => [...document.querySelectorAll('input, select, textarea')].filter(el =>
    el.type !== 'hidden' && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden'
  ).map((el, i) => { el.dataset.a11yId = String(i);
    const named = el.getAttribute('aria-label') || (el.labels && el.labels.length ? el.labels[0].innerText : '')
      || (el.getAttribute('aria-labelledby') || '').split(' ').map(id => document.getElementById(id))
           .filter(Boolean).map(e => e.innerText).join(' ');
    return {id: String(i), name: (named || '').trim(), html: el.outerHTML.slice(0, 120)}; })"""

CONTRAST_JS = """() => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const over = (top, bottom) => ({r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a),
                                 b: top.b * top.a + bottom.b * (1 - top.a), a: 1});
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const background = el => { const layers = [];
    for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; } }
    return layers.reverse().reduce((acc, c) => over(c, acc), {r: 255, g: 255, b: 255, a: 1}); };
  const bad = []; let checked = 0;
  for (const el of document.querySelectorAll('body *')) {
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const s = getComputedStyle(el), box = el.getBoundingClientRect();
    if (s.visibility === 'hidden' || s.display === 'none' || !box.width || !box.height) continue;
    if (el.closest('.sr-only')) continue;
    const bg = background(el), fg = over(parse(s.color), bg);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight, 10) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    checked++;
    if (ratio < need) bad.push(`${el.tagName} "${el.textContent.trim().slice(0, 40)}" ${s.color} on ` +
                               `rgb(${bg.r},${bg.g},${bg.b}): ${ratio.toFixed(2)} < ${need}`);
  }
  return {checked, bad};
}"""


def _check_page(page: Any, name: str) -> list[str]:
    """Problems of the page: a field ``get_by_label`` cannot find by its name, text under AA contrast."""
    problems = []
    for f in page.evaluate(FIELDS_JS):
        found = page.get_by_label(f["name"], exact=True) if f["name"] else None
        if found is None or not found.evaluate_all("(els, id) => els.some(e => e.dataset.a11yId === id)", f["id"]):
            problems.append(f"{name}: no accessible name for {f['html']}")
    contrast = page.evaluate(CONTRAST_JS)
    assert contrast["checked"] > 3, f"{name}: no text checked"
    problems += [f"{name}: contrast {b}" for b in contrast["bad"]]
    return problems


def test_main_pages_labels_focus_and_contrast(pages: Pages, site: Site) -> None:
    _needs_launch(site)
    problems: list[str] = []
    with site.db.session() as s:
        cand_id = repo.candidates_of(s, site.cohort_id)[0].id
    page = pages.new()
    page.goto("/login")
    problems += _check_page(page, "login")
    visits = {
        ("formateur", site.passwords["formateur"]): ["/cohorts", "/cohorts/new", f"/cohorts/{site.cohort_id}"],
        ("alice.martin", site.creds["alice.martin"]): ["/me", f"/me/terminal?node={WORKSTATION}"],
        ("jury", site.passwords["jury"]): ["/runs", f"/cohorts/{site.cohort_id}", f"/candidates/{cand_id}"],
    }
    for (login, password), urls in visits.items():
        page = pages.new()
        _login(page, login, password)
        for url in urls:
            page.goto(url)
            if "terminal" in url and WS_LIB is not None:
                page.wait_for_function("() => document.querySelector('.xterm-rows').textContent.trim() !== ''")
            elif "terminal" in url:  # this server has no websocket: the page says the terminal cannot connect
                page.wait_for_function("() => document.querySelector('#term-status').textContent === "
                                       f"{FR['terminal_failed']!r}")
            problems += _check_page(page, f"{login} {url}")
        _tab_through(page)
    assert problems == []


def _tab_through(page: Any, steps: int = 6) -> None:
    """From the top of the page, Tab reaches the skip link first, then one focusable element
    after another, each with a visible focus style."""
    page.goto(page.url.split("?")[0] if "/me/terminal" not in page.url else "/me")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    seen = set()
    for _ in range(steps):
        page.keyboard.press("Tab")
        _assert_focus_visible(page)
        seen.add(page.evaluate("document.activeElement.outerHTML"))
    assert len(seen) == steps


def test_the_checks_find_what_they_look_for(browser: Any) -> None:
    """The label and contrast checks above fail on a page made to fail them."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content("""<main><p style="color:#999;background:#fff">pale grey on white</p>
            <p style="color:#111">dark text</p><p>one more</p><p>and another</p>
            <label for="a">Named</label><input id="a"><input id="b" placeholder="no label">
            <div style="background:#111111"><span style="color:#f5f5f5">light on dark</span></div></main>""")
        problems = _check_page(page, "bad")
        assert len(problems) == 2, problems
        assert "no accessible name" in problems[0] and 'id="b"' in problems[0]
        assert "pale grey on white" in problems[1] and "2.85 < 4.5" in problems[1]
    finally:
        context.close()
