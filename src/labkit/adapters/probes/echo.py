"""Grader-to-grader echo: proof that packets really crossed the lab between two probes.

An ICMP echo is answered by whichever box owns the target address: a candidate's router
that puts the far probe's address on its loopback answers for it. This probe runs both
ends itself. A responder socket is opened in the far probe's namespace, on a random port of
that probe's address; the near probe sends datagrams that each carry a fresh random nonce;
the responder answers ``HMAC-SHA256(key, nonce)`` with a key that exists only in the
grader's memory for this one call. A reply counts only if its MAC is right, so no box in
between can answer in the far probe's place.

Both sockets are created by threads that sit in their lab namespaces (and refuse
otherwise); a socket stays in the namespace it was created in, so the exchange itself can
run from any thread of the grader.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit.adapters.netns.nsutil import assert_in_lab_netns

from ._common import ip_literal

__all__ = ["EchoPair", "open_udp"]

NONCE_LEN = 16
MAC_LEN = 32
MAX_COUNT = 100
MAX_DEADLINE_S = 120.0


def open_udp(bind_ip: str | None = None) -> socket.socket:
    """A UDP socket in the calling thread's lab namespace (bound to ``bind_ip``, random port)."""
    assert_in_lab_netns()
    family = socket.AF_INET6 if bind_ip and ip_literal(bind_ip).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((bind_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class EchoPair:
    """A sender socket at one probe and a responder socket at another, with a secret key."""

    sender: socket.socket
    responder: socket.socket
    target_ip: str
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    received: int = 0  # datagrams the responder got with a nonce
    peers: set[str] = field(default_factory=set)  # source addresses the responder saw
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _wake: tuple[int, int] | None = None  # a pipe that ends the responder's wait at once

    @classmethod
    def open(cls, open_at: Callable[[str, Callable[[], socket.socket]], socket.socket], src: str, dst: str,
             target_ip: str) -> EchoPair:
        """``open_at(where, fn)`` runs ``fn`` in the namespace of ``where`` (provider.run_at)."""
        responder = open_at(dst, lambda: open_udp(target_ip))
        try:
            sender = open_at(src, lambda: open_udp(None))
        except BaseException:
            responder.close()
            raise
        return cls(sender=sender, responder=responder, target_ip=target_ip)

    @property
    def port(self) -> int:
        return int(self.responder.getsockname()[1])

    def mac(self, nonce: bytes) -> bytes:
        return hmac.new(self.key, nonce, hashlib.sha256).digest()

    # ------------------------------------------------------------ responder
    def _serve(self) -> None:
        assert self._wake is not None
        while not self._stop.is_set():
            fd = self.responder.fileno()
            readable, _, _ = select.select([fd, self._wake[0]], [], [], 1.0)
            if fd not in readable:
                continue
            try:
                data, addr = self.responder.recvfrom(2048)
            except OSError:
                continue
            if len(data) != NONCE_LEN:
                continue
            self.received += 1
            self.peers.add(str(addr[0]))
            try:
                self.responder.sendto(data + self.mac(data), addr)
            except OSError:
                pass

    def __enter__(self) -> EchoPair:
        self._wake = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="echo-responder", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._wake is not None:
            os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(2)
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        self.sender.close()
        self.responder.close()

    # --------------------------------------------------------------- sender
    def _send(self) -> tuple[bytes | None, str | None]:
        nonce = secrets.token_bytes(NONCE_LEN)
        try:
            self.sender.sendto(nonce, (self.target_ip, self.port))
        except OSError as exc:
            return None, exc.strerror or str(exc)
        return nonce, None

    def _replies(self, until: float, pending: dict[bytes, float]) -> tuple[list[float], int]:
        """Wait until ``until`` (monotonic) for replies; return RTTs of verified ones and
        the number of forged ones (wrong MAC, or not from the responder's address/port)."""
        rtts: list[float] = []
        forged = 0
        while (delay := until - time.monotonic()) > 0 and pending:
            readable, _, _ = select.select([self.sender], [], [], delay)
            if not readable:
                break
            try:
                data, addr = self.sender.recvfrom(2048)
            except OSError:
                continue
            nonce, mac = data[:NONCE_LEN], data[NONCE_LEN:]
            if nonce not in pending:
                forged += 1
                continue
            good = (len(mac) == MAC_LEN and hmac.compare_digest(mac, self.mac(nonce))
                    and ip_literal(str(addr[0]).split("%")[0]) == ip_literal(self.target_ip)
                    and int(addr[1]) == self.port)
            if good:
                rtts.append((time.monotonic() - pending.pop(nonce)) * 1000)
            else:
                forged += 1
        return rtts, forged

    def exchange(self, count: int = 3, timeout: float = 1.0, interval: float = 0.05) -> dict[str, Any]:
        """Send ``count`` nonces; wait up to ``timeout`` after the last one for replies."""
        count = max(1, min(count, MAX_COUNT))
        pending: dict[bytes, float] = {}
        errors: list[str] = []
        rtts: list[float] = []
        forged = 0
        for i in range(count):
            nonce, err = self._send()
            if nonce is not None:
                pending[nonce] = time.monotonic()
            elif err:
                errors.append(err)
            if i < count - 1:
                r, f = self._replies(time.monotonic() + interval, pending)
                rtts += r
                forged += f
        r, f = self._replies(time.monotonic() + timeout, pending)
        rtts += r
        forged += f
        return {"reachable": bool(rtts), "sent": count, "verified": len(rtts), "forged": forged,
                "rtt_ms": [round(x, 3) for x in rtts], "responder_received": self.received,
                "responder_peers": sorted(self.peers), "send_errors": sorted(set(errors)), "port": self.port}

    def wait(self, deadline_s: float, interval: float = 0.2) -> dict[str, Any]:
        """Send a fresh nonce every ``interval`` until one is answered with a valid MAC or
        ``deadline_s`` passes; ``first_reply_after_s`` is None if none was."""
        deadline_s = max(0.1, min(deadline_s, MAX_DEADLINE_S))
        t0 = time.monotonic()
        pending: dict[bytes, float] = {}
        sent = forged = 0
        first: float | None = None
        while first is None and time.monotonic() - t0 < deadline_s:
            nonce, _ = self._send()
            sent += 1
            if nonce is not None:
                pending[nonce] = time.monotonic()
            rtts, f = self._replies(min(time.monotonic() + interval, t0 + deadline_s), pending)
            forged += f
            if rtts:
                first = time.monotonic() - t0
        return {"reachable": first is not None, "first_reply_after_s": None if first is None else round(first, 3),
                "sent": sent, "forged": forged, "deadline_s": deadline_s, "responder_received": self.received,
                "port": self.port}
