"""The per-criterion table (acquired / not acquired / not assessed) on the staff candidate
page and on the candidate's own results, from sealed run folders made with RunWriter."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

from labkit.adapters.db.models import GradingRun
from labkit.adapters.storage.runs import RunWriter
from labkit.models.common import I18n
from labkit.models.results import CheckResult, GradeSummary
from tests.domain.test_report import CRITERIA, make_info
from tests.interfaces.web.conftest import Portal

LINKS = CRITERIA[1].id  # tssr-2.3-liens
REDUNDANCY = CRITERIA[2].id  # tssr-3.1-redondance
INTERCO = CRITERIA[0].id  # igs-b1-interconnexions


def _graded(portal: Portal, key: str, run_id: str, checks: list[tuple[str, str, list[str]]],
            minutes: int = 0, lab_id: str = "routing-multisite") -> int:
    """Seal a run of ``checks`` (id, status, criteria) for candidate ``key`` and record it as a
    complete grading; returns the GradingRun id."""
    name = {"A": "Alice Martin", "B": "Bob Durand"}[key]
    results = [CheckResult(id=cid, title=I18n(fr=f"Vérif {cid}", en=f"Check {cid}"), grader="demo.x", status=st,
                           points=10 if st == "pass" else 0, max_points=10, criteria=crits, evidence=[],
                           message=I18n(fr=f"message {cid}", en=f"message {cid} en"))
               for cid, st, crits in checks]
    info = make_info(run_id, lab_id=lab_id, instance=f"inst{key}", candidate=name,
                     checks=[{"id": c.id} for c in results])
    when = datetime(2026, 11, 30, 8, tzinfo=UTC) + timedelta(minutes=minutes)
    info = info.model_copy(update={"started_at": when, "ended_at": when})
    summary = GradeSummary(run_id=run_id, lab_id=lab_id, instance=info.instance, candidate=name,
                           score=sum(c.points for c in results), max_score=10 * len(results), started_at=when,
                           ended_at=when, checks=results)
    w = RunWriter(portal.settings.runs, run_id)
    w.seal(info, summary, CRITERIA)
    with portal.db.session() as s:
        row = GradingRun(candidate_id=portal.candidate_ids[key], mode="grade", status="complete", run_id=run_id,
                         score=summary.score, max_score=summary.max_score, started_at=when, finished_at=when,
                         pid=1, boot_id="test")
        s.add(row)
        s.flush()
        return row.id


def _rows(html: str) -> dict[str, str]:
    """criterion id -> the table row's text."""
    return {m.group(1): re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", m.group(2))))
            for m in re.finditer(r'<tr class="crit [a-z_]+" id="crit-([^"]+)">(.*?)</tr>', html, re.S)}


def test_staff_page_shows_the_table_with_links_to_the_checks(portal: Portal) -> None:
    rid = _graded(portal, "A", "alice-routing-1", [("lan", "pass", [LINKS]), ("wan", "fail", [INTERCO])])
    c = portal.login("assessor")
    page = c.get(f"/candidates/{portal.candidate_ids['A']}")
    assert page.status_code == 200
    html = page.text
    rows = _rows(html)
    assert "Acquis" in rows[LINKS] and "tssr · A2.3" in rows[LINKS]
    assert CRITERIA[1].text in unescape(html)  # the referential's text, quoted in full
    assert "Non acquis" in rows[INTERCO] and "échoué" in rows[INTERCO]
    assert "Non évalué" in rows[REDUNDANCY] and "Aucune vérification ne le cite." in rows[REDUNDANCY]
    assert '<span class="badge acquired">' in html  # a labelled badge, not a colour alone
    n = {s: len(re.findall(rf'<tr class="crit {s}"', html)) for s in ("acquired", "not_acquired", "not_assessed")}
    assert n["acquired"] == 1 and n["not_acquired"] == 1 and n["not_assessed"] >= 1
    assert f"{n['acquired']} acquis · {n['not_acquired']} non acquis · {n['not_assessed']} non évalués" in html
    link = f"/runs/{rid}#check-lan"
    assert f'href="{link}"' in html
    report = c.get(f"/runs/{rid}")
    assert report.status_code == 200 and 'id="check-lan"' in report.text  # the anchor exists
    en = c.get(f"/candidates/{portal.candidate_ids['A']}?lang=en").text
    assert "Summary by referential criterion" in en and "Acquired" in _rows(en)[LINKS]


def test_latest_grade_per_lab_counts(portal: Portal) -> None:
    _graded(portal, "A", "alice-routing-1", [("lan", "fail", [LINKS])], minutes=0)
    later = _graded(portal, "A", "alice-routing-2", [("lan", "pass", [LINKS])], minutes=5)
    html = portal.login("trainer").get(f"/candidates/{portal.candidate_ids['A']}").text
    assert "Acquis" in _rows(html)[LINKS] and f"/runs/{later}#check-lan" in html
    assert "alice-routing-1" not in _rows(html)[LINKS]


def test_certification_selector(portal: Portal) -> None:
    _graded(portal, "A", "alice-routing-1", [("lan", "pass", [LINKS]), ("wan", "fail", [INTERCO])])
    c = portal.login("assessor")
    url = f"/candidates/{portal.candidate_ids['A']}"
    full = c.get(url).text
    assert '<select id="certification" name="certification">' in full
    assert '<option value="igs"' in full and '<option value="tssr"' in full
    igs = c.get(url, params={"certification": "igs"}).text
    assert '<option value="igs" selected>' in igs
    rows = _rows(igs)
    assert INTERCO in rows and all(k.startswith("igs-") for k in rows)
    tssr = _rows(c.get(url, params={"certification": "tssr"}).text)
    assert LINKS in tssr and not any(k.startswith("igs-") for k in tssr)
    bogus = c.get(url, params={"certification": "nope<b>"})
    assert bogus.status_code == 200
    assert "Certification &#39;nope&lt;b&gt;&#39; inconnue" in bogus.text and "<b>" not in bogus.text
    assert set(_rows(bogus.text)) == set(_rows(full))  # the whole table instead


def test_candidate_sees_their_own_table_only(portal: Portal) -> None:
    _graded(portal, "A", "alice-routing-1", [("lan-alice", "pass", [LINKS])])
    _graded(portal, "B", "bob-routing-1", [("wan-bob", "fail", [INTERCO])])
    a = portal.login("A").get("/me").text
    b = portal.login("B").get("/me").text
    assert "Acquis" in _rows(a)[LINKS] and "lan-alice" in a and "wan-bob" not in a and "bob-routing-1" not in a
    assert "Non acquis" in _rows(b)[INTERCO] and "lan-alice" not in b and "alice-routing-1" not in b
    assert "igs" not in {k.split("-")[0] for k in _rows(a)}  # B's certification is not on A's page
    sel = portal.login("A").get("/me", params={"certification": "tssr"}).text
    assert '<form method="get" action="/me#criteria"' in sel and '<option value="tssr" selected>' in sel
    r = portal.login("B").get(f"/candidates/{portal.candidate_ids['A']}")
    assert r.status_code in (403, 404) and "lan-alice" not in r.text


def test_tampered_run_folder_is_shown_not_counted(portal: Portal) -> None:
    _graded(portal, "A", "alice-routing-1", [("lan", "pass", [LINKS])], lab_id="routing-multisite")
    bad = _graded(portal, "A", "alice-backup-1", [("restore", "pass", [REDUNDANCY])], lab_id="backup-restore")
    results = portal.settings.runs / "alice-backup-1" / "results.json"
    results.write_bytes(results.read_bytes().replace(b'"message ', b'"MESSAGE ', 1))
    for who, url in (("assessor", f"/candidates/{portal.candidate_ids['A']}"), ("A", "/me")):
        page = portal.login(who).get(url)
        assert page.status_code == 200, (who, page.text[:500])
        assert "L&#39;évaluation alice-backup-1 ne peut pas être vérifiée" in page.text
        assert f'href="/runs/{bad}"' in page.text
        rows = _rows(page.text)
        assert "Acquis" in rows[LINKS]
        assert "Non évalué" in rows[REDUNDANCY] and "restore" not in rows[REDUNDANCY]  # not counted


def test_no_recorded_grade_yet(portal: Portal) -> None:
    with portal.db.session() as s:
        for row in s.query(GradingRun).filter(GradingRun.candidate_id == portal.candidate_ids["A"]).all():
            if row.mode != "selfcheck":
                s.delete(row)
    html = portal.login("A").get("/me").text
    assert "Aucune évaluation enregistrée pour l&#39;instant" in html
