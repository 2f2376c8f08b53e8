"""Authorization matrix: every route of the app × every role × the ids of candidate A and B.

The expected access of each route is written here, independently of the app's own
declarations; a route of the app missing from :data:`EXPECTED` (or an entry here that is no
longer a route) fails the test, so no new page escapes the matrix.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.routing import Mount, WebSocketRoute

from labkit.adapters.db.models import Candidate, Cohort, GradingRun, User
from tests.interfaces.web.conftest import Portal, csrf_of

ROLES = ("anonymous", "trainer", "assessor", "A", "B")
STAFF = frozenset({"trainer", "assessor"})
TRAINER = frozenset({"trainer"})
CANDIDATES = frozenset({"A", "B"})
EVERYONE = STAFF | CANDIDATES
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]  # who may call it
    owned: bool = False  # a candidate may only name their own ids in the path
    ok: int | None = None  # the success status (default: 200 for GET, 303 for POST)


EXPECTED: dict[tuple[str, str], Rule | str] = {
    ("GET", "/login"): "login-page",
    ("POST", "/login"): "login",
    ("POST", "/logout"): Rule(EVERYONE),
    ("GET", "/"): Rule(EVERYONE, ok=303),
    ("GET", "/cohorts"): Rule(STAFF),
    ("GET", "/cohorts/new"): Rule(TRAINER),
    ("POST", "/cohorts"): Rule(TRAINER),
    ("GET", "/cohorts/{cohort_id}"): Rule(STAFF),
    ("GET", "/cohorts/{cohort_id}/status.json"): Rule(STAFF),
    ("POST", "/cohorts/{cohort_id}/launch"): Rule(TRAINER),
    ("POST", "/cohorts/{cohort_id}/teardown"): Rule(TRAINER),
    ("POST", "/cohorts/{cohort_id}/window"): Rule(TRAINER),
    ("POST", "/cohorts/{cohort_id}/end"): Rule(TRAINER),
    ("GET", "/cohorts/{cohort_id}/sheet"): Rule(TRAINER),
    ("GET", "/cohorts/{cohort_id}/results.csv"): Rule(STAFF),
    ("GET", "/cohorts/{cohort_id}/results.json"): Rule(STAFF),
    ("GET", "/cohorts/{cohort_id}/gradebook.csv"): Rule(STAFF),
    ("GET", "/cohorts/{cohort_id}/gradebook.json"): Rule(STAFF),
    ("GET", "/candidates/{candidate_id}/bundle.zip"): Rule(STAFF),
    ("GET", "/runs/{run_id}/report.pdf"): Rule(EVERYONE, owned=True),
    ("GET", "/candidates/{candidate_id}"): Rule(STAFF),
    ("POST", "/candidates/{candidate_id}/reset"): Rule(TRAINER),
    ("GET", "/runs"): Rule(STAFF),
    ("GET", "/runs/{run_id}"): Rule(EVERYONE, owned=True),
    ("GET", "/recordings/{recording_id}"): Rule(EVERYONE, owned=True),
    ("GET", "/recordings/{recording_id}/raw"): Rule(EVERYONE, owned=True),
    ("GET", "/me"): Rule(CANDIDATES),
    ("GET", "/me/status.json"): Rule(CANDIDATES),
    ("POST", "/me/selfcheck"): Rule(CANDIDATES),
    ("POST", "/me/submit"): Rule(CANDIDATES),
    ("POST", "/me/sshkey"): Rule(CANDIDATES),
    ("GET", "/me/terminal"): Rule(CANDIDATES),
    ("WS", "/me/terminal/ws"): "websocket",  # its handshake: tests/interfaces/web/test_terminal.py
    ("GET", "/recordings/{recording_id}/watch"): Rule(EVERYONE, owned=True),
    ("WS", "/recordings/{recording_id}/live"): "websocket",  # its handshake: test_watch.py
    ("GET", "/static"): "static",
}
SESSION_ROUTES = {("POST", "/login"), ("POST", "/logout")}
MISSING_ID = 987654


def app_routes(portal: Portal) -> list[tuple[str, str]]:
    """Every route the app serves, included routers expanded (FastAPI's public iterator)."""
    found: list[tuple[str, str]] = []
    for ctx in iter_route_contexts(portal.client.app.routes):  # type: ignore[attr-defined]
        route = ctx.original_route
        if isinstance(route, APIRoute):
            found += [(m, str(ctx.path)) for m in sorted((ctx.methods or set()) - {"HEAD"})]
        elif isinstance(route, (APIWebSocketRoute, WebSocketRoute)):
            found.append(("WS", str(ctx.path)))
        elif isinstance(route, Mount):
            found.append(("GET", str(ctx.path)))
        else:
            found.append(("?", f"{type(route).__name__} {ctx.path}"))
    assert len(found) > 20
    return found


def test_every_route_is_classified(portal: Portal) -> None:
    routes = app_routes(portal)
    assert [r for r in routes if r not in EXPECTED] == [], "routes missing from the authorization matrix"
    assert [r for r in EXPECTED if r not in routes] == [], "matrix entries that are not routes any more"


# ------------------------------------------------------------------------------------------
class Clients:
    """One logged-in client per role (and an anonymous one), re-logged in after a logout."""

    def __init__(self, portal: Portal):
        self.portal = portal
        self.by_role: dict[str, TestClient] = {}
        for role in ROLES:
            self.fresh(role)

    def fresh(self, role: str) -> TestClient:
        c = TestClient(self.portal.client.app, follow_redirects=False)
        if role != "anonymous":
            self.portal.login(role, c)
        self.by_role[role] = c
        return c

    def token(self, role: str) -> str:
        c = self.by_role[role]
        page = c.get("/login") if role == "anonymous" else c.get("/me" if role in CANDIDATES else "/cohorts")
        return csrf_of(page.text)


def id_variants(portal: Portal, path: str) -> list[tuple[str, dict[str, int]]]:
    """(owner, path values): A's ids, B's ids, an id that does not exist ("none")."""
    if "{" not in path:
        return [("", {})]
    out = []
    for owner in ("A", "B", "A-selfcheck", "none"):
        key = owner[0] if owner != "none" else None
        values: dict[str, int] = {}
        if "{cohort_id}" in path:
            values["cohort_id"] = portal.cohort_id if key else MISSING_ID
        if "{candidate_id}" in path:
            values["candidate_id"] = portal.candidate_ids[key] if key else MISSING_ID
        if "{run_id}" in path:
            mode = "selfcheck" if owner == "A-selfcheck" else "grade"
            values["run_id"] = portal.run_ids[key][mode] if key else MISSING_ID
        if "{recording_id}" in path:
            values["recording_id"] = portal.recording_ids[key] if key else MISSING_ID
        if owner == "A-selfcheck" and "{run_id}" not in path:
            continue
        if "{cohort_id}" in path and owner not in ("A", "none"):
            continue  # one cohort: A and B share it
        out.append((owner, values))
    return out


def expected_status(method: str, rule: Rule, role: str, owner: str) -> int:
    if role == "anonymous":
        return 403 if method in UNSAFE else 303  # unsafe: no CSRF token without a session
    if role not in rule.roles:
        return 403
    if owner == "none":
        return 404
    if rule.owned and role in CANDIDATES and (owner[0] != role or owner == "A-selfcheck"):
        return 404  # another candidate's thing, or a self-check (shown as hints, not as a report)
    return rule.ok or (303 if method in UNSAFE else 200)


def call(portal: Portal, client: TestClient, method: str, url: str, token: str | None) -> int:
    data = {} if token is None else {"csrf_token": token}
    if method == "GET":
        return client.get(url).status_code
    if url == "/cohorts":
        name = f"extra-{next(_names)}"
        r = client.post(url, data={**data, "lab": "demo-lab", "name": name},
                        files={"roster": ("roster.csv", b"Zoe Zed\n", "text/csv")})
        return r.status_code
    return client.request(method, url, data=data).status_code


_names = itertools.count(1)


def restore(portal: Portal) -> None:
    """Undo what an allowed action changed: every cell starts from the same state."""
    portal.exam.wait_idle()
    with portal.db.session() as s:
        cohort = s.get(Cohort, portal.cohort_id)
        assert cohort is not None
        cohort.exam_start = cohort.exam_end = cohort.final_taken_at = None
    portal.exam.launch(portal.cohort_id)
    portal.exam.wait_idle()


def snapshot(portal: Portal) -> tuple[object, ...]:
    """What an unsafe request could change, to prove a refused one changed nothing."""
    portal.exam.wait_idle()
    with portal.db.session() as s:
        cohort = s.get(Cohort, portal.cohort_id)
        assert cohort is not None
        return (s.scalar(select(func.count()).select_from(Cohort)), s.scalar(select(func.count()).select_from(User)),
                s.scalar(select(func.count()).select_from(GradingRun)),
                tuple(s.scalars(select(Candidate.status).order_by(Candidate.id))),
                tuple(s.scalars(select(User.ssh_public_key).order_by(User.id))),
                cohort.exam_start, cohort.exam_end, cohort.final_taken_at, len(portal.ops.calls))


def test_authorization_matrix(portal: Portal) -> None:
    clients = Clients(portal)
    wrong: list[str] = []
    cells = 0
    for (method, path), rule in EXPECTED.items():
        if not isinstance(rule, Rule):
            continue
        for role, (owner, values) in itertools.product(ROLES, id_variants(portal, path)):
            url = path.format(**values)
            want = expected_status(method, rule, role, owner)
            before = snapshot(portal) if method in UNSAFE and want != 303 else None
            token = clients.token(role) if method in UNSAFE else None
            got = call(portal, clients.by_role[role], method, url, token)
            cells += 1
            if got != want:
                wrong.append(f"{role:9} {method} {url} ({owner or '-'}): {got}, expected {want}")
            if before is not None and snapshot(portal) != before:
                wrong.append(f"{role:9} {method} {url} ({owner or '-'}): refused, but something changed")
            if method in UNSAFE and got == 303:
                restore(portal)
                if path == "/logout":
                    clients.fresh(role)
    assert wrong == []
    assert cells > 150


def test_post_without_csrf_token_is_refused(portal: Portal) -> None:
    """Every unsafe route, every role (the ones allowed to call it included): no token, 403,
    and nothing changes; a wrong token is no better."""
    clients = Clients(portal)
    wrong: list[str] = []
    for method, path in EXPECTED:
        if method not in UNSAFE:
            continue
        for role in ROLES:
            for _owner, values in id_variants(portal, path)[:1]:
                url = path.format(**values)
                before = snapshot(portal)
                for token in (None, "forged-token"):
                    got = call(portal, clients.by_role[role], method, url, token)
                    if got != 403:
                        wrong.append(f"{role} {method} {url} token={token}: {got}")
                if snapshot(portal) != before:
                    wrong.append(f"{role} {method} {url}: refused but something changed")
    assert wrong == []
    # the refusal says why, in the page's language
    r = clients.by_role["trainer"].post(f"/cohorts/{portal.cohort_id}/launch?lang=en", data={})
    assert r.status_code == 403 and "did not come from this portal" in r.text


def test_assessor_changes_nothing(portal: Portal) -> None:
    """An assessor calls every unsafe route with a valid CSRF token: all refused (403) but the
    session routes, and the database and the labs are untouched."""
    clients = Clients(portal)
    before = snapshot(portal)
    statuses = {}
    for (method, path), _rule in EXPECTED.items():
        if method not in UNSAFE or (method, path) in SESSION_ROUTES:
            continue
        for _owner, values in id_variants(portal, path):
            url = path.format(**values)
            statuses[url] = call(portal, clients.by_role["assessor"], method, url, clients.token("assessor"))
    assert statuses and set(statuses.values()) == {403}, statuses
    assert snapshot(portal) == before


@pytest.mark.parametrize("me,other", [("A", "B"), ("B", "A")])
def test_candidate_never_sees_the_other(portal: Portal, me: str, other: str) -> None:
    """Everything a candidate can open, walked from their pages, never shows the other
    candidate's brief, runs, report or recording; the other's ids are 404."""
    c = portal.login(me)
    other_login = portal.logins[other]
    other_name = {"A": "Alice Martin", "B": "Bob Durand"}[other]
    my_name = {"A": "Alice Martin", "B": "Bob Durand"}[me]
    seen = []
    for url in ["/me", "/me/status.json", f"/runs/{portal.run_ids[me]['grade']}",
                f"/recordings/{portal.recording_ids[me]}", f"/recordings/{portal.recording_ids[me]}/raw"]:
        r = c.get(url)
        assert r.status_code == 200, (url, r.status_code)
        seen.append(r.text)
    assert my_name in seen[0] and f"secret-of-{portal.logins[me]}" in seen[3]
    for text in seen:
        assert other_name not in text and other_login not in text and f"secret-of-{other_login}" not in text
    for url in [f"/runs/{portal.run_ids[other]['grade']}", f"/runs/{portal.run_ids[other]['selfcheck']}",
                f"/runs/{portal.run_ids[other]['grade']}/report.pdf",
                f"/runs/{portal.run_ids[other]['selfcheck']}/report.pdf",
                f"/recordings/{portal.recording_ids[other]}", f"/recordings/{portal.recording_ids[other]}/raw",
                f"/candidates/{portal.candidate_ids[other]}", f"/candidates/{portal.candidate_ids[other]}/bundle.zip",
                f"/candidates/{portal.candidate_ids[me]}/bundle.zip",
                f"/cohorts/{portal.cohort_id}/gradebook.csv", f"/cohorts/{portal.cohort_id}/gradebook.json"]:
        r = c.get(url)
        assert r.status_code in (403, 404), (url, r.status_code)
        assert other_name not in r.text and f"secret-of-{other_login}" not in r.text
