"""Cohorts: roster parsing (no root), parallel bookkeeping and locking (no root, with a
recording stand-in for grading), and one instance per candidate launched and graded in
parallel on a real lab (root)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from labkit.errors import ProviderError, UserError
from labkit.settings import Settings
from labkit.usecases import cohort as cohort_mod
from labkit.usecases.cohort import (
    Cohort,
    CohortProgress,
    Seat,
    cohort_down,
    cohort_grade,
    cohort_retry,
    cohort_up,
    grade_lock_path,
    load,
    read_roster,
)
from labkit.usecases.lifecycle import Context, down, exec_in
from tests.conftest import LabEnv, leftovers, namespace_inodes
from tests.usecases.capability_fixture import FakeProvider, LesserProvider, install, install_fake, make_project


@pytest.mark.parametrize("text,names", [
    ("Alice Martin\nBob Durand\n", ["Alice Martin", "Bob Durand"]),
    ("nom;groupe\nAlice;A\nBob;B\n", ["Alice", "Bob"]),
    ("name,group\n\"Durand, Bob\",B\n# absent\nAlice,A\n", ["Durand, Bob", "Alice"]),
    ("\ufeffcandidat\nÉlodie Noël\n", ["Élodie Noël"]),
])
def test_read_roster(tmp_path: Path, text: str, names: list[str]) -> None:
    p = tmp_path / "roster.csv"
    p.write_text(text, encoding="utf-8")
    assert read_roster(p) == names


@pytest.mark.parametrize("text,needle", [
    ("", "names no candidate"),
    ("Alice\nAlice\n", "twice"),
    ("\n".join(f"c{i}" for i in range(61)), "at most 60"),
])
def test_bad_rosters(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "roster.txt"
    p.write_text(text)
    with pytest.raises(UserError, match=needle):
        read_roster(p)
    with pytest.raises(UserError, match="does not exist"):
        read_roster(tmp_path / "missing.csv")


# -- bookkeeping and locks, without a lab ------------------------------------------------------
def _fake_cohort(tmp_path: Path, n: int, status: str = "up") -> Context:
    settings = Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=Path.cwd())
    ctx = Context(settings)
    seats = [Seat(candidate=f"Candidat {i}", instance=f"fk-{i:02d}", seed=i, status=status) for i in range(1, n + 1)]
    cohort_mod._save(ctx, Cohort("fk", "routing-multisite", 1, seats))
    return ctx


class _Summary:
    def __init__(self, instance: str):
        self.score, self.max_score, self.run_id = 7, 10, f"{instance}-run"


class GradeRecorder:
    """Stands in for usecases.grade.grade: records when each call starts and ends."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.calls: list[tuple[str, float, float]] = []
        self.running: dict[str, int] = {}
        self.max_total = 0
        self.max_same = 0
        self._lock = threading.Lock()

    def __call__(self, ctx: Context, instance: str, *, mode: str = "grade") -> _Summary:
        with self._lock:
            self.running[instance] = self.running.get(instance, 0) + 1
            self.max_same = max(self.max_same, self.running[instance])
            self.max_total = max(self.max_total, sum(self.running.values()))
        t0 = time.monotonic()
        time.sleep(self.seconds)
        with self._lock:
            self.running[instance] -= 1
            self.calls.append((instance, t0, time.monotonic()))
        return _Summary(instance)


def test_grading_bound_and_one_grading_per_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _fake_cohort(tmp_path, 6)
    rec = GradeRecorder(0.3)
    monkeypatch.setattr(cohort_mod, "grade", rec)
    events: list[CohortProgress] = []
    # two cohort gradings at once (a trainer's and the exam's end): each bounded to 3
    threads = [threading.Thread(target=cohort_grade, args=(ctx, "fk"),
                                kwargs={"parallel": 3, "on_event": events.append}) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rec.calls) == 12  # every seat graded by each of the two
    assert rec.max_same == 1  # never two gradings of one instance at once
    assert 2 <= rec.max_total <= 6
    for inst in {c[0] for c in rec.calls}:
        spans = sorted((a, b) for i, a, b in rec.calls if i == inst)
        assert spans[0][1] <= spans[1][0], f"gradings of {inst} overlap: {spans}"
    c = load(ctx, "fk")
    assert {s.status for s in c.seats} == {"graded"} and {s.score for s in c.seats} == {"7/10"}
    finished = [e for e in events if e.finished]
    assert len(finished) == 12 and all(e.ok and e.phase == "graded" for e in finished)


def test_grading_bound_is_kept_within_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _fake_cohort(tmp_path, 5)
    rec = GradeRecorder(0.2)
    monkeypatch.setattr(cohort_mod, "grade", rec)
    events: list[CohortProgress] = []
    cohort_grade(ctx, "fk", parallel=2, on_event=events.append)
    assert rec.max_total == 2 and len(rec.calls) == 5
    done = [e.done for e in events if e.finished]
    assert sorted(done) == [1, 2, 3, 4, 5] and all(e.total == 5 for e in events)


HOLD = """import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
print(time.monotonic(), flush=True)  # CLOCK_MONOTONIC: one clock for every process; the lock goes at exit
"""


def test_grading_lock_holds_across_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _fake_cohort(tmp_path, 2)
    rec = GradeRecorder(0.0)
    monkeypatch.setattr(cohort_mod, "grade", rec)
    lock = grade_lock_path(ctx, "fk-01")
    lock.parent.mkdir(parents=True, exist_ok=True)
    # another process grades fk-01 for 1.5 s: a short wait gives up on that seat only
    with subprocess.Popen([sys.executable, "-c", HOLD, str(lock), "1.5"], stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        c = cohort_grade(ctx, "fk", parallel=2, lock_wait=0.3)
        assert "already running" in c.seats[0].detail and c.seats[0].status == "up"
        assert c.seats[1].status == "graded"
        # a long enough wait grades it once the other process is done, never during
        c = cohort_grade(ctx, "fk", parallel=2, lock_wait=10)
        released = float(holder.stdout.readline())
        holder.wait(5)
    assert c.seats[0].status == "graded" and c.seats[0].detail == ""
    starts = [a for i, a, _ in rec.calls if i == "fk-01"]
    assert len(starts) == 1 and holder.returncode == 0
    assert starts[0] >= released  # graded only once the other process had let go


def test_cohort_file_updates_are_never_lost(tmp_path: Path) -> None:
    ctx = _fake_cohort(tmp_path, 40, status="planned")
    barrier = threading.Barrier(40)

    def work(i: int) -> None:
        barrier.wait()
        for step in ("launching", "up"):
            cohort_mod._set_seat(ctx, "fk", f"fk-{i:02d}", status=step, detail=step)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s.status for s in load(ctx, "fk").seats] == ["up"] * 40
    assert not list((ctx.settings.home / "cohorts").glob("*.tmp"))


def test_retry_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    ctx = _fake_cohort(tmp_path, 2)
    with pytest.raises(UserError, match="nothing to retry"):
        cohort_retry(ctx, "fk")
    with pytest.raises(UserError, match="no candidate 'Nobody'"):
        cohort_retry(ctx, "fk", ["Nobody"])
    with pytest.raises(UserError, match="is up, not failed"):
        cohort_retry(ctx, "fk", ["fk-02"])
    with pytest.raises(UserError, match="from 1 to 60"):
        cohort_retry(ctx, "fk", parallel=0)
    with pytest.raises(UserError, match="no cohort"):
        cohort_retry(ctx, "nope")


def test_retry_takes_failed_unlaunched_and_abandoned_seats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _fake_cohort(tmp_path, 5)
    for inst, status in (("fk-01", "failed"), ("fk-02", "planned"), ("fk-03", "launching"), ("fk-04", "launching")):
        cohort_mod._set_seat(ctx, "fk", inst, status=status)
    launched: list[str] = []
    monkeypatch.setattr(cohort_mod, "up", lambda c, lab, *, instance, **kw: launched.append(instance))
    monkeypatch.setattr(cohort_mod, "load_lab_checked", lambda c, ref: None)
    monkeypatch.setattr(cohort_mod, "check_provider_fits", lambda c, lab, prov, vantage=None: vantage)
    with ctx.store.lock("fk-04"):  # fk-04 is being launched by someone right now; fk-03's launcher died
        c = cohort_retry(ctx, "fk", parallel=2)
        with pytest.raises(UserError, match="is launching, not failed"):
            cohort_retry(ctx, "fk", ["fk-04"])
    assert sorted(launched) == ["fk-01", "fk-02", "fk-03"]
    assert [s.status for s in c.seats] == ["up", "up", "up", "launching", "up"]


def test_interrupted_launch_leaves_the_rest_planned_for_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              request: pytest.FixtureRequest) -> None:
    """Ctrl-C under Python's own SIGINT handler, as in `labkit cohort up`. An earlier test in
    the same worker process may have run ansible-runner in the main thread, which installs a
    SIGINT handler that only sets a flag (ansible_runner.utils.signal_handler); the simulated
    Ctrl-C would then raise nothing (seen once in a full run: DID NOT RAISE)."""
    import _thread
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))

    ctx = _fake_cohort(tmp_path, 6, status="planned")
    launched: list[str] = []

    def fake_up(c: Context, lab: str, *, instance: str, **kw: object) -> None:
        launched.append(instance)
        if instance == "fk-02":
            _thread.interrupt_main()  # Ctrl-C while the second seat is being launched
        time.sleep(0.2)

    monkeypatch.setattr(cohort_mod, "up", fake_up)
    monkeypatch.setattr(cohort_mod, "load_lab_checked", lambda c, ref: None)
    monkeypatch.setattr(cohort_mod, "check_provider_fits", lambda c, lab, prov, vantage=None: vantage)
    with pytest.raises(UserError, match=r"interrupted: \d of 6 seats are up; run 'labkit cohort retry fk'"):
        cohort_mod._launch(ctx, load(ctx, "fk"), load(ctx, "fk").seats, 2, None)
    after = load(ctx, "fk")
    assert 2 <= len(launched) < 6  # the seats being launched finished, no new one started
    assert [s.status for s in after.seats] == ["up"] * len(launched) + ["planned"] * (6 - len(launched))
    c = cohort_retry(ctx, "fk", parallel=3)
    assert [s.status for s in c.seats] == ["up"] * 6 and len(launched) == 6


def test_progress_callback_errors_do_not_stop_the_cohort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _fake_cohort(tmp_path, 3)
    monkeypatch.setattr(cohort_mod, "grade", GradeRecorder(0.0))

    def broken(ev: CohortProgress) -> None:
        raise RuntimeError("display bug")

    c = cohort_grade(ctx, "fk", parallel=3, on_event=broken)
    assert [s.status for s in c.seats] == ["graded"] * 3


# -- provider and vantage ------------------------------------------------------------------------
def test_older_cohort_files_load_with_netns_in_process(tmp_path: Path) -> None:
    ctx = _fake_cohort(tmp_path, 1)
    path = cohort_mod._cohort_file(ctx, "fk")
    data = json.loads(path.read_text())
    for key in ("provider", "vantage", "lab_file"):
        data.pop(key)
    path.write_text(json.dumps(data))
    c = load(ctx, "fk")
    assert (c.provider, c.vantage, c.lab_file) == ("netns", "inprocess", "")


def test_cohort_on_a_provider_that_cannot_grade_the_lab_makes_nothing(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)
    ctx = Context(make_project(tmp_path))
    roster = tmp_path / "roster.txt"
    roster.write_text("Alice\nBob\n")
    with pytest.raises(UserError, match=r"lab captest cannot be graded on provider lesser, which does not offer .*"
                                        r"needed by check 'login'"):
        cohort_up(ctx, "captest", roster, name="capc", provider="lesser")
    with pytest.raises(UserError, match="provider netns cannot grade with vantage 'remote'"):
        cohort_up(ctx, "captest", roster, name="capc", vantage="remote")
    assert not cohort_mod._cohort_file(ctx, "capc").exists()
    assert LesserProvider.made == [] and ctx.store.names() == []


def test_cohort_seats_run_on_its_provider_with_its_vantage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real use cases, on a provider that makes nothing (no root)."""
    install(monkeypatch)
    install_fake(monkeypatch)
    ctx = Context(make_project(tmp_path))
    roster = tmp_path / "roster.txt"
    roster.write_text("Alice\nBob\n")
    c = cohort_up(ctx, "captest", roster, name="capf", seed=5, provider="fake", vantage="agent", parallel=2)
    assert [s.status for s in c.seats] == ["up", "up"], [s.detail for s in c.seats]
    assert (load(ctx, "capf").provider, load(ctx, "capf").vantage) == ("fake", "agent")
    for s in c.seats:
        state = ctx.store.load(s.instance)
        assert (state.provider, state.vantage) == ("fake", "agent")
    assert sorted(c for c in FakeProvider.calls if c.startswith("create")) == ["create capf-01 agent",
                                                                              "create capf-02 agent"]
    # a seat that failed is launched again on the same provider, with the same vantage
    down(ctx, "capf-02")
    cohort_mod._set_seat(ctx, "capf", "capf-02", status="failed")
    cohort_retry(ctx, "capf")
    assert FakeProvider.calls.count("create capf-02 agent") == 2
    FakeProvider.left["capf-01"].append("vnet capf-01")  # the cohort's provider is asked what is left
    c = cohort_down(ctx, "capf")
    assert [s.status for s in c.seats] == ["removed", "removed"]
    assert FakeProvider.left == {} and ctx.store.names() == []
    assert not cohort_mod._cohort_file(ctx, "capf").exists()


# -- a real cohort, launched and graded in parallel ----------------------------------------------
def _run_dir_mounts(settings: Settings) -> int:
    with open("/proc/self/mountinfo") as fh:
        return sum(line.split()[4] == str(settings.run_dir) for line in fh)


@pytest.mark.root
def test_parallel_cohort_failure_retry_grade_down(lab_env: LabEnv, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = Context(lab_env.settings)
    roster = tmp_path / "roster.txt"
    roster.write_text("Alice Martin\nBob Durand\nChloé Petit\nDavid Roux\n")
    real_up = cohort_mod.up
    attempts: list[str] = []

    def first_seat_fails_once(c: Context, lab: str, *, instance: str, **kw: object) -> object:
        attempts.append(instance)
        if instance == "hcp9-01" and attempts.count(instance) == 1:
            raise ProviderError("injected: the first launch of hcp9-01 fails")
        return real_up(c, lab, instance=instance, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cohort_mod, "up", first_seat_fails_once)
    events: list[tuple[float, CohortProgress]] = []
    c = cohort_up(ctx, "routing-multisite", roster, name="hcp9", seed=2026, parallel=3,
                  on_event=lambda e: events.append((time.monotonic(), e)))
    assert [s.status for s in c.seats] == ["failed", "up", "up", "up"], [s.detail for s in c.seats]
    assert "injected" in c.seats[0].detail
    failed = [e for _, e in events if not e.ok]
    assert [(e.instance, e.phase, e.candidate) for e in failed] == [("hcp9-01", "failed", "Alice Martin")]
    last = events[-1][1]
    assert (last.done, last.failed, last.total) == (4, 1, 4)
    # launches at once set up the provider's private run directory once: one bind mount, not one per thread
    assert _run_dir_mounts(lab_env.settings) == 1
    with pytest.raises(UserError, match="already exists"):
        cohort_up(ctx, "routing-multisite", roster, name="hcp9", seed=2026)

    # retry: the failed seat comes up with the seed it was given
    c = cohort_retry(ctx, "hcp9", parallel=2)
    assert [s.status for s in c.seats] == ["up"] * 4
    plans = [ctx.store.load(s.instance).plan for s in c.seats]
    assert [p.seed for p in plans] == [s.seed for s in c.seats]
    assert [p.candidate for p in plans] == ["Alice Martin", "Bob Durand", "Chloé Petit", "David Roux"]
    for key in ("lan_hq", "snmp_user", "snmp_auth_pass"):  # no two candidates share a plan or a secret
        assert len({p.params[key] for p in plans}) == 4
    assert exec_in(ctx, "hcp9-02", "r-hq", ["hostname"]).stdout.strip() == "r-hq"

    # grading in parallel; one instance broken behind the cohort's back: the others go on
    inodes = {s.instance: namespace_inodes(s.instance) for s in c.seats}
    down(ctx, "hcp9-04")
    events.clear()
    graded = cohort_grade(ctx, "hcp9", parallel=3, on_event=lambda e: events.append((time.monotonic(), e)))
    assert [s.status for s in graded.seats] == ["graded", "graded", "graded", "up"]
    assert all(s.score and s.run_id for s in graded.seats[:3])
    assert "no lab instance" in graded.seats[3].detail
    assert sum(e.phase == "grading" for _, e in events) == 4
    # the three real gradings (the first three seats take the three slots) ran at the same time
    starts = [t for t, e in events if e.phase == "grading" and e.instance != "hcp9-04"]
    ends = [t for t, e in events if e.phase == "graded"]
    assert len(starts) == 3 and len(ends) == 3 and max(starts) < min(ends)

    removed = cohort_down(ctx, "hcp9")
    assert all(s.status == "removed" for s in removed.seats)
    for s in removed.seats:
        assert leftovers(lab_env.settings, s.instance, inodes[s.instance]) == []
    assert _run_dir_mounts(lab_env.settings) == 0
    with pytest.raises(UserError, match="no cohort"):
        load(ctx, "hcp9")
