"""Cohorts: one isolated instance per candidate, each with its own parameters.

A roster is a text or CSV file with one candidate per line (first column: the name; lines
starting with '#' and a header line "name"/"nom"/"candidat" are skipped). With a header row,
columns are found by their names, in French or English (:func:`read_roster_entries`): the
name (or first name + last name), and optionally the candidate's email, ID number and
username, which the gradebook uses to match Moodle's users. Moodle's participants export
("First name", "Last name"/"Surname", "Email address", "ID number", "Username", or in French
"Prénom", "Nom", "Adresse de courriel", "Numéro d'identification", "Nom d'utilisateur") is a
roster as it is: Moodle's ``user/action_redir.php`` writes ``firstname``, ``lastname`` and the
site's identity fields, each headed by its ``get_string()`` label. Instances are
named ``<cohort>-01``, ``<cohort>-02``… and seeded from the cohort seed, so two candidates
never share an addressing plan or credentials, and the same roster and seed rebuild the same
cohort. The cohort file ``<home>/cohorts/<name>.json`` records who has which instance.

A failure on one candidate's instance is a result for that candidate, not the end of the
cohort: the others are brought up, graded or removed all the same, and a failed seat is
launched again, with the same seed, by :func:`cohort_retry`.

At scale (30 candidates on a small host):

* Seats are launched by a pool of ``parallel`` worker threads, and graded by another; the
  caller follows along through ``on_event``, called with a :class:`CohortProgress` from the
  worker threads (the CLI draws a live progress display with it, the portal records it).
* Parallel launch in one process is safe in the provider, the instance store and ansible
  (every path carries the instance name; ansible-runner gets a private data dir per run and
  sets signal handlers only in the main thread). The one shared step, the netns provider's
  set-up of its private run directory ("is it a mount point? if not, bind-mount it"; and its
  removal by the last instance going down), was a check-then-act that stacked one bind mount
  per thread; the provider now does it under a lock (thread lock and flock), and the parallel
  launch test checks that the run directory is mounted once.
* At most one grading of an instance runs at a time, across threads and processes
  (:func:`grading_lock`, an ``flock`` on ``<home>/locks/<instance>.grade.lock``); whoever
  else grades (the portal's self-checks and submissions) should take the same lock.
* Every change to the cohort file is a read-modify-write of the seat concerned under one
  lock (a thread lock and an ``flock`` on ``<home>/cohorts/.<name>.lock``), written
  atomically: workers, and another labkit process, never lose each other's updates.
"""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import os
import random
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.adapters.storage.state import check_instance_name
from labkit.errors import LabkitError, UserError
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context, check_provider_fits, down, instance_exists, load_lab_checked, up

log = logging.getLogger(__name__)

MAX_COHORT = 60
MAX_PARALLEL = MAX_COHORT
DEFAULT_PARALLEL = 4  # launches at once: each one is CPU work (namespaces, daemons)
# gradings at once: a grading mostly waits (convergence, timeouts): on routing-multisite one
# takes 40-50 s of wall time for under 1 s of CPU, so a cohort of 30 is graded in one wave
DEFAULT_GRADE_PARALLEL = 30
GRADE_LOCK_WAIT = 900.0  # seconds a grading waits for another grading of the same instance
RETRYABLE = ("failed", "planned")

_FILE_LOCK = threading.Lock()  # the cohort files of this process (with an flock for others)


@dataclass
class Seat:
    candidate: str
    instance: str
    seed: int
    status: str = "planned"  # planned | launching | up | failed | graded | removed
    detail: str = ""
    score: str | None = None
    run_id: str | None = None
    # identifiers from the roster (None when it had no such column; older cohort files)
    email: str | None = None
    idnumber: str | None = None
    username: str | None = None


@dataclass
class Cohort:
    name: str
    lab: str
    seed: int
    seats: list[Seat] = field(default_factory=list)
    lab_file: str = ""  # the lab.yaml launched (retries use it; empty in older files: the lab id)
    provider: str = "netns"  # where every seat runs (older files: netns)
    vantage: str = "inprocess"  # the seats' vantage mode (older files: inprocess)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "lab": self.lab, "seed": self.seed, "lab_file": self.lab_file,
                "provider": self.provider, "vantage": self.vantage,
                "seats": [seat.__dict__ for seat in self.seats]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cohort:
        return cls(data["name"], data["lab"], data["seed"], [Seat(**s) for s in data["seats"]],
                   data.get("lab_file", ""), data.get("provider", "netns"), data.get("vantage", "inprocess"))

    def seat(self, instance: str) -> Seat:
        for s in self.seats:
            if s.instance == instance:
                return s
        raise UserError(f"cohort {self.name!r} has no instance {instance!r}; see 'labkit cohort status {self.name}'.")


@dataclass(frozen=True)
class CohortProgress:
    """One step of one seat during a cohort operation, handed to ``on_event``.

    ``phase``: launching, up, failed (launch); grading, graded, grade-failed (grading);
    removing, removed, remove-failed (down). ``ok`` is False for the failed ones, with
    ``error`` saying why. ``done``/``failed``/``total`` count the seats of this operation
    finished so far (``done`` includes ``failed``); ``seconds`` is how long the step took.
    """

    cohort: str
    candidate: str
    instance: str
    phase: str
    ok: bool = True
    error: str | None = None
    done: int = 0
    failed: int = 0
    total: int = 0
    seconds: float | None = None
    score: str | None = None
    run_id: str | None = None

    @property
    def finished(self) -> bool:
        return self.phase not in ("launching", "grading", "removing")


ProgressCallback = Callable[[CohortProgress], None]


class _Tracker:
    """Counts finished seats and hands events to the caller's callback (never fatal)."""

    def __init__(self, cohort: str, total: int, on_event: ProgressCallback | None):
        self.cohort, self.total, self.on_event = cohort, total, on_event
        self.done = self.failed = 0
        self._lock = threading.Lock()

    def emit(self, seat: Seat, phase: str, *, ok: bool = True, error: str | None = None,
             seconds: float | None = None, score: str | None = None, run_id: str | None = None) -> None:
        with self._lock:
            if phase not in ("launching", "grading", "removing"):
                self.done += 1
                self.failed += 0 if ok else 1
            event = CohortProgress(self.cohort, seat.candidate, seat.instance, phase, ok, error, self.done,
                                   self.failed, self.total, None if seconds is None else round(seconds, 3),
                                   score, run_id)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a display's bug must not stop a cohort half-way
                log.exception("cohort progress callback failed on %s", event)


@dataclass(frozen=True)
class RosterEntry:
    """One candidate of a roster: the name, and the identifiers the roster gives (else None)."""

    name: str
    email: str | None = None
    idnumber: str | None = None
    username: str | None = None


# Header words (lowercase, accents removed, spaces collapsed) -> column role.
_COLUMN_WORDS: dict[str, tuple[str, ...]] = {
    "name": ("name", "nom", "candidat", "candidate", "stagiaire", "full name", "fullname", "nom complet",
             "nom et prenom", "prenom et nom", "apprenant", "student"),
    "first": ("first name", "firstname", "prenom", "given name"),
    "last": ("last name", "lastname", "surname", "nom de famille", "family name"),
    "email": ("email", "email address", "e-mail", "e-mail address", "mail", "courriel", "adresse de courriel",
              "adresse courriel", "adresse email", "adresse e-mail", "adresse mail", "adresse electronique"),
    "idnumber": ("id number", "idnumber", "numero d'identification", "numero d’identification", "matricule",
                 "numero etudiant", "student number"),
    "username": ("username", "user name", "nom d'utilisateur", "nom d’utilisateur", "login", "identifiant"),
}
_WORD_ROLE = {word: role for role, words in _COLUMN_WORDS.items() for word in words}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _header_key(cell: str) -> str:
    text = unicodedata.normalize("NFKD", cell).encode("ascii", "ignore").decode().lower()
    return " ".join(text.replace("_", " ").split())


def _header_roles(row: list[str]) -> dict[str, int] | None:
    """Column index of each role if ``row`` is a header row (it names a name column), else None."""
    roles: dict[str, int] = {}
    for i, cell in enumerate(row):
        role = _WORD_ROLE.get(_header_key(cell))
        if role is not None and role not in roles:
            roles[role] = i
    if "first" in roles and "name" in roles and "last" not in roles:
        # Moodle in French: "Prénom" and "Nom": "Nom" is the last name there
        roles["last"] = roles.pop("name")
    if "name" not in roles and not ("first" in roles or "last" in roles):
        return None
    return roles


def read_roster_entries(path: Path) -> list[RosterEntry]:
    """The candidates of a roster file, with the identifiers its header names (see the module doc).

    Without a header row the first column is the name and nothing else is read, as before.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"roster {path} does not exist; give a text or CSV file with one candidate per line.") from None
    except UnicodeDecodeError:
        raise UserError(f"roster {path} is not UTF-8 text; save it as UTF-8 (CSV or plain text).") from None
    lines = text.splitlines()
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t").delimiter
    except csv.Error:  # one column: plain text
        delimiter = "\t"
    entries: list[RosterEntry] = []
    roles: dict[str, int] | None = None
    first_row = True
    for lineno, row in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if first_row:
            first_row = False
            roles = _header_roles(cells)
            if roles is not None:
                continue

        def cell(role: str, cells: list[str] = cells, roles: dict[str, int] | None = roles) -> str:
            i = -1 if roles is None else roles.get(role, -1)
            return cells[i] if 0 <= i < len(cells) else ""

        if roles is None:
            name = cells[0]
        elif "name" in roles:
            name = cell("name")
        else:
            name = " ".join(p for p in (cell("first"), cell("last")) if p)
        if not name:
            continue
        email = cell("email") or None
        if email is not None and not _EMAIL.match(email):
            raise UserError(f"roster {path} line {lineno}: {email!r} is not an email address; correct it or "
                            "leave the cell empty.")
        entries.append(RosterEntry(name, email, cell("idnumber") or None, cell("username") or None))
    if not entries:
        raise UserError(f"roster {path} names no candidate; write one name per line.")
    if len(entries) > MAX_COHORT:
        raise UserError(
            f"roster {path} names {len(entries)} candidates; split it into cohorts of at most {MAX_COHORT}."
        )
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"roster {path} names {', '.join(dupes)} twice; each candidate must appear once.")
    for field_name, fold in (("email", True), ("idnumber", False), ("username", True)):
        seen: dict[str, str] = {}
        for e in entries:
            value = getattr(e, field_name)
            if value is None:
                continue
            key = value.lower() if fold else value
            if key in seen:
                raise UserError(f"roster {path} gives {field_name} {value!r} to both {seen[key]} and {e.name}; "
                                "each candidate needs their own.")
            seen[key] = e.name
    return entries


def read_roster(path: Path) -> list[str]:
    """The candidates' names of a roster file (see :func:`read_roster_entries`)."""
    return [e.name for e in read_roster_entries(path)]


def _cohort_file(ctx: Context, name: str) -> Path:
    return ctx.settings.home / "cohorts" / f"{check_instance_name(name)}.json"


def _save(ctx: Context, cohort: Cohort) -> None:
    path = _cohort_file(ctx, cohort.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(cohort.to_json(), indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def load(ctx: Context, name: str) -> Cohort:
    path = _cohort_file(ctx, name)
    if not path.exists():
        raise UserError(
            f"there is no cohort named {name!r}; bring one up with 'labkit cohort up LAB ROSTER --name {name}'."
        )
    return Cohort.from_json(json.loads(path.read_text()))


class _LockBusy(Exception):
    """The lock was still held by someone else after the wait."""


@contextmanager
def _flock(path: Path, *, wait: float | None) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created); ``wait`` None: as long as it takes;
    otherwise raise _LockBusy after ``wait`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        if wait is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise _LockBusy(str(path)) from None
                    time.sleep(0.05)
        yield
    finally:
        os.close(fd)


@contextmanager
def _editing(ctx: Context, name: str) -> Iterator[Cohort]:
    """Read the cohort file, let the caller change it, write it back; under the lock."""
    lock = _cohort_file(ctx, name).with_name(f".{name}.lock")
    with _FILE_LOCK, _flock(lock, wait=None):
        cohort = load(ctx, name)
        yield cohort
        _save(ctx, cohort)


def _set_seat(ctx: Context, name: str, instance: str, **values: Any) -> None:
    with _editing(ctx, name) as cohort:
        seat = cohort.seat(instance)
        for key, value in values.items():
            setattr(seat, key, value)


def grade_lock_path(ctx: Context, instance: str) -> Path:
    return ctx.settings.home / "locks" / f"{check_instance_name(instance)}.grade.lock"


@contextmanager
def grading_lock(ctx: Context, instance: str, *, wait: float = GRADE_LOCK_WAIT) -> Iterator[None]:
    """Hold the one grading slot of ``instance`` (all threads and processes of this labkit
    home); waits up to ``wait`` seconds for a grading in progress, then raises UserError."""
    try:
        with _flock(grade_lock_path(ctx, instance), wait=wait):
            yield
    except _LockBusy:
        raise UserError(f"a grading of {instance!r} is already running; wait for it to finish and try again.") from None


def _check_parallel(parallel: int) -> int:
    if not isinstance(parallel, int) or isinstance(parallel, bool) or not 1 <= parallel <= MAX_PARALLEL:
        raise UserError(f"--parallel {parallel} is out of range; give a number from 1 to {MAX_PARALLEL}.")
    return parallel


def _error_text(exc: Exception) -> str:
    if isinstance(exc, LabkitError):
        return str(exc)
    log.error("unexpected error in a cohort worker", exc_info=exc)
    return f"{type(exc).__name__}: {exc} (a labkit bug; see the log)"


def _run_pool(items: list[Seat], fn: Callable[[Seat], None], parallel: int, stop: threading.Event) -> None:
    """Run ``fn`` on every seat, ``parallel`` at a time, in worker threads. The calling thread
    only waits (so Ctrl-C reaches it): on KeyboardInterrupt, seats not started are left alone,
    those running finish, and the interrupt goes on. ``fn`` must return at once when ``stop``
    is set.

    Running seats are counted by the workers themselves: an interrupt can land inside
    ``pool.submit`` after a worker thread started but before the pool recorded it (seen under
    load), and ``shutdown(wait=True)`` would then not wait for that worker."""
    if not items:
        return
    running = 0
    idle = threading.Condition()

    def tracked(seat: Seat) -> None:
        nonlocal running
        with idle:
            running += 1
        try:
            fn(seat)
        finally:
            with idle:
                running -= 1
                idle.notify_all()

    pool = ThreadPoolExecutor(max_workers=min(parallel, len(items)), thread_name_prefix="cohort")
    futures: list[Future[None]] = []
    try:
        for s in items:
            futures.append(pool.submit(tracked, s))
        pending: set[Future[None]] = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
    except BaseException:
        stop.set()  # a seat that starts from now on returns at once
        pool.shutdown(wait=False, cancel_futures=True)
        with idle:
            idle.wait_for(lambda: running == 0)
        pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)
    for f in futures:
        f.result()  # workers catch everything; anything here is a bug worth its traceback


def _launch(ctx: Context, cohort: Cohort, seats: list[Seat], parallel: int,
            on_event: ProgressCallback | None) -> Cohort:
    lab_ref = cohort.lab_file or cohort.lab
    tracker = _Tracker(cohort.name, len(seats), on_event)
    stop = threading.Event()

    def launch(seat: Seat) -> None:
        if stop.is_set():
            return
        _set_seat(ctx, cohort.name, seat.instance, status="launching", detail="")
        tracker.emit(seat, "launching")
        t0 = time.monotonic()
        try:
            up(ctx, lab_ref, instance=seat.instance, seed=seat.seed, candidate=seat.candidate,
               provider=cohort.provider, vantage=cohort.vantage,
               warn=lambda _line: None)  # said once for the cohort, not once per seat
        except Exception as exc:  # noqa: BLE001 - one seat's failure is that seat's result
            error = _error_text(exc)
            _set_seat(ctx, cohort.name, seat.instance, status="failed", detail=error)
            tracker.emit(seat, "failed", ok=False, error=error, seconds=time.monotonic() - t0)
        else:
            _set_seat(ctx, cohort.name, seat.instance, status="up", detail="")
            tracker.emit(seat, "up", seconds=time.monotonic() - t0)

    try:
        _run_pool(seats, launch, parallel, stop)
    except KeyboardInterrupt:
        done = load(ctx, cohort.name)
        n_up = sum(s.status == "up" for s in done.seats)
        raise UserError(f"interrupted: {n_up} of {len(done.seats)} seats are up; run 'labkit cohort retry "
                        f"{cohort.name}' to launch the others, or 'labkit cohort down {cohort.name}'.") from None
    return load(ctx, cohort.name)


def cohort_up(ctx: Context, lab_ref: str, roster: Path, *, name: str, seed: int | None = None,
              parallel: int = DEFAULT_PARALLEL, on_event: ProgressCallback | None = None,
              provider: str = "netns", vantage: str | None = None) -> Cohort:
    """Bring up one instance of the lab per candidate of ``roster``, ``parallel`` at a time, on
    ``provider`` with ``vantage`` (its default when None; a lab the provider cannot grade is
    refused before any seat is made). Failed seats are reported (status ``failed``,
    ``detail``) and left for :func:`cohort_retry`."""
    check_instance_name(name)
    _check_parallel(parallel)
    if len(name) > 27:
        raise UserError(f"cohort name {name!r} is too long; use at most 27 characters (instances add '-NN').")
    if _cohort_file(ctx, name).exists():
        raise UserError(f"cohort {name!r} already exists; run 'labkit cohort down {name}' or pick another --name.")
    lab = load_lab_checked(ctx, lab_ref)
    vantage = check_provider_fits(ctx, lab, provider, vantage)
    entries = read_roster_entries(roster)
    candidates = [e.name for e in entries]
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    rng = random.Random(seed)
    seeds: list[int] = []
    while len(seeds) < len(candidates):  # distinct seeds, reproducible from the cohort seed
        s = rng.randrange(2**31)
        if s not in seeds:
            seeds.append(s)
    seats = [Seat(candidate=e.name, instance=f"{name}-{i + 1:02d}", seed=s, email=e.email,
                  idnumber=e.idnumber, username=e.username)
             for i, (e, s) in enumerate(zip(entries, seeds, strict=True))]
    cohort = Cohort(name, lab.spec.id, seed, seats, str(lab.lab_file), provider, vantage)
    _save(ctx, cohort)
    return _launch(ctx, cohort, cohort.seats, parallel, on_event)


def cohort_retry(ctx: Context, name: str, candidates: list[str] | None = None, *,
                 parallel: int = DEFAULT_PARALLEL, on_event: ProgressCallback | None = None) -> Cohort:
    """Launch again, with the same seeds, the seats that failed or were never launched (all of
    them, or those named: by candidate name or instance)."""
    _check_parallel(parallel)
    cohort = load(ctx, name)
    if candidates:
        chosen: list[Seat] = []
        for want in candidates:
            match = [s for s in cohort.seats if want in (s.candidate, s.instance)]
            if not match:
                known = ", ".join(s.candidate for s in cohort.seats)
                raise UserError(f"cohort {name!r} has no candidate {want!r}; its candidates are: {known}.")
            seat = match[0]
            if not _retryable(ctx, seat):
                raise UserError(f"{seat.candidate} ({seat.instance}) is {seat.status}, not failed; only "
                                "failed seats (or launches a crash abandoned) are launched again.")
            if seat not in chosen:
                chosen.append(seat)
    else:
        chosen = [s for s in cohort.seats if _retryable(ctx, s)]
        if not chosen:
            raise UserError(f"no seat of cohort {name!r} has failed; nothing to retry.")
    lab = load_lab_checked(ctx, cohort.lab_file or cohort.lab)  # the lab still loads, before touching seats
    check_provider_fits(ctx, lab, cohort.provider, cohort.vantage)
    return _launch(ctx, cohort, chosen, parallel, on_event)


def _retryable(ctx: Context, seat: Seat) -> bool:
    """Failed, never launched, or left "launching" by a process that is gone (nobody holds
    the instance's lifecycle lock)."""
    if seat.status in RETRYABLE:
        return True
    if seat.status != "launching":
        return False
    try:
        with ctx.store.lock(seat.instance):
            return True
    except UserError:  # another process is working on it right now
        return False


def cohort_grade(ctx: Context, name: str, *, mode: str = "grade", parallel: int = DEFAULT_GRADE_PARALLEL,
                 on_event: ProgressCallback | None = None, lock_wait: float = GRADE_LOCK_WAIT) -> Cohort:
    """Grade every seat that is up, ``parallel`` at a time, one grading per instance at a time
    (a grading of the same instance elsewhere is waited for, up to ``lock_wait`` seconds)."""
    _check_parallel(parallel)
    cohort = load(ctx, name)
    seats = [s for s in cohort.seats if s.status in ("up", "graded")]
    tracker = _Tracker(name, len(seats), on_event)
    stop = threading.Event()

    def grade_one(seat: Seat) -> None:
        if stop.is_set():
            return
        tracker.emit(seat, "grading")
        t0 = time.monotonic()
        try:
            with grading_lock(ctx, seat.instance, wait=lock_wait):
                summary = grade(ctx, seat.instance, mode=mode)
        except Exception as exc:  # noqa: BLE001 - one seat's failure is that seat's result
            error = _error_text(exc)
            _set_seat(ctx, name, seat.instance, detail=error)
            tracker.emit(seat, "grade-failed", ok=False, error=error, seconds=time.monotonic() - t0)
        else:
            score = f"{summary.score}/{summary.max_score}"
            _set_seat(ctx, name, seat.instance, status="graded", detail="", score=score, run_id=summary.run_id)
            tracker.emit(seat, "graded", seconds=time.monotonic() - t0, score=score, run_id=summary.run_id)

    try:
        _run_pool(seats, grade_one, parallel, stop)
    except KeyboardInterrupt:
        raise UserError(f"interrupted; the gradings that finished are recorded: see 'labkit cohort status "
                        f"{name}'.") from None
    return load(ctx, name)


def cohort_down(ctx: Context, name: str, *, on_event: ProgressCallback | None = None) -> Cohort:
    """Remove every instance of the cohort, one after the other (removal is quick, and the
    last one unmounts the run directory: no removal races another)."""
    cohort = load(ctx, name)
    tracker = _Tracker(name, len(cohort.seats), on_event)
    for seat in cohort.seats:
        tracker.emit(seat, "removing")
        t0 = time.monotonic()
        try:
            if instance_exists(ctx, seat.instance, cohort.provider):
                down(ctx, seat.instance)
        except LabkitError as exc:
            _set_seat(ctx, name, seat.instance, detail=str(exc))
            tracker.emit(seat, "remove-failed", ok=False, error=str(exc), seconds=time.monotonic() - t0)
        else:
            _set_seat(ctx, name, seat.instance, status="removed", detail="")
            tracker.emit(seat, "removed", seconds=time.monotonic() - t0)
            grade_lock_path(ctx, seat.instance).unlink(missing_ok=True)
    cohort = load(ctx, name)
    if all(s.status == "removed" for s in cohort.seats):
        with _FILE_LOCK:
            _cohort_file(ctx, name).unlink()
            _cohort_file(ctx, name).with_name(f".{name}.lock").unlink(missing_ok=True)
    return cohort
