"""The browser terminal's server side: the page, the websocket handshake (session cookie,
Origin, page token), the console relay, the recording (channel 'web') and read-only after the
exam. The node console is a local bash (only ``access.console_argv`` is replaced, as in the
bastion's mechanics tests); the rules, the pty, the relay and the recording are the real ones.
The real lab, in a real browser: test_browser.py."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from labkit.adapters.db.models import Cohort, Recording
from labkit.adapters.recording.asciicast import read_events
from labkit.adapters.storage.state import utcnow
from labkit.domain.labs import instantiate
from labkit.interfaces.web.terminal import MAX_TERMINALS, REFUSED, TOO_MANY, page_token
from labkit.models.instance import InstanceState
from labkit.usecases import access
from labkit.usecases.lifecycle import Context, load_lab_checked
from tests.interfaces.web.conftest import Portal, csrf_of

LOCAL_SHELL = ["/usr/bin/env", "-i", "TERM=dumb", "PS1=lk$ ", "HOME=/tmp", "/bin/bash", "--norc", "-i"]
ORIGIN = {"origin": "http://testserver"}
NODES = ["pc-hq", "r-hq"]


@pytest.fixture
def term(portal: Portal, monkeypatch: pytest.MonkeyPatch) -> Iterator[Portal]:
    """The portal of conftest with real instance states (routing-multisite) for A and B, and a
    local bash as every node's console; ``opened`` lists the (instance, node) consoles asked for."""
    ctx = portal.exam.ctx
    opened: list[tuple[str, str]] = []
    for i, inst in enumerate(("bts1-01", "bts1-02"), start=1):
        _save_state(ctx, inst, 100 + i)

    def argv(c: Context, instance: str, node: str) -> list[str]:
        opened.append((instance, node))
        return list(LOCAL_SHELL)

    monkeypatch.setattr(access, "console_argv", argv)
    monkeypatch.setattr(portal.ops, "nodes", lambda inst: list(NODES))
    portal.client.app.state.console_read_only_poll = 0.3
    portal.opened = opened  # type: ignore[attr-defined]
    portal.login("A", portal.client)  # the fixture's client: its event loop outlives each websocket
    yield portal
    hub = getattr(portal.client.app.state, "console_hub", None)
    if hub is not None:
        portal.client.portal.call(hub.wait_idle)  # type: ignore[union-attr]
        assert not hub.consoles and not hub.children, "consoles left behind"


def _save_state(ctx: Context, instance: str, seed: int) -> None:
    plan = instantiate(load_lab_checked(ctx, "routing-multisite"), instance, seed, None)
    now = utcnow()
    ctx.store.save(InstanceState(name=instance, provider="netns", phase="up", created_at=now, updated_at=now,
                                 plan=plan, ssh_key="/nonexistent"))


def _token(client: TestClient, node: str) -> str:
    page = client.get(f"/me/terminal?node={node}")
    assert page.status_code == 200, page.text
    token = page.text.split('data-token="', 1)[1].split('"', 1)[0]
    assert token == page_token(csrf_of(page.text), node)
    return token


def _url(node: str, token: str, cols: int = 100, rows: int = 30) -> str:
    return f"/me/terminal/ws?node={node}&token={token}&cols={cols}&rows={rows}"


def _read_until(ws: WebSocketTestSession, needle: str | re.Pattern[str], limit: float = 20) -> str:
    """Output (and JSON notices) until ``needle`` (text or regex) shows; a watchdog closes the
    socket after ``limit`` s."""
    seen = ""
    found = needle.search if isinstance(needle, re.Pattern) else (lambda text: needle in text)
    watchdog = threading.Timer(limit, lambda: ws.close(1000))
    watchdog.start()
    try:
        while not found(seen):
            msg = ws.receive()
            if msg["type"] == "websocket.close":
                raise AssertionError(f"closed before {needle!r}; got {seen!r}")
            seen += msg.get("bytes", b"").decode(errors="replace") if msg.get("bytes") else msg.get("text", "")
    finally:
        watchdog.cancel()
    return seen


def _type(ws: WebSocketTestSession, text: str) -> None:
    ws.send_text(json.dumps({"type": "input", "data": text}))


def _recordings(portal: Portal, count: int, timeout: float = 15) -> list[Recording]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with portal.db.session() as s:
            rows = list(s.scalars(select(Recording).where(Recording.channel == "web").order_by(Recording.id)))
            s.expunge_all()
        if len(rows) >= count and all(r.ended_at is not None for r in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"{count} web recordings not closed: {rows}")


# ----------------------------------------------------------------------------- the page
def test_page_lists_own_nodes_with_a_token_per_node(term: Portal) -> None:
    c = term.client
    page = c.get("/me/terminal")
    assert page.status_code == 200 and all(f'href="/me/terminal?node={n}"' in page.text for n in NODES)
    assert 'href="/me/terminal?node=pc-hq"' in c.get("/me").text  # linked from the candidate's page
    tokens = {n: _token(c, n) for n in NODES}
    assert tokens["pc-hq"] != tokens["r-hq"]
    assert c.get("/me/terminal?node=nonode").status_code == 404
    assert c.get("/me/terminal?node=pc-hq&lang=en").text.count("Terminal: pc-hq") >= 1
    staff = term.login("trainer")
    assert staff.get("/me/terminal?node=pc-hq").status_code == 403


# ----------------------------------------------------------------------------- the console
def test_shell_relay_resize_exit_and_recording(term: Portal) -> None:
    c = term.client
    with c.websocket_connect(_url("pc-hq", _token(c, "pc-hq")), headers=ORIGIN) as ws:
        _read_until(ws, "lk$ ")
        _type(ws, "echo W-$((6*7))\r")
        _read_until(ws, "W-42")
        _type(ws, "stty size\r")
        _read_until(ws, "30 100")  # the size of the handshake
        ws.send_text(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        ws.send_text("not json")  # ignored, as are unknown types
        ws.send_text(json.dumps({"type": "nope"}))
        _type(ws, "stty size\r")
        _read_until(ws, "40 120")
        _type(ws, "exit 3\r")
        assert '{"type": "exit", "code": 3}' in _read_until(ws, '"exit"')
    assert term.opened == [("bts1-01", "pc-hq")]  # A's own instance, from her seat, never from the request
    (row,) = _recordings(term, 1)
    assert row.node == "pc-hq" and row.candidate_id == term.candidate_ids["A"] and row.size_bytes > 0
    events = list(read_events(term.settings.home / "recordings" / row.path))
    assert "echo W-$((6*7))" in "".join(e.data for e in events if e.code == "i")
    assert "W-42" in "".join(e.data for e in events if e.code == "o")
    assert ("r", "120x40") in [(e.code, e.data) for e in events]


def test_a_node_not_in_the_instance_is_refused_with_a_message(term: Portal) -> None:
    c = term.client
    with c.websocket_connect(_url("nonode", page_token(_csrf(c), "nonode")), headers=ORIGIN) as ws:
        text = _read_until(ws, '"error"')
        assert "n'a pas de machine" in text and "pc-hq" in text
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()
    assert term.opened == []


def _csrf(client: TestClient) -> str:
    return csrf_of(client.get("/me").text)


@pytest.mark.parametrize("case", ["no-session", "trainer", "no-origin", "other-origin", "origin-scheme",
                                  "no-token", "wrong-token", "token-of-other-node", "token-of-other-candidate",
                                  "bad-node"])
def test_handshake_refused(term: Portal, case: str) -> None:
    c = term.client
    token = _token(c, "pc-hq")
    url, headers = _url("pc-hq", token), dict(ORIGIN)
    client = c
    if case == "no-session":
        client = TestClient(c.app)
    elif case == "trainer":
        client = term.login("trainer")
        url = _url("pc-hq", page_token(_csrf_staff(client), "pc-hq"))
    elif case == "no-origin":
        headers = {}
    elif case == "other-origin":
        headers = {"origin": "http://evil.example"}
    elif case == "origin-scheme":
        headers = {"origin": "null"}
    elif case == "no-token":
        url = "/me/terminal/ws?node=pc-hq"
    elif case == "wrong-token":
        url = _url("pc-hq", "0" * 64)
    elif case == "token-of-other-node":
        url = _url("pc-hq", _token(c, "r-hq"))
    elif case == "token-of-other-candidate":
        b = term.login("B")
        url = _url("pc-hq", _token(b, "pc-hq"))
    elif case == "bad-node":
        url = _url("../x", page_token(_csrf(c), "../x"))
    with pytest.raises(WebSocketDisconnect) as exc, client.websocket_connect(url, headers=headers):
        pass
    assert exc.value.code == REFUSED
    assert term.opened == []


def _csrf_staff(client: TestClient) -> str:
    return csrf_of(client.get("/cohorts").text)


def test_read_only_after_the_exam(term: Portal) -> None:
    c = term.client
    token = _token(c, "pc-hq")
    with term.db.session() as s:
        s.get_one(Cohort, term.cohort_id).exam_end = datetime.now(UTC) - timedelta(seconds=1)
    assert "lecture seule" in c.get("/me/terminal?node=pc-hq").text
    with c.websocket_connect(_url("pc-hq", token), headers=ORIGIN) as ws:
        _read_until(ws, "lecture seule")
        _type(ws, "echo RO-$((1+1))\r")
        time.sleep(0.5)
    (row,) = _recordings(term, 1)
    events = list(read_events(term.settings.home / "recordings" / row.path))
    assert ("m", "read-only") in [(e.code, e.data) for e in events]
    assert "RO-" not in "".join(e.data for e in events if e.code == "i")
    assert "RO-2" not in "".join(e.data for e in events if e.code == "o")


def test_becomes_read_only_when_the_exam_ends(term: Portal) -> None:
    c = term.client
    with c.websocket_connect(_url("pc-hq", _token(c, "pc-hq")), headers=ORIGIN) as ws:
        _read_until(ws, "lk$ ")
        _type(ws, "echo A-$((1+1))\r")
        _read_until(ws, "A-2")
        with term.db.session() as s:
            s.get_one(Cohort, term.cohort_id).exam_end = datetime.now(UTC) - timedelta(seconds=1)
        _read_until(ws, "lecture seule")
        _type(ws, "echo B-$((2+2))\r")
        time.sleep(0.5)
    (row,) = _recordings(term, 1)
    events = list(read_events(term.settings.home / "recordings" / row.path))
    assert "B-" not in "".join(e.data for e in events if e.code == "i")
    assert "B-4" not in "".join(e.data for e in events if e.code == "o")


def test_closing_the_browser_ends_the_shell(term: Portal) -> None:
    c = term.client
    with c.websocket_connect(_url("r-hq", _token(c, "r-hq")), headers=ORIGIN) as ws:
        _read_until(ws, "lk$ ")
        _type(ws, "echo P$((1))D=$$.\r")  # the output, not the echo of the input, says P1D=
        out = _read_until(ws, re.compile(r"P1D=\d+\."))
        pid = int(re.search(r"P1D=(\d+)\.", out).group(1))  # type: ignore[union-attr]
        assert Path(f"/proc/{pid}").exists()
    (row,) = _recordings(term, 1)
    assert row.node == "r-hq"
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the shell outlived the browser (or was not reaped)"


def test_open_terminals_are_bounded_per_candidate(term: Portal) -> None:
    c = term.client
    url = _url("pc-hq", _token(c, "pc-hq"))
    with contextlib.ExitStack() as stack:
        for _ in range(MAX_TERMINALS):
            _read_until(stack.enter_context(c.websocket_connect(url, headers=ORIGIN)), "lk$ ")
        with pytest.raises(WebSocketDisconnect) as exc, c.websocket_connect(url, headers=ORIGIN):
            pass
        assert exc.value.code == TOO_MANY
        b = term.login("B")  # another candidate is not limited by A's terminals
        with b.websocket_connect(_url("pc-hq", _token(b, "pc-hq")), headers=ORIGIN) as ws:
            _read_until(ws, "lk$ ")
    assert len(term.opened) == MAX_TERMINALS + 1
    with c.websocket_connect(url, headers=ORIGIN) as ws:  # closed ones are counted out
        _read_until(ws, "lk$ ")
