"""One database handle per process: engine, sessions, and the Alembic upgrade to head.

SQLite (the default, a file in LABKIT_HOME) gets foreign keys ON, WAL (readers do not block
the writer) and ``BEGIN IMMEDIATE`` transactions: in WAL mode a transaction that read and
then wants to write fails at once with "database is locked" if another process wrote in
between, so every transaction takes the write lock first and waits (``busy_timeout``)
instead. Writes are short (a row per grading run), so serialising them costs nothing.
PostgreSQL needs none of this.

The schema is made by Alembic only (``upgrade()``), from the migrations shipped inside the
package, with the URL set in code: no alembic.ini is needed at runtime.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from labkit.errors import EnvironmentProblem, UserError
from labkit.settings import Settings

__all__ = ["MIGRATIONS", "Database", "url_for"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_BUSY_TIMEOUT_MS = 15_000
_MIGRATION_LOCK = 0x6C61626B6974  # "labkit": PostgreSQL advisory lock held while migrating


def url_for(settings: Settings) -> str:
    """LABKIT_DB_URL when set (e.g. ``postgresql+psycopg://user:pw@host/labkit``), else the
    SQLite file ``<home>/labkit.db``."""
    env = os.environ.get("LABKIT_DB_URL", "").strip()
    return env or f"sqlite:///{settings.home / 'labkit.db'}"


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise UserError(
            f"{url!r} is not a database URL; set LABKIT_DB_URL to e.g. "
            "sqlite:////var/lib/labkit/labkit.db or postgresql+psycopg://user:password@host/labkit"
        ) from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event below issue BEGIN, not the sqlite3 module.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _prepare_sqlite_file(url: URL) -> None:
    """Make the folder, and the file readable by its owner only (it holds password hashes)."""
    if not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _make_engine(url: URL) -> Engine:
    try:
        if url.get_backend_name() == "sqlite":
            _prepare_sqlite_file(url)
            engine = create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except NoSuchModuleError:
        raise UserError(
            f"labkit cannot use a {url.get_backend_name()!r} database ({url.drivername}); "
            "use sqlite:///PATH or postgresql+psycopg://... in LABKIT_DB_URL"
        ) from None


class Database:
    """The database at ``url``: ``session()`` for work, ``upgrade()`` once at start."""

    def __init__(self, url: str) -> None:
        self.url = _parse(url)
        self.engine = _make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def safe_url(self) -> str:
        """The URL with its password hidden, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises.

        Objects stay readable after the block (``expire_on_commit=False``), so a page can
        render what a repo function returned without a second query.
        """
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def alembic_config(self) -> Config:
        """Alembic settings pointing at the packaged migrations and at this database."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.render_as_string(hide_password=False).replace("%", "%%"))
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (all migrations by default); safe to run at every
        start, also by several processes at once (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
        advisory lock), the later ones finding the schema already at head."""
        self._migrate(command.upgrade, revision)

    def downgrade(self, revision: str = "base") -> None:
        """Undo migrations down to ``revision`` (``base``: drop every labkit table)."""
        self._migrate(command.downgrade, revision)

    def _migrate(self, action: Any, revision: str) -> None:
        cfg = self.alembic_config()
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # two processes starting at once: one migrates
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                action(cfg, revision)
        except OperationalError as exc:
            raise EnvironmentProblem(
                f"cannot open the database {self.safe_url} ({_first_line(exc)}); "
                "check LABKIT_DB_URL, that the server runs and that labkit may write there"
            ) from None

    def dispose(self) -> None:
        """Close every pooled connection (end of process, or before a fork)."""
        self.engine.dispose()


def existing_database(settings: Settings) -> Database | None:
    """The portal's database when there is one (LABKIT_DB_URL, or an existing ``<home>/labkit.db``),
    brought to the schema this labkit reads; None when no portal was ever started here (a
    missing SQLite file is not created). For commands that read what the portal recorded."""
    url = url_for(settings)
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite" and (
            not parsed.database or parsed.database == ":memory:" or not Path(parsed.database).is_file()):
        return None
    db = Database(url)
    try:
        db.upgrade()
    except BaseException:
        db.dispose()
        raise
    return db


def _first_line(exc: OperationalError) -> str:
    return str(exc.orig or exc).strip().splitlines()[0]
