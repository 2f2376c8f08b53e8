"""Initial schema: users, cohorts, candidates, grading runs, recordings, web sessions, login attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    # Frozen copy of the values at this revision: a later migration changes them, not models.py.
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("ssh_public_key", sa.Text(), nullable=True),
        sa.Column("locale", sa.String(8), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("login", name="uq_users_login"),
        sa.CheckConstraint(_one_of("role", ("trainer", "candidate", "assessor")), name="ck_users_role"),
    )
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_attempts"),
    )
    op.create_index("ix_login_attempts_login_source_at", "login_attempts", ["login", "source", "at"])
    op.create_table(
        "cohorts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(31), nullable=False),
        sa.Column("lab_id", sa.String(64), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("exam_start", TZ, nullable=True),
        sa.Column("exam_end", TZ, nullable=True),
        sa.Column("final_taken_at", TZ, nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cohorts"),
        sa.UniqueConstraint("name", name="uq_cohorts_name"),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], name="fk_cohorts_created_by_id_users"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(128), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_web_sessions_user_id_users", ondelete="CASCADE"),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cohort_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("instance", sa.String(31), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_candidates"),
        sa.UniqueConstraint("user_id", name="uq_candidates_user_id"),
        sa.UniqueConstraint("instance", name="uq_candidates_instance"),
        sa.ForeignKeyConstraint(["cohort_id"], ["cohorts.id"], name="fk_candidates_cohort_id_cohorts"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_candidates_user_id_users"),
        sa.CheckConstraint(
            _one_of("status", ("planned", "launching", "up", "failed", "removed", "resetting")),
            name="ck_candidates_status",
        ),
    )
    op.create_index("ix_candidates_cohort_id", "candidates", ["cohort_id"])
    op.create_table(
        "grading_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=True),
        sa.Column("manifest_sha256", sa.String(64), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("max_score", sa.Integer(), nullable=True),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("proc_start", sa.BigInteger(), nullable=True),
        sa.Column("boot_id", sa.String(64), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_grading_runs"),
        sa.ForeignKeyConstraint(["candidate_id"], ["candidates.id"], name="fk_grading_runs_candidate_id_candidates"),
        sa.ForeignKeyConstraint(["requested_by_id"], ["users.id"], name="fk_grading_runs_requested_by_id_users"),
        sa.CheckConstraint(_one_of("mode", ("selfcheck", "grade", "final")), name="ck_grading_runs_mode"),
        sa.CheckConstraint(
            _one_of("status", ("running", "complete", "interrupted", "failed")), name="ck_grading_runs_status"
        ),
    )
    op.create_index("ix_grading_runs_candidate_id", "grading_runs", ["candidate_id"])
    op.create_index("ix_grading_runs_status", "grading_runs", ["status"])
    running = sa.text("status = 'running'")
    op.create_index("uq_grading_runs_one_running", "grading_runs", ["candidate_id"], unique=True,
                    sqlite_where=running, postgresql_where=running)
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(31), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recordings"),
        sa.ForeignKeyConstraint(["candidate_id"], ["candidates.id"], name="fk_recordings_candidate_id_candidates"),
        sa.CheckConstraint(_one_of("channel", ("ssh", "web")), name="ck_recordings_channel"),
    )
    op.create_index("ix_recordings_candidate_id", "recordings", ["candidate_id"])


def downgrade() -> None:
    op.drop_table("recordings")
    op.drop_table("grading_runs")
    op.drop_table("candidates")
    op.drop_table("web_sessions")
    op.drop_table("cohorts")
    op.drop_table("login_attempts")
    op.drop_table("users")
