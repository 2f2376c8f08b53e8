"""Portal fixtures: a real database (SQLite in tmp), the real :class:`Exam` use cases, and a
fake lab layer (:class:`FakeLabOps`) that brings nothing up but grades into real sealed run
folders, so reports render from stored runs exactly as in production."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from labkit.adapters.db import repo
from labkit.adapters.db.database import Database
from labkit.adapters.recording.asciicast import CastHeader, CastWriter, recording_path
from labkit.adapters.security.keyring import Keyring
from labkit.adapters.storage.runs import RunWriter, new_run_id
from labkit.errors import UserError
from labkit.interfaces.web import create_app
from labkit.models.common import I18n
from labkit.models.evidence import Evidence
from labkit.models.results import CheckResult, GradeSummary, RunInfo
from labkit.settings import Settings
from labkit.usecases.exam import Exam
from labkit.usecases.lifecycle import Context
from tests.dbfixtures import pg_cluster  # noqa: F401  (session fixture: scratch PostgreSQL)

PROJECT = Path(__file__).resolve().parents[3]


@dataclass
class FakeLabOps:
    """Labs without namespaces: ``up`` records the instance, ``grade`` seals a real run folder
    with one check whose verdict is ``passing[instance]``."""

    runs_dir: Path
    instances: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    passing: dict[str, bool] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail_up: set[str] = field(default_factory=set)
    offered: tuple[str, ...] = ("netns",)  # providers(): what this "home" is configured for
    unfit: set[str] = field(default_factory=set)  # providers the lab is refused on (fits)
    placed: dict[str, tuple[str, str]] = field(default_factory=dict)  # instance -> (provider, vantage) of up
    grade_gate: threading.Event | None = None  # when set, grading waits for it
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lab_id(self, lab_ref: str) -> str:
        if lab_ref != "demo-lab":
            raise UserError(f"there is no lab {lab_ref!r}; pick one of: demo-lab.")
        return lab_ref

    def lab_title(self, lab_id: str, lang: str) -> str:
        return "Laboratoire de démonstration" if lang == "fr" else "Demo lab"

    def labs(self) -> list[tuple[str, str]]:
        return [("demo-lab", "Laboratoire de démonstration")]

    def providers(self) -> list[str]:
        return list(self.offered)

    def fits(self, lab_id: str, provider: str, vantage: str | None = None) -> str:
        if provider in self.unfit:
            raise UserError(f"lab {lab_id} cannot be graded on provider {provider} (fake).")
        return vantage or ("agent" if provider == "proxmox" else "inprocess")

    def up(self, lab_id: str, instance: str, seed: int, candidate: str, provider: str = "netns",
           vantage: str | None = None) -> None:
        with self.lock:
            self.calls.append(("up", instance))
            self.placed[instance] = (provider, vantage or "")
        if instance in self.fail_up:
            raise UserError(f"bringing up {instance} failed (fake)")
        self.instances[instance] = (lab_id, seed, candidate)

    def down(self, instance: str, provider: str = "netns") -> None:
        with self.lock:
            self.calls.append(("down", instance))
        self.instances.pop(instance, None)

    def exists(self, instance: str, provider: str = "netns") -> bool:
        return instance in self.instances

    def nodes(self, instance: str) -> list[str]:
        return ["ws1", "r1"] if instance in self.instances else []

    def brief(self, instance: str, lang: str) -> str:
        lab_id, seed, candidate = self.instances[instance]
        word = "Sujet" if lang == "fr" else "Brief"
        return f"{word} de {candidate} : instance {instance}, graine {seed}."

    def health(self, instance: str) -> str:
        return "ok" if instance in self.instances else "absent"

    def run_dir_held(self) -> bool:
        return bool(self.instances)

    def grade(self, instance: str, mode: str) -> GradeSummary:
        with self.lock:
            self.calls.append((mode, instance))
        if self.grade_gate is not None:
            self.grade_gate.wait(10)
        lab_id, seed, candidate = self.instances[instance]
        ok = self.passing.get(instance, True)
        now = datetime.now(UTC)
        run_id = new_run_id(instance, now)
        with RunWriter(self.runs_dir, run_id) as writer:
            writer.add_evidence(Evidence(id="ping.1", check="ping", kind="icmp", source="v1", target="10.0.0.1",
                                         action="ping 10.0.0.1", started_at=now, ended_at=now, ok=True,
                                         raw="1 packets transmitted, 1 received", parsed={"received": int(ok)}))
            check = CheckResult(id="ping", title=I18n(fr="Ping entre les sites", en="Ping between sites"),
                                grader="demo.ping", status="pass" if ok else "fail", points=10 if ok else 0,
                                max_points=10, criteria=[], evidence=["ping.1"],
                                message=I18n(fr="Réponse reçue." if ok else "Pas de réponse.",
                                             en="Answer received." if ok else "No answer."),
                                doc=I18n(fr="Le routeur doit relayer le ping.", en="The router must forward the ping."))
            info = RunInfo(run_id=run_id, mode=mode, lab_id=lab_id, lab_title=I18n(fr="Démo", en="Demo"),  # type: ignore[arg-type]
                           lab_version=1, instance=instance, candidate=candidate, provider="fake", seed=seed,
                           params={}, started_at=now, ended_at=now, labkit_version="test", checks=[])
            summary = GradeSummary(run_id=run_id, lab_id=lab_id, instance=instance, candidate=candidate,
                                   score=check.points, max_score=10, started_at=now, ended_at=now, checks=[check])
            return writer.seal(info, summary, [])


@dataclass
class Portal:
    """A running portal over a fresh database, with one trainer, one assessor and a cohort of
    two launched candidates (A: Alice, B: Bob), each with a self-check, a submitted grade
    and a console recording."""

    settings: Settings
    db: Database
    exam: Exam
    ops: FakeLabOps
    client: TestClient
    passwords: dict[str, str]
    cohort_id: int
    candidate_ids: dict[str, int]  # "A"/"B" -> Candidate.id
    run_ids: dict[str, dict[str, int]]  # "A"/"B" -> {"grade": GradingRun.id, "selfcheck": ...}
    recording_ids: dict[str, int]
    logins: dict[str, str]  # role key -> login

    def login(self, who: str, client: TestClient | None = None) -> TestClient:
        """Log ``who`` ("trainer", "assessor", "A", "B") in on ``client`` (a new one by default)."""
        c = client or TestClient(self.client.app, follow_redirects=False)
        page = c.get("/login")
        token = csrf_of(page.text)
        r = c.post("/login", data={"login": self.logins[who], "password": self.passwords[who], "csrf_token": token})
        assert r.status_code == 303, r.text
        return c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def make_db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'labkit.db'}")
    db.upgrade()
    return db


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id still, with test-sized cost (the default 64 MiB x 3 passes is per login)."""
    from argon2 import PasswordHasher

    from labkit.adapters.security import passwords

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


BOTH_DATABASES = {"test_authz_matrix", "test_portal"}  # these modules run on SQLite and PostgreSQL


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "portal_db" in metafunc.fixturenames and metafunc.module.__name__.rsplit(".", 1)[-1] in BOTH_DATABASES:
        metafunc.parametrize("portal_db", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def portal_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The portal's database: SQLite in tmp (default) or a new database in the test session's
    scratch PostgreSQL (tests/dbfixtures.py)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        db = make_db(tmp_path)
        yield db
        db.dispose()
        return
    cluster = request.getfixturevalue("pg_cluster")
    name = f"t_{secrets.token_hex(6)}"
    cluster.admin(f"CREATE DATABASE {name}")
    db = Database(cluster.url(name))
    try:
        db.upgrade()
        yield db
    finally:
        db.dispose()
        cluster.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def portal(tmp_path: Path, portal_db: Database) -> Iterator[Portal]:
    settings = Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT)
    ctx = Context(settings)
    db = portal_db
    ops = FakeLabOps(settings.runs)
    exam = Exam(ctx, db, ops=ops, selfcheck_interval=0)
    trainer, trainer_pw = exam.add_user("formateur", "trainer", "Claire Formatrice")
    assessor, assessor_pw = exam.add_user("jury", "assessor", "Jules Jury")
    Keyring(settings.home / "keys").init("Centre de test")  # bundles are signed with the centre key
    roster = "nom,adresse de courriel\nAlice Martin,alice@example.org\nBob Durand,bob@example.org\n"
    cohort_id, creds = exam.create_cohort("demo-lab", roster, "bts1", created_by=trainer.id, seed=7)
    exam.launch(cohort_id)
    exam.wait_idle()
    with db.session() as s:
        cands = repo.candidates_of(s, cohort_id)
        ids = {"A": cands[0].id, "B": cands[1].id}
    run_ids: dict[str, dict[str, int]] = {}
    rec_ids: dict[str, int] = {}
    for key, cid in ids.items():
        sc = exam.selfcheck(cid, None)
        exam.wait_idle()
        gr = exam.submit(cid, None)
        exam.wait_idle()
        run_ids[key] = {"selfcheck": sc, "grade": gr}
        rec_ids[key] = _recording(settings, db, cid, creds[0 if key == "A" else 1].login)
    app = create_app(ctx, db, exam=exam, final_check_every=0)
    with TestClient(app, follow_redirects=False) as client:
        yield Portal(settings=settings, db=db, exam=exam, ops=ops, client=client,
                     passwords={"trainer": trainer_pw, "assessor": assessor_pw, "A": creds[0].password,
                                "B": creds[1].password},
                     cohort_id=cohort_id, candidate_ids=ids, run_ids=run_ids, recording_ids=rec_ids,
                     logins={"trainer": "formateur", "assessor": "jury", "A": creds[0].login, "B": creds[1].login})
    exam.close()


def _recording(settings: Settings, db: Database, candidate_id: int, login: str) -> int:
    root = settings.home / "recordings"
    path = recording_path(root, "bts1", login, "ws1", "ssh", datetime.now(UTC))
    with CastWriter(path, CastHeader(width=80, height=24, timestamp=0, title=login)) as w:
        w.output(f"root@ws1:~# \x1b[1mip route\x1b[0m  secret-of-{login}\r\n".encode())
        w.input(b"ip route\r")
        size = w.size()
    with db.session() as s:
        rec = repo.add_recording(s, candidate_id, "ws1", "ssh", str(path.relative_to(root)))
        repo.finish_recording(s, rec, size)
        s.flush()
        return rec.id
