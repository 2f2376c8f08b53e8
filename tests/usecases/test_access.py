"""Bastion rules without a running lab: logins, lockout, keys, where a login lands, read-only,
recording rows. Instance states are written to a private home (phase "up", nothing started);
every test runs on SQLite and PostgreSQL (tests/dbfixtures.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labkit.adapters.db.database import Database
from labkit.adapters.db.models import Candidate, Cohort, LoginAttempt, Recording, User
from labkit.adapters.recording.asciicast import read_events
from labkit.adapters.security.passwords import hash_password
from labkit.adapters.storage.state import utcnow
from labkit.domain.labs import instantiate
from labkit.models.instance import InstanceState
from labkit.settings import Settings
from labkit.usecases import access
from labkit.usecases.access import AccessRefused
from labkit.usecases.lifecycle import Context, load_lab_checked
from tests.conftest import PROJECT
from tests.dbfixtures import database, db_url, pg_cluster  # noqa: F401  (fixtures)

ALICE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOAlicealicealicealicealicealicealicealice01"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOOtherotherotherotherotherotherotherother01"


@dataclass
class World:
    ctx: Context
    db: Database
    cohort_id: int


def _save_state(ctx: Context, instance: str, seed: int, phase: str = "up") -> None:
    plan = instantiate(load_lab_checked(ctx, "routing-multisite"), instance, seed, None)
    now = utcnow()
    ctx.store.save(InstanceState(name=instance, provider="netns", phase=phase, created_at=now, updated_at=now,
                                 plan=plan, ssh_key="/nonexistent"))


@pytest.fixture
def world(tmp_path: Path, database: Database) -> World:  # noqa: F811
    ctx = Context(Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT))
    with database.session() as s:
        cohort = Cohort(name="bts1", lab_id="routing-multisite", seed=7)
        s.add(cohort)
        for i, (login, locale) in enumerate([("alice", "fr"), ("bob", "en")], start=1):
            user = User(login=login, display_name=login.title(), role="candidate", locale=locale,
                        password_hash=hash_password(f"pw-{login}"), ssh_public_key=None)
            s.add(Candidate(cohort=cohort, user=user, name=login.title(), instance=f"bts1-0{i}", seed=i,
                            status="up"))
        s.add(User(login="trainer", display_name="T", role="trainer", password_hash=hash_password("pw-trainer")))
        s.flush()
        cohort_id = cohort.id
    _save_state(ctx, "bts1-01", 1)
    _save_state(ctx, "bts1-02", 2)
    return World(ctx, database, cohort_id)


def _set_user(db: Database, login: str, **values: object) -> None:
    with db.session() as s:
        user = s.scalars(select(User).where(User.login == login)).one()
        for k, v in values.items():
            setattr(user, k, v)


def test_parse_login() -> None:
    assert access.parse_login("Alice") == access.Login("alice", None)
    assert access.parse_login("alice+r-hq") == access.Login("alice", "r-hq")
    assert access.parse_login("alice+") == access.Login("alice", "")


def test_passwords_and_who_may_log_in(world: World) -> None:
    db = world.db
    assert access.check_password(db, "alice", "pw-alice", "10.0.0.1")
    assert access.check_password(db, "alice+r-hq", "pw-alice", "10.0.0.1")
    assert not access.check_password(db, "alice", "pw-bob", "10.0.0.1")
    assert not access.check_password(db, "nobody", "pw-alice", "10.0.0.1")
    assert not access.check_password(db, "trainer", "pw-trainer", "10.0.0.1")  # not a candidate
    _set_user(db, "bob", disabled=True)
    assert not access.check_password(db, "bob", "pw-bob", "10.0.0.1")
    with db.session() as s:
        failed = s.scalars(select(LoginAttempt.login).where(LoginAttempt.ok.is_(False))).all()
    assert sorted(failed) == ["alice", "bob", "nobody", "trainer"]


def test_lockout_after_five_failures_per_source(world: World) -> None:
    db = world.db
    for _ in range(access.MAX_FAILURES):
        assert not access.check_password(db, "alice", "wrong", "10.0.0.9")
    # locked: even the right password and the right key are refused from that address
    _set_user(db, "alice", ssh_public_key=ALICE_KEY)
    assert not access.check_password(db, "alice", "pw-alice", "10.0.0.9")
    assert not access.check_public_key(db, "alice", ALICE_KEY, "10.0.0.9")
    assert access.check_password(db, "alice", "pw-alice", "10.0.0.10")
    # failures older than the window no longer count
    with db.session() as s:
        for row in s.scalars(select(LoginAttempt).where(LoginAttempt.source == "10.0.0.9")):
            row.at = datetime.now(UTC) - access.FAILURE_WINDOW - timedelta(seconds=1)
    assert access.check_password(db, "alice", "pw-alice", "10.0.0.9")


def test_a_success_resets_the_count(world: World) -> None:
    db = world.db
    for _ in range(access.MAX_FAILURES - 1):
        access.check_password(db, "alice", "wrong", "10.0.0.3")
    access.record_attempt(db, "alice", "10.0.0.3", ok=True)
    for _ in range(access.MAX_FAILURES - 1):
        access.check_password(db, "alice", "wrong", "10.0.0.3")
    assert access.check_password(db, "alice", "pw-alice", "10.0.0.3")


def test_public_keys(world: World) -> None:
    db = world.db
    assert not access.check_public_key(db, "alice", ALICE_KEY, "10.0.0.1")  # no key uploaded yet
    _set_user(db, "alice", ssh_public_key=f"# laptop\n{OTHER_KEY} old\nno-pty {ALICE_KEY} alice@laptop\n")
    assert access.check_public_key(db, "alice+r-br1", ALICE_KEY + " any-comment", "10.0.0.1")
    assert access.check_public_key(db, "alice", OTHER_KEY, "10.0.0.1")
    assert not access.check_public_key(db, "bob", ALICE_KEY, "10.0.0.1")
    assert not access.check_public_key(db, "alice", "garbage", "10.0.0.1")
    with db.session() as s:  # clients offer every key they hold: a mismatch is not a failure
        assert s.scalar(select(func.count()).select_from(LoginAttempt)) == 0


def test_where_a_login_lands(world: World) -> None:
    t = access.open_target(world.ctx, world.db, "alice")
    assert (t.instance, t.node, t.cohort, t.read_only) == ("bts1-01", "pc-hq", "bts1", False)
    assert access.open_target(world.ctx, world.db, "alice+r-br2").node == "r-br2"
    assert access.open_target(world.ctx, world.db, "bob+pc-br1").instance == "bts1-02"
    with pytest.raises(AccessRefused, match="n'a pas de machine « bts1-02 »"):
        access.open_target(world.ctx, world.db, "alice+bts1-02")
    with pytest.raises(AccessRefused, match="has no machine 'lk-bts1-01.r-hq'. Your machines: r-hq,"):
        access.open_target(world.ctx, world.db, "bob+lk-bts1-01.r-hq")
    with pytest.raises(AccessRefused, match="not a candidate"):
        access.open_target(world.ctx, world.db, "trainer")


def test_lab_not_running(world: World) -> None:
    _save_state(world.ctx, "bts1-02", 2, phase="failed")
    with pytest.raises(AccessRefused, match="Your lab bts1-02 is not running; tell your trainer."):
        access.open_target(world.ctx, world.db, "bob")
    (world.ctx.store.state_file("bts1-01")).unlink()
    with pytest.raises(AccessRefused, match="Votre lab bts1-01 n'est pas démarré"):
        access.open_target(world.ctx, world.db, "alice")


def test_read_only_once_the_exam_is_over(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not access.is_read_only(world.db, world.cohort_id)
    with world.db.session() as s:
        s.get_one(Cohort, world.cohort_id).exam_end = datetime.now(UTC) - timedelta(seconds=1)
    assert access.is_read_only(world.db, world.cohort_id)
    target = access.open_target(world.ctx, world.db, "alice")
    assert target.read_only
    shell = ["/usr/bin/env", "-i", "TERM=dumb", "nsenter", "--net=/x", "/bin/bash", "-l"]
    monkeypatch.setattr(access, "console_argv", lambda ctx, inst, node: list(shell))
    assert access.session_argv(world.ctx, target, "xterm-256color", None)[2] == "TERM=xterm-256color"
    with pytest.raises(AccessRefused, match="aucune commande n'est plus exécutée"):
        access.session_argv(world.ctx, target, "xterm", "hostname")


def test_session_argv(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    shell = ["/usr/bin/env", "-i", "TERM=xterm", "nsenter", "--net=/x", "/bin/bash", "-l"]
    monkeypatch.setattr(access, "console_argv", lambda ctx, inst, node: list(shell))
    target = access.open_target(world.ctx, world.db, "alice")
    assert access.session_argv(world.ctx, target, "vt100", "hostname -f") == [
        "/usr/bin/env", "-i", "TERM=vt100", "nsenter", "--net=/x", "/bin/bash", "-l", "-c", "hostname -f"]
    # a TERM that is not a terminal name is not passed on
    assert access.session_argv(world.ctx, target, "x; rm -rf /", None) == shell
    monkeypatch.setattr(access, "console_argv", lambda ctx, inst, node: ["/bin/sh"])
    with pytest.raises(AccessRefused, match="cannot run a single command"):
        access.session_argv(world.ctx, target, None, "id")


def test_session_argv_without_the_node_says_so(world: World) -> None:
    # the states here are files only: no namespace exists, so the provider refuses the node
    target = access.open_target(world.ctx, world.db, "alice")
    with pytest.raises(AccessRefused, match="n'est pas démarré"):
        access.session_argv(world.ctx, target, "xterm", None)


def test_recording_row_and_file(world: World) -> None:
    target = access.open_target(world.ctx, world.db, "alice+r-hq")
    rec = access.start_recording(world.ctx, world.db, target, "ssh", 100, 30, "xterm")
    rec.writer.input(b"ip r\r")
    rec.writer.output(b"default via 10.0.0.1\r\n")
    access.finish_recording(world.db, rec)
    with world.db.session() as s:
        row = s.get_one(Recording, rec.id)
    path = world.ctx.settings.home / "recordings" / row.path
    assert row.path.startswith("bts1/alice/") and row.path.endswith("-r-hq-ssh.cast")
    assert (row.node, row.channel, row.size_bytes) == ("r-hq", "ssh", path.stat().st_size)
    assert row.ended_at is not None and row.ended_at >= row.started_at
    assert [(e.code, e.data) for e in read_events(path)] == [("i", "ip r\r"), ("o", "default via 10.0.0.1\r\n")]


def test_access_lines(world: World) -> None:
    with world.db.session() as s:
        alice = s.scalars(select(Candidate).where(Candidate.instance == "bts1-01")).one()
        assert access.access_lines(alice, "exam.example", 22) == ["ssh alice@exam.example"]
        lines = access.access_lines(alice, "10.1.2.3", 2222, world.ctx)
    assert lines[0] == "ssh -p 2222 alice@10.1.2.3"
    assert "ssh -p 2222 alice+r-hq@10.1.2.3" in lines and "ssh -p 2222 alice+pc-br2@10.1.2.3" in lines
    assert len(lines) == 7  # the workstation, then each of the six nodes
