"""The queries the use cases need, as small typed functions over a :class:`Session`.

Every function takes the caller's session, so several calls share one transaction
(``with db.session() as s: ...``). Inserts that can collide with a unique rule run in a
SAVEPOINT and turn the collision into a :class:`UserError` that says what to do; the outer
transaction stays usable and no IntegrityError traceback reaches a user.

Arguments that name a row accept the ORM object or its id: objects returned from an earlier
session can be passed as they are.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labkit.adapters.db.models import (
    CANDIDATE_STATUSES,
    CHANNELS,
    ROLES,
    RUN_MODES,
    Base,
    Candidate,
    Cohort,
    GradingRun,
    LoginAttempt,
    Recording,
    User,
    WebSession,
    utcnow,
)
from labkit.adapters.security.passwords import hash_password
from labkit.errors import LabkitError, UserError
from labkit.models.common import is_name

__all__ = [
    "GradingInProgressError",
    "ProcessIdentity",
    "add_candidate",
    "add_recording",
    "candidates_of",
    "create_cohort",
    "create_user",
    "create_web_session",
    "current_process",
    "delete_web_session",
    "fail_grading_run",
    "finish_grading_run",
    "finish_recording",
    "get_candidate",
    "get_candidate_for_user",
    "get_cohort",
    "get_user",
    "get_user_by_login",
    "get_web_session",
    "hash_token",
    "last_complete_run",
    "latest_runs",
    "list_cohorts",
    "process_alive",
    "reap_interrupted",
    "record_login_attempt",
    "recordings_of",
    "set_candidate_status",
    "set_password",
    "set_ssh_public_key",
    "start_grading_run",
    "too_many_failures",
]

LOGIN_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
T = TypeVar("T", bound=Base)


class GradingInProgressError(UserError):
    """Another grading of the same candidate has not finished (one at a time per candidate)."""


def _id(row: Base | int) -> int:
    return row if isinstance(row, int) else int(row.id)  # type: ignore[attr-defined]


def _insert(s: Session, row: T, explain: Callable[[], str]) -> T:
    """Add ``row`` in a savepoint; on a unique/foreign-key clash raise UserError(explain())."""
    try:
        with s.begin_nested():
            s.add(row)
    except IntegrityError:
        raise UserError(explain()) from None
    return row


# -- users ----------------------------------------------------------------------------------
def create_user(s: Session, login: str, display_name: str, role: str, *, password: str | None = None,
                password_hash: str | None = None, ssh_public_key: str | None = None, locale: str = "fr") -> User:
    """A new account; ``password`` is stored only as its argon2 hash.

    ``password_hash`` (from :func:`hash_password`) lets a caller hash a batch of passwords
    before opening the transaction: argon2 is deliberately slow.
    """
    login = login.strip().lower()
    if not LOGIN_RE.fullmatch(login):
        raise UserError(f"{login!r} is not a valid login; use 1 to 64 of a-z, 0-9, '.', '_', '-' "
                        "starting with a letter or digit")
    if role not in ROLES:
        raise UserError(f"{role!r} is not a role; choose one of {', '.join(ROLES)}")
    user = User(login=login, display_name=display_name.strip() or login, role=role, locale=locale,
                password_hash=hash_password(password) if password else password_hash, ssh_public_key=ssh_public_key,
                disabled=False)
    return _insert(s, user, lambda: f"the login {login!r} is already taken; choose another login")


def get_user(s: Session, user_id: int) -> User | None:
    return s.get(User, user_id)


def get_user_by_login(s: Session, login: str) -> User | None:
    return s.scalars(select(User).where(User.login == login.strip().lower())).one_or_none()


def set_password(s: Session, user: User | int, password: str, *, end_sessions: bool = True) -> None:
    """Replace the password (hashed). A new password ends the user's web sessions (whoever
    knew the old one is logged out); a rehash of the same password passes end_sessions=False."""
    row = _require(s, User, user, "user")
    row.password_hash = hash_password(password)
    if end_sessions:
        s.execute(delete(WebSession).where(WebSession.user_id == row.id))


def set_ssh_public_key(s: Session, user: User | int, key: str | None) -> None:
    _require(s, User, user, "user").ssh_public_key = key.strip() if key else None


def _require(s: Session, cls: type[T], row: T | int, what: str) -> T:
    found = s.get(cls, _id(row))
    if found is None:
        raise UserError(f"there is no {what} with id {_id(row)}; reload the page and pick an existing one")
    return found


# -- cohorts and candidates -----------------------------------------------------------------
def create_cohort(s: Session, name: str, lab_id: str, seed: int, *, created_by: User | int | None = None,
                  provider: str = "netns", vantage: str = "inprocess") -> Cohort:
    """A cohort whose instances are brought up on ``provider`` and graded with ``vantage``
    (the caller has checked that the lab fits them: lifecycle.check_provider_fits)."""
    if not is_name(name):
        raise UserError(f"{name!r} is not a valid cohort name; use lowercase letters, digits and '-', "
                        "starting with a letter, at most 31 characters")
    cohort = Cohort(name=name, lab_id=lab_id, seed=seed, provider=provider, vantage=vantage,
                    created_by_id=None if created_by is None else _id(created_by))
    return _insert(s, cohort, lambda: f"a cohort named {name!r} already exists; choose another name")


def get_cohort(s: Session, name: str) -> Cohort | None:
    return s.scalars(select(Cohort).where(Cohort.name == name)).one_or_none()


def list_cohorts(s: Session) -> Sequence[Cohort]:
    return s.scalars(select(Cohort).order_by(Cohort.created_at.desc(), Cohort.id.desc())).all()


def add_candidate(s: Session, cohort: Cohort | int, user: User | int, name: str, instance: str, seed: int,
                  *, status: str = "planned") -> Candidate:
    """Seat ``user`` (role candidate) in ``cohort`` with their own ``instance``."""
    account = _require(s, User, user, "user")
    if account.role != "candidate":
        raise UserError(f"{account.login!r} is a {account.role}, not a candidate; seat a candidate account")
    _check_status(status)
    cand = Candidate(cohort_id=_id(cohort), user_id=account.id, name=name, instance=instance, seed=seed,
                     status=status, detail="")

    def explain() -> str:
        if s.scalars(select(Candidate.id).where(Candidate.instance == instance)).first() is not None:
            return f"the instance name {instance!r} is already used by another candidate; choose another"
        return f"{account.login!r} already has a seat in a cohort; create a new account for this one"

    return _insert(s, cand, explain)


def candidates_of(s: Session, cohort: Cohort | int) -> Sequence[Candidate]:
    return s.scalars(select(Candidate).where(Candidate.cohort_id == _id(cohort)).order_by(Candidate.instance)).all()


def get_candidate(s: Session, candidate_id: int) -> Candidate | None:
    return s.get(Candidate, candidate_id)


def get_candidate_for_user(s: Session, user: User | int) -> Candidate | None:
    return s.scalars(select(Candidate).where(Candidate.user_id == _id(user))).one_or_none()


def _check_status(status: str) -> None:
    if status not in CANDIDATE_STATUSES:
        raise ValueError(f"candidate status {status!r} is not one of {CANDIDATE_STATUSES}")


def set_candidate_status(s: Session, candidate: Candidate | int, status: str, detail: str = "") -> Candidate:
    _check_status(status)
    row = _require(s, Candidate, candidate, "candidate")
    row.status, row.detail = status, detail
    return row


# -- login attempts -------------------------------------------------------------------------
def record_login_attempt(s: Session, login: str, source: str, ok: bool, *, at: datetime | None = None) -> None:
    s.add(LoginAttempt(login=login.strip().lower()[:64], source=source[:64], ok=ok, at=at or utcnow()))


def too_many_failures(s: Session, login: str, source: str, window: timedelta = timedelta(minutes=5),
                      limit: int = 5, *, now: datetime | None = None) -> bool:
    """True when ``login`` from ``source`` failed ``limit`` times in ``window`` since its last success."""
    login, since = login.strip().lower()[:64], (now or utcnow()) - window
    same = (LoginAttempt.login == login) & (LoginAttempt.source == source[:64]) & (LoginAttempt.at >= since)
    last_ok = s.scalar(select(func.max(LoginAttempt.at)).where(same & LoginAttempt.ok.is_(True)))
    fails = select(func.count()).where(same & LoginAttempt.ok.is_(False))
    if last_ok is not None:
        fails = fails.where(LoginAttempt.at > last_ok)
    return (s.scalar(fails) or 0) >= limit


# -- web sessions ---------------------------------------------------------------------------
def hash_token(token: str) -> str:
    """The session id stored for a cookie token: its sha256 (a stolen table opens no session)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_web_session(s: Session, user: User | int, *, ttl: timedelta = timedelta(hours=12),
                       now: datetime | None = None) -> tuple[str, WebSession]:
    """A new login: returns the cookie token (never stored) and the row (with its CSRF token)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    row = WebSession(id=hash_token(token), user_id=_id(user), csrf_token=secrets.token_urlsafe(32),
                     created_at=now, expires_at=now + ttl, last_seen_at=now)
    s.add(row)
    s.flush()
    return token, row


def get_web_session(s: Session, token: str, *, now: datetime | None = None) -> WebSession | None:
    """The live session of cookie ``token``, or None (unknown, expired, or account disabled)."""
    if not token:
        return None
    now = now or utcnow()
    row = s.get(WebSession, hash_token(token))
    if row is None:
        return None
    if row.expires_at <= now or row.user.disabled:
        s.delete(row)
        return None
    row.last_seen_at = now
    return row


def delete_web_session(s: Session, token: str) -> None:
    s.execute(delete(WebSession).where(WebSession.id == hash_token(token)))


# -- grading runs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessIdentity:
    """What tells a live grading process from a dead one whose pid was reused or a past boot."""

    pid: int
    start: int | None  # field 22 of /proc/<pid>/stat: clock ticks after boot
    boot_id: str


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _start_ticks(pid: int) -> int | None:
    """Start time of a living ``pid`` (field 22 of /proc/<pid>/stat), None when it is gone.

    A zombie (killed, not yet waited for by its parent) counts as gone: it grades nothing.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces and ')': split after its last ')'; state is field 3
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def current_process() -> ProcessIdentity:
    pid = os.getpid()
    return ProcessIdentity(pid=pid, start=_start_ticks(pid), boot_id=_boot_id())


def process_alive(pid: int, start: int | None, boot_id: str) -> bool:
    """Is the process that wrote this row still running? Same boot, same pid, same start time."""
    if boot_id != _boot_id():
        return False
    now_start = _start_ticks(pid)
    if now_start is None:
        return False
    return start is None or now_start == start


def start_grading_run(s: Session, candidate: Candidate | int, mode: str, *, requested_by: User | int | None = None,
                      process: ProcessIdentity | None = None) -> GradingRun:
    """Record a grading as 'running' BEFORE it starts; refuse a second one for the same candidate."""
    if mode not in RUN_MODES:
        raise ValueError(f"grading mode {mode!r} is not one of {RUN_MODES}")
    cand_id = _id(candidate)
    reap_interrupted(s, candidate_id=cand_id)  # a crashed run must not block the next one
    proc = process or current_process()
    row = GradingRun(candidate_id=cand_id, mode=mode, status="running", pid=proc.pid, proc_start=proc.start,
                     boot_id=proc.boot_id, requested_by_id=None if requested_by is None else _id(requested_by),
                     started_at=utcnow())
    try:
        with s.begin_nested():
            s.add(row)
    except IntegrityError:
        raise GradingInProgressError(
            "a grading of this candidate is already running; wait for it to finish and try again"
        ) from None
    return row


def _running(s: Session, run: GradingRun | int) -> GradingRun:
    row = s.get(GradingRun, _id(run), with_for_update=True, populate_existing=True)
    if row is None:
        raise LabkitError(f"grading run {_id(run)} is not in the database; it cannot be finished")
    if row.status != "running":
        raise LabkitError(f"grading run {row.id} is already {row.status}; it cannot be finished again")
    return row


def finish_grading_run(s: Session, run: GradingRun | int, *, run_id: str, manifest_sha256: str, score: int,
                       max_score: int) -> GradingRun:
    """Mark complete: call ONLY after the run folder ``run_id`` was sealed and verified."""
    row = _running(s, run)
    row.status, row.run_id, row.manifest_sha256 = "complete", run_id, manifest_sha256
    row.score, row.max_score, row.finished_at = score, max_score, utcnow()
    return row


def fail_grading_run(s: Session, run: GradingRun | int, error: str) -> GradingRun:
    row = _running(s, run)
    row.status, row.error, row.finished_at = "failed", error, utcnow()
    return row


def reap_interrupted(s: Session, *, candidate_id: int | None = None) -> list[int]:
    """Mark 'interrupted' the running rows whose process is gone (crash, kill, reboot); their ids.

    Only rows still 'running' are changed (a concurrent finish wins), and a live grader's row
    is never touched.
    """
    query = select(GradingRun).where(GradingRun.status == "running")
    if candidate_id is not None:
        query = query.where(GradingRun.candidate_id == candidate_id)
    dead = [r for r in s.scalars(query) if not process_alive(r.pid, r.proc_start, r.boot_id)]
    for row in dead:
        s.execute(update(GradingRun).where(GradingRun.id == row.id, GradingRun.status == "running")
                  .values(status="interrupted", finished_at=utcnow(),
                          error="the grading process stopped before the run was sealed")
                  .execution_options(synchronize_session=False))
        s.refresh(row)
    return [row.id for row in dead if row.status == "interrupted"]


def latest_runs(s: Session, candidate: Candidate | int, limit: int = 20) -> Sequence[GradingRun]:
    """The candidate's gradings, newest first."""
    return s.scalars(select(GradingRun).where(GradingRun.candidate_id == _id(candidate))
                     .order_by(GradingRun.started_at.desc(), GradingRun.id.desc()).limit(limit)).all()


def last_complete_run(s: Session, candidate: Candidate | int, modes: Sequence[str]) -> GradingRun | None:
    """The newest complete run of one of ``modes`` (dashboard: last self-check, submitted grade)."""
    return s.scalars(select(GradingRun).where(GradingRun.candidate_id == _id(candidate),
                                              GradingRun.status == "complete", GradingRun.mode.in_(modes))
                     .order_by(GradingRun.finished_at.desc(), GradingRun.id.desc()).limit(1)).first()


# -- recordings -----------------------------------------------------------------------------
def add_recording(s: Session, candidate: Candidate | int, node: str, channel: str, path: str) -> Recording:
    """Register a recording as it starts (``path`` relative to <home>/recordings)."""
    if channel not in CHANNELS:
        raise ValueError(f"recording channel {channel!r} is not one of {CHANNELS}")
    if Path(path).is_absolute() or ".." in Path(path).parts:
        raise ValueError(f"recording path {path!r} must be relative to the recordings folder")
    row = Recording(candidate_id=_id(candidate), node=node, channel=channel, path=path, started_at=utcnow(),
                    size_bytes=0)
    s.add(row)
    s.flush()
    return row


def finish_recording(s: Session, recording: Recording | int, size_bytes: int) -> Recording:
    row = _require(s, Recording, recording, "recording")
    row.ended_at, row.size_bytes = utcnow(), size_bytes
    return row


def recordings_of(s: Session, candidate: Candidate | int) -> Sequence[Recording]:
    return s.scalars(select(Recording).where(Recording.candidate_id == _id(candidate))
                     .order_by(Recording.started_at, Recording.id)).all()
