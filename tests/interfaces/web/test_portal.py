"""Portal pages through each role's main path (FastAPI TestClient, real database, fake labs)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from labkit.adapters.db.models import Candidate, GradingRun, LoginAttempt, User
from labkit.interfaces.web import create_app
from labkit.interfaces.web.i18n import CATALOG
from labkit.usecases.exam import Exam
from labkit.usecases.lifecycle import Context
from tests.interfaces.web.conftest import FakeLabOps, Portal, csrf_of, make_db


# ----------------------------------------------------------------------------- login, cookies
def test_login_cookie_flags_and_logout(portal: Portal) -> None:
    c = TestClient(portal.client.app, follow_redirects=False)
    page = c.get("/login")
    assert page.status_code == 200 and '<html lang="fr">' in page.text
    r = c.post("/login", data={"login": "formateur", "password": portal.passwords["trainer"],
                               "csrf_token": csrf_of(page.text), "next": "/cohorts"})
    assert r.status_code == 303 and r.headers["location"] == "/cohorts"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("labkit_session="))
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/"} <= flags and "secure" not in flags
    token = cookie.split(";")[0].split("=", 1)[1]
    with portal.db.session() as s:  # the server keeps only the token's hash
        assert s.scalar(select(User.password_hash).where(User.login == "formateur")).startswith("$argon2id$")
        from labkit.adapters.db.models import WebSession

        ids = list(s.scalars(select(WebSession.id)))
        assert token not in ids and len(ids) == 1
    assert c.get("/cohorts").status_code == 200
    r = c.post("/logout", data={"csrf_token": csrf_of(c.get("/cohorts").text)})
    assert r.status_code == 303
    assert c.get("/cohorts").status_code == 303  # the session row is gone
    c.cookies.set("labkit_session", token)
    assert c.get("/cohorts").status_code == 303  # an old cookie opens nothing


def test_secure_cookies_and_open_redirect(tmp_path: Path) -> None:
    ctx = Context(__import__("labkit.settings", fromlist=["Settings"]).Settings(
        home=tmp_path / "home", run_dir=tmp_path / "run", project=Path(__file__).resolve().parents[3]))
    db = make_db(tmp_path)
    exam = Exam(ctx, db, ops=FakeLabOps(ctx.settings.runs))
    _, pw = exam.add_user("formateur", "trainer")
    app = create_app(ctx, db, exam=exam, secure_cookies=True, final_check_every=0)
    with TestClient(app, follow_redirects=False, base_url="https://portal.test") as c:
        page = c.get("/login")
        r = c.post("/login", data={"login": "formateur", "password": pw, "csrf_token": csrf_of(page.text),
                                   "next": "//evil.example/steal"})
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("labkit_session="))
        assert "secure" in cookie.lower()
    exam.close()
    db.dispose()


def test_login_rate_limited(portal: Portal) -> None:
    c = TestClient(portal.client.app, follow_redirects=False)
    token = csrf_of(c.get("/login").text)
    for _ in range(5):
        r = c.post("/login", data={"login": "formateur", "password": "wrong", "csrf_token": token})
        assert r.status_code == 401 and "Identifiant ou mot de passe incorrect" in r.text
    # the right password is refused too now, with a clear message and Retry-After
    r = c.post("/login", data={"login": "formateur", "password": portal.passwords["trainer"], "csrf_token": token})
    assert r.status_code == 429 and "Trop d'échecs de connexion" in unescape(r.text)
    assert int(r.headers["retry-after"]) > 0
    r = c.post("/login?lang=en", data={"login": "formateur", "password": "x", "csrf_token": token})
    assert r.status_code == 429 and "Too many failed logins" in r.text
    # another login (or the same login from elsewhere) is not blocked
    portal.login("assessor")
    with portal.db.session() as s:
        assert s.query(LoginAttempt).filter(LoginAttempt.login == "formateur", LoginAttempt.ok.is_(False)).count() == 5


def test_english_switch_is_remembered(portal: Portal) -> None:
    c = portal.login("A")
    r = c.get("/me?lang=en")
    assert '<html lang="en">' in r.text and "My exam" in r.text
    assert c.get("/me").text.count('<html lang="en">') == 1  # the cookie remembers
    assert '<html lang="fr">' in c.get("/me?lang=fr").text


def test_catalogs_have_the_same_keys() -> None:
    assert set(CATALOG["fr"]) == set(CATALOG["en"])


# ----------------------------------------------------------------------------- trainer
def test_trainer_creates_a_cohort_from_a_roster(portal: Portal) -> None:
    c = portal.login("trainer")
    form = c.get("/cohorts/new")
    assert form.status_code == 200 and "demo-lab" in form.text
    roster = "nom;groupe\nÉlodie Noël;A\nAlice Martin;B\n=cmd|' /C calc'!A0;C\n".encode()
    r = c.post("/cohorts", data={"csrf_token": csrf_of(form.text), "lab": "demo-lab", "name": "bts2", "seed": "42"},
               files={"roster": ("liste.csv", roster, "text/csv")})
    assert r.status_code == 303, r.text
    page = c.get(r.headers["location"])
    assert "3 comptes candidats" in page.text and "Élodie Noël" in page.text
    cohort_id = int(r.headers["location"].split("/")[2].split("?")[0])
    with portal.db.session() as s:
        cands = s.scalars(select(Candidate).where(Candidate.cohort_id == cohort_id).order_by(Candidate.id)).all()
        logins = [cd.user.login for cd in cands]
        hashes = [cd.user.password_hash for cd in cands]
        assert [cd.instance for cd in cands] == ["bts2-01", "bts2-02", "bts2-03"]
        assert all(cd.status == "planned" for cd in cands)
    assert logins == ["elodie.noel", "alice.martin2", "cmd.c.calc.a0"]  # unique, ASCII
    # the login sheet: one page per candidate, passwords only there (0600), never in the database
    sheet_path = portal.settings.home / "sheets" / "bts2.html"
    assert stat.S_IMODE(os.stat(sheet_path).st_mode) == 0o600
    sheet = c.get(f"/cohorts/{cohort_id}/sheet")
    assert sheet.status_code == 200 and sheet.text == sheet_path.read_text()
    assert sheet.text.count("<section>") == 3 and "page-break-after: always" in sheet.text
    assert '<html lang="fr">' in sheet.text and "ssh -p 2222 elodie.noel@testserver" in sheet.text
    passwords = re.findall(r'<span class="pw">([^<]+)</span>', sheet.text)
    assert len(passwords) == 3 and len(set(passwords)) == 3
    from labkit.adapters.security.passwords import verify_password

    assert all(verify_password(h, pw) for h, pw in zip(hashes, passwords, strict=True))
    assert all(pw not in (h or "") for h, pw in zip(hashes, passwords, strict=True))
    # launch: every instance comes up with its own seed
    r = c.post(f"/cohorts/{cohort_id}/launch", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    portal.exam.wait_idle()
    status = c.get(f"/cohorts/{cohort_id}/status.json").json()
    assert [x["status"] for x in status["candidates"]] == ["up", "up", "up"]
    assert [x["health"] for x in status["candidates"]] == ["ok", "ok", "ok"]
    seeds = {portal.ops.instances[f"bts2-0{i}"][1] for i in (1, 2, 3)}
    assert len(seeds) == 3


@pytest.mark.parametrize("roster,name,needle", [
    (b"", "bts3", "names no candidate"),
    (b"Alice\nAlice\n", "bts3", "twice"),
    (b"\xff\xfe\x00A", "bts3", "not UTF-8"),
    (b"Alice\n", "BTS 3", "Impossible"),
    (b"Alice\n", "bts1", "existe déjà"),
])
def test_bad_roster_is_refused_and_nothing_is_made(portal: Portal, roster: bytes, name: str, needle: str) -> None:
    c = portal.login("trainer")
    form = c.get("/cohorts/new")
    with portal.db.session() as s:
        users = s.query(User).count()
    r = c.post("/cohorts", data={"csrf_token": csrf_of(form.text), "lab": "demo-lab", "name": name},
               files={"roster": ("liste.csv", roster, "text/csv")})
    assert r.status_code == 400 and needle in unescape(r.text), r.text
    assert 'value="' + name + '"' in r.text  # the form keeps what was typed
    with portal.db.session() as s:
        assert s.query(User).count() == users
    assert not (portal.settings.home / "sheets" / "bts3.html").exists()


@pytest.mark.parametrize("size,status", [((1 << 20) + 10, 400), (3 << 20, 413)])
def test_oversized_roster_is_refused(portal: Portal, size: int, status: int) -> None:
    c = portal.login("trainer")
    token = csrf_of(c.get("/cohorts/new").text)
    r = c.post("/cohorts", data={"csrf_token": token, "lab": "demo-lab", "name": "big"},
               files={"roster": ("big.csv", b"A" * size, "text/csv")})
    assert r.status_code == status
    with portal.db.session() as s:
        assert s.query(User).count() == 4  # nothing made


def test_dashboard_live_status_reset_and_launch_failure(portal: Portal) -> None:
    c = portal.login("trainer")
    board = c.get(f"/cohorts/{portal.cohort_id}/status.json").json()
    alice = board["candidates"][0]
    assert alice["name"] == "Alice Martin" and alice["status"] == "up" and alice["health"] == "ok"
    assert alice["selfcheck"]["score"] == 10 and alice["grade"]["max_score"] == 10 and alice["final"] is None
    assert board["counts"]["up"] == 2 and board["total"] == 2
    page = c.get(f"/cohorts/{portal.cohort_id}")
    assert 'src="/static/dashboard.js"' in page.text and "10/10" in page.text
    assert "Laboratoires prêts : 2 sur 2 — en lancement : 0 — en échec : 0" in page.text
    # reset: down then up again with the same seed
    seed = portal.ops.instances["bts1-01"][1]
    r = c.post(f"/candidates/{portal.candidate_ids['A']}/reset", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    portal.exam.wait_idle()
    assert portal.ops.calls[-2:] == [("down", "bts1-01"), ("up", "bts1-01")]
    assert portal.ops.instances["bts1-01"][1] == seed
    # one failed launch is recorded for that candidate; launching again retries only it
    portal.exam.teardown(portal.cohort_id)
    portal.exam.wait_idle()
    portal.ops.fail_up.add("bts1-02")
    c.post(f"/cohorts/{portal.cohort_id}/launch", data={"csrf_token": csrf_of(page.text)})
    portal.exam.wait_idle()
    board = c.get(f"/cohorts/{portal.cohort_id}/status.json").json()
    assert [x["status"] for x in board["candidates"]] == ["up", "failed"]
    assert "failed (fake)" in board["candidates"][1]["detail"]
    portal.ops.fail_up.clear()
    n_up = sum(1 for call in portal.ops.calls if call[0] == "up")
    c.post(f"/cohorts/{portal.cohort_id}/launch", data={"csrf_token": csrf_of(page.text)})
    portal.exam.wait_idle()
    assert [call for call in portal.ops.calls if call[0] == "up"][n_up:] == [("up", "bts1-02")]


def test_exam_window_final_grade_once_and_export(portal: Portal) -> None:
    c = portal.login("trainer")
    page = c.get(f"/cohorts/{portal.cohort_id}")
    token = csrf_of(page.text)
    start = (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    end = (datetime.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    r = c.post(f"/cohorts/{portal.cohort_id}/window", data={"csrf_token": token, "exam_start": start,
                                                           "exam_end": end})
    assert r.status_code == 303
    bad = c.post(f"/cohorts/{portal.cohort_id}/window", data={"csrf_token": token, "exam_start": end,
                                                             "exam_end": start})
    assert bad.status_code == 409 and "est avant son début" in unescape(bad.text)
    assert portal.exam.take_due_finals() == []  # not over yet
    r = c.post(f"/cohorts/{portal.cohort_id}/end", data={"csrf_token": token})
    assert r.status_code == 303
    portal.exam.wait_idle()
    assert portal.exam.take_due_finals() == [] and portal.exam.take_final(portal.cohort_id) is False  # once
    with portal.db.session() as s:
        finals = s.scalars(select(GradingRun).where(GradingRun.mode == "final")).all()
        assert sorted(f.candidate_id for f in finals) == sorted(portal.candidate_ids.values())
        assert all(f.status == "complete" and f.run_id for f in finals)
    # consoles read-only, no more submissions
    a = portal.login("A")
    r = a.post("/me/submit", data={"csrf_token": csrf_of(a.get("/me").text)})
    assert r.status_code == 409 and "L'examen est terminé" in unescape(r.text)
    # export: the final grade of everyone
    rows = list(csv.DictReader(io.StringIO(c.get(f"/cohorts/{portal.cohort_id}/results.csv").text)))
    assert [(r["candidate"], r["mode"], r["score"], r["max_score"]) for r in rows] == [
        ("Alice Martin", "final", "10", "10"), ("Bob Durand", "final", "10", "10")]
    data = json.loads(c.get(f"/cohorts/{portal.cohort_id}/results.json").text)
    assert data["cohort"] == "bts1" and [r["login"] for r in data["results"]] == ["alice.martin", "bob.durand"]
    assert all(len(r["manifest_sha256"]) == 64 for r in data["results"])


# ----------------------------------------------------------------------------- candidate
def test_candidate_page_selfcheck_hints_submit_and_report(portal: Portal) -> None:
    portal.ops.passing["bts1-01"] = False
    a = portal.login("A")
    page = a.get("/me")
    assert page.status_code == 200
    assert "Sujet de Alice Martin : instance bts1-01" in page.text
    assert "ssh -p 2222 alice.martin@testserver" in page.text and "alice.martin+r1@testserver" in page.text
    r = a.post("/me/selfcheck", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/me?notice=selfcheck_started"
    portal.exam.wait_idle()
    page = a.get("/me")
    assert "0/10" in page.text and "Pas de réponse." in page.text and "Le routeur doit relayer le ping." in page.text
    # self-check reports are hints only: no report link for them
    with portal.db.session() as s:
        sc = s.scalars(select(GradingRun).where(GradingRun.mode == "selfcheck")
                       .order_by(GradingRun.id.desc())).first()
    assert f'href="/runs/{sc.id}"' not in page.text
    portal.ops.passing["bts1-01"] = True
    r = a.post("/me/submit", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    portal.exam.wait_idle()
    page = a.get("/me")
    with portal.db.session() as s:
        last = s.scalars(select(GradingRun).where(GradingRun.mode == "grade", GradingRun.candidate_id ==
                                                  portal.candidate_ids["A"]).order_by(GradingRun.id.desc())).first()
    assert last.status == "complete" and f'href="/runs/{last.id}"' in page.text
    report = a.get(f"/runs/{last.id}")
    assert report.status_code == 200 and "Rapport de preuves" in report.text and "Alice Martin" in report.text
    assert "Proof report" in a.get(f"/runs/{last.id}?lang=en").text


def test_candidate_sets_ssh_keys_for_the_bastion(portal: Portal) -> None:
    import asyncssh

    from labkit.usecases import access

    key = asyncssh.generate_private_key("ssh-ed25519", comment="alice@pc")
    pub = key.export_public_key("openssh").decode()
    a = portal.login("A")
    token = csrf_of(a.get("/me").text)
    refused = a.post("/me/sshkey", data={"csrf_token": token, "ssh_public_key": key.export_private_key().decode()})
    assert refused.status_code == 400 and "clé privée" in unescape(refused.text)
    bad = a.post("/me/sshkey", data={"csrf_token": token, "ssh_public_key": "# mine\nssh-ed25519 AAAA x\n"})
    assert bad.status_code == 400 and "La ligne 2" in unescape(bad.text)
    assert not access.check_public_key(portal.db, "alice.martin", pub, "10.0.0.1")
    r = a.post("/me/sshkey", data={"csrf_token": token, "ssh_public_key": pub})
    assert r.status_code == 303 and r.headers["location"] == "/me?notice=ssh_keys_saved&n=1"
    page = a.get(r.headers["location"]).text
    assert key.get_fingerprint() in page and "Clés SSH enregistrées : 1." in page, page[page.find("sshkey"):][:800]
    # the bastion now takes this key for A, for A's nodes, and for nobody else
    assert access.check_public_key(portal.db, "alice.martin", pub, "10.0.0.1")
    assert access.check_public_key(portal.db, "alice.martin+r1", pub, "10.0.0.1")
    assert not access.check_public_key(portal.db, "bob.durand", pub, "10.0.0.1")
    assert a.post("/me/sshkey", data={"csrf_token": token, "ssh_public_key": ""}).status_code == 303
    assert not access.check_public_key(portal.db, "alice.martin", pub, "10.0.0.1")


def test_selfcheck_rate_limit_and_one_at_a_time(portal: Portal) -> None:
    import threading

    portal.exam.selfcheck_interval = 30
    with portal.db.session() as s:  # the fixture's runs are old enough
        for run in s.scalars(select(GradingRun)):
            run.started_at = datetime.now(UTC) - timedelta(minutes=5)
    a = portal.login("A")
    token = csrf_of(a.get("/me").text)
    portal.ops.grade_gate = threading.Event()
    try:
        assert a.post("/me/selfcheck", data={"csrf_token": token}).status_code == 303
        busy = a.post("/me/submit", data={"csrf_token": token})
        assert busy.status_code == 409 and "déjà en cours" in busy.text
        assert a.get("/me/status.json").json()["running"] == "selfcheck"
    finally:
        portal.ops.grade_gate.set()
        portal.exam.wait_idle()
        portal.ops.grade_gate = None
    r = a.post("/me/selfcheck?lang=en", data={"csrf_token": token})
    assert r.status_code == 429 and "One self-check or submission every 30 seconds" in r.text
    assert 0 < int(r.headers["retry-after"]) <= 30
    # B is not held back by A
    b = portal.login("B")
    assert b.post("/me/selfcheck", data={"csrf_token": csrf_of(b.get("/me").text)}).status_code == 303
    portal.exam.wait_idle()


# ----------------------------------------------------------------------------- assessor
def test_assessor_reads_cohorts_runs_reports_and_recordings(portal: Portal) -> None:
    c = portal.login("assessor")
    assert "bts1" in c.get("/cohorts").text
    page = c.get(f"/cohorts/{portal.cohort_id}")
    assert page.status_code == 200 and "Alice Martin" in page.text
    assert "/launch" not in page.text and "/reset" not in page.text and "/sheet" not in page.text
    runs = c.get("/runs")
    assert runs.text.count("Voir le rapport") == 4
    cand = c.get(f"/candidates/{portal.candidate_ids['B']}")
    assert "bob.durand" in cand.text and f"/recordings/{portal.recording_ids['B']}" in cand.text
    rec = c.get(f"/recordings/{portal.recording_ids['B']}")
    assert rec.status_code == 200 and "ip route  secret-of-bob.durand" in rec.text  # ANSI stripped
    assert "\x1b" not in rec.text and "<code>ip route</code>" in rec.text
    raw = c.get(f"/recordings/{portal.recording_ids['B']}/raw")
    assert raw.headers["content-type"].startswith("text/plain") and "attachment" in raw.headers[
        "content-disposition"]
    assert json.loads(raw.text.splitlines()[0])["version"] == 2
    report = c.get(f"/runs/{portal.run_ids['B']['selfcheck']}")
    assert report.status_code == 200 and "Auto-vérification" in report.text


def test_keystrokes_are_shown_as_command_lines() -> None:
    from labkit.interfaces.web.pages import typed_lines

    keys = [(0.5, "ip r"), (0.7, "o"), (0.8, "x\x7fute\r"), (2.0, "\x1b[A"), (2.1, "\r"), (3.0, "ping 10.0.0.1\r"),
            (5.0, "\x03"), (6.0, "ls\t")]
    assert typed_lines(keys) == [(0.5, "ip route"), (2.1, "⏎"), (3.0, "ping 10.0.0.1"), (5.0, "^C"), (6.0, "ls⇥")]


def test_tampered_run_is_not_shown(portal: Portal) -> None:
    with portal.db.session() as s:
        run = s.get(GradingRun, portal.run_ids["A"]["grade"])
        folder = portal.settings.runs / run.run_id
    results = folder / "results.json"
    os.chmod(folder, 0o755)
    os.chmod(results, 0o644)
    text = results.read_text()
    forged = re.sub(r'"score": ?10', '"score": 9', text, count=1)
    assert forged != text
    results.write_text(forged)
    c = portal.login("assessor")
    r = c.get(f"/runs/{portal.run_ids['A']['grade']}")
    assert r.status_code == 409 and "modified after grading" in r.text


# ----------------------------------------------------------------------------- accessibility
class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[str | None] = []
        self.labels: set[str] = set()
        self.html_lang: str | None = None
        self.aria_labelled: int = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.html_lang = a.get("lang")
        if tag == "label" and a.get("for"):
            self.labels.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.fields.append(a.get("id"))


@pytest.mark.parametrize("role,url", [
    ("anonymous", "/login"), ("trainer", "/cohorts/new"), ("trainer", "/cohorts/{cohort}"),
    ("A", "/me"), ("assessor", "/runs"), ("assessor", "/candidates/{cand}"),
])
def test_every_field_has_a_label_and_the_page_a_language(portal: Portal, role: str, url: str) -> None:
    c = TestClient(portal.client.app, follow_redirects=False) if role == "anonymous" else portal.login(role)
    html = c.get(url.format(cohort=portal.cohort_id, cand=portal.candidate_ids["A"])).text
    p = _Form()
    p.feed(html)
    assert p.html_lang == "fr"
    assert [f for f in p.fields if f is None or f not in p.labels] == []
    assert 'class="skip" href="#main"' in html and 'id="main"' in html


def test_css_focus_and_contrast() -> None:
    css = (Path(__file__).resolve().parents[3] / "src/labkit/interfaces/web/static/labkit.css").read_text()
    assert ":focus-visible { outline: 3px solid" in css

    def lum(hex_: str) -> float:
        rgb = [int(hex_[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    def ratio(a: str, b: str) -> float:
        hi, lo = sorted((lum(a), lum(b)), reverse=True)
        return (hi + 0.05) / (lo + 0.05)

    var = dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{6})", css))
    for fg, bg in [("fg", "bg"), ("muted", "bg"), ("muted", "panel"), ("link", "bg"), ("link", "panel"),
                   ("btn-fg", "btn"), ("btn-fg", "danger"), ("ok", "bg"), ("danger", "bg"), ("warn", "bg")]:
        assert ratio(var[fg], var[bg]) >= 4.5, (fg, bg, ratio(var[fg], var[bg]))
    assert ratio(var["focus"], var["bg"]) >= 3.0
