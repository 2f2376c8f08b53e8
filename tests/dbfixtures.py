"""Database fixtures shared by every test that needs labkit's database, on SQLite AND PostgreSQL.

Use them from a conftest.py::

    from tests.dbfixtures import db_url, database, pg_cluster  # noqa: F401  (registers fixtures)

``db_url`` is parametrized over ``sqlite`` and ``postgresql``: each test gets a new, empty
database (a file in tmp_path, or a new database in the session's cluster). ``database`` is
a :class:`Database` on it, already upgraded to head by the migrations.

The PostgreSQL cluster comes from Debian's binaries, made by ``initdb`` in a scratch folder
owned by the ``postgres`` user (initdb refuses root), listening on 127.0.0.1 on a free port
and on a socket in that folder only, password-protected (another user of the machine cannot
connect), started once per test session and stopped (``pg_ctl stop -m fast``) and removed at
the end. It is skipped only when the binaries are not installed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit.adapters.db.database import Database

PG_BIN = Path(os.environ.get("LABKIT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # the OS user that owns and runs the scratch cluster
DB_KINDS = ["sqlite", "postgresql"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = ["runuser", "-u", PG_USER, "--", *argv] if os.geteuid() == 0 else list(argv)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class PgCluster:
    """A private PostgreSQL server for the test session."""

    root: Path
    port: int
    password: str
    user: str = "labkit"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE) in db 'postgres'."""
        import psycopg

        conninfo = f"host=127.0.0.1 port={self.port} user={self.user} password={self.password} dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        shutil.chown(pwfile, PG_USER)
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", self.user, "--pwfile", str(pwfile),
                     "--auth=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8", timeout=120)
        pwfile.unlink()
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                     "-o", opts, "-w", "-t", "60", "start", timeout=90)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=90)


def start_cluster() -> PgCluster:
    """Start a scratch cluster; the caller must call ``stop_cluster`` (fixtures do)."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (Debian package postgresql-15)")
    # not under pytest's tmp dir: it is mode 0700 for root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="labkit-pg-"))
    shutil.chown(root, PG_USER, PG_USER)
    cluster = PgCluster(root=root, port=_free_port(), password=secrets.token_urlsafe(18))
    try:
        cluster.start()
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: PgCluster) -> None:
    try:
        cluster.stop()
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a new empty database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'labkit.db'}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = f"t_{secrets.token_hex(6)}"
    cluster.admin(f"CREATE DATABASE {name}")
    try:
        yield cluster.url(name)
    finally:
        cluster.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A :class:`Database` on ``db_url`` with the schema at head."""
    db = Database(db_url)
    db.upgrade()
    try:
        yield db
    finally:
        db.dispose()
