"""Exam use cases: on SQLite and PostgreSQL with a fake lab layer, and once on a real lab
instance (root): a self-check and a submission are sealed runs recorded 'complete'."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from labkit.adapters.db import repo
from labkit.adapters.db.database import Database
from labkit.adapters.db.models import Candidate, Cohort, GradingRun, utcnow
from labkit.adapters.security.passwords import verify_password
from labkit.adapters.storage.runs import open_run
from labkit.errors import UserError
from labkit.settings import Settings
from labkit.usecases.exam import (
    Busy,
    Exam,
    ExamClosed,
    RateLimited,
    RealLabOps,
    exam_is_open,
    exam_is_over,
    login_from_name,
)
from labkit.usecases.lifecycle import Context
from tests.conftest import PROJECT, LabEnv, leftovers
from tests.dbfixtures import database, db_url, pg_cluster  # noqa: F401  (fixtures: both databases)
from tests.interfaces.web.conftest import FakeLabOps, cheap_argon2  # noqa: F401


@pytest.fixture
def exam(database: Database, tmp_path: Path) -> Iterator[Exam]:  # noqa: F811
    settings = Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT)
    ex = Exam(Context(settings), database, ops=FakeLabOps(settings.runs), selfcheck_interval=0)
    yield ex
    ex.close()


def _cohort(exam: Exam, names: str = "Alice Martin\nBob Durand\n", name: str = "bts1") -> tuple[int, list[int]]:
    trainer, _ = exam.add_user(f"t-{name}", "trainer")
    cohort_id, _creds = exam.create_cohort("demo-lab", names, name, created_by=trainer.id, seed=11)
    exam.launch(cohort_id)
    exam.wait_idle()
    with exam.db.session() as s:
        return cohort_id, [c.id for c in repo.candidates_of(s, cohort_id)]


@pytest.mark.parametrize("name,login", [
    ("Élodie Noël", "elodie.noel"), ("  Jean-Pierre  O'Brien ", "jean.pierre.o.brien"), ("李雷", "candidat"),
    ("A" * 80, "a" * 40),
])
def test_login_from_name(name: str, login: str) -> None:
    assert login_from_name(name) == login


def test_create_cohort_accounts_seeds_and_sheet(exam: Exam) -> None:
    trainer, _ = exam.add_user("formateur", "trainer")
    cohort_id, creds = exam.create_cohort("demo-lab", "nom\nAlice Martin\nAlice  Martin\nZoé\n", "bts1",
                                          created_by=trainer.id, seed=5)
    assert [c.login for c in creds] == ["alice.martin", "alice.martin2", "zoe"]
    assert [c.instance for c in creds] == ["bts1-01", "bts1-02", "bts1-03"]
    with exam.db.session() as s:
        cands = s.scalars(select(Candidate).where(Candidate.cohort_id == cohort_id).order_by(Candidate.id)).all()
        assert len({c.seed for c in cands}) == 3
        for cand, cred in zip(cands, creds, strict=True):
            assert cand.user.role == "candidate" and verify_password(cand.user.password_hash, cred.password)
            assert cred.password not in (cand.user.password_hash or "")
    sheet = exam.sheet_path("bts1")
    assert stat.S_IMODE(sheet.stat().st_mode) == 0o600 and stat.S_IMODE(sheet.parent.stat().st_mode) == 0o700
    assert all(c.password in sheet.read_text() for c in creds)
    # the same seed gives the same candidate seeds
    _, again = exam.create_cohort("demo-lab", "Alice Martin\nAlice  Martin\nZoé\n", "bts9", created_by=None, seed=5)
    with exam.db.session() as s:
        seeds = [[c.seed for c in repo.candidates_of(s, cid)] for cid in (cohort_id, repo.get_cohort(s, "bts9").id)]
    assert seeds[0] == seeds[1]
    with pytest.raises(UserError, match="already exists"):
        exam.create_cohort("demo-lab", "X\n", "bts1", created_by=None)
    with pytest.raises(UserError, match="no lab"):
        exam.create_cohort("nope", "X\n", "bts2", created_by=None)
    with pytest.raises(UserError, match="the uploaded roster names no candidate"):
        exam.create_cohort("demo-lab", "# nobody\n", "bts2", created_by=None)
    assert not exam.sheet_path("bts2").exists()


def test_authenticate_and_rate_limit(exam: Exam) -> None:
    user, pw = exam.add_user("jury", "assessor", "Jules")
    assert exam.authenticate("JURY", pw, "10.0.0.1").id == user.id
    for _ in range(5):
        with pytest.raises(UserError, match="wrong login or password"):
            exam.authenticate("jury", "nope", "10.0.0.1")
    with pytest.raises(RateLimited) as exc:
        exam.authenticate("jury", pw, "10.0.0.1")
    assert exc.value.retry_after > 0
    assert exam.authenticate("jury", pw, "10.0.0.2").id == user.id  # another source is not blocked
    with pytest.raises(UserError, match="trainer or assessor"):
        exam.add_user("x", "candidate")


def test_selfcheck_submit_window_and_final_once(exam: Exam) -> None:
    cohort_id, (a, b) = _cohort(exam)
    run = exam.selfcheck(a, None)
    exam.wait_idle()
    with exam.db.session() as s:
        row = s.get(GradingRun, run)
        assert row.status == "complete" and row.mode == "selfcheck" and row.score == 10
        assert open_run(exam.ctx.settings.runs, row.run_id).manifest_sha256 == row.manifest_sha256
    # window: not started yet, then over
    exam.set_window(cohort_id, utcnow() + timedelta(hours=1), utcnow() + timedelta(hours=2))
    with pytest.raises(ExamClosed, match="not started"):
        exam.submit(a, None)
    exam.set_window(cohort_id, utcnow() - timedelta(hours=2), utcnow() - timedelta(seconds=1))
    with exam.db.session() as s:
        cohort = s.get(Cohort, cohort_id)
        assert exam_is_over(cohort) and not exam_is_open(cohort)
    with pytest.raises(ExamClosed, match="over"):
        exam.selfcheck(a, None)
    # many timers at once: the final grade is taken exactly once
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(exam.take_final(cohort_id))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    exam.wait_idle()
    assert sorted(results) == [False] * 5 + [True]
    with exam.db.session() as s:
        finals = s.scalars(select(GradingRun).where(GradingRun.mode == "final")).all()
        assert sorted(f.candidate_id for f in finals) == [a, b] and {f.status for f in finals} == {"complete"}
    with pytest.raises(ExamClosed, match="already taken"):
        exam.set_window(cohort_id, None, None)
    rows = exam.results(cohort_id)
    assert [(r["candidate"], r["mode"], r["score"]) for r in rows] == [("Alice Martin", "final", 10),
                                                                       ("Bob Durand", "final", 10)]


def test_one_grading_at_a_time_and_failures_recorded(exam: Exam) -> None:
    _, (a, _b) = _cohort(exam)
    ops = exam.lab
    assert isinstance(ops, FakeLabOps)
    ops.grade_gate = threading.Event()
    try:
        exam.selfcheck(a, None)
        with pytest.raises(Busy):
            exam.submit(a, None)
    finally:
        ops.grade_gate.set()
        exam.wait_idle()
    ops.grade_gate = None
    exam.selfcheck_interval = 60
    with pytest.raises(RateLimited, match="every 60 s"):
        exam.submit(a, None)
    exam.selfcheck_interval = 0
    ops.instances.pop("bts1-01")  # the instance vanished: the grading fails, and says so
    run = exam.submit(a, None)
    exam.wait_idle()
    with exam.db.session() as s:
        row = s.get(GradingRun, run)
        assert row.status == "failed" and row.run_id is None and "KeyError" in (row.error or "")


def test_dashboard_health_is_refreshed_in_the_background(exam: Exam, monkeypatch: pytest.MonkeyPatch) -> None:
    import labkit.usecases.exam as exam_module

    cohort_id, _ = _cohort(exam)
    ops = exam.lab
    assert isinstance(ops, FakeLabOps)
    assert [c["health"] for c in exam.dashboard(cohort_id)["candidates"]] == ["ok", "ok"]
    monkeypatch.setattr(exam_module, "HEALTH_TTL", 0.0)
    monkeypatch.setattr(ops, "health", lambda instance: "degraded")
    # the poll answers at once with the last reading and refreshes it behind
    assert [c["health"] for c in exam.dashboard(cohort_id)["candidates"]] == ["ok", "ok"]
    exam.wait_idle()
    assert [c["health"] for c in exam.dashboard(cohort_id)["candidates"]] == ["degraded", "degraded"]
    exam.wait_idle()


def test_launches_left_running_by_a_stopped_portal_can_be_retried(exam: Exam) -> None:
    cohort_id, (a, b) = _cohort(exam)
    with exam.db.session() as s:
        repo.set_candidate_status(s, a, "launching")
        repo.set_candidate_status(s, b, "resetting")
    assert exam.recover_launches() == 2
    with exam.db.session() as s:
        cands = repo.candidates_of(s, cohort_id)
        assert [c.status for c in cands] == ["failed", "failed"] and "launch it again" in cands[0].detail
    assert sorted(exam.launch(cohort_id)) == [a, b]
    exam.wait_idle()
    with exam.db.session() as s:
        assert [c.status for c in repo.candidates_of(s, cohort_id)] == ["up", "up"]


def test_reap_interrupted_at_start(exam: Exam) -> None:
    _, (a, _b) = _cohort(exam)
    with exam.db.session() as s:  # a grading of a process that died
        row = repo.start_grading_run(s, a, "grade", process=repo.ProcessIdentity(pid=2**22 + 7, start=1,
                                                                                 boot_id="gone"))
        s.flush()
        dead = row.id
    assert exam.reap_interrupted() == 1
    with exam.db.session() as s:
        assert s.get(GradingRun, dead).status == "interrupted"
    exam.submit(a, None)  # not blocked by the dead one
    exam.wait_idle()


def test_real_lab_ops_read_the_project(tmp_path: Path) -> None:
    ops = RealLabOps(Context(Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT)))
    labs = dict(ops.labs())
    assert {"routing-multisite", "ad-gpo", "backup-restore"} <= set(labs)
    assert ops.lab_id("routing-multisite") == "routing-multisite"
    assert ops.lab_title("routing-multisite", "fr") == labs["routing-multisite"]
    with pytest.raises(UserError):
        ops.lab_id("no-such-lab")
    assert ops.nodes("nothing-here") == [] and ops.health("nothing-here") == "absent"
    assert not ops.exists("nothing-here") and not ops.run_dir_held()


def test_real_lab_ops_offer_proxmox_only_when_configured_and_refuse_an_unfit_lab(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ops = RealLabOps(Context(Settings(home=home, run_dir=tmp_path / "run", project=PROJECT)))
    assert ops.providers() == ["netns"]
    assert ops.fits("routing-multisite", "netns") == "inprocess"
    home.mkdir()
    (home / "proxmox.toml").write_text('url = "https://pve.invalid:8006"\n', encoding="utf-8")
    assert ops.providers() == ["netns", "proxmox"]
    (home / "gns3.toml").write_text('url = "https://gns3.invalid:3080"\nuser = "labkit"\n', encoding="utf-8")
    assert ops.providers() == ["netns", "proxmox", "gns3"]
    with pytest.raises(UserError) as info:  # backup-restore reads node files: no Proxmox API does that
        ops.fits("backup-restore", "proxmox")
    msg = str(info.value)
    assert msg.startswith("lab backup-restore cannot be graded on provider proxmox") and "\n" not in msg


def test_a_cohort_launches_on_its_provider_with_its_vantage(exam: Exam) -> None:
    ops = exam.ops
    assert isinstance(ops, FakeLabOps)
    cohort_id, _ = exam.create_cohort("demo-lab", "Alice Martin\n", "onns", created_by=None, seed=1)
    with pytest.raises(UserError, match="provider 'proxmox' cannot be used for a cohort here; choose one of: netns"):
        exam.create_cohort("demo-lab", "Bob\n", "pve1", created_by=None, provider="proxmox")
    ops.offered = ("netns", "proxmox")
    ops.unfit = {"proxmox"}
    with pytest.raises(UserError, match="cannot be graded on provider proxmox"):
        exam.create_cohort("demo-lab", "Bob\n", "pve1", created_by=None, provider="proxmox")
    assert not exam.sheet_path("pve1").exists()  # nothing made
    with exam.db.session() as s:
        assert repo.get_cohort(s, "pve1") is None and repo.get_user_by_login(s, "bob") is None
    ops.unfit = set()
    pve_id, _ = exam.create_cohort("demo-lab", "Bob\n", "pve1", created_by=None, seed=2, provider="proxmox")
    for cid in (cohort_id, pve_id):
        exam.launch(cid)
    exam.wait_idle()
    assert ops.placed == {"onns-01": ("netns", "inprocess"), "pve1-01": ("proxmox", "agent")}
    assert exam.dashboard(pve_id)["cohort"]["provider"] == "proxmox"
    exam.teardown(pve_id)
    exam.wait_idle()
    assert "pve1-01" not in ops.instances and "onns-01" in ops.instances


# ---------------------------------------------------------------------------- a real lab
@pytest.mark.root
@pytest.mark.slow
def test_real_lab_selfcheck_and_submit_are_sealed_and_complete(lab_env: LabEnv, tmp_path: Path) -> None:
    """The real path: the cohort's instance comes up on the netns provider, a self-check and
    a submission grade it for real, each one a sealed run folder recorded complete."""
    db = Database(f"sqlite:///{tmp_path / 'labkit.db'}")
    db.upgrade()
    ctx = Context(lab_env.settings)
    exam = Exam(ctx, db, selfcheck_interval=0)
    name = f"px{os.getpid() % 100000}"
    try:
        cohort_id, creds = exam.create_cohort("routing-multisite", "Alice Martin\n", name, created_by=None,
                                              seed=2027)
        exam.launch(cohort_id)
        exam.wait_idle(timeout=600)
        with db.session() as s:
            cand = repo.candidates_of(s, cohort_id)[0]
            assert cand.status == "up", cand.detail
            cand_id, instance = cand.id, cand.instance
        assert ctx.store.load(instance).plan.candidate == "Alice Martin"
        assert "r-hq" in exam.lab.nodes(instance) and exam.lab.health(instance) == "ok"
        assert "lan" in exam.lab.brief(instance, "en").lower()
        ids = [exam.selfcheck(cand_id, None)]
        exam.wait_idle(timeout=900)
        ids.append(exam.submit(cand_id, None))
        exam.wait_idle(timeout=900)
        with db.session() as s:
            rows = [s.get(GradingRun, i) for i in ids]
            for row, mode in zip(rows, ("selfcheck", "grade"), strict=True):
                assert row.status == "complete", row.error
                stored = open_run(ctx.settings.runs, row.run_id)  # verifies seal -> manifest -> files
                assert stored.manifest_sha256 == row.manifest_sha256
                assert stored.info.mode == mode and stored.info.instance == instance
                assert (row.score, row.max_score) == (stored.summary.score, stored.summary.max_score)
                assert row.max_score == 100 and row.score < 100  # nothing was configured
        board = exam.dashboard(cohort_id)["candidates"][0]
        assert board["selfcheck"]["id"] == ids[0] and board["grade"]["id"] == ids[1]
        assert (ctx.settings.home / "locks" / f"{instance}.grade.lock").exists()  # the cohort grading lock
        exam.teardown(cohort_id)
        exam.wait_idle(timeout=300)
        with db.session() as s:
            assert repo.candidates_of(s, cohort_id)[0].status == "removed"
        assert leftovers(lab_env.settings, instance) == []
    finally:
        exam.close()
        db.dispose()
