"""Relational storage (SQLAlchemy 2 + Alembic): users, cohorts, candidates, grading runs.

SQLite by default (one file in LABKIT_HOME), PostgreSQL for a multi-trainer site; the
schema is owned by the Alembic migrations in ``migrations/``, never by ``create_all``.
"""
