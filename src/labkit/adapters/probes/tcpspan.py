"""How many bytes each TCP connection on a LAN carried, from the TCP sequence numbers seen on
the segment's bridge (a raw ``AF_PACKET`` socket in the switch namespace the grader owns).

A packet socket may drop frames of a fast burst; counting payload bytes then undercounts. The
sequence numbers do not: the bytes a direction carried are the highest ``seq + len`` seen,
minus the initial sequence number (from the SYN, when the connection opened during the
capture). Dropped frames in between change nothing. The probe keeps, per direction, the
endpoints, the byte span, the payload bytes actually seen, whether the SYN was seen, and the
first line of the first payload when it is a protocol greeting (``SSH-``...). Nothing else of
the payload is kept. Bounded in time and frames; the socket is opened in the probe thread's
namespace only after the namespace check.
"""

from __future__ import annotations

import socket
import struct
import threading
from functools import partial
from typing import Any

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, utcnow
from ._frames import FrameSource
from labkit.adapters.probes import rendezvous
from labkit.adapters.probes.registry import probe

MAX_DURATION_S = 300.0
MAX_FRAMES = 2_000_000
MAX_FLOWS = 256
RCVBUF = 16 << 20
_GREETINGS = (b"SSH-", b"@RSYNCD:", b"HTTP/", b"GET ", b"PUT ", b"POST ")


def parse_tcp(frame: bytes) -> tuple[str, int, str, int, int, int, bytes] | None:
    """(src, sport, dst, dport, seq, flags, payload) of an Ethernet/IPv4/TCP frame, else None."""
    if len(frame) < 14 + 20:
        return None
    if struct.unpack("!H", frame[12:14])[0] != 0x0800:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ihl < 20 or ip[9] != 6 or len(ip) < ihl + 20:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:total] if ihl < total <= len(ip) else ip[ihl:]
    if len(tcp) < 20:
        return None
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    off = (tcp[12] >> 4) * 4
    flags = tcp[13]
    return (socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport, seq, flags, tcp[off:])


class FlowSpan:
    """One direction of one TCP connection."""

    def __init__(self, key: tuple[str, int, str, int]):
        self.key = key
        self.isn: int | None = None  # sequence number of the SYN
        self.first: int | None = None  # first sequence number seen, when the SYN was not
        self.end = 0  # highest (seq + len - base) seen
        self.seen = 0
        self.packets = 0
        self.greeting: str | None = None

    def add(self, seq: int, flags: int, payload: bytes) -> None:
        self.packets += 1
        if flags & 0x02:  # SYN
            self.isn = seq
            return
        if self.isn is None and self.first is None:
            self.first = seq
        base = (self.isn + 1) if self.isn is not None else int(self.first or 0)
        rel = (seq - base) % (1 << 32)
        if rel > (1 << 31):  # a retransmission from before the base: ignore
            return
        if payload:
            self.seen += len(payload)
            self.end = max(self.end, rel + len(payload))
            if rel == 0 and self.greeting is None and payload.startswith(_GREETINGS):
                self.greeting = payload[:64].split(b"\n")[0].decode("ascii", "replace").strip()

    def row(self) -> dict[str, Any]:
        src, sport, dst, dport = self.key
        return {"proto": "tcp", "src": src, "sport": sport, "dst": dst, "dport": dport, "packets": self.packets,
                "bytes": self.end, "payload_seen": self.seen, "syn_seen": self.isn is not None,
                "greeting": self.greeting}


@probe("tcpspan.tcp_span")
def tcp_span(*, ev_id: str, source: str, check: str | None = None, iface: str = "br0", duration_s: float = 30.0,
             ready: threading.Event | str | None = None, stop: threading.Event | str | None = None) -> Evidence:
    """Capture on ``iface`` until ``stop`` is set or ``duration_s`` passes. parsed: ``flows``
    (one row per direction: src, sport, dst, dport, packets, bytes from sequence numbers,
    payload_seen, syn_seen, greeting), ``frames``, ``stopped_by``."""
    netns = assert_in_lab_netns()
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="capture", source=source, target=iface,
                   action=f"AF_PACKET capture on {iface}: TCP sequence numbers per connection, at most "
                          f"{duration_s:g} s")
    meta: dict[str, Any] = {"netns": netns}
    if not 0 < duration_s <= MAX_DURATION_S:
        return base(started_at=started, ok=False, meta=meta, error=f"duration must be in (0, {MAX_DURATION_S:g}] s")
    try:
        src = FrameSource(iface, duration_s, ready=rendezvous.event(ready), stop=rendezvous.event(stop), rcvbuf=RCVBUF)
    except OSError as exc:
        return base(started_at=started, ok=False, error=f"cannot open a packet socket: {describe_exc(exc)}", meta=meta)
    flows: dict[tuple[str, int, str, int], FlowSpan] = {}
    try:
        for frame in src:
            t = parse_tcp(frame)
            if t is not None:
                key = (t[0], t[1], t[2], t[3])
                flow = flows.get(key)
                if flow is None and len(flows) < MAX_FLOWS:
                    flow = flows[key] = FlowSpan(key)
                if flow is not None:
                    flow.add(t[4], t[5], t[6])
            if src.frames >= MAX_FRAMES:
                src.stopped_by = "max_frames"
                break
    except OSError as exc:
        return base(started_at=started, ok=False, error=f"capture on {iface} failed: {describe_exc(exc)}", meta=meta)
    finally:
        src.close()
    frames, stopped_by = src.frames, src.stopped_by
    rows = sorted((f.row() for f in flows.values()), key=lambda r: -int(r["bytes"]))
    lines = [f"{frames} frames on {iface}; stopped by {stopped_by}"]
    lines += [f"tcp {r['src']}:{r['sport']} → {r['dst']}:{r['dport']}: {r['bytes']} bytes by sequence numbers "
              f"({r['payload_seen']} seen, SYN {'seen' if r['syn_seen'] else 'not seen'})"
              + (f", greeting {r['greeting']!r}" if r["greeting"] else "") for r in rows[:20]]
    return base(started_at=started, ok=True, raw="\n".join(lines),
                parsed={"frames": frames, "stopped_by": stopped_by, "flows": rows}, meta=meta)


__all__ = ["FlowSpan", "parse_tcp", "tcp_span"]
