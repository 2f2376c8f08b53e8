"""The browser terminal: one xterm.js terminal per node of the candidate's own instance.

- ``GET /me/terminal`` lists the candidate's nodes; ``GET /me/terminal?node=NODE`` is the
  terminal page (xterm.js served by the portal under ``/static/vendor/xterm/``, never a CDN).
- ``WS /me/terminal/ws?node=NODE&token=T&cols=C&rows=R`` is the node's console: the SAME
  :class:`~labkit.interfaces.bastion.Console` as the SSH bastion (the rules of
  :mod:`labkit.usecases.access`, the pty relay with flow control, the asciicast recording,
  here on channel ``web``, read-only once the exam is over).

The handshake is refused (HTTP 403, nothing spawned) unless it carries a candidate's session
cookie, an ``Origin`` that is this portal's own (no other site can open a terminal with the
candidate's cookie), and the page's token: an HMAC of the session's CSRF token and the node,
which only a page of this portal rendered for this session can know. Trainers and assessors
open no terminal: they read the recordings.

Messages: the browser sends JSON text frames ``{"type": "input", "data": STR}`` and
``{"type": "resize", "cols": N, "rows": N}``; the portal sends the console's output as binary
frames and JSON text frames ``{"type": "exit", "code": N}`` / ``{"type": "error", "message": STR}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterator
from typing import Annotated, Any, cast
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, WebSocket
from fastapi.responses import Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from labkit.errors import LabkitError
from labkit.interfaces.bastion import Console, ConsoleHub
from labkit.interfaces.web.app import error_page, render
from labkit.interfaces.web.auth import Principal, allow, current_user
from labkit.usecases.access import AccessRefused
from labkit.usecases.exam import exam_is_over

LOG = logging.getLogger("labkit.web.terminal")
router = APIRouter()
CandidateUser = Annotated[Principal, Depends(allow("candidate"))]

WS_PATH = "/me/terminal/ws"
TERM = "xterm-256color"
NODE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
REFUSED = 4403  # close code of a refused handshake (sent as HTTP 403 before the upgrade)
TOO_MANY = 4429  # close code when the candidate has MAX_TERMINALS open already
MAX_MESSAGE = 1 << 20  # characters of one input message (a large paste; the console applies flow control)
MAX_TERMINALS = 8  # open at once per candidate (each one is a shell in their lab)
OUTPUT_HIGH, OUTPUT_LOW = 1 << 20, 1 << 16  # bytes queued for the browser: pause / resume the console
SIZE_LIMITS = ((2, 500), (2, 200))  # cols, rows


def page_token(csrf: str, node: str) -> str:
    """The token a terminal page hands its websocket: bound to the session and the node."""
    return hmac.new(csrf.encode(), f"terminal:{node}".encode(), hashlib.sha256).hexdigest()


def _hub(websocket: WebSocket) -> ConsoleHub:
    """The portal's consoles (one hub per app, made at the first terminal)."""
    state = websocket.app.state
    hub = getattr(state, "console_hub", None)
    if hub is None:
        hub = ConsoleHub(state.ctx, state.db, getattr(state, "console_read_only_poll", 5.0))
        state.console_hub = hub
    return cast(ConsoleHub, hub)


# ----------------------------------------------------------------------------- the page
def _seat(request: Request, who: Principal) -> dict[str, Any] | None:
    """The candidate's instance, its nodes and whether the exam is over (None: no seat)."""
    from labkit.adapters.db.models import Candidate

    if who.candidate_id is None:
        return None
    with request.app.state.db.session() as s:
        cand = s.get(Candidate, who.candidate_id)
        if cand is None:
            return None
        seat = {"instance": cand.instance, "status": cand.status, "over": exam_is_over(cand.cohort)}
    nodes: list[str] = []
    if seat["status"] == "up":
        with contextlib.suppress(LabkitError):
            nodes = request.app.state.exam.lab.nodes(seat["instance"])
    return {**seat, "nodes": nodes}


@router.get("/me/terminal")
def terminal_page(request: Request, who: CandidateUser, node: str = "") -> Response:
    seat = _seat(request, who)
    if seat is None:
        return error_page(request, 409, "me_no_seat")
    if node and node not in seat["nodes"]:
        return error_page(request, 404, "not_found")
    token = page_token(who.csrf, node) if node else ""
    return render(request, "terminal.html", who=who, seat=seat, node=node, token=token, ws_path=WS_PATH)


# ----------------------------------------------------------------------------- the websocket
class WebConsoleClient:
    """The websocket side of a :class:`Console` (the bastion's SSH channel, for a browser)."""

    def __init__(self, websocket: WebSocket):
        self.ws = websocket
        self.outbox: asyncio.Queue[bytes | dict[str, Any] | None] = asyncio.Queue()
        self.queued = 0  # output bytes not yet sent
        self.output_paused = False
        self.input_open = asyncio.Event()
        self.input_open.set()
        self.console: Console | None = None

    # -- ConsoleClient
    def send(self, data: bytes, stderr: bool) -> None:
        self.queued += len(data)
        self.outbox.put_nowait(data)
        if self.queued > OUTPUT_HIGH and not self.output_paused and self.console is not None:
            self.output_paused = True
            self.console.pause_output()

    def pause_input(self) -> None:
        self.input_open.clear()

    def resume_input(self) -> None:
        self.input_open.set()

    def exited(self, code: int) -> None:
        self.outbox.put_nowait({"type": "exit", "code": code})
        self.outbox.put_nowait(None)

    def fail(self, message: str) -> None:
        self.outbox.put_nowait({"type": "error", "message": message})
        self.outbox.put_nowait(None)

    # -- the two directions
    async def pump(self) -> None:
        """Send what the console wrote, in order; None ends the websocket."""
        while (item := await self.outbox.get()) is not None:
            if isinstance(item, bytes):
                await self.ws.send_bytes(item)
                self.queued -= len(item)
                if self.output_paused and self.queued < OUTPUT_LOW and self.console is not None:
                    self.output_paused = False
                    self.console.resume_output()
            else:
                await self.ws.send_text(json.dumps(item))
        self.input_open.set()  # a receive() waiting for the console to read input sees the end
        with contextlib.suppress(RuntimeError):
            await self.ws.close()

    async def receive(self) -> None:
        """Relay what the browser sends until it leaves (or the console ends the websocket)."""
        assert self.console is not None
        while True:
            await self.input_open.wait()
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            self._handle(message.get("text"))

    def _handle(self, text: str | None) -> None:
        assert self.console is not None
        if not text or len(text) > MAX_MESSAGE:
            return
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("type") == "input" and isinstance(msg.get("data"), str):
            self.console.feed(msg["data"].encode("utf-8", "replace"))
        elif msg.get("type") == "resize":
            size = _size(msg.get("cols"), msg.get("rows"))
            if size is not None:
                self.console.resize(*size)


def _size(cols: object, rows: object) -> tuple[int, int] | None:
    try:
        c, r = int(cast(Any, cols)), int(cast(Any, rows))
    except (TypeError, ValueError):
        return None
    (cmin, cmax), (rmin, rmax) = SIZE_LIMITS
    return (min(max(c, cmin), cmax), min(max(r, rmin), rmax))


def same_origin(websocket: WebSocket) -> bool:
    """The page that opens the websocket is one of this portal's (scheme http(s), same host:port)."""
    origin = websocket.headers.get("origin", "")
    host = websocket.headers.get("host", "")
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


async def _admit(websocket: WebSocket) -> tuple[Principal, str] | None:
    """The candidate and node of an acceptable handshake, else None (the reason is logged)."""
    node = websocket.query_params.get("node", "")
    token = websocket.query_params.get("token", "")
    who = await asyncio.to_thread(current_user, cast(Request, websocket))
    reason = None
    if who is None or who.role != "candidate":
        reason = "no candidate session"
    elif not same_origin(websocket):
        reason = f"origin {websocket.headers.get('origin')!r} is not this portal"
    elif not NODE_RE.fullmatch(node):
        reason = "no valid node"
    elif not hmac.compare_digest(token.encode(), page_token(who.csrf, node).encode()):
        reason = "wrong page token"
    if reason is not None or who is None:
        LOG.info("terminal handshake refused: %s", reason)
        return None
    return who, node


async def terminal_ws(websocket: WebSocket) -> None:
    """The websocket of a terminal page. A plain Starlette route: the app's HTTP dependencies
    (CSRF of unsafe methods) do not apply to a websocket; :func:`_admit` checks it instead."""
    admitted = await _admit(websocket)
    if admitted is None:
        await websocket.close(code=REFUSED)
        return
    who, node = admitted
    size = _size(websocket.query_params.get("cols", 80), websocket.query_params.get("rows", 24)) or (80, 24)
    with slot(websocket, ("terminal", who.user_id), MAX_TERMINALS) as free:
        if not free:
            LOG.info("%s: terminal refused: %d already open", who.login, MAX_TERMINALS)
            await websocket.close(code=TOO_MANY)
            return
        await websocket.accept()
        await _run_console(websocket, f"{who.login}+{node}", size)


@contextlib.contextmanager
def slot(websocket: WebSocket, key: tuple[str, int], limit: int) -> Iterator[bool]:
    """Yields whether one more websocket of ``key`` (kind, user id) may open, and counts it
    while it is open (the event loop is the only writer: no lock needed)."""
    state = websocket.app.state
    if getattr(state, "live_sockets", None) is None:
        state.live_sockets = {}
    live = cast(dict[tuple[str, int], int], state.live_sockets)
    if live.get(key, 0) >= limit:
        yield False
        return
    live[key] = live.get(key, 0) + 1
    try:
        yield True
    finally:
        live[key] -= 1


router.add_websocket_route(WS_PATH, terminal_ws, name="terminal_ws")


async def _run_console(websocket: WebSocket, username: str, size: tuple[int, int]) -> None:
    client = WebConsoleClient(websocket)
    console = client.console = Console(_hub(websocket), client, "web")
    sender = asyncio.create_task(client.pump())
    try:
        if await _open(console, client, username, size):
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await client.receive()
    finally:
        console.hangup()
        client.outbox.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sender, 5)
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError):
                await websocket.close()


async def _open(console: Console, client: WebConsoleClient, username: str, size: tuple[int, int]) -> bool:
    """Start the console; when it cannot start, the browser is told why and the socket closes."""
    try:
        await console.open(username, TERM, size, None)
    except AccessRefused as exc:
        client.fail(str(exc))
        return False
    except Exception:
        LOG.exception("%s: the web terminal could not start", username)
        client.fail("labkit: la session n'a pas pu démarrer ; prévenez le formateur "
                    "(the session could not start; tell your trainer).")
        return False
    return not console.done
