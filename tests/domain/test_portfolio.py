"""The portfolio index pages, summary and artifact exports, from stored runs only."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
import json
from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from labkit.adapters.storage.runs import RunWriter, StoredRun, open_run
from labkit.domain.criteria import load_catalog
from labkit.domain.criteria_summary import criterion_summary
from labkit.domain.portfolio import (
    Portfolio,
    RecordingEntry,
    RunEntry,
    readme_text,
    render_index,
    report_name,
    run_exports,
    summary_json,
)
from labkit.domain.report import render_html
from labkit.models.common import I18n
from labkit.models.results import CheckResult, GradeSummary
from tests.domain.test_report import CRITERIA, RUN_ID, _ev, _t, build_run, make_info

FP = "SHA256:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
WHEN = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
NASTY = 'Zoé "</style><script>alert(1)</script>" \\ O\'Hara'


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        d = dict(attrs)
        if d.get("id"):
            self.ids.add(str(d["id"]))
        for k in ("href", "src"):
            if d.get(k):
                self.hrefs.append(str(d[k]))


def _parse(html: str) -> _Links:
    p = _Links()
    p.feed(html)
    return p


def _backup_run(runs_dir: Path) -> StoredRun:
    """A run with a restore test and two grader tables (availability, alert timeline)."""
    rid = "bkp-20261128T040000Z-0c0d"
    check = CheckResult(id="restore-test", title=I18n(fr="Test de restauration", en="Restore test"),
                        grader="backup.restore_test", status="pass", points=20, max_points=20,
                        message=I18n(fr="Restauration vérifiée.", en="Restore verified."),
                        criteria=["tssr-3.1-redondance"], evidence=["restore.run"])
    info = make_info(rid, lab_id="backup-restore", instance="bkp", checks=[{"id": "restore-test"}])
    summary = GradeSummary(run_id=rid, lab_id="backup-restore", instance="bkp", candidate=info.candidate, score=20,
                           max_score=20, started_at=info.started_at, ended_at=info.ended_at, checks=[check])
    w = RunWriter(runs_dir, rid)
    w.add_evidence(_ev("restore.damage", "restore-test", "fault", 1, source="grader", target="fs:/srv",
                       action="simulated ransomware", meta={"phase": "damage"}))
    w.add_evidence(_ev("restore.run", "restore-test", "exec", 2, source="fs", target="fs",
                       action="run the restore script", meta={"phase": "restore", "rto_s": 12.5}))
    w.add_artifact("availability", [{"device": "r1", "up_ratio": 1.0, "samples": [1, 1]}])
    w.add_artifact("alert-timeline", [{"alert": "NodeDown", "detection_delay_s": 9.5, "fault": "cut r1"}])
    w.seal(info, summary, CRITERIA, now=_t(43))
    return open_run(runs_dir, rid)


@pytest.fixture
def runs(tmp_path: Path) -> list[StoredRun]:
    runs_dir = tmp_path / "runs"
    build_run(runs_dir)
    return [open_run(runs_dir, RUN_ID), _backup_run(runs_dir)]


def _portfolio(runs: list[StoredRun], candidate: str = "Camille Dupont",
               certifications: list[str] | None = None) -> Portfolio:
    entries = [RunEntry(run=r, counted=True,
                        reports=[report_name(r.run_id, lg, ext) for lg in ("fr", "en") for ext in ("html", "pdf")],
                        exports=run_exports(r)) for r in runs]
    rec = RecordingEntry(cast="recordings/dupont-x.cast", transcript="recordings/dupont-x.html", node="r-hq",
                         channel="ssh", started_at=WHEN, size_bytes=2048)
    catalog = load_catalog()
    return Portfolio(candidate=candidate, centre="Centre de Lyon", key_fingerprint=FP, created_at=WHEN,
                     rows=criterion_summary(runs, catalog, certifications), runs=entries, recordings=[rec],
                     certifications={c.id: c.title for c in catalog.certifications})


def _csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def test_routing_exports(runs: list[StoredRun]) -> None:
    ex = {x.name: x for x in run_exports(runs[0])}
    # routes-r-br2 holds {"error": ...}: nothing to export, the report says why
    assert set(ex) == {"topology.svg", "addressing.csv", "routes-r-hq.csv", "routes-r-br1.csv",
                       "addressing.html", "routes-r-hq.html", "routes-r-br1.html"}
    rows = _csv(ex["addressing.csv"].data)
    assert rows[0] == ["node", "iface", "state", "addresses", "error"]
    assert ["r-hq", "eth0", "up", "10.1.2.1/24 fe80::1/64", ""] in rows
    assert _csv(ex["routes-r-hq.csv"].data)[2] == ["10.1.3.0/24", "172.16.0.2", "eth1", "ospf", "20"]
    assert ex["routes-r-hq.csv"].args == {"node": "r-hq"}
    svg = ET.fromstring(ex["topology.svg"].data)
    assert svg.tag.endswith("svg")
    text = ex["topology.svg"].data.decode()
    assert "10.1.2.0/24" in text and "fe80" not in text  # link-local left off the drawing


def test_backup_and_supervision_exports(runs: list[StoredRun]) -> None:
    ex = {x.name: x for x in run_exports(runs[1])}
    assert set(ex) == {f"{n}.{ext}" for n in ("restore-test", "availability", "alert-timeline")
                       for ext in ("csv", "html")}
    restore = _csv(ex["restore-test.csv"].data)
    assert restore[0][:4] == ["check", "verdict", "evidence", "phase"]
    assert [r[2] for r in restore[1:]] == ["restore.damage", "restore.run"]
    assert restore[2][3] == "restore" and restore[2][12] == "12.5"
    avail = _csv(ex["availability.csv"].data)
    assert avail == [["device", "up_ratio", "samples"], ["r1", "1.0", "[1, 1]"]]
    assert ex["alert-timeline.csv"].label == "art_alerts"
    page = ex["restore-test.html"].data.decode()
    assert "<h1>Test de restauration</h1>" in page and "<td>restore.run</td>" in page and "<td>12.5</td>" in page
    assert 'href="../../index.html"' in page and "<script" not in page


def test_table_pages_escape_what_graders_stored(tmp_path: Path) -> None:
    rid = "sup-20261128T040000Z-0e0f"
    info = make_info(rid, instance="sup", checks=[])
    summary = GradeSummary(run_id=rid, lab_id=info.lab_id, instance="sup", candidate=info.candidate, score=0,
                           max_score=0, started_at=info.started_at, ended_at=info.ended_at, checks=[])
    w = RunWriter(tmp_path / "runs", rid)
    w.add_artifact("alert-timeline", [{"alert": "<img src=x onerror=alert(1)>", "fault": "cut"}])
    w.seal(info, summary, [], now=_t(43))
    ex = {x.name: x for x in run_exports(open_run(tmp_path / "runs", rid), "en")}
    page = ex["alert-timeline.html"].data.decode()
    assert "<img" not in page and "&lt;img src=x" in page and "<h1>Alert timeline</h1>" in page

def test_table_pages_read_like_the_report_while_the_csv_keeps_raw_values(tmp_path: Path) -> None:
    """A jury reads the HTML table: times of the run's day as HH:MM:SS.mmm (the day said once),
    nested records as ``key: value``; a spreadsheet gets the CSV with ISO dates and JSON."""
    rid = "sup-20261128T040000Z-0e1f"
    info = make_info(rid, instance="sup", checks=[])
    day = info.started_at.astimezone(UTC)
    at = day.replace(hour=4, minute=5, second=6, microsecond=789000).isoformat()
    summary = GradeSummary(run_id=rid, lab_id=info.lab_id, instance="sup", candidate=info.candidate, score=0,
                           max_score=0, started_at=info.started_at, ended_at=info.ended_at, checks=[])
    w = RunWriter(tmp_path / "runs", rid)
    w.add_artifact("availability", [{"device": "srv2", "from": at,
                                     "down_periods": [{"from": at, "seconds": 4.0}]}])
    w.seal(info, summary, [], now=_t(43))
    ex = {x.name: x for x in run_exports(open_run(tmp_path / "runs", rid), "fr")}
    page = ex["availability.html"].data.decode()
    assert '<td class="t">04:05:06.789</td>' in page
    assert "<td>from: 04:05:06.789, seconds: 4.0</td>" in page
    assert f"heures UTC du {day:%d/%m/%Y}" in page and at not in page
    raw = _csv(ex["availability.csv"].data)
    assert raw[1][1] == at and json.loads(raw[1][2]) == [{"from": at, "seconds": 4.0}]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_index_summary_first_then_criteria_with_links(runs: list[StoredRun], lang: str) -> None:
    p = _portfolio(runs)
    html = render_index(p, lang)
    parsed = _parse(html)
    summary_at, criteria_at, runs_at = html.index('id="summary"'), html.index('id="criteria"'), html.index('id="runs"')
    assert summary_at < criteria_at < runs_at
    # every criterion of the cited certifications, with a row in the table and a section
    assert len(p.rows) > 3
    for row in p.rows:
        assert f"crit-{row.criterion.id}" in parsed.ids
        assert f'href="#crit-{row.criterion.id}"' in html
    statuses = {r.criterion.id: r.status for r in p.rows}
    assert statuses["tssr-2.3-liens"] == "not_acquired"  # ospf-adjacency failed
    assert statuses["tssr-3.1-redondance"] == "not_acquired"  # wan-resilience in error
    assert "not_assessed" in statuses.values()
    quoted = next(c.text for c in CRITERIA if c.id == "tssr-2.3-liens")
    assert f"« {quoted} »" in html.replace("&#39;", "'")
    # links: the report section of each check, evidence files that exist (ospf.gone does not)
    assert f"reports/{RUN_ID}.{lang}.html#check-ospf-adjacency" in parsed.hrefs
    assert f"runs/{RUN_ID}/evidence/ospf.r-br2.json" in parsed.hrefs
    assert f"runs/{RUN_ID}/evidence/ospf.gone.json" not in parsed.hrefs and "ospf.gone" in html
    assert f"artifacts/{RUN_ID}/topology.svg" in parsed.hrefs
    assert {f"artifacts/{RUN_ID}/addressing.html", f"artifacts/{RUN_ID}/addressing.csv"} <= set(parsed.hrefs)
    assert "recordings/dupont-x.html" in parsed.hrefs and "recordings/dupont-x.cast" in parsed.hrefs
    assert "index.en.html" in parsed.hrefs if lang == "fr" else "index.html" in parsed.hrefs
    # offline: relative links only, no script, nothing fetched
    assert all(not re.match(r"^[a-z]+:", h) and not h.startswith("//") and not h.startswith("/") for h in parsed.hrefs)
    assert "script" not in parsed.tags and "img" not in parsed.tags and "link" not in parsed.tags
    assert FP in html and "Centre de Lyon" in html
    assert "tssr — Référentiel technicien systèmes et réseaux" in html


def _between(html: str, start: str, end: str) -> str:
    return html[html.index(start): html.index(end)]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_cards_for_assessed_criteria_one_line_for_the_others(runs: list[StoredRun], lang: str) -> None:
    p = _portfolio(runs)
    html = render_index(p, lang)
    criteria = _between(html, 'id="criteria"', 'id="not-assessed"')
    unassessed = _between(html, 'id="not-assessed"', 'id="runs"')
    assessed = [r for r in p.rows if r.status != "not_assessed"]
    others = [r for r in p.rows if r.status == "not_assessed"]
    assert assessed and len(others) > 10
    # a card per assessed criterion, none for the others, and no "nobody cites it" filler
    assert criteria.count('<div class="criterion ') == len(assessed)
    for r in assessed:
        assert f'id="crit-{r.criterion.id}"' in criteria
    assert "Aucun contrôle des évaluations retenues ne cite ce critère" not in html
    assert "No check of the gradings kept cites this criterion" not in html
    # one line each: certification, code, the full text (the summary table truncates long ones)
    items = re.findall(r'<li id="crit-([^"]+)">(.*?)</li>', unassessed, re.S)
    assert [i for i, _ in items] == [r.criterion.id for r in others]
    texts = {r.criterion.id: r for r in others}
    for cid, item in items:
        row = texts[cid]
        assert f"{row.criterion.certification} · {row.criterion.code}" in item
        assert f"« {row.criterion.text} »" in unescape(item)
    long = next(r for r in others if len(r.criterion.text) > 140)
    summary = _between(html, 'id="summary"', 'id="criteria"')
    assert long.criterion.text not in unescape(summary) and "…" in summary
    assert f'href="#crit-{long.criterion.id}"' in summary


def test_evidence_line_under_each_check_and_report_anchor(runs: list[StoredRun]) -> None:
    html = render_index(_portfolio(runs), "fr")
    criteria = _between(html, 'id="criteria"', 'id="not-assessed"')
    # the evidence is not a table column any more: a full-width line under the check's row
    assert "<th>Preuves</th>" not in criteria
    card = _between(criteria, 'id="crit-tssr-2.3-liens"', 'id="crit-tssr-3.1-redondance"')
    checks = card.split('<div class="chk">')[1:]
    assert len(checks) == 2  # lan-reachability and ospf-adjacency cite it
    ospf = next(c for c in checks if "check-ospf-adjacency" in c)
    row, ev = ospf.split('<div class="ev">', 1)
    assert "evidence/" not in row
    hrefs = _parse(ev).hrefs
    assert f"runs/{RUN_ID}/evidence/ospf.r-br2.json" in hrefs
    assert f"reports/{RUN_ID}.fr.html#check-ospf-adjacency" in _parse(row).hrefs
    # inline, comma-separated
    assert re.search(r"ospf\.r-br2</a>,</span> <span class=\"ev\"><a [^>]*>ospf\.r-br1</a>,</span>", ev)
    # the anchor exists in the report the link points to
    report_ids = _parse(render_html(runs[0], "fr")).ids
    for href in _parse(criteria).hrefs:
        if href.startswith(f"reports/{RUN_ID}.fr.html#"):
            assert href.split("#", 1)[1] in report_ids, href


def test_certification_filter(runs: list[StoredRun]) -> None:
    catalog = load_catalog()
    everything = criterion_summary(runs, catalog)
    assert {r.criterion.certification for r in everything} == {"igs", "tssr"}
    tssr = criterion_summary(runs, catalog, ["tssr"])
    assert tssr == [r for r in everything if r.criterion.certification == "tssr"]
    # a certification nobody cites: all its criteria, not assessed; the order asked is kept after the cited ones
    rows = criterion_summary(runs, catalog, ["sio", "tssr"])
    certs = list(dict.fromkeys(r.criterion.certification for r in rows))
    assert certs == ["tssr", "sio"]
    sio = [r for r in rows if r.criterion.certification == "sio"]
    assert len(sio) == sum(1 for c in catalog.criteria if c.certification == "sio") > 0
    assert {r.status for r in sio} == {"not_assessed"}
    p = _portfolio(runs, certifications=["tssr"])
    html = render_index(p, "fr")
    assert "tssr — " in html and "igs — " not in html and "crit-igs-" not in html
    data = summary_json(p)
    assert data["certifications"] == ["tssr"]
    assert {c["certification"] for c in data["criteria"]} == {"tssr"}
    assert sum(data["counts"].values()) == len(data["criteria"]) == len(tssr)


def test_index_without_links_for_the_pdf(runs: list[StoredRun]) -> None:
    html = render_index(_portfolio(runs), "fr", links=False)
    hrefs = _parse(html).hrefs
    assert hrefs and all(h.startswith("#crit-") for h in hrefs)  # only links inside the page
    assert f"reports/{RUN_ID}.fr.pdf" in html  # paths shown as text
    assert f"reports/{RUN_ID}.fr.html#check-ospf-adjacency" in html
    assert f"runs/{RUN_ID}/evidence/&lt;preuve&gt;.json" in html and "ospf.r-br2" in html
    assert 'counter(page) " / " counter(pages)' in html


def test_names_cannot_break_out_of_html_or_css(runs: list[StoredRun]) -> None:
    html = render_index(_portfolio(runs, NASTY), "fr")
    assert "<script>" not in html and "</style><script>" not in html
    style = html[html.index("<style>"): html.index("</style>")]
    assert '"</' not in style and "<script" not in style
    top_left = re.search(r"@top-left \{ content: (\"[^\"]*\");", style)
    assert top_left is not None and "\\00003c" in top_left.group(1)  # '<' escaped in the CSS string


def test_summary_json_and_readme(runs: list[StoredRun]) -> None:
    p = _portfolio(runs)
    data = summary_json(p)
    assert data["format"] == "labkit-portfolio/1" and data["key_fingerprint"] == FP
    assert data["certifications"] == ["igs", "tssr"]
    assert sum(data["counts"].values()) == len(data["criteria"])
    by_id = {c["id"]: c for c in data["criteria"]}
    assert by_id["igs-b1-interconnexions"]["status"] == "not_acquired"
    refs = by_id["tssr-2.3-liens"]["checks"]
    assert {(r["run_id"], r["check_id"], r["status"]) for r in refs} == {
        (RUN_ID, "lan-reachability", "pass"), (RUN_ID, "ospf-adjacency", "fail")}
    assert data["runs"][0]["artifacts"][0].startswith(f"artifacts/{RUN_ID}/")
    assert data["recordings"][0]["node"] == "r-hq"
    text = readme_text(p)
    assert FP in text and "sha256sum -c SHA256SUMS" in text and "-n labkit-bundle" in text
    assert text.index("PORTEFEUILLE") < text.index("EVIDENCE PORTFOLIO")
    assert "(or index.pdf, in French)" in text and "(or index.pdf)" in readme_text(p, "en")
