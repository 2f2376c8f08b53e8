"""HTTP probes run inside a lab namespace: a bounded GET of a JSON API (Prometheus,
Alertmanager), and the grader's own webhook receiver.

The receiver's listening socket is created by a thread that sits in the vantage point's
namespace (``run_in_netns``); a socket keeps the namespace it was created in, so the serving
thread that follows never needs to switch. Its lifetime is bounded, and it records every
POST it gets (time, peer, path, parsed JSON body) as evidence.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from ._frames import FrameSource
from .capture import parse_frame
from labkit.adapters.probes import rendezvous
from labkit.adapters.probes.registry import probe

__all__ = ["WebhookReceiver", "http_get_json", "tcp_opens"]

_BODY_MAX = 1 << 20


@probe("http.http_get_json")
def http_get_json(host: str, port: int, path: str, *, ev_id: str, source: str, check: str | None = None,
                  query: dict[str, str] | None = None, timeout: float = 3.0) -> Evidence:
    """GET ``http://host:port/path?query`` and parse the JSON answer.

    kind "tcp". parsed: {``status`` (HTTP status), ``json`` (the decoded body, or null)}.
    ok=False when no HTTP answer came (refused, timeout) or the body is not JSON.
    """
    netns = assert_in_lab_netns()
    started = utcnow()
    url = path + ("?" + urlencode(query) if query else "")
    base = partial(evidence, ev_id=ev_id, check=check, kind="tcp", source=source, target=f"{host}:{port}",
                   action=f"HTTP GET {url}")
    meta: dict[str, Any] = {"netns": netns, "url": url}
    try:
        ip_literal(host)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", url, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read(_BODY_MAX)
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - the probe could not run: that is the evidence
        return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        return base(started_at=started, ok=False, raw=text[:2000], parsed={"status": resp.status, "json": None},
                    error=f"HTTP {resp.status}: the answer is not JSON", meta=meta)
    return base(started_at=started, ok=True, raw=text[:4000], parsed={"status": resp.status, "json": doc}, meta=meta)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = min(int(self.headers.get("Content-Length") or 0), _BODY_MAX)
        body = self.rfile.read(length) if length else b""
        text = body.decode("utf-8", "replace")
        try:
            doc: Any = json.loads(text)
        except ValueError:
            doc = None
        self.server.record({"at": utcnow().isoformat(), "peer": self.client_address[0],
                            "peer_port": self.client_address[1], "path": self.path,
                            "json": doc, "raw": None if doc is not None else text[:2000]})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 16

    def __init__(self, sock: socket.socket):
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.posts: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def record(self, post: dict[str, Any]) -> None:
        with self.cond:
            self.posts.append(post)
            self.cond.notify_all()


class WebhookReceiver:
    """The grader's helpdesk: an HTTP server on ``address:port`` in namespace ``netns``.

    ``start`` opens the socket inside the namespace and serves in a daemon thread; the
    server stops by itself after ``max_lifetime`` seconds, or at ``stop``. ``wait_for``
    blocks until a POST matches. ``evidence`` returns what it received.
    """

    def __init__(self, address: str, port: int, open_in: Callable[[Callable[[], socket.socket]], socket.socket],
                 *, source: str, max_lifetime: float = 180.0):
        """``open_in(fn)`` runs ``fn`` in the vantage point's namespace and returns its result
        (e.g. ``lambda fn: run_in_netns(ns, fn)`` or the provider's ``run_at``)."""
        self.address, self.port, self.source = address, int(port), source
        self._open_in = open_in
        self.max_lifetime = max_lifetime
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.netns: str | None = None

    def _open(self) -> socket.socket:
        self.netns = assert_in_lab_netns()  # the socket is created in this namespace, never the host's
        addr = ip_literal(self.address)
        sock = socket.socket(socket.AF_INET if addr.version == 4 else socket.AF_INET6, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(addr), self.port))
            sock.listen(16)
        except BaseException:
            sock.close()
            raise
        return sock

    def start(self) -> WebhookReceiver:
        """Open the socket in the namespace and serve; raises if the port cannot be bound."""
        self.started_at = utcnow()
        sock = self._open_in(self._open)
        self._server = _Server(sock)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"webhook:{self.source}", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent; also run by the lifetime timer)."""
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        with self._lock:
            srv = self._server
            if srv is None or self.ended_at is not None:
                return
            self.ended_at = utcnow()
        srv.shutdown()
        srv.server_close()
        with srv.cond:
            srv.cond.notify_all()

    @property
    def posts(self) -> list[dict[str, Any]]:
        srv = self._server
        if srv is None:
            return []
        with srv.cond:
            return list(srv.posts)

    def wait_for(self, match: Any, deadline_s: float) -> dict[str, Any] | None:
        """The first POST for which ``match(post)`` is true, waiting at most ``deadline_s``."""
        srv = self._server
        if srv is None:
            return None
        end = time.monotonic() + deadline_s
        with srv.cond:
            while True:
                for post in srv.posts:
                    if match(post):
                        return post
                left = end - time.monotonic()
                if left <= 0 or self.ended_at is not None:
                    return None
                srv.cond.wait(min(left, 0.2))

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def evidence(self, *, ev_id: str, check: str | None = None) -> Evidence:
        """kind "tcp". parsed: {``posts``: [{at, peer, peer_port, path, json, raw}]}."""
        posts = self.posts
        return evidence(ev_id=ev_id, check=check, kind="tcp", source=self.source,
                        target=f"{self.address}:{self.port}",
                        action=f"HTTP webhook receiver on {self.address}:{self.port}",
                        started_at=self.started_at or utcnow(), ended_at=self.ended_at or utcnow(),
                        ok=self.started_at is not None, raw=json.dumps(posts)[:8000], parsed={"posts": posts},
                        meta={"netns": self.netns, "max_lifetime_s": self.max_lifetime})


_MAX_OPENS = 512


@probe("http.tcp_opens")
def tcp_opens(iface: str, dst: str, dport: int, *, ev_id: str, source: str, check: str | None = None,
              duration_s: float = 60.0, stop: threading.Event | str | None = None,
              ready: threading.Event | str | None = None) -> Evidence:
    """Watch the frames that come IN on ``iface`` (a bridge port in a switch namespace the
    grader owns, facing one node) and record every TCP connection opened (SYN without ACK)
    to ``dst:dport``: who really sent it, whatever address it carries, since the frame
    entered the LAN through this port. Bounded by ``duration_s`` (at most 300 s) and
    ``stop``; ``ready`` is set once the socket listens.

    kind "capture". parsed: {``opens``: [{src, sport, at}], ``frames``, ``stopped_by``}.
    """
    netns = assert_in_lab_netns()
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="capture", source=source, target=f"{iface}",
                   action=f"TCP connections to {dst}:{dport} entering through {iface}")
    meta: dict[str, Any] = {"netns": netns, "iface": iface}
    if not 0 < duration_s <= 300:
        return base(started_at=started, ok=False, error="duration must be in (0, 300] s", meta=meta)
    opens: list[dict[str, Any]] = []
    try:  # not promiscuous: a bridge port's incoming frames are the node's own
        src = FrameSource(iface, duration_s, ready=rendezvous.event(ready), stop=rendezvous.event(stop), promisc=False)
    except OSError as exc:
        return base(started_at=started, ok=False, error=f"cannot open a packet socket: {describe_exc(exc)}",
                    meta=meta)
    try:
        for frame in src:  # incoming on the port: from the node, not towards it
            got = parse_frame(frame)
            if got is None or got[0] != "tcp" or got[3] != dst or got[4] != int(dport):
                continue
            ihl = (frame[14] & 0x0F) * 4 if frame[12:14] == b"\x08\x00" else 40
            flags = frame[14 + ihl + 13] if len(frame) > 14 + ihl + 13 else 0
            if flags & 0x02 and not flags & 0x10 and len(opens) < _MAX_OPENS:  # SYN, not SYN-ACK
                opens.append({"src": got[1], "sport": got[2], "at": utcnow().isoformat()})
    except OSError as exc:
        return base(started_at=started, ok=False, error=f"watch on {iface} failed: {describe_exc(exc)}", meta=meta)
    finally:
        src.close()
    frames, stopped_by = src.frames, src.stopped_by
    raw = f"{frames} frames in on {iface}; {len(opens)} TCP open(s) to {dst}:{dport}: " + ", ".join(
        f"{o['src']}:{o['sport']}" for o in opens[:20])
    return base(started_at=started, ok=True, raw=raw, parsed={"opens": opens, "frames": frames,
                                                               "stopped_by": stopped_by}, meta=meta)


def alerts_in(post: dict[str, Any], alert: str, status: str | None = None) -> list[dict[str, Any]]:
    """The alerts named ``alert`` (with ``status`` when given) of an Alertmanager webhook POST."""
    doc = post.get("json")
    if not isinstance(doc, dict):
        return []
    return [a for a in doc.get("alerts") or [] if isinstance(a, dict)
            and (a.get("labels") or {}).get("alertname") == alert and (status is None or a.get("status") == status)]


def post_time(text: Any) -> datetime | None:
    """An ISO time of a POST (naive: UTC), None if it is not one."""
    try:
        at = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@probe("http.webhook_start")
def webhook_start(address: str, port: int, *, handle: str, ev_id: str, source: str, check: str | None = None,
                  max_lifetime: float = 180.0) -> Evidence:
    """Start the grader's :class:`WebhookReceiver` in this thread's namespace, kept under
    ``handle`` for :func:`webhook_wait` and :func:`webhook_finish`; raises if it cannot listen."""
    started = utcnow()
    receiver = WebhookReceiver(address, port, lambda fn: fn(), source=source,
                               max_lifetime=min(float(max_lifetime), 600.0))
    receiver.start()
    rendezvous.put(handle, receiver)
    return evidence(ev_id=ev_id, check=check, kind="tcp", source=source, target=f"{address}:{port}",
                    action=f"HTTP webhook receiver on {address}:{port}", started_at=started, ok=True,
                    parsed={"listening": True}, meta={"netns": receiver.netns})


@probe("http.webhook_wait")
def webhook_wait(handle: str, *, peer: str, alert: str, status: str, since: str, deadline_s: float, ev_id: str,
                 source: str, check: str | None = None) -> Evidence:
    """Wait at most ``deadline_s`` for a POST from ``peer`` that carries ``alert`` with
    ``status``, sent at or after ``since`` (ISO). parsed: {``post``: the POST or null}."""
    started = utcnow()
    receiver = rendezvous.get(handle)
    since_at = post_time(since) or started

    def match(p: dict[str, Any]) -> bool:
        return (p.get("peer") == peer and bool(alerts_in(p, alert, status))
                and (post_time(p["at"]) or since_at) >= since_at)

    post = receiver.wait_for(match, min(float(deadline_s), 600.0))
    return evidence(ev_id=ev_id, check=check, kind="tcp", source=source, target=handle,
                    action=f"wait for a {status} {alert} notification from {peer}", started_at=started, ok=True,
                    parsed={"post": post})


@probe("http.webhook_finish")
def webhook_finish(handle: str, *, ev_id: str, source: str, check: str | None = None) -> Evidence:
    """Stop the receiver kept under ``handle``; its evidence (every POST it received)."""
    receiver = rendezvous.take(handle)
    if not isinstance(receiver, WebhookReceiver):
        raise RuntimeError(f"no webhook receiver {handle!r} (never started or already finished)")
    receiver.stop()
    return receiver.evidence(ev_id=ev_id, check=check)
