"""A cohort records its provider and vantage mode (exam day on Proxmox as on netns).

Existing cohorts were brought up on netns and graded in process: they get those values.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("provider", 32, "netns"), ("vantage", 16, "inprocess"))


def upgrade() -> None:
    for name, length, default in COLUMNS:
        op.add_column("cohorts", sa.Column(name, sa.String(length), nullable=False, server_default=default))


def downgrade() -> None:
    # plain DROP COLUMN: PostgreSQL, and SQLite >= 3.35 (no index or constraint uses these columns)
    for name, _length, _default in reversed(COLUMNS):
        op.drop_column("cohorts", name)
