"""Exam day: cohorts of candidates with their own accounts and instances, self-checks and
gradings recorded in the database, an exam window with one final grade for everyone.

The portal and the CLI call :class:`Exam`; everything that touches a lab goes through a
:class:`LabOps` (the real one, :class:`RealLabOps`, brings instances up and down and grades
them with :mod:`labkit.usecases.lifecycle` and :mod:`labkit.usecases.grade`), so the web
layer can be tested with a fake one while the bookkeeping below stays the real code.

Passwords are generated here and never stored in clear in the database (argon2 hashes only):
the only place a candidate's password is written is the login sheet made at cohort creation,
``<home>/sheets/<cohort>.html``, mode 0600, which only trainers can read from the portal.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
import re
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, select_autoescape
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from labkit.adapters.db import repo
from labkit.adapters.db.models import CANDIDATE_STATUSES, Candidate, Cohort, GradingRun, Recording, User, utcnow
from labkit.adapters.security.passwords import hash_password, needs_rehash, new_password, verify_password
from labkit.adapters.storage.state import check_instance_name
from labkit.errors import LabkitError, UserError
from labkit.models.results import GradeSummary
from labkit.usecases.cohort import DEFAULT_GRADE_PARALLEL, DEFAULT_PARALLEL, RosterEntry
from labkit.usecases.gradebook import Gradebook, IdField, Scale
from labkit.usecases.lifecycle import Context
from labkit.usecases.runs_record import record_sealed

__all__ = [
    "Busy", "Credential", "Exam", "ExamClosed", "LabOps", "RateLimited", "RealLabOps",
    "exam_is_over", "exam_is_open", "login_from_name", "parse_roster", "parse_roster_entries",
]

LOGIN_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_LOGIN_FAILURES = 5
LOGIN_WINDOW = timedelta(minutes=5)
SELFCHECK_INTERVAL = 30.0  # seconds between two self-checks (or submissions) of one candidate
LOG = logging.getLogger("labkit.exam")
MAX_SSH_KEYS = 4
HEALTH_TTL = 10.0  # seconds a live instance health reading is reused by the dashboard


class ExamError(UserError):
    """A refusal the portal translates: ``code`` names the message, ``args_`` fill it in."""

    def __init__(self, message: str, code: str, **args_: Any):
        super().__init__(message)
        self.code = code
        self.args_ = args_


class RateLimited(ExamError):
    """Too many tries; ``retry_after`` says in how many seconds the next one is allowed."""

    def __init__(self, message: str, retry_after: int, code: str = "rate_limited"):
        super().__init__(message, code, seconds=retry_after)
        self.retry_after = retry_after


class Busy(ExamError):
    """Something is already running for this candidate (one grading at a time)."""


class ExamClosed(ExamError):
    """The exam window does not allow this now."""


@dataclass(frozen=True)
class Credential:
    """A candidate's login made at cohort creation; ``password`` exists only in memory and on the sheet."""

    name: str
    login: str
    password: str
    instance: str


# ----------------------------------------------------------------------------- labs
class LabOps(Protocol):
    """What the exam needs from the labs; :class:`RealLabOps` is the real thing."""

    def lab_id(self, lab_ref: str) -> str: ...  # validated lab id, UserError if unknown
    def lab_title(self, lab_id: str, lang: str) -> str: ...
    def labs(self) -> list[tuple[str, str]]: ...  # (id, French title) of the valid labs
    def providers(self) -> list[str]: ...  # the providers a cohort may be brought up on here
    # the vantage mode to grade with; UserError (one sentence) when the lab does not fit the provider
    def fits(self, lab_id: str, provider: str, vantage: str | None = None) -> str: ...
    def up(self, lab_id: str, instance: str, seed: int, candidate: str, provider: str = "netns",
           vantage: str | None = None) -> None: ...
    def down(self, instance: str, provider: str = "netns") -> None: ...
    def exists(self, instance: str, provider: str = "netns") -> bool: ...
    def grade(self, instance: str, mode: str) -> GradeSummary: ...  # mode "grade" | "selfcheck"
    def nodes(self, instance: str) -> list[str]: ...
    def brief(self, instance: str, lang: str) -> str: ...
    def health(self, instance: str) -> str: ...  # "ok" | "degraded" | "absent"
    def run_dir_held(self) -> bool: ...  # an instance holds the run directory: launches may overlap


class RealLabOps:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._briefs: dict[tuple[str, str, str], str] = {}

    def lab_id(self, lab_ref: str) -> str:
        from labkit.usecases.lifecycle import load_lab_checked

        return load_lab_checked(self.ctx, lab_ref).spec.id

    def lab_title(self, lab_id: str, lang: str) -> str:
        from labkit.usecases.lifecycle import load_lab_checked

        try:
            return load_lab_checked(self.ctx, lab_id).spec.title.get(lang)
        except LabkitError:
            return lab_id

    def labs(self) -> list[tuple[str, str]]:
        from labkit.domain.labs import list_labs

        return [(r.id, r.title.get("fr") if r.title else r.id) for r in list_labs(self.ctx.settings) if r.ok]

    def providers(self) -> list[str]:
        """netns always; proxmox and gns3 only when this home has their configuration."""
        from labkit.adapters.gns3.settings import configured as gns3_configured
        from labkit.adapters.proxmox.settings import configured as pve_configured

        home = self.ctx.settings.home
        return ["netns", *(["proxmox"] if pve_configured(home) else []), *(["gns3"] if gns3_configured(home) else [])]

    def fits(self, lab_id: str, provider: str, vantage: str | None = None) -> str:
        from labkit.usecases.lifecycle import check_provider_fits, load_lab_checked

        return check_provider_fits(self.ctx, load_lab_checked(self.ctx, lab_id), provider, vantage)

    def up(self, lab_id: str, instance: str, seed: int, candidate: str, provider: str = "netns",
           vantage: str | None = None) -> None:
        from labkit.usecases.lifecycle import up

        up(self.ctx, lab_id, instance=instance, seed=seed, candidate=candidate, provider=provider, vantage=vantage)

    def down(self, instance: str, provider: str = "netns") -> None:
        """Remove the instance (its state names its provider; without state, what ``provider``
        still holds of it)."""
        from labkit.usecases.lifecycle import down

        down(self.ctx, instance, providers=[provider])

    def exists(self, instance: str, provider: str = "netns") -> bool:
        from labkit.usecases.lifecycle import instance_exists

        return instance_exists(self.ctx, instance, provider)

    def grade(self, instance: str, mode: str) -> GradeSummary:
        """Grade under the instance's grading lock, shared with ``labkit cohort grade``."""
        from labkit.usecases.cohort import grading_lock
        from labkit.usecases.grade import grade

        with grading_lock(self.ctx, instance):
            return grade(self.ctx, instance, mode=mode)

    def run_dir_held(self) -> bool:
        """An instance of this home is up: launches may then overlap (the first launch on a
        fresh run directory goes alone, whatever the provider does about it)."""
        for name in self.ctx.store.names():
            try:
                if self.ctx.store.load(name).phase == "up":
                    return True
            except LabkitError:
                continue
        return False

    def nodes(self, instance: str) -> list[str]:
        try:
            return [n.name for n in self.ctx.store.load(instance).plan.nodes]
        except UserError:
            return []

    def brief(self, instance: str, lang: str) -> str:
        """The candidate's brief with their instance's parameters (kept per instance creation:
        every page view of 30 candidates must not load and validate the lab again)."""
        from labkit.domain.labs import render_brief
        from labkit.usecases.lifecycle import load_lab_checked

        state = self.ctx.store.load(instance)
        key = (instance, state.created_at.isoformat(), lang)
        if key not in self._briefs:
            self._briefs[key] = render_brief(load_lab_checked(self.ctx, state.plan.lab_dir), state.plan.params, lang)
        return self._briefs[key]

    def health(self, instance: str) -> str:
        from labkit.usecases.lifecycle import status

        try:
            st = status(self.ctx, instance)
        except LabkitError:
            return "absent"
        return "ok" if st.phase == "up" and st.healthy else "degraded"


# ----------------------------------------------------------------------------- helpers
def login_from_name(name: str) -> str:
    """``"Élodie Noël"`` -> ``"elodie.noel"``: ASCII, lowercase, words joined by dots."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    login = re.sub(r"[^a-z0-9]+", ".", ascii_).strip(".")[:40].strip(".")
    return login or "candidat"


def parse_roster(text: str, label: str = "the uploaded roster") -> list[str]:
    """Candidate names from a roster's text, with the same rules as ``labkit cohort up``
    (:func:`labkit.usecases.cohort.read_roster`); errors name ``label``, not a scratch file."""
    return [e.name for e in parse_roster_entries(text, label)]


def parse_roster_entries(text: str, label: str = "the uploaded roster") -> list[RosterEntry]:
    """The candidates of a roster's text with their identifiers (email, ID number, username)
    when its header names them (:func:`labkit.usecases.cohort.read_roster_entries`)."""
    from labkit.usecases.cohort import read_roster_entries

    with tempfile.TemporaryDirectory(prefix="labkit-roster-") as d:
        path = Path(d) / "roster.csv"
        path.write_text(text, encoding="utf-8")
        try:
            return read_roster_entries(path)
        except UserError as exc:
            raise UserError(str(exc).replace(f"roster {path}", label).replace(str(path), label)) from None


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password(new_password()))
    return _DUMMY[0]


def as_utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def exam_is_open(cohort: Cohort, now: datetime | None = None) -> bool:
    """True while candidates may self-check and submit: inside the window, if one is set."""
    now = now or utcnow()
    start, end = as_utc(cohort.exam_start), as_utc(cohort.exam_end)
    return (start is None or now >= start) and (end is None or now < end)


def exam_is_over(cohort: Cohort, now: datetime | None = None) -> bool:
    """True once the exam window has ended: consoles are read-only, no more submissions."""
    end = as_utc(cohort.exam_end)
    return end is not None and (now or utcnow()) >= end


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _proc_start(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _seeds(cohort_seed: int, n: int) -> list[int]:
    """Distinct per-candidate seeds, reproducible from the cohort seed (as ``cohort up`` draws them)."""
    rng = random.Random(cohort_seed)
    seeds: list[int] = []
    while len(seeds) < n:
        s = rng.randrange(2**31)
        if s not in seeds:
            seeds.append(s)
    return seeds


SHEET_TEMPLATE = """<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8">
<title>Fiches de connexion — {{ cohort }}</title>
<style>
@page { size: A4; margin: 20mm; }
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #111; background: #fff; }
section { page-break-after: always; break-after: page; min-height: 240mm; }
section:last-child { page-break-after: auto; break-after: auto; }
h1 { font-size: 20pt; margin: 0 0 4mm; }
h2 { font-size: 14pt; margin: 8mm 0 2mm; }
dl { display: grid; grid-template-columns: 45mm 1fr; gap: 3mm 4mm; font-size: 13pt; }
dt { font-weight: bold; }
code, .pw { font-family: "DejaVu Sans Mono", monospace; font-size: 14pt; }
.pw { letter-spacing: 1.5pt; border: 1px solid #111; padding: 1mm 3mm; }
.note { font-size: 10pt; margin-top: 10mm; }
</style>
</head>
<body>
{% for c in creds %}
<section>
<h1>{{ c.name }}</h1>
<p>Examen : {{ lab }} — session {{ cohort }}</p>
<h2>Vos identifiants</h2>
<dl>
<dt>Identifiant</dt><dd><code>{{ c.login }}</code></dd>
<dt>Mot de passe</dt><dd><span class="pw">{{ c.password }}</span></dd>
</dl>
<h2>Portail</h2>
<p>Ouvrez <code>{{ portal_url }}</code> dans un navigateur et connectez-vous :
vous y trouverez le sujet, vos accès, l'auto-vérification et la remise de votre travail.</p>
<h2>Accès SSH</h2>
<p><code>ssh -p {{ ssh_port }} {{ c.login }}@{{ ssh_host }}</code> ouvre un terminal sur le poste de travail
de votre laboratoire ; <code>ssh -p {{ ssh_port }} {{ c.login }}+ÉQUIPEMENT@{{ ssh_host }}</code>
sur un autre équipement (la liste figure sur le portail).</p>
<p class="note">Ce mot de passe est personnel : ne le communiquez à personne. Il n'est conservé nulle part
ailleurs que sur cette fiche ; en cas de perte, adressez-vous au formateur.</p>
</section>
{% endfor %}
</body>
</html>
"""


def render_sheet(cohort: str, lab: str, creds: list[Credential], *, portal_url: str, ssh_host: str,
                 ssh_port: int) -> str:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(SHEET_TEMPLATE).render(cohort=cohort, lab=lab, creds=creds, portal_url=portal_url,
                                                  ssh_host=ssh_host, ssh_port=ssh_port)


def sheet_path(ctx: Context, cohort_name: str) -> Path:
    return ctx.settings.home / "sheets" / f"{check_instance_name(cohort_name)}.html"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- the service
class DatabaseLike(Protocol):
    def session(self) -> Any: ...  # a context manager yielding a SQLAlchemy Session


@dataclass(frozen=True)
class _Where:
    """What a cohort's launches need: its lab, the provider its instances live on, their vantage."""

    lab_id: str
    provider: str
    vantage: str


@dataclass
class _HealthCache:
    at: float
    value: str


@dataclass
class Exam:
    """The exam's use cases over one database and one set of labs.

    Launches and gradings run on bounded thread pools; at most one grading (or reset) runs
    at a time per candidate, in this process, and the database row of a grading is
    ``running`` before it starts and ``complete`` only with a sealed run.
    """

    ctx: Context
    db: DatabaseLike
    ops: LabOps | None = None
    launch_workers: int = DEFAULT_PARALLEL  # as 'labkit cohort up': a launch is CPU work
    grade_workers: int = DEFAULT_GRADE_PARALLEL  # as 'labkit cohort grade': a grading mostly waits
    selfcheck_interval: float = SELFCHECK_INTERVAL
    _launcher: ThreadPoolExecutor = field(init=False, repr=False)
    _lifecycle: ThreadPoolExecutor = field(init=False, repr=False)
    _grader: ThreadPoolExecutor = field(init=False, repr=False)
    _locks: dict[int, threading.Lock] = field(init=False, repr=False, default_factory=dict)
    _locks_guard: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _health: dict[str, _HealthCache] = field(init=False, repr=False, default_factory=dict)
    _probing: set[str] = field(init=False, repr=False, default_factory=set)
    _prober: ThreadPoolExecutor = field(init=False, repr=False)
    _futures: list[Future[Any]] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.ops is None:
            self.ops = RealLabOps(self.ctx)
        # one lifecycle operation (a cohort launch, a reset, a removal) at a time; a launch
        # fans out to the launcher pool once its pilot instance is up
        self._lifecycle = ThreadPoolExecutor(1, thread_name_prefix="labkit-lifecycle")
        self._launcher = ThreadPoolExecutor(self.launch_workers, thread_name_prefix="labkit-launch")
        self._grader = ThreadPoolExecutor(self.grade_workers, thread_name_prefix="labkit-grade")
        self._prober = ThreadPoolExecutor(2, thread_name_prefix="labkit-health")

    @property
    def lab(self) -> LabOps:
        assert self.ops is not None
        return self.ops

    # -- housekeeping
    def close(self, wait: bool = True) -> None:
        self._lifecycle.shutdown(wait=wait, cancel_futures=not wait)
        self._launcher.shutdown(wait=wait, cancel_futures=not wait)
        self._grader.shutdown(wait=wait, cancel_futures=not wait)
        self._prober.shutdown(wait=wait, cancel_futures=not wait)

    def wait_idle(self, timeout: float = 600.0) -> None:
        """Wait for every background job started so far (tests, CLI)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._locks_guard:
                pending = [f for f in self._futures if not f.done()]
                self._futures = pending
            if not pending:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(pending)} background job(s) still running after {timeout} s")
            _wait_one(pending[0], left)

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut = pool.submit(fn, *args)
        fut.add_done_callback(_log_failure)
        with self._locks_guard:
            self._futures.append(fut)
        return fut

    def _lock(self, candidate_id: int) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(candidate_id, threading.Lock())

    def reap_interrupted(self) -> int:
        """Mark ``running`` gradings whose process is gone (or from a previous boot) ``interrupted``."""
        with self.db.session() as s:
            return len(repo.reap_interrupted(s))

    def recover_launches(self) -> int:
        """At portal start: candidates left 'launching' or 'resetting' by a portal that stopped
        mid-way (no thread of this new process works on them) become 'failed', so that the
        trainer can launch them again. One portal process per database is assumed."""
        with self.db.session() as s:
            stuck = list(s.scalars(select(Candidate).where(Candidate.status.in_(("launching", "resetting")))))
            for cand in stuck:
                repo.set_candidate_status(s, cand, "failed", "the portal stopped during this launch; launch it again.")
        return len(stuck)

    # -- accounts
    def add_user(self, login: str, role: str, display_name: str | None = None) -> tuple[User, str]:
        """A trainer or assessor account with a generated password (returned once)."""
        if role not in ("trainer", "assessor"):
            raise UserError(f"role {role!r} cannot be given here; use trainer or assessor "
                            "(candidates get their account when their cohort is created).")
        password = new_password()
        with self.db.session() as s:
            user = repo.create_user(s, login, display_name or login, role, password=password)
            s.flush()
        return user, password

    def authenticate(self, login: str, password: str, source: str) -> User:
        """The enabled user with this login and password. Every try is recorded; after
        :data:`MAX_LOGIN_FAILURES` failures for this login and source within
        :data:`LOGIN_WINDOW`, tries are refused (:class:`RateLimited`) without checking."""
        login = login.strip().lower()[:64]
        with self.db.session() as s:
            if repo.too_many_failures(s, login, source, LOGIN_WINDOW, MAX_LOGIN_FAILURES):
                wait = int(LOGIN_WINDOW.total_seconds())
                raise RateLimited(f"too many failed logins for {login!r}; wait {wait // 60} minutes and try again.",
                                  wait, code="login_rate_limited")
            user = repo.get_user_by_login(s, login) if login else None
        if user is None or not user.password_hash:
            verify_password(_dummy_hash(), password)  # as slow as a real check: logins are not revealed
        ok = user is not None and not user.disabled and verify_password(user.password_hash, password)
        with self.db.session() as s:
            repo.record_login_attempt(s, login, source, ok)
            if ok and user is not None and user.password_hash and needs_rehash(user.password_hash):
                repo.set_password(s, user.id, password)
        if not ok or user is None:
            raise UserError("wrong login or password; check them on your login sheet and try again.")
        return user

    def set_ssh_keys(self, user_id: int, text: str) -> list[str]:
        """Replace the user's SSH public keys (OpenSSH lines, at most :data:`MAX_SSH_KEYS`; an
        empty text removes them); the bastion then accepts them. Returns their fingerprints."""
        import asyncssh

        if "PRIVATE KEY" in text:
            raise ExamError("this is a private key, which must never leave your computer; paste the "
                            "public key (the .pub file) instead.", "private_key")
        keys, prints = [], []
        for n, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                key = asyncssh.import_public_key(line)
            except (asyncssh.KeyImportError, ValueError):
                raise ExamError(f"line {n} is not an SSH public key; paste a line such as 'ssh-ed25519 AAAA... "
                                "name' from your .pub file.", "bad_ssh_key", line=n) from None
            keys.append(key.export_public_key("openssh").decode().strip())
            prints.append(key.get_fingerprint())
        if len(keys) > MAX_SSH_KEYS:
            raise ExamError(f"{len(keys)} keys given; keep at most {MAX_SSH_KEYS}.", "too_many_keys",
                            max=MAX_SSH_KEYS)
        with self.db.session() as s:
            repo.set_ssh_public_key(s, user_id, "\n".join(keys) or None)
        return prints

    @staticmethod
    def ssh_key_prints(stored: str | None) -> list[str]:
        """Fingerprints of stored keys (what the candidate's page shows)."""
        import asyncssh

        prints = []
        for line in (stored or "").splitlines():
            try:
                prints.append(asyncssh.import_public_key(line).get_fingerprint())
            except (asyncssh.KeyImportError, ValueError):
                continue
        return prints

    # -- cohorts
    def create_cohort(self, lab_ref: str, roster_text: str, name: str, *, created_by: int | None,
                      seed: int | None = None, roster_label: str = "the uploaded roster",
                      provider: str = "netns", vantage: str | None = None,
                      portal_url: str = "http://127.0.0.1:8000/", ssh_host: str = "127.0.0.1",
                      ssh_port: int = 2222) -> tuple[int, list[Credential]]:
        """Record a cohort, one candidate account per roster name (login, generated password,
        instance name, seed) and write its login sheet. Nothing is brought up yet (:meth:`launch`).
        The cohort's instances will live on ``provider`` (one of :meth:`LabOps.providers`) and be
        graded with ``vantage`` (the provider's default when None); a lab that cannot be graded
        there is refused with the lifecycle's one sentence. Nothing is left half-made on error."""
        name = name.strip()
        check_instance_name(name)
        if len(name) > 27:
            raise ExamError(f"cohort name {name!r} is too long; use at most 27 characters (instances add '-NN').",
                            "cohort_name_too_long", name=name)
        lab_id = self.lab.lab_id(lab_ref)
        offered = self.lab.providers()
        if provider not in offered:
            raise ExamError(f"provider {provider!r} cannot be used for a cohort here; choose one of: "
                            f"{', '.join(offered)} (proxmox needs a proxmox.toml in the labkit home).",
                            "provider_unavailable", provider=provider)
        vantage = self.lab.fits(lab_id, provider, vantage)
        entries = parse_roster_entries(roster_text, roster_label)
        names = [e.name for e in entries]
        seed = random.SystemRandom().randrange(2**31) if seed is None else seed
        if seed < 0:
            raise UserError(f"seed {seed} is negative; give a seed of 0 or more.")
        instances = [f"{name}-{i + 1:02d}" for i in range(len(names))]
        busy = [i for i in instances if self.lab.exists(i, provider)]
        if busy:
            raise ExamError(f"instance {busy[0]} already exists; pick another cohort name or bring it down.",
                            "instance_exists", instance=busy[0])
        sheet = self.sheet_path(name)
        lab_title = self.lab.lab_title(lab_id, "fr")
        passwords = [new_password() for _ in names]
        hashes = [hash_password(pw) for pw in passwords]  # argon2 is slow: not inside the transaction
        creds: list[Credential] = []
        with self.db.session() as s:
            if repo.get_cohort(s, name) is not None:
                raise ExamError(f"cohort {name!r} already exists; pick another name.", "cohort_exists", name=name)
            taken_inst = set(s.scalars(select(Candidate.instance).where(Candidate.instance.in_(instances))))
            if taken_inst:
                raise ExamError(f"instance {sorted(taken_inst)[0]} belongs to another cohort; pick another name.",
                                "instance_exists", instance=sorted(taken_inst)[0])
            cohort = repo.create_cohort(s, name, lab_id, seed, created_by=created_by, provider=provider,
                                        vantage=vantage)
            s.flush()
            taken: set[str] = set()
            rows = zip(entries, instances, _seeds(seed, len(names)), passwords, hashes, strict=True)
            for entry, inst, cand_seed, password, pw_hash in rows:
                cand_name = entry.name
                login = self._free_login(s, login_from_name(cand_name), taken)
                taken.add(login)
                user = repo.create_user(s, login, cand_name[:200], "candidate")
                user.password_hash = pw_hash
                s.flush()
                seat = repo.add_candidate(s, cohort, user, cand_name[:200], inst, cand_seed)
                seat.email, seat.idnumber, seat.username = entry.email, entry.idnumber, entry.username
                creds.append(Credential(name=cand_name, login=login, password=password, instance=inst))
            s.flush()
            cohort_id = cohort.id
            _write_private(sheet, render_sheet(name, lab_title, creds,
                                               portal_url=portal_url, ssh_host=ssh_host, ssh_port=ssh_port))
            try:
                s.commit()
            except BaseException:
                sheet.unlink(missing_ok=True)
                raise
        return cohort_id, creds

    @staticmethod
    def _free_login(s: Session, base: str, taken: set[str]) -> str:
        for n in range(1, 1000):
            login = base if n == 1 else f"{base[:60]}{n}"
            if login not in taken and repo.get_user_by_login(s, login) is None:
                return login
        raise UserError(f"no free login for {base!r}; rename the candidate in the roster.")

    def sheet_path(self, cohort_name: str) -> Path:
        return sheet_path(self.ctx, cohort_name)

    def sheet(self, cohort_name: str) -> str:
        return self.sheet_of(self.ctx, cohort_name)

    @staticmethod
    def sheet_of(ctx: Context, cohort_name: str) -> str:
        """The login sheet written when the cohort was created (the only copy of the passwords)."""
        path = sheet_path(ctx, cohort_name)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"cohort {cohort_name!r} has no login sheet ({path} is missing); it is written when "
                            "the cohort is created in the portal, and passwords are shown only then.") from None

    def launch(self, cohort_id: int) -> list[int]:
        """Bring up, in the background, every candidate instance of the cohort that is not up:
        the first one alone while no instance of this home is up (a fresh run directory is
        never set up by several launches at once), then the others in parallel (at most
        :attr:`launch_workers`). One failure is recorded on that candidate
        and the others go on; launching again retries the failed ones. Returns the candidate
        ids to be launched."""
        with self.db.session() as s:
            cohort = s.get(Cohort, cohort_id)
            if cohort is None:
                raise UserError(f"there is no cohort {cohort_id}; pick one from the cohort list.")
            where = _Where(cohort.lab_id, cohort.provider, cohort.vantage)
            todo = [c for c in cohort.candidates if c.status in ("planned", "failed", "removed")]
            for c in todo:
                c.status, c.detail = "launching", ""
            jobs = [(c.id, c.instance, c.seed, c.name) for c in todo]
        if jobs:
            self._submit(self._lifecycle, self._launch_batch, where, jobs)
        return [j[0] for j in jobs]

    def _launch_batch(self, where: _Where, jobs: list[tuple[int, str, int, str]]) -> None:
        rest = list(jobs)
        while rest and not self.lab.run_dir_held():  # the pilot: one launch alone
            self._launch_one(where, *rest.pop(0))
        futures = [self._submit(self._launcher, self._launch_one, where, *job) for job in rest]
        for fut in futures:
            _wait_one(fut, 3600)

    def _launch_one(self, where: _Where, cand_id: int, instance: str, seed: int, name: str,
                    reset: bool = False) -> None:
        with self._lock(cand_id):
            try:
                if reset and self.lab.exists(instance, where.provider):
                    self.lab.down(instance, where.provider)
                self.lab.up(where.lab_id, instance, seed, name, where.provider, where.vantage)
                status, detail = "up", ""
            except LabkitError as exc:
                status, detail = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - one candidate's failure must not stop the others
                LOG.exception("launching %s failed", instance)
                status, detail = "failed", f"{type(exc).__name__}: {exc}"
            self._set_status(cand_id, instance, status, detail)

    def _set_status(self, cand_id: int, instance: str, status: str, detail: str) -> None:
        self._health.pop(instance, None)
        with self.db.session() as s:
            repo.set_candidate_status(s, cand_id, status, detail)

    def reset(self, candidate_id: int) -> None:
        """Bring one candidate's instance down and up again with the same seed (background;
        after any launch or removal in progress: those never overlap)."""
        with self.db.session() as s:
            cand = s.get(Candidate, candidate_id)
            if cand is None:
                raise UserError(f"there is no candidate {candidate_id}; pick one from the dashboard.")
            if cand.status in ("launching", "resetting"):
                raise Busy(f"{cand.name}'s instance is already being {cand.status[:-3]}ed; wait for it to finish.",
                           "instance_busy")
            cand.status, cand.detail = "resetting", ""
            cohort = cand.cohort
            job = (_Where(cohort.lab_id, cohort.provider, cohort.vantage), cand.id, cand.instance, cand.seed,
                   cand.name)
        self._submit(self._lifecycle, self._launch_one, *job, True)

    def teardown(self, cohort_id: int) -> None:
        """Bring every instance of the cohort down, one after the other, in the background;
        accounts and gradings are kept, and :meth:`launch` brings them up again."""
        with self.db.session() as s:
            cohort = s.get(Cohort, cohort_id)
            if cohort is None:
                raise UserError(f"there is no cohort {cohort_id}; pick one from the cohort list.")
            provider = cohort.provider
            jobs = [(c.id, c.instance) for c in cohort.candidates if c.status not in ("launching", "resetting")]
        for job in jobs:
            self._submit(self._lifecycle, self._down_one, *job, provider)

    def _down_one(self, cand_id: int, instance: str, provider: str = "netns") -> None:
        with self._lock(cand_id):
            try:
                if self.lab.exists(instance, provider):
                    self.lab.down(instance, provider)
                status, detail = "removed", ""
            except LabkitError as exc:
                status, detail = "failed", str(exc)
            self._set_status(cand_id, instance, status, detail)

    def set_window(self, cohort_id: int, start: datetime | None, end: datetime | None) -> None:
        start, end = as_utc(start), as_utc(end)
        if start and end and end <= start:
            raise ExamError("the exam ends before it starts; give an end after the start.", "window_reversed")
        with self.db.session() as s:
            cohort = s.get(Cohort, cohort_id)
            if cohort is None:
                raise UserError(f"there is no cohort {cohort_id}; pick one from the cohort list.")
            if cohort.final_taken_at is not None:
                raise ExamClosed("the final grade of this cohort is already taken; its window cannot change.",
                                 "final_taken")
            cohort.exam_start, cohort.exam_end = start, end
            s.commit()

    def end_now(self, cohort_id: int) -> bool:
        """End the exam now and take the final grade."""
        with self.db.session() as s:
            cohort = s.get(Cohort, cohort_id)
            if cohort is None:
                raise UserError(f"there is no cohort {cohort_id}; pick one from the cohort list.")
            if cohort.exam_end is None or not exam_is_over(cohort):
                cohort.exam_end = utcnow()
            s.commit()
        return self.take_final(cohort_id)

    def take_final(self, cohort_id: int, requested_by: int | None = None) -> bool:
        """Once the window is over, grade every candidate once (mode ``final``). Only the first
        call does it (the database row is claimed atomically); the others return False."""
        now = utcnow()
        with self.db.session() as s:
            cohort = s.get(Cohort, cohort_id)
            if cohort is None or not exam_is_over(cohort, now):
                return False
            claimed = s.execute(update(Cohort).where(Cohort.id == cohort_id, Cohort.final_taken_at.is_(None))
                                .values(final_taken_at=now)).rowcount
            cands = [(c.id, c.instance) for c in cohort.candidates if c.status == "up"]
            s.commit()
        if not claimed:
            return False
        for cand_id, instance in cands:
            self._submit(self._grader, self._final_one, cand_id, instance, requested_by)
        return True

    def take_due_finals(self) -> list[int]:
        """Take the final grade of every cohort whose window has just ended (a portal timer calls this)."""
        with self.db.session() as s:
            due = list(s.scalars(select(Cohort.id).where(Cohort.exam_end.is_not(None),
                                                         Cohort.final_taken_at.is_(None),
                                                         Cohort.exam_end <= utcnow())))
        return [cid for cid in due if self.take_final(cid)]

    def _final_one(self, cand_id: int, instance: str, requested_by: int | None) -> None:
        with self._lock(cand_id):  # waits for a self-check in progress
            row_id = self._start_run(cand_id, "final", requested_by)
            self._run_grading(row_id, instance, "final")

    # -- gradings
    def selfcheck(self, candidate_id: int, requested_by: int | None) -> int:
        return self._candidate_run(candidate_id, "selfcheck", requested_by)

    def submit(self, candidate_id: int, requested_by: int | None) -> int:
        return self._candidate_run(candidate_id, "grade", requested_by)

    def _candidate_run(self, candidate_id: int, mode: str, requested_by: int | None) -> int:
        """Start a self-check or a submission in the background; returns the GradingRun id.
        Refused outside the exam window, while another grading of this candidate runs, and
        sooner than :attr:`selfcheck_interval` after the previous one."""
        with self.db.session() as s:
            cand = s.get(Candidate, candidate_id)
            if cand is None:
                raise UserError(f"there is no candidate {candidate_id}.")
            if exam_is_over(cand.cohort):
                raise ExamClosed("the exam is over; nothing can be submitted any more.", "exam_over")
            if not exam_is_open(cand.cohort):
                raise ExamClosed("the exam has not started yet; wait for the trainer's signal.", "exam_not_started")
            if cand.status != "up":
                raise Busy(f"your lab is {cand.status}, not up; ask the trainer.", "lab_not_up", status=cand.status)
            instance = cand.instance
        lock = self._lock(candidate_id)
        if not lock.acquire(blocking=False):
            raise Busy("a grading of your lab is already running; wait for its result.", "grading_running")
        try:
            with self.db.session() as s:
                last = as_utc(s.scalar(select(func.max(GradingRun.started_at)).where(
                    GradingRun.candidate_id == candidate_id, GradingRun.mode.in_(("selfcheck", "grade")))))
                if last is not None:
                    wait = self.selfcheck_interval - (utcnow() - last).total_seconds()
                    if wait > 0:
                        raise RateLimited(f"one self-check or submission every {int(self.selfcheck_interval)} s; "
                                          f"wait {int(wait) + 1} s and try again.", int(wait) + 1)
            row_id = self._start_run(candidate_id, mode, requested_by)
        except BaseException:
            lock.release()
            raise
        self._submit(self._grader, self._candidate_job, lock, row_id, instance, mode)
        return row_id

    def _candidate_job(self, lock: threading.Lock, row_id: int, instance: str, mode: str) -> None:
        try:
            self._run_grading(row_id, instance, mode)
        finally:
            lock.release()

    def _start_run(self, candidate_id: int, mode: str, requested_by: int | None) -> int:
        """The GradingRun row, ``running``, recorded before the grading starts."""
        try:
            with self.db.session() as s:
                row = repo.start_grading_run(s, candidate_id, mode, requested_by=requested_by)
                s.flush()
                return row.id
        except repo.GradingInProgressError:
            raise Busy("a grading of your lab is already running; wait for its result.", "grading_running") from None

    def _run_grading(self, row_id: int, instance: str, mode: str) -> None:
        """Grade, then record the run ``complete`` with its sealed folder; any failure is
        recorded ``failed`` with its message (the grading function removes an unsealed folder)."""
        try:
            summary = self.lab.grade(instance, "selfcheck" if mode == "selfcheck" else "grade")
            if not summary.run_id or not summary.manifest_sha256:
                raise LabkitError("the grading returned no sealed run")
        except Exception as exc:  # noqa: BLE001 - recorded on the row, shown to the trainer
            msg = str(exc) if isinstance(exc, LabkitError) else f"{type(exc).__name__}: {exc}"
            with self.db.session() as s:
                repo.fail_grading_run(s, row_id, msg)
            return
        try:  # complete only from the verified sealed folder, with the score read back from it
            record_sealed(self.db, self.ctx.settings.runs, row_id, summary)
        except LabkitError as exc:
            with self.db.session() as s:
                repo.fail_grading_run(s, row_id, str(exc))

    # -- reading
    def dashboard(self, cohort_id: int) -> dict[str, Any]:
        """What the trainer's live dashboard shows (JSON-able): per candidate, the instance's
        status and health, the grading running now, the last self-check and the submitted grade."""
        with self.db.session() as s:
            cohort = s.get(Cohort, cohort_id)
            if cohort is None:
                raise UserError(f"there is no cohort {cohort_id}; pick one from the cohort list.")
            rows = []
            for c in cohort.candidates:
                runs = repo.latest_runs(s, c, limit=200)
                rows.append({
                    "id": c.id, "name": c.name, "login": c.user.login, "instance": c.instance,
                    "status": c.status, "detail": c.detail, "health": None,
                    "running": next((r.mode for r in runs if r.status == "running"), None),
                    "selfcheck": _run_view(next((r for r in runs if r.mode == "selfcheck"
                                                 and r.status == "complete"), None)),
                    "grade": _run_view(next((r for r in runs if r.mode in ("grade", "final")
                                             and r.status == "complete"), None)),
                    "final": _run_view(next((r for r in runs if r.mode == "final"), None)),
                })
            head = {"id": cohort.id, "name": cohort.name, "lab": cohort.lab_id, "provider": cohort.provider,
                    "vantage": cohort.vantage,
                    "exam_start": _iso(cohort.exam_start), "exam_end": _iso(cohort.exam_end),
                    "final_taken_at": _iso(cohort.final_taken_at),
                    "open": exam_is_open(cohort), "over": exam_is_over(cohort)}
        for row in rows:  # live readings outside the transaction: they take a while
            if row["status"] == "up":
                row["health"] = self._health_of(row["instance"])
        counts = {status: sum(r["status"] == status for r in rows) for status in CANDIDATE_STATUSES}
        return {"cohort": head, "candidates": rows, "counts": counts, "total": len(rows)}

    def _health_of(self, instance: str) -> str:
        """The instance's health: read live the first time, then refreshed in the background
        when older than :data:`HEALTH_TTL` (the dashboard polls every 2 s and must stay quick)."""
        now = time.monotonic()
        cached = self._health.get(instance)
        if cached is None:
            value = self.lab.health(instance)
            self._health[instance] = _HealthCache(now, value)
            return value
        if now - cached.at >= HEALTH_TTL and instance not in self._probing:
            self._probing.add(instance)
            self._submit(self._prober, self._refresh_health, instance)
        return cached.value

    def _refresh_health(self, instance: str) -> None:
        try:
            self._health[instance] = _HealthCache(time.monotonic(), self.lab.health(instance))
        finally:
            self._probing.discard(instance)

    def results(self, cohort_id: int) -> list[dict[str, Any]]:
        """One row per candidate for the export: the final grade, else the last submitted one."""
        board = self.dashboard(cohort_id)
        out = []
        for c in board["candidates"]:
            graded = c["final"] if c["final"] and c["final"]["status"] == "complete" else c["grade"]
            out.append({
                "cohort": board["cohort"]["name"], "lab": board["cohort"]["lab"], "candidate": c["name"],
                "login": c["login"], "instance": c["instance"],
                "mode": graded["mode"] if graded else None,
                "score": graded["score"] if graded else None,
                "max_score": graded["max_score"] if graded else None,
                "run_id": graded["run_id"] if graded else None,
                "manifest_sha256": graded["manifest_sha256"] if graded else None,
                "graded_at": graded["finished_at"] if graded else None,
                "last_selfcheck_score": c["selfcheck"]["score"] if c["selfcheck"] else None,
            })
        return out

    def gradebook(self, cohort_id: int, *, id_field: IdField, scale: Scale = "100") -> Gradebook:
        """The cohort's gradebook (:mod:`labkit.usecases.gradebook`): the latest recorded grade
        (a submission or the final grade) of each candidate, from the sealed run folders."""
        from labkit.domain.criteria import load_catalog
        from labkit.usecases.gradebook import Enrolment, build_gradebook

        with self.db.session() as s:
            cohort = s.get(Cohort, cohort_id)
            if cohort is None:
                raise UserError(f"there is no cohort {cohort_id}; see the cohorts page.")
            enrolments = [Enrolment(cohort=cohort.name, lab=cohort.lab_id, candidate=c.name, instance=c.instance,
                                    email=c.email, idnumber=c.idnumber, username=c.username)
                          for c in cohort.candidates]
        return build_gradebook(enrolments, self.ctx.settings.runs, load_catalog(), id_field=id_field, scale=scale)

    def results_csv(self, cohort_id: int) -> str:
        rows = self.results(cohort_id)
        buf = io.StringIO()
        cols = ["cohort", "lab", "candidate", "login", "instance", "mode", "score", "max_score", "run_id",
                "manifest_sha256", "graded_at", "last_selfcheck_score"]
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_cell("" if r[k] is None else r[k]) for k in cols})
        return buf.getvalue()

    def recordings_root(self) -> Path:
        return self.ctx.settings.home / "recordings"

    def recording_file(self, rec: Recording) -> Path:
        """The recording's file, refused if its stored path would climb out of the recordings folder."""
        root = self.recordings_root().resolve()
        path = (root / rec.path).resolve()
        if not path.is_relative_to(root):
            raise UserError(f"recording {rec.id} points outside {root}; it cannot be shown.")
        return path


def _log_failure(fut: Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        LOG.error("background exam job failed: %s", fut.exception(), exc_info=fut.exception())


def _wait_one(fut: Future[Any], timeout: float) -> None:
    try:
        fut.exception(timeout=timeout)
    except TimeoutError:
        raise
    except Exception:  # noqa: BLE001 - cancelled: nothing to wait for
        return


def _csv_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run as a formula (CSV injection from a roster name)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _iso(dt: datetime | None) -> str | None:
    dt = as_utc(dt)
    return dt.isoformat() if dt else None


def _run_view(run: GradingRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"id": run.id, "mode": run.mode, "status": run.status, "score": run.score, "max_score": run.max_score,
            "run_id": run.run_id, "manifest_sha256": run.manifest_sha256, "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at), "error": run.error}
