"""The trainer's cohort form with the real lab layer: the provider select offers netns, and
proxmox only when this home has a Proxmox configuration; a lab that cannot be graded on the
chosen provider is refused with the lifecycle's one sentence, and nothing is made."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from labkit.adapters.db.database import Database
from labkit.adapters.db.models import Cohort, User
from labkit.errors import UserError
from labkit.interfaces.web.app import create_app
from labkit.settings import Settings
from labkit.usecases.exam import Exam, RealLabOps
from labkit.usecases.lifecycle import Context
from tests.conftest import PROJECT
from tests.interfaces.web.conftest import csrf_of, make_db


@pytest.fixture
def trainer(tmp_path: Path) -> Iterator[tuple[TestClient, Exam, Database]]:
    ctx = Context(Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT))
    db = make_db(tmp_path)
    exam = Exam(ctx, db, ops=RealLabOps(ctx))
    _, pw = exam.add_user("formateur", "trainer")
    app = create_app(ctx, db, exam=exam, final_check_every=0)
    with TestClient(app, follow_redirects=False) as c:
        page = c.get("/login")
        r = c.post("/login", data={"login": "formateur", "password": pw, "csrf_token": csrf_of(page.text)})
        assert r.status_code == 303, r.text
        yield c, exam, db
    exam.close()
    db.dispose()


def _options(html: str) -> list[str]:
    select = re.search(r'<select id="provider" name="provider"[^>]*>(.*?)</select>', html, re.S)
    assert select, "no provider select on the cohort form"
    return re.findall(r'<option value="([^"]+)"', select.group(1))


def test_provider_select_offers_proxmox_only_when_configured(trainer: tuple[TestClient, Exam, Database]) -> None:
    c, exam, _db = trainer
    page = c.get("/cohorts/new")
    assert page.status_code == 200 and 'for="provider"' in page.text
    assert _options(page.text) == ["netns"]
    home = exam.ctx.settings.home
    home.mkdir(parents=True, exist_ok=True)
    (home / "proxmox.toml").write_text('url = "https://pve.invalid:8006"\n', encoding="utf-8")
    assert _options(c.get("/cohorts/new").text) == ["netns", "proxmox"]


def test_an_unfit_lab_provider_pair_shows_the_sentence_and_makes_nothing(
        trainer: tuple[TestClient, Exam, Database]) -> None:
    c, exam, db = trainer
    home = exam.ctx.settings.home
    form = c.get("/cohorts/new")
    roster = ("liste.csv", b"nom\nAlice Martin\n", "text/csv")
    # proxmox not configured: refused, whatever the browser sent
    r = c.post("/cohorts", data={"csrf_token": csrf_of(form.text), "lab": "backup-restore", "name": "pve1",
                                 "provider": "proxmox"}, files={"roster": roster})
    assert r.status_code == 400 and "provider 'proxmox' cannot be used for a cohort here" in unescape(r.text)
    home.mkdir(parents=True, exist_ok=True)
    (home / "proxmox.toml").write_text('url = "https://pve.invalid:8006"\n', encoding="utf-8")
    with pytest.raises(UserError) as info:
        exam.lab.fits("backup-restore", "proxmox")
    sentence = str(info.value)
    assert sentence.startswith("lab backup-restore cannot be graded on provider proxmox")
    r = c.post("/cohorts", data={"csrf_token": csrf_of(form.text), "lab": "backup-restore", "name": "pve1",
                                 "provider": "proxmox"}, files={"roster": roster})
    assert r.status_code == 400
    assert sentence in unescape(r.text)
    assert re.search(r'<option value="proxmox"\s+selected>', r.text)  # the form keeps the choice
    with db.session() as s:
        assert s.query(Cohort).count() == 0 and s.query(User).count() == 1
    assert not (home / "sheets" / "pve1.html").exists()
