"""The downloads as an assessor would get them: in headless Chromium (Debian's), from the
cohort page's form and the candidate's page, under the portal's Content-Security-Policy."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from tests.interfaces.web.conftest import Portal
from tests.interfaces.web.test_browser import (  # noqa: F401  (fixtures)
    _login_with_keyboard,
    _shot,
    _tab_to,
    browser,
    pytestmark,
    server,
)


def test_assessor_downloads_gradebook_bundle_and_pdf(portal: Portal, server: str, browser: object,  # noqa: F811
                                                     tmp_path: Path) -> None:
    ctx = browser
    page = ctx.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    _login_with_keyboard(page, server, "jury", portal.passwords["assessor"])
    page.goto(f"{server}/cohorts/{portal.cohort_id}")
    page.select_option("#scale", "20")
    _shot(page, "assessor-gradebook-form")
    _tab_to(page, "Télécharger le CSV pour Moodle")
    with page.expect_download() as dl:
        page.keyboard.press("Enter")
    csv_path = tmp_path / "moodle.csv"
    dl.value.save_as(csv_path)
    assert dl.value.suggested_filename == "bts1-moodle.csv"
    rows = list(csv.reader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert rows[0][0] == "Email address" and {r[0]: r[2] for r in rows[1:]} == {
        "alice@example.org": "20", "bob@example.org": "20"}

    with page.expect_download() as dl:
        page.click("text=Télécharger le JSON (avec le tableau par critère)")
    assert dl.value.suggested_filename == "bts1-gradebook.json"

    page.goto(f"{server}/candidates/{portal.candidate_ids['B']}")
    with page.expect_download(timeout=120000) as dl:
        page.click("text=Télécharger le dossier de preuves signé (zip)")
    zip_path = tmp_path / "bob.zip"
    dl.value.save_as(zip_path)
    with zipfile.ZipFile(zip_path) as zf:
        assert "bob-durand/index.html" in zf.namelist()
    with page.expect_download(timeout=60000) as dl:
        page.locator("a", has_text="PDF").first.click()
    pdf_path = tmp_path / "report.pdf"
    dl.value.save_as(pdf_path)
    assert pdf_path.read_bytes().startswith(b"%PDF-")
    assert [e for e in errors if "Content Security Policy" in e] == []
