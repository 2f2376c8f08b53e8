"""Who is asking, and may they: sessions, CSRF and authorization, in one place.

- A login makes a server-side :class:`WebSession` row; the browser holds only a random token
  in the ``labkit_session`` cookie (HttpOnly, SameSite=Lax, Path=/, Secure when the portal
  is served over HTTPS); the row's id is the token's sha256.
- Every unsafe method (POST, PUT, PATCH, DELETE) must carry the session's CSRF token (form
  field ``csrf_token`` or header ``X-CSRF-Token``), checked by :func:`csrf_guard`, which the
  app installs on every route; before login, the login form's token is a double-submit
  cookie (``labkit_prelogin``). A missing or wrong token is a 403.
- Every route declares who may call it with ``Depends(allow(...))``: the roles allowed, and
  for a candidate, that the candidate, run or recording named in the path is their own
  (another candidate's id is a 404, as if it did not exist). Anonymous users are sent to
  the login page (303); a role not allowed gets a 403.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from labkit.adapters.db import repo
from labkit.adapters.db.models import Candidate, GradingRun, Recording

SESSION_COOKIE = "labkit_session"
PRELOGIN_COOKIE = "labkit_prelogin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ROLES = ("trainer", "assessor", "candidate")


@dataclass(frozen=True)
class Principal:
    """The logged-in user of a request."""

    user_id: int
    login: str
    display_name: str
    role: str
    csrf: str
    candidate_id: int | None = None  # their seat, for a candidate


class LoginRequired(Exception):
    """No valid session: the page redirects to the login form."""


class Forbidden(Exception):
    """Logged in, but this role may not do this (403)."""


class NotFound(Exception):
    """No such thing, or not yours (404)."""


class CsrfFailed(Exception):
    """An unsafe request without the right CSRF token (403)."""


def _db(request: Request) -> Any:
    return request.app.state.db


def current_user(request: Request) -> Principal | None:
    """The principal of the session cookie, or None (FastAPI caches this per request)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or len(token) > 200:
        return None
    with _db(request).session() as s:
        ws = repo.get_web_session(s, token)
        if ws is None:
            return None
        user = ws.user
        cand_id = None
        if user.role == "candidate":
            cand = repo.get_candidate_for_user(s, user)
            cand_id = cand.id if cand else None
        return Principal(user_id=user.id, login=user.login, display_name=user.display_name, role=user.role,
                         csrf=ws.csrf_token, candidate_id=cand_id)


async def csrf_guard(request: Request, who: Annotated[Principal | None, Depends(current_user)]) -> None:
    """Installed on every route: an unsafe method needs the CSRF token of its session (or,
    before login, of the pre-login cookie)."""
    if request.method not in UNSAFE:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else ""
    expected = who.csrf if who is not None else request.cookies.get(PRELOGIN_COOKIE, "")
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed()


def new_prelogin_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Policy:
    """Who may call a route: its roles; ``owned`` path parameters a candidate must own."""

    roles: frozenset[str]
    owned: tuple[str, ...]


OWNED_PARAMS = ("candidate_id", "run_id", "recording_id")


def allow(*roles: str) -> Callable[..., Principal]:
    """The dependency of a route that ``roles`` may call. When a candidate may, every id in the
    path (``candidate_id``, ``run_id``, ``recording_id``) must be theirs; trainers and
    assessors see every id, but an id that does not exist is a 404 for everyone."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"unknown roles {sorted(unknown)}; use {ROLES}")
    policy = Policy(frozenset(roles), OWNED_PARAMS)

    def dependency(request: Request, who: Annotated[Principal | None, Depends(current_user)]) -> Principal:
        if who is None:
            raise LoginRequired()
        if who.role not in policy.roles:
            raise Forbidden()
        _check_ids(request, who)
        return who

    dependency.policy = policy  # type: ignore[attr-defined]  # read by the authorization tests
    return dependency


def _int_param(request: Request, name: str) -> int | None:
    raw = request.path_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise NotFound() from None
    if value <= 0 or value > 2**62:
        raise NotFound()
    return value


def _check_ids(request: Request, who: Principal) -> None:
    ids = {name: _int_param(request, name) for name in OWNED_PARAMS}
    if all(v is None for v in ids.values()):
        return
    mine = who.candidate_id if who.role == "candidate" else None
    with _db(request).session() as s:
        if ids["candidate_id"] is not None:
            cand = s.get(Candidate, ids["candidate_id"])
            if cand is None or (who.role == "candidate" and cand.id != mine):
                raise NotFound()
        if ids["run_id"] is not None:
            run = s.get(GradingRun, ids["run_id"])
            if run is None or (who.role == "candidate" and (run.candidate_id != mine or run.mode == "selfcheck")):
                raise NotFound()  # a candidate's self-checks show as hints, not as reports
        if ids["recording_id"] is not None:
            rec = s.get(Recording, ids["recording_id"])
            if rec is None or (who.role == "candidate" and rec.candidate_id != mine):
                raise NotFound()
