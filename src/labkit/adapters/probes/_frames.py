"""The frames arriving on one interface of a lab namespace: the loop that every passive
capture probe shares (LAN capture, OSPF, TCP spans, the webhook's port watch).

A raw ``AF_PACKET`` socket bound to the interface (a grader-owned bridge ``br0`` or one of
its ports); with ``promisc``, a packet-socket membership puts the interface in promiscuous
mode for the socket's lifetime only, so frames the bridge forwards between its ports reach
it too. Frames the interface sends out itself are skipped. Iteration ends when ``stop`` is
set or ``duration_s`` passes; a caller that stops for a limit of its own breaks out of the
loop and sets ``stopped_by`` itself.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33


class FrameSource:
    """``for frame in FrameSource(...)``; the socket opens at construction (``OSError`` if it
    cannot), everything else happens when iteration starts; always ``close()`` it."""

    def __init__(self, iface: str, duration_s: float, *, ready: threading.Event | None = None,
                 stop: threading.Event | None = None, promisc: bool = True, rcvbuf: int | None = None):
        self.iface = iface
        self.duration_s = duration_s
        self.ready = ready
        self.stop = stop
        self.promisc = promisc
        self.rcvbuf = rcvbuf
        self.frames = 0  # incoming frames handed out so far
        self.stopped_by = "deadline"
        self.started = time.monotonic()
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))

    def close(self) -> None:
        self.sock.close()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _setup(self) -> None:
        if self.rcvbuf:
            try:  # a bigger buffer than rmem_max (root only), so a burst drops fewer frames
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.sock.bind((self.iface, 0))
        if self.promisc:
            mreq = struct.pack("iHH8s", socket.if_nametoindex(self.iface), PACKET_MR_PROMISC, 0, b"")
            self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        self.sock.settimeout(0.1)

    def __iter__(self) -> Iterator[bytes]:
        self._setup()
        if self.ready is not None:
            self.ready.set()
        self.started = time.monotonic()
        deadline = self.started + self.duration_s
        while True:
            if self.stop is not None and self.stop.is_set():
                self.stopped_by = "stop"
                return
            if time.monotonic() >= deadline:
                return
            try:
                frame, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            self.frames += 1
            yield frame
