"""Gradings recorded in the database around :func:`labkit.usecases.grade.grade`.

The promise to candidates and assessors: a GradingRun row says ``complete`` only when its
run folder is sealed AND reads back verified (:func:`open_run` checks seal -> manifest ->
every file), and the score recorded is the one in that verified folder. The row is written
``running`` before grading starts, with the grading process's identity; if that process dies
(crash, SIGKILL, reboot) the row can never become complete, and :func:`reap` marks it
``interrupted``. Finished runs are untouched: their folders are sealed and read-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from labkit.adapters.db import repo
from labkit.adapters.db.database import Database
from labkit.adapters.db.models import GradingRun
from labkit.adapters.storage.runs import open_run
from labkit.errors import EvidenceIntegrityError, LabkitError, UserError
from labkit.models.results import GradeSummary
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context

__all__ = ["graded", "grade_started_run", "reap", "record_sealed"]

# GradingRun.mode -> the mode of grade(): a final grade is an ordinary grade, recorded as 'final'
_GRADE_MODE = {"selfcheck": "selfcheck", "grade": "grade", "final": "grade"}


def graded(ctx: Context, db: Database, candidate_id: int, mode: str, requested_by: int | None = None) -> GradingRun:
    """Grade the candidate's instance and record it; returns the 'complete' row.

    Raises what grading raised (the row is then 'failed' with the message), or
    GradingInProgressError when this candidate is already being graded.
    """
    if mode not in _GRADE_MODE:
        raise UserError(f"{mode!r} is not a grading mode; use one of {', '.join(_GRADE_MODE)}")
    with db.session() as s:
        cand = repo.get_candidate(s, candidate_id)
        if cand is None:
            raise UserError(f"there is no candidate with id {candidate_id}; pick one from the cohort's list")
        row = repo.start_grading_run(s, cand, mode, requested_by=requested_by)
        instance = cand.instance
    return grade_started_run(ctx, db, row.id, instance, mode)


def grade_started_run(ctx: Context, db: Database, row_id: int, instance: str, mode: str) -> GradingRun:
    """Grade for a row already recorded 'running' (by :func:`repo.start_grading_run`)."""
    try:
        summary = grade(ctx, instance, mode=_GRADE_MODE[mode])
        return record_sealed(db, ctx.settings.runs, row_id, summary)
    except LabkitError as exc:
        _fail(db, row_id, str(exc))
        raise
    except Exception as exc:  # a bug: record it, so the row does not stay 'running' in a live portal
        _fail(db, row_id, f"internal error ({type(exc).__name__}: {exc}); report it to labkit's maintainers")
        raise


class Sessions(Protocol):
    """Anything that opens database sessions like :class:`Database` (the portal's tests pass
    their own)."""

    def session(self) -> Any: ...


def record_sealed(db: Sessions, runs_dir: Path, row_id: int, summary: GradeSummary) -> GradingRun:
    """Verify the sealed folder of ``summary`` and only then mark the row complete, with the
    run id, manifest hash and score read back from the verified folder."""
    stored = open_run(runs_dir, summary.run_id)
    if summary.manifest_sha256 is not None and stored.manifest_sha256 != summary.manifest_sha256:
        raise EvidenceIntegrityError(
            f"run folder {stored.path} does not carry the manifest hash the grading printed; "
            "it was replaced after sealing, grade the instance again"
        )
    with db.session() as s:
        return repo.finish_grading_run(s, row_id, run_id=stored.run_id, manifest_sha256=stored.manifest_sha256,
                                       score=stored.summary.score, max_score=stored.summary.max_score)


def _fail(db: Database, row_id: int, message: str) -> None:
    with db.session() as s:
        repo.fail_grading_run(s, row_id, message)


def reap(db: Database) -> list[int]:
    """Mark 'interrupted' every running grading whose process is gone; the ids of those rows.
    Call it when the portal starts and before listing runs."""
    with db.session() as s:
        return repo.reap_interrupted(s)
