"""PDF rendering: offline, A4, the same bytes twice, and what a jury checks on every page.

Pages are read back with poppler's pdfinfo / pdftotext (Debian poppler-utils): ``-bbox`` gives
every word with its box, so "nothing runs off the page" and "no table row is split" are
measured, not eyeballed.
"""

from __future__ import annotations

import html as htmlmod
import logging
import re
import subprocess
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.render.pdf import html_to_pdf, offline_fetcher
from labkit.adapters.storage.runs import RunWriter, StoredRun, open_run
from labkit.domain.report import render_html
from labkit.models.results import GradeSummary
from labkit.settings import load_settings
from tests.domain.test_report import (
    CHECKS,
    CRITERIA,
    EVIDENCE,
    RUN_ID,
    SIGNER,
    T0,
    _check,
    _ev,
    build_run,
    make_info,
)

A4 = (595.276, 841.89)
MARGIN_X = 14 / 25.4 * 72  # the report's left/right page margin, in points


def pdfinfo(pdf: Path) -> dict[str, str]:
    out = subprocess.run(["pdfinfo", "-isodates", str(pdf)], capture_output=True, text=True, check=True).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def page_text(pdf: Path, n: int) -> str:
    return subprocess.run(
        ["pdftotext", "-f", str(n), "-l", str(n), "-layout", str(pdf), "-"],
        capture_output=True, text=True, check=True,
    ).stdout


def words(pdf: Path) -> list[list[tuple[float, float, float, float, str]]]:
    """Per page, every word as (xMin, yMin, xMax, yMax, text)."""
    out = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = []
    for page in out.split("<page ")[1:]:
        pages.append([
            (float(a), float(b), float(c), float(d), htmlmod.unescape(t))
            for a, b, c, d, t in re.findall(
                r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', page
            )
        ])
    return pages


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    return load_settings().runs


@pytest.fixture(scope="module")
def signed_pdf(tmp_path_factory: pytest.TempPathFactory) -> tuple[StoredRun, Path, bytes]:
    runs = tmp_path_factory.mktemp("home") / "runs"
    build_run(runs, signer=SIGNER)
    run = open_run(runs, RUN_ID)
    data = html_to_pdf(render_html(run, "fr"), base_url=str(run.path))
    pdf = tmp_path_factory.mktemp("pdf") / "report.pdf"
    pdf.write_bytes(data)
    return run, pdf, data


# --- offline ---------------------------------------------------------------------------------

def test_fetcher_refuses_http_and_files_outside_base(tmp_path: Path) -> None:
    base = tmp_path / "run"
    base.mkdir()
    (base / "inside.txt").write_text("ok")
    (tmp_path / "outside.txt").write_text("secret")
    (base / "escape.txt").symlink_to(tmp_path / "outside.txt")
    fetch = offline_fetcher(str(base))
    for url in ("http://127.0.0.1:9/x.png", "https://example.org/a.css", "ftp://example.org/f"):
        with pytest.raises(ValueError, match="refused"):
            fetch(url)
    for path in (tmp_path / "outside.txt", base / "escape.txt", base / ".." / "outside.txt"):
        with pytest.raises(ValueError, match="outside"):
            fetch("file://" + str(path))
    assert fetch((base / "inside.txt").as_uri()).read() == b"ok"
    assert fetch("data:text/plain,hello").read() == b"hello"
    # without a base folder, no file at all
    with pytest.raises(ValueError, match="no base folder"):
        offline_fetcher(None)((base / "inside.txt").as_uri())


def test_rendering_never_reaches_the_network(tmp_path: Path) -> None:
    """A document pointing at a live local HTTP server renders without a single request to it."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        (tmp_path / "outside.css").write_text("body { color: red }")
        base = tmp_path / "base"
        base.mkdir()
        html = (
            f'<html><head><link rel="stylesheet" href="{url}/a.css">'
            f'<link rel="stylesheet" href="../outside.css"></head>'
            f'<body><p>hello</p><img src="{url}/b.png"><img src="//127.0.0.1:{server.server_address[1]}/c.png">'
            '<img src="data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22'
            ' width=%221%22 height=%221%22/%3E">'
            "</body></html>"
        )
        pdf = html_to_pdf(html, base_url=str(base))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert pdf.startswith(b"%PDF-") and hits == []


def test_weasyprint_warnings_stay_out_of_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="labkit.render.pdf"):
        html_to_pdf('<html><body style="frobnicate: 3"><img src="http://example.org/x.png">x</body></html>')
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    # ... they are in labkit's log, at debug level: the refused image and the unknown property
    records = [r for r in caplog.records if r.name == "labkit.render.pdf"]
    assert records and all(r.levelno == logging.DEBUG for r in records)
    text = "\n".join(r.getMessage() for r in records)
    assert "http://example.org/x.png" in text and "refused" in text and "frobnicate" in text


# --- the report as a PDF ---------------------------------------------------------------------

def test_report_pdf_is_a4_with_the_runs_metadata(signed_pdf: tuple[StoredRun, Path, bytes]) -> None:
    run, pdf, _ = signed_pdf
    info = pdfinfo(pdf)
    w, h = (float(x) for x in re.findall(r"[\d.]+", info["Page size"])[:2])
    assert abs(w - A4[0]) <= 1 and abs(h - A4[1]) <= 1
    assert int(info["Pages"]) >= 4
    assert info["Author"] == "GRETA Lorraine Nord"
    assert "Camille Dupont" in info["Title"] and "Rapport de preuves" in info["Title"]
    ended = run.info.ended_at.replace(microsecond=0)
    assert info["CreationDate"].startswith(f"{ended:%Y-%m-%dT%H:%M:%S}"), info["CreationDate"]


def test_same_run_same_bytes(signed_pdf: tuple[StoredRun, Path, bytes]) -> None:
    run, _, data = signed_pdf
    assert html_to_pdf(render_html(run, "fr"), base_url=str(run.path)) == data


def test_every_page_names_candidate_centre_date_key_and_number(signed_pdf: tuple[StoredRun, Path, bytes]) -> None:
    _, pdf, _ = signed_pdf
    pages = int(pdfinfo(pdf)["Pages"])
    for n in range(1, pages + 1):
        text = page_text(pdf, n)
        assert "Camille Dupont" in text, n
        assert "GRETA Lorraine Nord" in text, n
        assert "28/11/2026 03:44:55 UTC" in text, n
        assert SIGNER.fingerprint in text, n
        assert f"page {n} / {pages}" in text, n


def test_unsigned_report_says_so_on_every_page(runs_dir: Path, tmp_path: Path) -> None:
    build_run(runs_dir)
    run = open_run(runs_dir, RUN_ID)
    pdf = tmp_path / "en.pdf"
    pdf.write_bytes(html_to_pdf(render_html(run, "en"), base_url=str(run.path)))
    info = pdfinfo(pdf)
    assert "Author" not in info  # no centre named: no author rather than a made-up one
    pages = int(info["Pages"])
    for n in range(1, pages + 1):
        text = page_text(pdf, n)
        assert "Signing key: unsigned" in text and f"page {n} / {pages}" in text, n


# --- nothing runs off the page, nothing is cut ------------------------------------------------

LONG = "x" * 60 + "/very/long/path/without/any/space/" + "y" * 45 + "-END-OF-LONG-LINE"


def test_long_lines_wrap_and_tables_rows_stay_whole(runs_dir: Path, tmp_path: Path) -> None:
    assert len(LONG) < 160  # under the report's excerpt width: shown whole, so it must wrap
    w = RunWriter(runs_dir, "long")
    for ev in EVIDENCE:
        w.add_evidence(ev)
    w.add_evidence(
        _ev(
            "long.line",
            "lan-reachability",
            "ssh",
            30,
            action="cat /" + "z" * 120 + "/STARTOFACTION-" + "q" * 30 + "-ENDOFACTION",
            raw=f"first line\n{LONG}\nlast line",
            meta={"path": "/" + "m" * 150 + "-ENDOFMETA"},
        )
    )
    rows = [
        {"probe": f"r{i:02d}a", "target": f"r{i:02d}b", "state": f"r{i:02d}c " + "up " * 40 + f"r{i:02d}e",
         "latency": f"r{i:02d}d ms"}
        for i in range(60)
    ]
    w.add_artifact("availability", rows)
    checks = [CHECKS[0].model_copy(update={"evidence": [*CHECKS[0].evidence, "long.line"]}), *CHECKS[1:]]
    info = make_info("long")
    summary = GradeSummary(run_id="long", lab_id=info.lab_id, instance=info.instance, candidate=info.candidate,
                           score=25, max_score=60, started_at=T0, ended_at=T0 + timedelta(seconds=42),
                           checks=checks)
    w.seal(info, summary, CRITERIA, signer=SIGNER)
    run = open_run(runs_dir, "long")
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(html_to_pdf(render_html(run, "fr"), base_url=str(run.path)))
    pages = words(pdf)
    # no word beyond the page's margins (a line that did not wrap would be cut off at the edge)
    for n, page in enumerate(pages, 1):
        for x0, _y0, x1, _y1, text in page:
            assert x0 >= MARGIN_X - 1 and x1 <= A4[0] - MARGIN_X + 1, (n, text, x0, x1)
    joined = ["".join(t for *_, t in page) for page in pages]
    ends = (("xxxxxxxx", "-END-OF-LONG-LINE"), ("STARTOFACTION", "-ENDOFACTION"), ("mmmmmmmm", "-ENDOFMETA"))
    for start, end in ends:
        where = [n for n, text in enumerate(joined) if end in text]
        assert where, f"{end} is not in the PDF: the line was cut instead of wrapped"
        assert start in joined[where[0]]
    # each of the 60 rows whole on one page, and the header repeated on every page the table spans
    row_pages = []
    for i in range(60):
        cells = [f"r{i:02d}{c}" for c in "abcde"]  # e ends a cell that wraps over several lines
        on = [n for n, page in enumerate(pages) if any(t in cells for *_, t in page)]
        assert len(on) == 1, f"row {i} is split over pages {on}"
        assert all(any(t == c for *_, t in pages[on[0]]) for c in cells), f"row {i} is incomplete"
        row_pages.append(on[0])
    assert len(set(row_pages)) >= 2, "the 60-row table should span pages for this test to mean anything"
    for n in set(row_pages):
        assert any(t == "latency" for *_, t in pages[n]), f"table header not repeated on page {n + 1}"


# what must never be the last line of a page: a heading, or a check's intro without its evidence
ORPHANS = [
    re.compile(p)
    for p in (
        r"^Synthèse des contrôles$", r"^Critères du référentiel$", r"^Chaque critère est cité",
        r"^Documents techniques$", r"^Schéma de la topologie$", r"^Plan d'adressage$", r"^Tables de routage$",
        r"^Table de routage de ", r"^Paramètres de l'instance$", r"^Détail des contrôles",
        r"^Intégrité du dossier", r"^Titre du contrôle numéro \d+( chk-\d+ Réussi 1 / 1)?$",
        r"^chk-\d+ Réussi 1 / 1$", r"^ok$", r"^Méthode d'observation", r"^Critères : ", r"^Preuves$",
    )
]


def test_no_page_ends_with_a_heading_or_a_check_intro(runs_dir: Path, tmp_path: Path) -> None:
    """14 checks with 1 to 3 evidence blocks of varied length, so that page ends fall in many
    places (without the break rules of the report, pages 1, 7, 9, 10 and 11 end on a heading,
    a check's title, its message or its criteria line)."""
    w = RunWriter(runs_dir, "orph")
    checks = []
    for k in range(14):
        evs = []
        for j in range(1 + k % 3):
            eid = f"c{k}.e{j}"
            lines = 2 + (k * 7 + j * 5) % 14
            w.add_evidence(_ev(eid, f"chk-{k}", "icmp", k * 3 + j, action=f"ping {k} {j}",
                               raw="\n".join(f"line {i} of evidence {eid}" for i in range(lines))))
            evs.append(eid)
        checks.append(_check(f"chk-{k}", f"Titre du contrôle numéro {k}", f"Check number {k}", "pass", 1, 1,
                             ["tssr-2.3-liens"], evs, ("ok", "ok")))
    info = make_info("orph").model_copy(update={"checks": [{"id": c.id, "grader": c.grader} for c in checks]})
    w.seal(info, GradeSummary(run_id="orph", lab_id="x", instance="x", candidate="C", score=14, max_score=14,
                              started_at=T0, ended_at=T0 + timedelta(seconds=60), checks=checks), CRITERIA)
    run = open_run(runs_dir, "orph")
    pdf = tmp_path / "orph.pdf"
    pdf.write_bytes(html_to_pdf(render_html(run, "fr"), base_url=str(run.path)))
    pages = words(pdf)
    assert len(pages) >= 8
    for n, page in enumerate(pages, 1):
        body = [(y0, t) for _x0, y0, _x1, _y1, t in page if 20 / 25.4 * 72 < y0 < A4[1] - 18 / 25.4 * 72]
        last_y = max(y for y, _ in body)
        last = " ".join(t for y, t in body if abs(y - last_y) < 2)
        assert not any(p.search(last) for p in ORPHANS), f"page {n} ends with {last!r}"


def test_a_wide_topology_scales_to_the_page(runs_dir: Path, tmp_path: Path) -> None:
    """Ten sites on a ring draw an SVG about 1800 px wide: it shrinks to the page, every label kept."""
    n = 10
    topology = {
        "nodes": [{"name": f"router-{i:02d}", "role": "router"} for i in range(n)]
        + [{"name": f"pc-{i:02d}", "role": "workstation"} for i in range(n)],
        "segments": [{"name": f"lan-{i:02d}", "members": [f"router-{i:02d}:eth0", f"pc-{i:02d}:eth0"]}
                     for i in range(n)],
        "links": [{"name": f"wan-{i:02d}", "endpoints": [f"router-{i:02d}:eth1", f"router-{(i + 1) % n:02d}:eth2"]}
                  for i in range(n)],
    }
    w = RunWriter(runs_dir, "wide")
    w.add_artifact("topology", topology)
    w.seal(make_info("wide"), GradeSummary(run_id="wide", lab_id="x", instance="x", candidate="C", score=0,
                                           max_score=0, started_at=T0, ended_at=T0, checks=[]), [])
    run = open_run(runs_dir, "wide")
    html = render_html(run, "fr")
    width = int(re.search(r'<svg[^>]* width="(\d+)"', html).group(1))  # type: ignore[union-attr]
    assert width * 0.75 > A4[0]  # wider than the page at its natural size (px -> pt)
    pdf = tmp_path / "wide.pdf"
    pdf.write_bytes(html_to_pdf(html, base_url=str(run.path)))
    pages = words(pdf)
    labels = [t for page in pages for *_, t in page if t.startswith("router-")]
    assert sorted(labels) == [f"router-{i:02d}" for i in range(n)]
    for page in pages:
        for x0, _y0, x1, _y1, text in page:
            assert x0 >= MARGIN_X - 1 and x1 <= A4[0] - MARGIN_X + 1, (text, x0, x1)
