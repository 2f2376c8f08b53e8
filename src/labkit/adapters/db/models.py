"""ORM tables of the exam portal (SQLAlchemy 2 typed declarative).

The allowed values of the string "enums" are listed in tuples below and enforced by CHECK
constraints, so a typo in a use case fails at the first write instead of leaving a row that
no page knows how to show. Datetimes are always timezone-aware UTC on the Python side, on
both SQLite (which stores no zone) and PostgreSQL (``timestamptz``): see :class:`UTCDateTime`.

The schema in the database is made by the Alembic migrations (``migrations/versions``); a
test proves that the migrations and these classes agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "CANDIDATE_STATUSES",
    "CHANNELS",
    "RUN_MODES",
    "RUN_STATUSES",
    "ROLES",
    "Base",
    "Candidate",
    "Cohort",
    "GradingRun",
    "LoginAttempt",
    "Recording",
    "User",
    "UTCDateTime",
    "WebSession",
    "utcnow",
]

ROLES = ("trainer", "candidate", "assessor")
CANDIDATE_STATUSES = ("planned", "launching", "up", "failed", "removed", "resetting")
RUN_MODES = ("selfcheck", "grade", "final")
RUN_STATUSES = ("running", "complete", "interrupted", "failed")
CHANNELS = ("ssh", "web")

# Deterministic constraint names: Alembic can drop/alter them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind stored)."""
    return datetime.now(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always gives back aware UTC datetimes.

    SQLite keeps no time zone and returns naive values; without this, comparing a stored
    ``expires_at`` with ``utcnow()`` would raise on SQLite and work on PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the database; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}


class User(Base):
    """A person who logs in: trainer, candidate or assessor."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)  # lowercase [a-z0-9._-]
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    ssh_public_key: Mapped[str | None] = mapped_column(Text, default=None)
    locale: Mapped[str] = mapped_column(String(8), default="fr")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Cohort(Base):
    """A group of candidates sitting the same lab, each in their own instance."""

    __tablename__ = "cohorts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(31), unique=True)  # same rule as instance names
    lab_id: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    # where its instances live and how they are graded (lifecycle.up's provider and vantage);
    # databases made before migration 0003 hold netns / inprocess
    provider: Mapped[str] = mapped_column(String(32), default="netns", server_default="netns")
    vantage: Mapped[str] = mapped_column(String(16), default="inprocess", server_default="inprocess")
    exam_start: Mapped[datetime | None] = mapped_column(default=None)
    exam_end: Mapped[datetime | None] = mapped_column(default=None)
    final_taken_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    created_by: Mapped[User | None] = relationship()
    candidates: Mapped[list[Candidate]] = relationship(back_populates="cohort", order_by="Candidate.instance")


class Candidate(Base):
    """One candidate of a cohort: their login (``user``) and their lab instance."""

    __tablename__ = "candidates"
    __table_args__ = (CheckConstraint(_one_of("status", CANDIDATE_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    instance: Mapped[str] = mapped_column(String(31), unique=True)  # <cohort>-NN
    seed: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="planned")
    detail: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # identifiers from the roster, for the Moodle gradebook (migration 0002); None when not given
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    idnumber: Mapped[str | None] = mapped_column(String(255), default=None)
    username: Mapped[str | None] = mapped_column(String(100), default=None)

    cohort: Mapped[Cohort] = relationship(back_populates="candidates")
    user: Mapped[User] = relationship()


class GradingRun(Base):
    """One grading of a candidate's instance; ``complete`` only once its folder is sealed.

    ``pid``, ``proc_start`` (field 22 of /proc/<pid>/stat) and ``boot_id`` identify the
    process that grades, so a crashed one can be told from a live one (``reap_interrupted``).
    """

    __tablename__ = "grading_runs"
    __table_args__ = (
        CheckConstraint(_one_of("mode", RUN_MODES), name="mode"),
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
        # one grading at a time per candidate, enforced by the database itself
        Index("uq_grading_runs_one_running", "candidate_id", unique=True,
              sqlite_where=text("status = 'running'"), postgresql_where=text("status = 'running'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    run_id: Mapped[str | None] = mapped_column(String(128), default=None)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    score: Mapped[int | None] = mapped_column(Integer, default=None)
    max_score: Mapped[int | None] = mapped_column(Integer, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    pid: Mapped[int] = mapped_column(Integer)
    proc_start: Mapped[int | None] = mapped_column(BigInteger, default=None)
    boot_id: Mapped[str] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)

    candidate: Mapped[Candidate] = relationship()
    requested_by: Mapped[User | None] = relationship()


class Recording(Base):
    """A console recording (asciicast v2) of one candidate's session on one node."""

    __tablename__ = "recordings"
    __table_args__ = (CheckConstraint(_one_of("channel", CHANNELS), name="channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    node: Mapped[str] = mapped_column(String(31))
    channel: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))  # relative to <home>/recordings
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)

    candidate: Mapped[Candidate] = relationship()


class WebSession(Base):
    """A portal login; ``id`` is the sha256 of the cookie token, never the token itself."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship()


class LoginAttempt(Base):
    """One login try (portal or bastion), for rate limiting per login and source address."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_login_source_at", "login", "source", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
