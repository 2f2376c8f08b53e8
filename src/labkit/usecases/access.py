"""Who may reach which node, and how the session is recorded: the bastion's rules in one place.

A candidate logs in as ``LOGIN`` (their lab's workstation) or ``LOGIN+NODE`` (another node of
THEIR instance). The instance always comes from the candidate's own row in the database, never
from what they type, so no login string can reach another candidate's lab: a name that is not
a node of their instance is refused. Every attempt is written to ``LoginAttempt``; too many
failures from one address lock that login out for a while (shared rule with the portal).

Everything here is synchronous (SQLAlchemy, argon2): the bastion calls it from a worker thread
so that a 64 MiB argon2 verification never stalls the event loop the portal shares.
"""

from __future__ import annotations

import re
import secrets
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from functools import cache
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

from labkit.adapters.db import repo
from labkit.adapters.db.models import Candidate, Cohort, User
from labkit.adapters.recording.asciicast import CastHeader, CastWriter, recording_path
from labkit.adapters.security.passwords import hash_password, verify_password
from labkit.errors import LabkitError, UserError
from labkit.models.instance import InstancePlan
from labkit.usecases.lifecycle import Context, console_argv, load_lab_checked

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=5)
_TERM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]{0,63}$")

MESSAGES: dict[str, dict[str, str]] = {
    "no_node": {
        "fr": "Votre lab {instance} n'a pas de machine « {node} ». Vos machines : {nodes}.",
        "en": "Your lab {instance} has no machine '{node}'. Your machines: {nodes}.",
    },
    "not_up": {
        "fr": "Votre lab {instance} n'est pas démarré ; prévenez le formateur.",
        "en": "Your lab {instance} is not running; tell your trainer.",
    },
    "no_workstation": {
        "fr": "Votre lab {instance} n'a pas de poste de travail ; connectez-vous avec {login}+MACHINE ({nodes}).",
        "en": "Your lab {instance} has no workstation; log in as {login}+MACHINE ({nodes}).",
    },
    "read_only": {
        "fr": "L'examen est terminé : cette session est en lecture seule (ce que vous tapez n'est plus transmis).",
        "en": "The exam is over: this session is read-only (what you type is no longer sent).",
    },
    "no_exec": {
        "fr": "L'examen est terminé : aucune commande n'est plus exécutée.",
        "en": "The exam is over: commands are no longer run.",
    },
}


class AccessRefused(UserError):
    """The login is valid but this session may not open; the message is for the candidate."""


class SessionSource(Protocol):
    """What the use cases need of ``adapters.db.database.Database``."""

    def session(self) -> AbstractContextManager[Session]: ...


@dataclass(frozen=True)
class Login:
    user: str
    node: str | None


@dataclass(frozen=True)
class Target:
    """Where an authenticated session lands."""

    user_id: int
    login: str
    locale: str
    candidate_id: int
    cohort_id: int
    cohort: str
    instance: str
    node: str
    read_only: bool


def message(key: str, locale: str, **kw: str) -> str:
    texts = MESSAGES[key]
    return texts.get(locale, texts["fr"]).format(**kw)


def parse_login(username: str) -> Login:
    """``alice`` -> (alice, None); ``alice+r-hq`` -> (alice, r-hq). Logins are lowercase."""
    user, plus, node = username.strip().lower().partition("+")
    return Login(user, node if plus else None)


# ---------------------------------------------------------------- authentication
def _now() -> datetime:
    return datetime.now(UTC)


def locked_out(s: Session, login: str, source: str) -> bool:
    """True after MAX_FAILURES failures for ``login`` from ``source`` in FAILURE_WINDOW with no
    success since (the portal's rule too): guessing a password from the exam room takes years
    instead of minutes."""
    return repo.too_many_failures(s, login, source, FAILURE_WINDOW, MAX_FAILURES)


def record_attempt(db: SessionSource, username: str, source: str, ok: bool) -> None:
    with db.session() as s:
        repo.record_login_attempt(s, parse_login(username).user, source, ok)


def _candidate_user(s: Session, login: str) -> User | None:
    """Only an enabled user who sits in a cohort may use the bastion."""
    user = repo.get_user_by_login(s, login)
    if user is None or user.disabled or user.role != "candidate":
        return None
    if repo.get_candidate_for_user(s, user) is None:
        return None
    return user


@cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def check_password(db: SessionSource, username: str, password: str, source: str) -> bool:
    """Verify a password; a failure (unknown login included) counts towards the lockout.
    argon2 runs outside any transaction (SQLite's write lock is not held for it), and runs
    for unknown logins too, so the time taken does not tell which logins exist."""
    login = parse_login(username).user
    with db.session() as s:
        if locked_out(s, login, source):
            return False
        user = _candidate_user(s, login)
        stored = user.password_hash if user is not None else None
    ok = verify_password(stored or _decoy_hash(), password) and stored is not None
    if not ok:
        record_attempt(db, login, source, False)
    return ok


def _key_id(line: str) -> tuple[str, str] | None:
    """(algorithm, base64 blob) of an OpenSSH public key line; options and comments ignored."""
    parts = line.split()
    for i, part in enumerate(parts[:-1]):
        if part.startswith(("ssh-", "ecdsa-", "sk-")):
            return part, parts[i + 1]
    return None


def check_public_key(db: SessionSource, username: str, offered_openssh: str, source: str) -> bool:
    """True when the offered key is one of the user's keys (``ssh_public_key``, one per line).
    A key that does not match is not a failed attempt: clients offer every key they hold."""
    login = parse_login(username).user
    offered = _key_id(offered_openssh)
    with db.session() as s:
        if offered is None or locked_out(s, login, source):
            return False
        user = _candidate_user(s, login)
        keys = (user.ssh_public_key or "").splitlines() if user else []
        return any(_key_id(k) == offered for k in keys)


# ------------------------------------------------------------------- authorization
def exam_over(cohort: Cohort) -> bool:
    """Consoles are read-only once the exam window has closed (the portal's rule)."""
    from labkit.usecases.exam import exam_is_over  # at call time: exam may import this module

    return exam_is_over(cohort)


def is_read_only(db: SessionSource, cohort_id: int) -> bool:
    with db.session() as s:
        cohort = s.get(Cohort, cohort_id)
        return cohort is None or exam_over(cohort)


def workstation(plan: InstancePlan) -> str | None:
    return next((n.name for n in plan.nodes if n.role == "workstation"), None)


def open_target(ctx: Context, db: SessionSource, username: str) -> Target:
    """Where ``username`` (already authenticated) lands; AccessRefused, in the candidate's
    language, when the node is not theirs or their lab is not running."""
    wanted = parse_login(username)
    with db.session() as s:
        user = _candidate_user(s, wanted.user)
        if user is None:
            raise AccessRefused(f"{wanted.user!r} is not a candidate of any cohort.")
        cand = repo.get_candidate_for_user(s, user)
        assert cand is not None  # _candidate_user checked it
        seat = Target(user_id=user.id, login=user.login, locale=user.locale, candidate_id=cand.id,
                      cohort_id=cand.cohort.id, cohort=cand.cohort.name, instance=cand.instance, node="",
                      read_only=exam_over(cand.cohort))
    kw = {"instance": seat.instance, "login": seat.login}
    try:
        state = ctx.store.load(seat.instance)
    except LabkitError:
        raise AccessRefused(message("not_up", seat.locale, **kw)) from None
    nodes = ", ".join(n.name for n in state.plan.nodes)
    node = wanted.node or workstation(state.plan)
    if node is None:
        raise AccessRefused(message("no_workstation", seat.locale, nodes=nodes, **kw))
    if state.plan.node(node) is None:
        raise AccessRefused(message("no_node", seat.locale, node=node, nodes=nodes, **kw))
    if state.phase != "up":
        raise AccessRefused(message("not_up", seat.locale, **kw))
    return replace(seat, node=node)


def session_argv(ctx: Context, target: Target, term: str | None, command: str | None) -> list[str]:
    """The node's root login shell for this session (``bash -l -c COMMAND`` for ``ssh host
    COMMAND``), with the client's TERM instead of the bastion's own."""
    try:
        argv = console_argv(ctx, target.instance, target.node)
    except LabkitError:
        raise AccessRefused(message("not_up", target.locale, instance=target.instance, login=target.login)) from None
    if term and _TERM_RE.fullmatch(term):
        argv = [f"TERM={term}" if a.startswith("TERM=") else a for a in argv]
    if command is not None:
        if target.read_only:
            raise AccessRefused(message("no_exec", target.locale))
        if not argv[-2:] == ["/bin/bash", "-l"]:
            raise AccessRefused("this lab's console cannot run a single command; open a shell with 'ssh -t'.")
        argv = [*argv, "-c", command]
    return argv


# ----------------------------------------------------------------------- recording
@dataclass
class OpenRecording:
    id: int
    writer: CastWriter


def recordings_root(ctx: Context) -> Path:
    return ctx.settings.home / "recordings"


def start_recording(ctx: Context, db: SessionSource, target: Target, channel: str,
                    width: int, height: int, term: str | None) -> OpenRecording:
    """Open ``<home>/recordings/<cohort>/<login>/<UTC time>-<node>-<channel>.cast`` and its row."""
    root = recordings_root(ctx)
    started = _now()
    path = recording_path(root, target.cohort, target.login, target.node, channel, started)
    env = {"TERM": term} if term and _TERM_RE.fullmatch(term) else {}
    writer = CastWriter(path, CastHeader(width=width or 80, height=height or 24, timestamp=int(started.timestamp()),
                                         title=f"{target.login}@{target.instance}/{target.node} ({channel})", env=env))
    with db.session() as s:
        row = repo.add_recording(s, target.candidate_id, target.node, channel, str(writer.path.relative_to(root)))
        return OpenRecording(row.id, writer)


def finish_recording(db: SessionSource, rec: OpenRecording) -> None:
    rec.writer.close()
    with db.session() as s:
        repo.finish_recording(s, rec.id, rec.writer.size())


# ---------------------------------------------------------------------- login sheet
def access_lines(candidate: Candidate, host: str, port: int, ctx: Context | None = None) -> list[str]:
    """The ssh commands printed on a candidate's login sheet: first their workstation, then
    every node as ``LOGIN+NODE`` (nodes read from the running instance, or from the lab's
    topology before launch, when ``ctx`` is given)."""
    login = candidate.user.login
    where = f"-p {port} " if port != 22 else ""
    lines = [f"ssh {where}{login}@{host}"]
    for node in _node_names(candidate, ctx):
        lines.append(f"ssh {where}{login}+{node}@{host}")
    return lines


def _node_names(candidate: Candidate, ctx: Context | None) -> list[str]:
    if ctx is None:
        return []
    try:
        return [n.name for n in ctx.store.load(candidate.instance).plan.nodes]
    except LabkitError:
        pass
    try:
        return [n.name for n in load_lab_checked(ctx, candidate.cohort.lab_id).topology.nodes]
    except LabkitError:
        return []
