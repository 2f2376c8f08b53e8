"""Repository functions, on SQLite and PostgreSQL (``database`` is parametrized)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from labkit.adapters.db import repo
from labkit.adapters.db.database import Database
from labkit.adapters.db.models import Candidate, Cohort, GradingRun, User, WebSession, utcnow
from labkit.adapters.security.passwords import hash_password, verify_password
from labkit.errors import LabkitError, UserError


def _seat(db: Database, n: int = 1, cohort: str = "bts1") -> list[Candidate]:
    with db.session() as s:
        trainer = repo.get_user_by_login(s, "prof") or repo.create_user(s, "prof", "Prof", "trainer")
        c = repo.create_cohort(s, cohort, "routing-multisite", 2026, created_by=trainer)
        out = []
        for i in range(1, n + 1):
            u = repo.create_user(s, f"{cohort}.c{i}", f"Candidat {i}", "candidate")
            out.append(repo.add_candidate(s, c, u, f"Candidat {i}", f"{cohort}-{i:02d}", 100 + i))
        return out


def test_users_and_duplicate_login(database: Database) -> None:
    with database.session() as s:
        u = repo.create_user(s, "Alice.Martin", "Alice Martin", "candidate", password="correct horse")
    assert u.login == "alice.martin" and u.locale == "fr" and not u.disabled
    assert u.created_at.tzinfo is not None
    with database.session() as s:
        found = repo.get_user_by_login(s, "ALICE.martin")
        assert found is not None and found.id == u.id
        assert found.password_hash and "correct horse" not in found.password_hash
        assert verify_password(found.password_hash, "correct horse")
        # the duplicate is refused with a sentence, and the transaction goes on
        with pytest.raises(UserError, match="login 'alice.martin' is already taken"):
            repo.create_user(s, "alice.martin", "Other", "assessor")
        repo.create_user(s, "bob", "Bob", "assessor", password_hash=hash_password("pre-hashed"))
    with database.session() as s:
        bob = repo.get_user_by_login(s, "bob")
        assert bob is not None and verify_password(bob.password_hash, "pre-hashed")
        assert sorted(s.scalars(select(User.login))) == ["alice.martin", "bob"]
        repo.set_password(s, u, "new one!")
    with database.session() as s:
        user = repo.get_user(s, u.id)
        assert user is not None and verify_password(user.password_hash, "new one!")
        assert not verify_password(user.password_hash, "correct horse")


@pytest.mark.parametrize("login,role,needle", [
    ("bad login", "candidate", "not a valid login"),
    ("", "candidate", "not a valid login"),
    ("x" * 65, "candidate", "not a valid login"),
    ("ok", "root", "not a role"),
])
def test_bad_users(database: Database, login: str, role: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle), database.session() as s:
        repo.create_user(s, login, "X", role)


def test_cohorts_and_candidates(database: Database) -> None:
    cands = _seat(database, 3)
    with database.session() as s:
        cohort = repo.get_cohort(s, "bts1")
        assert cohort is not None and cohort.lab_id == "routing-multisite"
        assert [c.instance for c in repo.candidates_of(s, cohort)] == ["bts1-01", "bts1-02", "bts1-03"]
        user = repo.get_user_by_login(s, "bts1.c2")
        assert user is not None
        mine = repo.get_candidate_for_user(s, user)
        assert mine is not None and mine.id == cands[1].id and mine.cohort.name == "bts1"
        assert repo.get_candidate_for_user(s, repo.get_user_by_login(s, "prof")) is None  # type: ignore[arg-type]
        with pytest.raises(UserError, match="cohort named 'bts1' already exists"):
            repo.create_cohort(s, "bts1", "x", 1)
        with pytest.raises(UserError, match="not a valid cohort name"):
            repo.create_cohort(s, "BTS 1", "x", 1)
        with pytest.raises(UserError, match="instance name 'bts1-01' is already used"):
            u = repo.create_user(s, "extra", "Extra", "candidate")
            repo.add_candidate(s, cohort, u, "Extra", "bts1-01", 7)
        with pytest.raises(UserError, match="already has a seat"):
            repo.add_candidate(s, cohort, user, "Again", "bts1-09", 7)
        with pytest.raises(UserError, match="is a trainer, not a candidate"):
            repo.add_candidate(s, cohort, repo.get_user_by_login(s, "prof"), "P", "bts1-10", 7)  # type: ignore[arg-type]
        repo.set_candidate_status(s, cands[0], "up", "ready")
    with database.session() as s:
        assert [(c.status, c.detail) for c in repo.candidates_of(s, cands[0].cohort_id)][0] == ("up", "ready")
        assert len(s.scalars(select(Candidate)).all()) == 3
        assert [c.name for c in repo.list_cohorts(s)] == ["bts1"]


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(UserError), database.session() as s:
        repo.create_user(s, "c", "C", "candidate")
        s.flush()
        repo.add_candidate(s, 999, 1, "C", "x-01", 1)  # no cohort 999


def test_login_rate_limit(database: Database) -> None:
    t0 = utcnow()
    with database.session() as s:
        for i in range(4):
            repo.record_login_attempt(s, "alice", "10.0.0.5", False, at=t0 + timedelta(seconds=i))
        assert not repo.too_many_failures(s, "alice", "10.0.0.5", now=t0 + timedelta(seconds=10))
        repo.record_login_attempt(s, "Alice", "10.0.0.5", False, at=t0 + timedelta(seconds=5))
        assert repo.too_many_failures(s, "alice", "10.0.0.5", now=t0 + timedelta(seconds=10))
        # per login AND source; the window slides
        assert not repo.too_many_failures(s, "alice", "10.0.0.6", now=t0 + timedelta(seconds=10))
        assert not repo.too_many_failures(s, "bob", "10.0.0.5", now=t0 + timedelta(seconds=10))
        assert not repo.too_many_failures(s, "alice", "10.0.0.5", now=t0 + timedelta(minutes=6))
        assert repo.too_many_failures(s, "alice", "10.0.0.5", timedelta(hours=1), 3, now=t0 + timedelta(minutes=6))
        # a success resets the count
        repo.record_login_attempt(s, "alice", "10.0.0.5", True, at=t0 + timedelta(seconds=6))
        assert not repo.too_many_failures(s, "alice", "10.0.0.5", now=t0 + timedelta(seconds=10))


def test_web_sessions_store_only_a_hash(database: Database) -> None:
    t0 = utcnow()
    with database.session() as s:
        u = repo.create_user(s, "alice", "Alice", "candidate")
        token, row = repo.create_web_session(s, u, ttl=timedelta(hours=1), now=t0)
    assert token not in row.id and row.id == repo.hash_token(token) and len(row.csrf_token) >= 32
    with database.session() as s:
        assert all(token not in (r.id, r.csrf_token) for r in s.scalars(select(WebSession)))
        live = repo.get_web_session(s, token, now=t0 + timedelta(minutes=5))
        assert live is not None and live.user.login == "alice" and live.last_seen_at > t0
        assert repo.get_web_session(s, token + "x") is None
        assert repo.get_web_session(s, "") is None
    with database.session() as s:  # expired: refused and removed
        assert repo.get_web_session(s, token, now=t0 + timedelta(hours=2)) is None
    with database.session() as s:
        assert s.scalars(select(WebSession)).all() == []
        token2, _ = repo.create_web_session(s, u)
        token3, _ = repo.create_web_session(s, u)
        repo.delete_web_session(s, token2)
        assert repo.get_web_session(s, token2) is None and repo.get_web_session(s, token3) is not None
        s.get(User, u.id).disabled = True  # type: ignore[union-attr]
        assert repo.get_web_session(s, token3) is None
    with database.session() as s:
        token4, _ = repo.create_web_session(s, repo.create_user(s, "bob", "Bob", "trainer"))
        bob = repo.get_user_by_login(s, "bob")
        assert bob is not None
        repo.set_password(s, bob, "rehashed", end_sessions=False)
        assert repo.get_web_session(s, token4) is not None
        repo.set_password(s, bob, "changed")
        assert repo.get_web_session(s, token4) is None


def test_grading_run_lifecycle(database: Database) -> None:
    (cand,) = _seat(database)
    with database.session() as s:
        run = repo.start_grading_run(s, cand, "selfcheck")
    assert run.status == "running" and run.pid > 0 and run.boot_id and run.proc_start
    with database.session() as s:
        assert repo.reap_interrupted(s) == []  # this process is alive
        with pytest.raises(repo.GradingInProgressError, match="already running"):
            repo.start_grading_run(s, cand, "grade")
    with database.session() as s:
        repo.finish_grading_run(s, run, run_id="bts1-01-x", manifest_sha256="a" * 64, score=7, max_score=10)
    with database.session() as s:
        with pytest.raises(LabkitError, match="already complete"):
            repo.fail_grading_run(s, run, "late")
        second = repo.start_grading_run(s, cand, "grade")
        repo.fail_grading_run(s, second, "instance is down")
    with database.session() as s:
        runs = repo.latest_runs(s, cand)
        assert [(r.mode, r.status) for r in runs] == [("grade", "failed"), ("selfcheck", "complete")]
        assert runs[0].error == "instance is down" and runs[1].finished_at is not None
        last = repo.last_complete_run(s, cand, ["selfcheck"])
        assert last is not None and (last.score, last.max_score, last.run_id) == (7, 10, "bts1-01-x")
        assert repo.last_complete_run(s, cand, ["grade", "final"]) is None
        with pytest.raises(ValueError):
            repo.start_grading_run(s, cand, "exam")


def _dead_process() -> repo.ProcessIdentity:
    """The identity of a process that has exited (its pid is free or reused)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    me = repo.current_process()
    p.wait()
    return repo.ProcessIdentity(pid=p.pid, start=12345, boot_id=me.boot_id)


def test_reap_interrupted(database: Database) -> None:
    a, b, c, d = _seat(database, 4)
    me = repo.current_process()
    with database.session() as s:
        dead = repo.start_grading_run(s, a, "grade", process=_dead_process())
        old_boot = repo.start_grading_run(s, b, "grade", process=repo.ProcessIdentity(me.pid, me.start, "other-boot"))
        reused = repo.start_grading_run(s, c, "grade", process=repo.ProcessIdentity(me.pid, (me.start or 0) + 1,
                                                                                    me.boot_id))
        live = repo.start_grading_run(s, d, "grade")
    with database.session() as s:
        assert sorted(repo.reap_interrupted(s)) == sorted([dead.id, old_boot.id, reused.id])
    with database.session() as s:
        status = {r.id: (r.status, r.error) for r in s.scalars(select(GradingRun))}
        assert status[live.id] == ("running", None)
        assert all(status[i][0] == "interrupted" and "before the run was sealed" in str(status[i][1])
                   for i in (dead.id, old_boot.id, reused.id))
        assert repo.reap_interrupted(s) == []
        # an interrupted run does not block the next grading of that candidate
        repo.start_grading_run(s, a, "grade")
        with pytest.raises(LabkitError, match="already interrupted"):
            repo.finish_grading_run(s, dead, run_id="x", manifest_sha256="0" * 64, score=1, max_score=1)


def test_start_reaps_a_crashed_run_of_the_same_candidate(database: Database) -> None:
    (cand,) = _seat(database)
    with database.session() as s:
        crashed = repo.start_grading_run(s, cand, "grade", process=_dead_process())
    with database.session() as s:
        repo.start_grading_run(s, cand, "selfcheck")
        assert s.get(GradingRun, crashed.id).status == "interrupted"  # type: ignore[union-attr]


def test_concurrent_finishes_lose_no_row(database: Database) -> None:
    """Eight graders start and finish at the same moment while a reaper runs: every row lands."""
    n = 8
    cands = _seat(database, n)
    barrier = threading.Barrier(n + 1)
    errors: list[BaseException] = []

    def grader(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            with database.session() as s:
                run = repo.start_grading_run(s, cands[i], "grade")
            barrier_finish.wait(timeout=30)
            with database.session() as s:
                repo.finish_grading_run(s, run, run_id=f"r{i}", manifest_sha256=f"{i:064d}", score=i, max_score=n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reaper() -> None:
        try:
            for _ in range(20):
                with database.session() as s:
                    repo.reap_interrupted(s)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    barrier_finish = threading.Barrier(n)
    threads = [threading.Thread(target=grader, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait(timeout=30)
    reap = threading.Thread(target=reaper)
    reap.start()
    for t in [*threads, reap]:
        t.join(timeout=120)
    assert errors == []
    with database.session() as s:
        rows = s.scalars(select(GradingRun).order_by(GradingRun.score)).all()
    assert [(r.status, r.run_id, r.score) for r in rows] == [("complete", f"r{i}", i) for i in range(n)]


def test_recordings(database: Database) -> None:
    a, b = _seat(database, 2)
    with database.session() as s:
        r1 = repo.add_recording(s, a, "ws", "ssh", "bts1/bts1.c1/ws-1.cast")
        repo.add_recording(s, a, "r-hq", "web", "bts1/bts1.c1/r-hq-1.cast")
        repo.add_recording(s, b, "ws", "ssh", "bts1/bts1.c2/ws-1.cast")
        with pytest.raises(ValueError, match="relative"):
            repo.add_recording(s, a, "ws", "ssh", "/etc/passwd")
        with pytest.raises(ValueError, match="relative"):
            repo.add_recording(s, a, "ws", "ssh", "../../x.cast")
        with pytest.raises(ValueError, match="channel"):
            repo.add_recording(s, a, "ws", "telnet", "x.cast")
    with database.session() as s:
        repo.finish_recording(s, r1, 4096)
    with database.session() as s:
        mine = repo.recordings_of(s, a)
        assert [(r.node, r.channel, r.size_bytes, r.ended_at is not None) for r in mine] == [
            ("ws", "ssh", 4096, True), ("r-hq", "web", 0, False)]
        assert [r.path for r in repo.recordings_of(s, b)] == ["bts1/bts1.c2/ws-1.cast"]


def test_cohort_created_by_is_kept(database: Database) -> None:
    _seat(database, 1)
    with database.session() as s:
        cohort = s.scalars(select(Cohort)).one()
        assert cohort.created_by is not None and cohort.created_by.login == "prof"


FINISHER = """
import os, sys, time
from pathlib import Path
from labkit.adapters.db import repo
from labkit.adapters.db.database import Database

db = Database(os.environ["LABKIT_TEST_DB_URL"])
ids = [int(x) for x in sys.argv[2:]]
with db.session() as s:
    rows = [repo.start_grading_run(s, c, "final").id for c in ids]
Path(sys.argv[1] + f".ready.{os.getpid()}").touch()
while not Path(sys.argv[1]).exists():
    time.sleep(0.005)
for row, cand in zip(rows, ids):
    with db.session() as s:
        repo.finish_grading_run(s, row, run_id=f"run-{cand}", manifest_sha256="f" * 64, score=cand, max_score=100)
db.dispose()
"""


def test_two_processes_finishing_at_once_lose_no_row(database: Database, tmp_path: Path) -> None:
    cands = [c.id for c in _seat(database, 10)]
    go = tmp_path / "go"
    env = {**os.environ, "LABKIT_TEST_DB_URL": database.url.render_as_string(hide_password=False)}
    procs = [subprocess.Popen([sys.executable, "-c", FINISHER, str(go), *map(str, half)], env=env,
                              stderr=subprocess.PIPE, text=True) for half in (cands[:5], cands[5:])]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("go.ready.*"))) < 2 and all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        go.touch()
        errs = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], errs
    with database.session() as s:
        rows = s.scalars(select(GradingRun).order_by(GradingRun.candidate_id)).all()
    assert [(r.candidate_id, r.status, r.run_id, r.score) for r in rows] == [
        (c, "complete", f"run-{c}", c) for c in cands]


def test_a_cohort_records_its_provider_and_vantage(database: Database) -> None:
    with database.session() as s:
        repo.create_cohort(s, "onns", "routing-multisite", 1)
        repo.create_cohort(s, "onpve", "routing-multisite", 2, provider="proxmox", vantage="agent")
    with database.session() as s:
        got = {c.name: (c.provider, c.vantage) for c in repo.list_cohorts(s)}
    assert got == {"onns": ("netns", "inprocess"), "onpve": ("proxmox", "agent")}
