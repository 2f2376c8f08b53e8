"""Candidates' identifiers from the roster (email, ID number, username) for the Moodle gradebook.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("email", 254), ("idnumber", 255), ("username", 100))


def upgrade() -> None:
    for name, length in COLUMNS:
        op.add_column("candidates", sa.Column(name, sa.String(length), nullable=True))


def downgrade() -> None:
    # plain DROP COLUMN: PostgreSQL, and SQLite >= 3.35 (no index or constraint uses these columns)
    for name, _length in reversed(COLUMNS):
        op.drop_column("candidates", name)
