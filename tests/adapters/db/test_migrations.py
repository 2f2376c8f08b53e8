"""The Alembic migrations make exactly the schema models.py describes, and undo it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from labkit.adapters.db.database import MIGRATIONS, Database, url_for
from labkit.adapters.db.models import Base
from labkit.errors import EnvironmentProblem, UserError
from labkit.settings import Settings

TABLES = {"users", "cohorts", "candidates", "grading_runs", "recordings", "web_sessions", "login_attempts"}


def _diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(mc, Base.metadata))


def _added_tables(db: Database) -> set[str]:
    return {d[1].name for d in _diff(db) if isinstance(d, tuple) and d[0] == "add_table"}


def test_upgrade_head_is_the_models_schema_and_downgrade_removes_it(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert _added_tables(db) == TABLES  # the comparison does see a missing schema
        db.upgrade()
        assert _diff(db) == []
        with db.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert tables == TABLES | {"alembic_version"}
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0003"
        db.upgrade()  # a second start changes nothing
        assert _diff(db) == []
        db.downgrade("base")
        with db.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        assert _added_tables(db) == TABLES
        db.upgrade()
        assert _diff(db) == []
    finally:
        db.dispose()


def test_0002_adds_candidate_identifiers_and_downgrade_keeps_the_rows(db_url: str) -> None:
    """0001 -> 0002 adds the roster identifiers to a table that already holds candidates;
    back to 0001 removes them and keeps the rows; 0002 again is the models' schema."""
    db = Database(db_url)
    try:
        db.upgrade("0001")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO users (id, login, display_name, role, locale, disabled, created_at) "
                              "VALUES (1, 'al', 'Al', 'candidate', 'fr', false, CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO cohorts (id, name, lab_id, seed, created_at) "
                              "VALUES (1, 'c1', 'demo-lab', 1, CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO candidates (id, cohort_id, user_id, name, instance, seed, status, detail, "
                              "updated_at) VALUES (1, 1, 1, 'Al', 'c1-01', 2, 'planned', '', CURRENT_TIMESTAMP)"))
        cols = {c["name"] for c in inspect(db.engine).get_columns("candidates")}
        assert not cols & {"email", "idnumber", "username"}
        db.upgrade("0002")
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE candidates SET email = 'al@example.org' WHERE id = 1"))
            assert conn.execute(text("SELECT email, idnumber FROM candidates")).one() == ("al@example.org", None)
        db.downgrade("0001")
        cols = {c["name"] for c in inspect(db.engine).get_columns("candidates")}
        assert not cols & {"email", "idnumber", "username"}
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM candidates")).scalar_one() == "Al"
        db.upgrade()
        assert _diff(db) == []
    finally:
        db.dispose()


def test_0003_gives_older_cohorts_netns_and_downgrade_keeps_the_rows(db_url: str) -> None:
    """0002 -> 0003 adds the cohort's provider and vantage: a cohort made before is on netns,
    graded in process; a new one may say proxmox / agent; back to 0002 removes the columns and
    keeps the cohorts; 0003 again is the models' schema."""
    db = Database(db_url)
    try:
        db.upgrade("0002")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO cohorts (id, name, lab_id, seed, created_at) "
                              "VALUES (1, 'old', 'demo-lab', 1, CURRENT_TIMESTAMP)"))
        assert not {c["name"] for c in inspect(db.engine).get_columns("cohorts")} & {"provider", "vantage"}
        db.upgrade()
        assert _diff(db) == []
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO cohorts (id, name, lab_id, seed, provider, vantage, created_at) "
                              "VALUES (2, 'pve', 'demo-lab', 2, 'proxmox', 'agent', CURRENT_TIMESTAMP)"))
            rows = conn.execute(text("SELECT name, provider, vantage FROM cohorts ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [("old", "netns", "inprocess"), ("pve", "proxmox", "agent")]
        db.downgrade("0002")
        assert not {c["name"] for c in inspect(db.engine).get_columns("cohorts")} & {"provider", "vantage"}
        with db.engine.connect() as conn:
            assert [r[0] for r in conn.execute(text("SELECT name FROM cohorts ORDER BY id"))] == ["old", "pve"]
        db.upgrade()
        assert _diff(db) == []
        with db.engine.connect() as conn:  # the default comes back for rows that were downgraded
            assert conn.execute(text("SELECT provider FROM cohorts WHERE id = 2")).scalar_one() == "netns"
    finally:
        db.dispose()


def test_migrations_are_inside_the_package() -> None:
    assert (MIGRATIONS / "env.py").is_file()
    assert (MIGRATIONS / "versions" / "0001_initial.py").is_file()
    assert (MIGRATIONS / "versions" / "0002_candidate_identifiers.py").is_file()
    assert (MIGRATIONS / "versions" / "0003_cohort_provider.py").is_file()
    assert "labkit" in MIGRATIONS.parts and "adapters" in MIGRATIONS.parts


def test_url_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=tmp_path)
    monkeypatch.delenv("LABKIT_DB_URL", raising=False)
    assert url_for(s) == f"sqlite:///{tmp_path / 'home' / 'labkit.db'}"
    monkeypatch.setenv("LABKIT_DB_URL", "postgresql+psycopg://u:p@db.example/labkit")
    assert url_for(s) == "postgresql+psycopg://u:p@db.example/labkit"


def test_sqlite_file_is_private_with_foreign_keys_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "labkit.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.upgrade()
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        db.dispose()


def test_bad_urls_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a database URL"):
        Database("not a url")
    with pytest.raises(UserError, match="cannot use a 'oracle' database"):
        Database("oracle+nosuchdriver://u:p@h/db")
    with pytest.raises(EnvironmentProblem, match="check LABKIT_DB_URL") as e:
        Database("postgresql+psycopg://u:secret@127.0.0.1:1/x").upgrade()
    assert "secret" not in str(e.value)


UPGRADER = """
import os, time
from pathlib import Path
from labkit.adapters.db.database import Database
db = Database(os.environ["LABKIT_TEST_DB_URL"])
while not Path(os.environ["LABKIT_TEST_GO"]).exists():
    time.sleep(0.005)
db.upgrade()
db.dispose()
"""


def test_processes_starting_at_once_upgrade_once(db_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "LABKIT_TEST_DB_URL": db_url, "LABKIT_TEST_GO": str(go)}
    procs = [subprocess.Popen([sys.executable, "-c", UPGRADER], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    time.sleep(1.5)  # let all three import and wait on the go file
    go.touch()
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    db = Database(db_url)
    try:
        assert _diff(db) == []
    finally:
        db.dispose()


def test_existing_database_is_none_without_a_portal_and_never_creates_one(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.adapters.db.database import existing_database

    monkeypatch.delenv("LABKIT_DB_URL", raising=False)
    settings = Settings(home=tmp_path, run_dir=tmp_path / "run", project=tmp_path)
    assert existing_database(settings) is None
    assert not (tmp_path / "labkit.db").exists()


def test_existing_database_brings_an_older_portal_database_up_to_date(db_url: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A command reading what an older portal recorded (bundle, gradebook) finds the schema it reads."""
    from labkit.adapters.db.database import existing_database

    old = Database(db_url)
    try:
        old.upgrade("0001")
    finally:
        old.dispose()
    monkeypatch.setenv("LABKIT_DB_URL", db_url)
    db = existing_database(Settings(home=tmp_path, run_dir=tmp_path / "run", project=tmp_path))
    assert db is not None
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0003"
            assert "email" in {c["name"] for c in inspect(conn).get_columns("candidates")}
            assert "provider" in {c["name"] for c in inspect(conn).get_columns("cohorts")}
    finally:
        db.dispose()
