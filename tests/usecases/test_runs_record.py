# ruff: noqa: F811  (the db fixtures are imported by name so pytest registers them; tests take them as arguments)
"""Gradings recorded in the database: complete only when sealed and verified; a grading
killed mid-run becomes 'interrupted', never complete, and loses no finished result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from labkit.adapters.db import repo
from labkit.adapters.db.database import Database
from labkit.adapters.db.models import Candidate, GradingRun
from labkit.adapters.storage.runs import SEAL, open_run
from labkit.errors import EvidenceIntegrityError, UnknownInstanceError, UnknownRunError, UserError
from labkit.settings import Settings
from labkit.usecases import runs_record
from labkit.usecases.lifecycle import Context
from tests.adapters.storage.test_runs import make_run, models, unlock
from tests.conftest import PROJECT, LabEnv, down_leaves_nothing
from tests.dbfixtures import database, db_url, pg_cluster  # noqa: F401

LAB = "routing-multisite"


def _seat(db: Database, instance: str) -> Candidate:
    with db.session() as s:
        cohort = repo.create_cohort(s, "crash", LAB, 7)
        user = repo.create_user(s, "alice", "Alice Martin", "candidate")
        return repo.add_candidate(s, cohort, user, "Alice Martin", instance, 7, status="up")


def _row(db: Database, row_id: int) -> GradingRun:
    with db.session() as s:
        row = s.get(GradingRun, row_id)
        assert row is not None
        return row


# -- without a lab --------------------------------------------------------------------------
def test_record_sealed_uses_the_verified_folder(database: Database, tmp_path: Path) -> None:
    cand = _seat(database, "dupont")
    runs = tmp_path / "runs"
    path, digest = make_run(runs, score=6)
    _info, summary, _crit = models(path.name, score=6)
    with database.session() as s:
        row = repo.start_grading_run(s, cand, "grade")
    done = runs_record.record_sealed(database, runs, row.id, summary.model_copy(update={"manifest_sha256": digest}))
    assert (done.status, done.run_id, done.manifest_sha256, done.score, done.max_score) == (
        "complete", path.name, digest, 6, 10)


def test_an_unsealed_or_tampered_folder_is_never_complete(database: Database, tmp_path: Path) -> None:
    cand = _seat(database, "dupont")
    runs = tmp_path / "runs"
    path, digest = make_run(runs)
    _info, summary, _crit = models(path.name)
    with database.session() as s:
        row = repo.start_grading_run(s, cand, "grade")
    unlock(path)
    (path / "results.json").write_text((path / "results.json").read_text().replace('"score": 10', '"score": 99'))
    with pytest.raises(EvidenceIntegrityError, match="results.json changed"):
        runs_record.record_sealed(database, runs, row.id, summary)
    (path / SEAL).unlink()
    with pytest.raises(EvidenceIntegrityError):
        runs_record.record_sealed(database, runs, row.id, summary)
    assert _row(database, row.id).status == "running"


def test_a_grading_error_is_recorded_failed(database: Database, tmp_path: Path) -> None:
    cand = _seat(database, "nosuch")  # no instance of that name exists
    ctx = Context(Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT))
    with pytest.raises(UnknownInstanceError):
        runs_record.graded(ctx, database, cand.id, "selfcheck")
    with database.session() as s:
        (row,) = repo.latest_runs(s, cand)
    assert row.status == "failed" and row.mode == "selfcheck" and "nosuch" in str(row.error)
    assert row.run_id is None and row.finished_at is not None
    with pytest.raises(UserError, match="not a grading mode"):
        runs_record.graded(ctx, database, cand.id, "exam")
    with pytest.raises(UserError, match="no candidate with id 999"):
        runs_record.graded(ctx, database, 999, "grade")


# -- a real lab, a real grading, a real SIGKILL -----------------------------------------------
CHILD = textwrap.dedent("""
    import os, sys, time
    from labkit.adapters.storage import runs
    from labkit.adapters.db.database import Database
    from labkit.settings import load_settings
    from labkit.usecases import runs_record
    from labkit.usecases.lifecycle import Context

    # widen the window between "folder made" and "folder sealed" so the kill lands inside it
    _add = runs.RunWriter.add_evidence
    def slow_add(self, ev):
        _add(self, ev)
        time.sleep(0.3)
    runs.RunWriter.add_evidence = slow_add

    runs_record.graded(Context(load_settings()), Database(os.environ["LABKIT_TEST_DB_URL"]), int(sys.argv[1]), "grade")
    print("GRADED TO THE END")  # must never be printed: the parent kills us first
""")


def _unsealed_folder(runs: Path, done: set[str]) -> Path | None:
    for p in runs.glob("*") if runs.is_dir() else []:
        if p.name not in done and not (p / SEAL).exists() and any((p / "evidence").glob("*.json")):
            return p
    return None


@pytest.mark.root
@pytest.mark.slow
def test_sigkill_mid_grade_leaves_interrupted_and_loses_nothing(lab_env: LabEnv, database: Database) -> None:
    from labkit.usecases.lifecycle import up

    db = database  # SQLite, then PostgreSQL

    name = f"crash{os.getpid() % 100000}"
    ctx = Context(lab_env.settings)
    up(ctx, LAB, instance=name, seed=4242)
    cand = _seat(db, name)

    first = runs_record.graded(ctx, db, cand.id, "selfcheck")  # a finished result to keep
    assert first.status == "complete" and first.run_id
    first_run = open_run(lab_env.settings.runs, first.run_id)

    env = {**lab_env.env, "LABKIT_TEST_DB_URL": db.url.render_as_string(hide_password=False)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(cand.id)], env=env, cwd=PROJECT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, folder, running = time.monotonic() + 120, None, None
        while time.monotonic() < deadline and child.poll() is None:
            with db.session() as s:
                running = s.scalars(select(GradingRun).where(GradingRun.status == "running")).one_or_none()
            folder = _unsealed_folder(lab_env.settings.runs, {first.run_id})
            if running is not None and folder is not None:
                break
            time.sleep(0.05)
        assert running is not None and folder is not None, child.communicate(timeout=60)
        assert running.pid == child.pid
        os.kill(child.pid, signal.SIGKILL)
        # not waited for yet: a zombie is dead too
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert runs_record.reap(db) == [running.id]
    finally:
        if child.poll() is None:
            child.kill()
        out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL and "GRADED TO THE END" not in out, err

    killed = _row(db, running.id)
    assert killed.status == "interrupted" and killed.run_id is None and killed.score is None
    assert not (folder / SEAL).exists()
    with pytest.raises((EvidenceIntegrityError, UnknownRunError)):  # not proof of anything
        open_run(lab_env.settings.runs, folder.name)
    with db.session() as s:
        assert repo.reap_interrupted(s) == []  # stays interrupted: nothing can complete it
        with pytest.raises(Exception, match="already interrupted"):
            repo.finish_grading_run(s, killed.id, run_id=folder.name, manifest_sha256="0" * 64, score=1,
                                    max_score=1)
    # the finished result is intact, row and folder
    kept = _row(db, first.id)
    assert (kept.status, kept.run_id, kept.manifest_sha256) == ("complete", first.run_id, first.manifest_sha256)
    again = open_run(lab_env.settings.runs, first.run_id)
    assert again.manifest_sha256 == first_run.manifest_sha256 == first.manifest_sha256
    assert again.summary.score == kept.score
    # the candidate can be graded again right away: the dead row does not block
    with db.session() as s:
        assert repo.start_grading_run(s, cand.id, "grade").status == "running"
    down_leaves_nothing(lab_env, name)
