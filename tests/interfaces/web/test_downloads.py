"""The portal's downloads: a cohort's gradebook for Moodle (CSV) and as JSON, a candidate's
signed bundle, a report's PDF. Who may download what is in test_authz_matrix.py; this checks
what is downloaded."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import zipfile
from pathlib import Path

from labkit.adapters.bundle import verify_path
from labkit.adapters.db import repo
from labkit.adapters.security.keyring import Keyring, Trust
from tests.interfaces.web.conftest import Portal
from tests.usecases.moodle_fixture import Course, GradeItem, User, import_grades


def test_cohort_page_offers_the_gradebook_in_french_first(portal: Portal) -> None:
    c = portal.login("assessor")
    page = c.get(f"/cohorts/{portal.cohort_id}").text
    assert "Carnet de notes (Moodle)" in page and "Télécharger le CSV pour Moodle" in page
    assert f'action="/cohorts/{portal.cohort_id}/gradebook.csv"' in page
    assert "Carnet" not in c.get(f"/cohorts/{portal.cohort_id}?lang=en").text


def test_moodle_csv_imports_into_the_moodle_fixture(portal: Portal) -> None:
    c = portal.login("trainer")
    r = c.get(f"/cohorts/{portal.cohort_id}/gradebook.csv?id_field=email&scale=20")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="bts1-moodle.csv"' in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["Email address", "Nom / Name", "demo-lab", "Feedback: demo-lab"]
    assert {row[0]: row[2] for row in rows[1:]} == {"alice@example.org": "20", "bob@example.org": "20"}
    course = Course(users=[User(1, "am", "alice@example.org"), User(2, "bd", "bob@example.org")],
                    items=[GradeItem(5, "demo-lab", grademax=20.0)])
    result = import_grades(course, r.content, mapfrom=0, mapto="useremail", mappings={2: "5", 3: "feedback_5"})
    assert result.clamped == [] and result.blank_identifier_lines == []
    assert result.grades[(5, 1)].finalgrade == 20.0
    assert "Tous les contrôles sont réussis" in (result.grades[(5, 1)].feedback or "")


def test_gradebook_json_and_missing_identifier(portal: Portal) -> None:
    c = portal.login("assessor")
    r = c.get(f"/cohorts/{portal.cohort_id}/gradebook.json")
    assert r.status_code == 200
    data = json.loads(r.content)
    assert data["id_field"] == "email" and data["scale"] == "100"
    assert [cand["identifier"] for cand in data["candidates"]] == ["alice@example.org", "bob@example.org"]
    alice = data["candidates"][0]
    assert alice["grades"]["demo-lab"]["score"] == 10 and alice["grades"]["demo-lab"]["grade"] == 100
    # the roster gave no username: a clear refusal naming both candidates, nothing downloaded
    r = c.get(f"/cohorts/{portal.cohort_id}/gradebook.csv?id_field=username")
    assert r.status_code == 409 and r.headers["content-type"].startswith("text/html")
    assert "pas de nom d&#39;utilisateur" in r.text and "Alice Martin, Bob Durand" in r.text
    r = c.get(f"/cohorts/{portal.cohort_id}/gradebook.csv?id_field=phone")
    assert r.status_code == 400


def test_candidate_bundle_verifies(portal: Portal, tmp_path: Path) -> None:
    c = portal.login("assessor")
    r = c.get(f"/candidates/{portal.candidate_ids['A']}/bundle.zip")
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "application/zip"
    assert 'filename="alice-martin.zip"' in r.headers["content-disposition"]
    path = tmp_path / "alice-martin.zip"
    path.write_bytes(r.content)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert "alice-martin/index.pdf" in names and "alice-martin/SHA256SUMS.sig" in names
    run_folder = next(n for n in names if n.startswith("alice-martin/runs/") and n.endswith("/seal.json"))
    assert "bts1-01" in run_folder  # Alice's instance, not Bob's
    assert not any("bts1-02" in n for n in names)
    report = verify_path(path, Trust.from_keyring(Keyring(portal.settings.home / "keys")))
    assert report.ok, [p.line() for p in report.problems]


def test_report_pdf(portal: Portal, tmp_path: Path) -> None:
    c = portal.login("A")
    r = c.get(f"/runs/{portal.run_ids['A']['grade']}/report.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-")
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(r.content)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True, timeout=60).stdout
    assert "Alice Martin" in text and "Bob Durand" not in text
    # the candidate's page links to it; a self-check has no PDF link
    me = c.get("/me").text
    assert f"/runs/{portal.run_ids['A']['grade']}/report.pdf" in me
    assert f"/runs/{portal.run_ids['A']['selfcheck']}/report.pdf" not in me


def test_bundle_refusals_say_what_to_do(portal: Portal) -> None:
    c = portal.login("trainer")
    # a candidate with no recorded grade (a new cohort: nobody submitted yet)
    cohort_id, _creds = portal.exam.create_cohort("demo-lab", "nom\nZoé Zed\n", "bts2", created_by=None, seed=3)
    with portal.db.session() as s:
        zoe = repo.candidates_of(s, cohort_id)[0].id
    r = c.get(f"/candidates/{zoe}/bundle.zip")
    assert r.status_code == 409 and "Zoé Zed n&#39;a pas encore de note enregistrée" in r.text
    # no centre key: how to make it
    for path in (portal.settings.home / "keys").iterdir():
        if path.is_file():
            path.unlink()
    r = c.get(f"/candidates/{portal.candidate_ids['A']}/bundle.zip?lang=en")
    assert r.status_code == 409 and "labkit keys init --centre NAME" in r.text
