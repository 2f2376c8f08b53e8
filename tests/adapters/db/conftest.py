"""Every test here runs on SQLite and on a scratch PostgreSQL (see tests/dbfixtures.py)."""

from tests.dbfixtures import database, db_url, pg_cluster  # noqa: F401
