"""Watching a console live, read-only: a trainer (or an assessor, or the candidate themself)
follows a recording while it is being written, in xterm.js.

- ``GET /recordings/{recording_id}/watch``: the page (who may read the recording may watch it).
- ``WS /recordings/{recording_id}/live?token=T``: the recording's output from its start, then
  what the console writes as it is written (each event is flushed to the file as it happens),
  until the session ends. Nothing is ever sent to the console: there is no input path at all.

The handshake needs the session cookie, this portal's Origin and the page's token (as for the
terminal), and the same authorization as the recording's page (:func:`.auth.allow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import IO, Annotated, Any, cast

from fastapi import APIRouter, Depends, Request, WebSocket
from fastapi.responses import Response

from labkit.adapters.db.models import Recording
from labkit.errors import UserError
from labkit.interfaces.web.app import render
from labkit.interfaces.web.auth import Forbidden, LoginRequired, NotFound, Principal, allow, current_user
from labkit.interfaces.web.terminal import REFUSED, TOO_MANY, page_token, same_origin, slot

LOG = logging.getLogger("labkit.web.watch")
router = APIRouter()
may_read = allow("trainer", "assessor", "candidate")  # a candidate: only their own recordings
Reader = Annotated[Principal, Depends(may_read)]

POLL = 0.3  # seconds between two looks at a recording that has not grown
MAX_WATCH = 12 * 3600.0  # seconds: no watch outlives an exam day
MAX_WATCHERS = 8  # open at once per user


def watch_token(csrf: str, recording_id: int) -> str:
    return page_token(csrf, f"watch:{recording_id}")


def _recording(request: Request | WebSocket, recording_id: int) -> tuple[dict[str, Any], Path]:
    with request.app.state.db.session() as s:
        rec = s.get(Recording, recording_id)
        if rec is None:
            raise NotFound()
        view = {"id": rec.id, "node": rec.node, "channel": rec.channel, "candidate": rec.candidate.name,
                "ended": rec.ended_at is not None}
        try:
            path = request.app.state.exam.recording_file(rec)
        except UserError:
            raise NotFound() from None
    return view, path


@router.get("/recordings/{recording_id}/watch")
def watch_page(request: Request, recording_id: int, who: Reader) -> Response:
    view, _path = _recording(request, recording_id)
    return render(request, "watch.html", who=who, rec=view, token=watch_token(who.csrf, recording_id),
                  ws_path=f"/recordings/{recording_id}/live")


async def _admit(websocket: WebSocket) -> tuple[Principal, int] | None:
    who = await asyncio.to_thread(current_user, cast(Request, websocket))
    raw = str(websocket.path_params.get("recording_id", ""))
    if who is None or not same_origin(websocket) or not raw.isdigit():
        return None
    try:  # the recording page's own rule: role, and a candidate's own recording only
        await asyncio.to_thread(may_read, cast(Request, websocket), who)
    except (LoginRequired, Forbidden, NotFound):
        return None
    token = websocket.query_params.get("token", "")
    return (who, int(raw)) if hmac.compare_digest(token.encode(), watch_token(who.csrf, int(raw)).encode()) else None


async def watch_ws(websocket: WebSocket) -> None:
    admitted = await _admit(websocket)
    if admitted is None:
        LOG.info("watch handshake refused")
        await websocket.close(code=REFUSED)
        return
    who, recording_id = admitted
    with slot(websocket, ("watch", who.user_id), MAX_WATCHERS) as free:
        if not free:
            await websocket.close(code=TOO_MANY)
            return
        _view, path = await asyncio.to_thread(_recording, websocket, recording_id)
        await websocket.accept()
        await _follow(websocket, path, recording_id)


router.add_websocket_route("/recordings/{recording_id}/live", watch_ws, name="watch_ws")


async def _follow(websocket: WebSocket, path: Path, recording_id: int) -> None:
    """Send the recording, then its new events, until the session ends or the viewer leaves."""
    gone = asyncio.Event()
    listener = asyncio.create_task(_until_disconnect(websocket, gone))
    try:
        with path.open("rb") as fh:
            await _send_header(websocket, fh.readline())
            deadline = time.monotonic() + MAX_WATCH
            while not gone.is_set() and time.monotonic() < deadline:
                if await _send_new_events(websocket, fh):
                    continue
                if await asyncio.to_thread(_ended, websocket, recording_id):
                    await _send_new_events(websocket, fh)  # what was written before it ended
                    await websocket.send_text(json.dumps({"type": "exit", "code": 0}))
                    break
                await asyncio.sleep(POLL)
    except (OSError, RuntimeError) as exc:  # the file went away, or the viewer did
        LOG.info("watch of recording %s ended: %s", recording_id, exc)
    finally:
        listener.cancel()
        with contextlib.suppress(RuntimeError):
            await websocket.close()


async def _until_disconnect(websocket: WebSocket, gone: asyncio.Event) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass  # a viewer sends nothing that matters
    gone.set()


def _ended(websocket: WebSocket, recording_id: int) -> bool:
    with websocket.app.state.db.session() as s:
        rec = s.get(Recording, recording_id)
        return rec is None or rec.ended_at is not None


async def _send_header(websocket: WebSocket, line: bytes) -> None:
    try:
        head = json.loads(line)
        cols, rows = int(head["width"]), int(head["height"])
    except (ValueError, KeyError, TypeError):
        return
    await websocket.send_text(json.dumps({"type": "size", "cols": cols, "rows": rows}))


async def _send_new_events(websocket: WebSocket, fh: IO[bytes]) -> bool:
    """Send the complete lines written since the last call; False when there was none."""
    sent = False
    while True:
        start = fh.tell()
        line = fh.readline()
        if not line.endswith(b"\n"):
            fh.seek(start)  # a line being written: read it whole next time
            return sent
        sent = True
        await _send_event(websocket, line)


async def _send_event(websocket: WebSocket, line: bytes) -> None:
    try:
        _t, code, data = json.loads(line)
    except (ValueError, TypeError):
        return
    if code == "o" and isinstance(data, str):
        await websocket.send_bytes(data.encode())
    elif code == "r" and isinstance(data, str) and "x" in data:
        cols, _, rows = data.partition("x")
        if cols.isdigit() and rows.isdigit():
            await websocket.send_text(json.dumps({"type": "size", "cols": int(cols), "rows": int(rows)}))
