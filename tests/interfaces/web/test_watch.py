"""Watching a console live, read-only (interfaces/web/watch.py): a finished recording is
replayed then ends; a recording being written is followed as it grows; who may watch is who
may read the recording; the handshake needs the session, the portal's Origin, the page token."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from labkit.adapters.db import repo
from labkit.adapters.recording.asciicast import CastHeader, CastWriter, recording_path
from labkit.interfaces.web.terminal import REFUSED
from labkit.interfaces.web.watch import watch_token
from tests.interfaces.web.conftest import Portal, csrf_of
from tests.interfaces.web.test_terminal import ORIGIN, _read_until


def _token(client: TestClient, recording_id: int) -> str:
    page = client.get(f"/recordings/{recording_id}/watch")
    assert page.status_code == 200, page.text
    token = page.text.split('data-token="', 1)[1].split('"', 1)[0]
    return token


def _url(recording_id: int, token: str) -> str:
    return f"/recordings/{recording_id}/live?token={token}"


def test_a_finished_recording_is_replayed_then_ends(portal: Portal) -> None:
    c = portal.login("trainer", portal.client)
    rec = portal.recording_ids["A"]
    with c.websocket_connect(_url(rec, _token(c, rec)), headers=ORIGIN) as ws:
        assert json.loads(ws.receive_text()) == {"type": "size", "cols": 80, "rows": 24}
        seen = _read_until(ws, '"exit"')
        assert f"secret-of-{portal.logins['A']}" in seen and "ip route" in seen
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()


def test_a_live_recording_is_followed_as_it_grows(portal: Portal) -> None:
    c = portal.login("trainer", portal.client)
    root = portal.settings.home / "recordings"
    path = recording_path(root, "bts1", portal.logins["A"], "r1", "web", datetime.now(UTC))
    writer = CastWriter(path, CastHeader(width=100, height=30, timestamp=0, title="live"))
    with portal.db.session() as s:
        row = repo.add_recording(s, portal.candidate_ids["A"], "r1", "web", str(path.relative_to(root)))
        s.flush()
        rec_id = row.id
    assert f"/recordings/{rec_id}/watch" in c.get(f"/candidates/{portal.candidate_ids['A']}").text  # linked
    with c.websocket_connect(_url(rec_id, _token(c, rec_id)), headers=ORIGIN) as ws:
        assert json.loads(ws.receive_text())["cols"] == 100
        writer.output("première ligne\r\n".encode())
        _read_until(ws, "première ligne")
        writer.input(b"typed-secret\r")  # what the candidate types is not echoed by the watch itself
        writer.resize(120, 40)
        assert json.loads(ws.receive_text()) == {"type": "size", "cols": 120, "rows": 40}
        writer.output(b"second\r\n")
        assert "typed-secret" not in _read_until(ws, "second")
        ws.send_text(json.dumps({"type": "input", "data": "echo nope\r"}))  # a viewer cannot type
        writer.close()
        with portal.db.session() as s:
            repo.finish_recording(s, rec_id, writer.size())
        assert '"exit"' in _read_until(ws, '"exit"')
    assert "nope" not in path.read_text()


@pytest.mark.parametrize("case", ["own-candidate", "other-candidate", "assessor", "anonymous", "no-origin",
                                  "other-origin", "wrong-token", "token-of-other-recording", "missing"])
def test_who_may_watch(portal: Portal, case: str) -> None:
    rec_a, rec_b = portal.recording_ids["A"], portal.recording_ids["B"]
    staff = portal.login("trainer")
    url, headers, client = _url(rec_a, _token(staff, rec_a)), dict(ORIGIN), staff
    allowed = case in ("own-candidate", "assessor")
    if case in ("own-candidate", "other-candidate"):
        client = portal.login("A" if case == "own-candidate" else "B")
        url = _url(rec_a, watch_token(csrf_of(client.get("/me").text), rec_a))
        if case == "other-candidate":
            assert client.get(f"/recordings/{rec_a}/watch").status_code == 404
    elif case == "assessor":
        client = portal.login("assessor")
        url = _url(rec_a, _token(client, rec_a))
    elif case == "anonymous":
        client = TestClient(portal.client.app)
    elif case == "no-origin":
        headers = {}
    elif case == "other-origin":
        headers = {"origin": "https://evil.example"}
    elif case == "wrong-token":
        url = _url(rec_a, "f" * 64)
    elif case == "token-of-other-recording":
        url = _url(rec_a, _token(staff, rec_b))
    elif case == "missing":
        url = _url(987654, watch_token(csrf_of(staff.get("/cohorts").text), 987654))
    if allowed:
        with client.websocket_connect(url, headers=headers) as ws:
            assert f"secret-of-{portal.logins['A']}" in _read_until(ws, '"exit"')
        return
    with pytest.raises(WebSocketDisconnect) as exc, client.websocket_connect(url, headers=headers):
        pass
    assert exc.value.code == REFUSED
