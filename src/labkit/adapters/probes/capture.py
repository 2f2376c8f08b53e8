"""Passive capture on a lab LAN: a raw AF_PACKET socket bound to the segment's bridge.

Run it at ``segment:NAME`` (the LAN's switch namespace, where the bridge is ``br0``). The
bridge is put in promiscuous mode through a packet-socket membership (dropped when the
socket closes), so frames forwarded between the LAN's ports reach the socket too.

The probe keeps no payload: it counts frames and bytes per flow, notes the first bytes a
flow sent when they are a protocol greeting (``SSH-2.0-...``, ``@RSYNCD:``), and searches
every payload for the given markers (also across segment boundaries, in arrival order).
Markers are never written to the evidence: hits name the marker by its index only.
Bounded by ``duration_s``, ``max_bytes`` and an optional ``stop`` event.

:func:`bridge_block` is the grader's silent cut of the same grader-owned layer 2: an
nftables ``bridge`` table in the (switch or link) namespace that drops what ``br0``
forwards, so both ends keep carrier and only protocol timers can notice.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
from functools import partial
from typing import Any

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, utcnow
from ._frames import FrameSource
from labkit.adapters.probes import rendezvous
from labkit.adapters.probes.registry import probe

__all__ = ["BLOCK_TABLE", "CaptureDecoder", "bridge_block", "capture", "check_bounds", "parse_frame"]

RCVBUF = 16 << 20  # a burst of the traffic under test must not overflow the socket
MAX_DURATION_S = 300.0
MAX_BYTES = 256 << 20
_GREETINGS = (b"SSH-", b"@RSYNCD:")
_MAX_FLOWS = 256
_MAX_HITS = 50


def parse_frame(frame: bytes) -> tuple[str, str, int, str, int, bytes] | None:
    """(proto, src, sport, dst, dport, payload) of an Ethernet IPv4 or IPv6 TCP/UDP frame
    (IPv6 without extension headers), else None."""
    ethertype = frame[12:14]
    ip = frame[14:]
    if ethertype == b"\x08\x00" and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        proto_num = ip[9]
        src = socket.inet_ntoa(ip[12:16])
        dst = socket.inet_ntoa(ip[16:20])
        seg = ip[ihl:total] if total >= ihl else ip[ihl:]
    elif ethertype == b"\x86\xdd" and len(ip) >= 40:
        plen = struct.unpack("!H", ip[4:6])[0]
        proto_num = ip[6]
        src = socket.inet_ntop(socket.AF_INET6, ip[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, ip[24:40])
        seg = ip[40:40 + plen]
    else:
        return None
    if proto_num == 6 and len(seg) >= 20:
        sport, dport = struct.unpack("!HH", seg[:4])
        off = (seg[12] >> 4) * 4
        return "tcp", src, sport, dst, dport, seg[off:]
    if proto_num == 17 and len(seg) >= 8:
        sport, dport = struct.unpack("!HH", seg[:4])
        return "udp", src, sport, dst, dport, seg[8:]
    return None


def _other_ipv4(frame: bytes) -> tuple[int, str, str, bytes] | None:
    """(protocol number, src, dst, payload) of an Ethernet IPv4 frame that is neither TCP
    nor UDP, else None."""
    if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00" or frame[14 + 9] in (6, 17):
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    return ip[9], socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), ip[ihl:]


def _account(parsed: tuple[str, str, int, str, int, bytes], flows: dict[tuple[str, str, int, str, int], dict[str, Any]],
             tails: dict[tuple[str, str, int, str, int], bytes], hits: list[dict[str, Any]], needles: list[bytes],
             keep: int) -> None:
    """Count one TCP/UDP frame in its flow, note a greeting, search the markers (across
    segment boundaries: the flow's last ``keep`` bytes are kept)."""
    key = parsed[:5]
    payload = parsed[5]
    flow = flows.get(key)
    if flow is None:
        if len(flows) >= _MAX_FLOWS:
            return
        flow = flows[key] = {"proto": key[0], "src": key[1], "sport": key[2], "dst": key[3],
                             "dport": key[4], "packets": 0, "payload_bytes": 0, "greeting": None}
    flow["packets"] += 1
    if not payload:
        return
    if flow["payload_bytes"] == 0 and payload.startswith(_GREETINGS):
        flow["greeting"] = payload[:64].split(b"\n")[0].decode("ascii", "replace").strip()
    flow["payload_bytes"] += len(payload)
    window = tails.get(key, b"") + payload
    for i, needle in enumerate(needles):
        if needle in window and len(hits) < _MAX_HITS:
            where = f"{key[0]} {key[1]}:{key[2]} → {key[3]}:{key[4]}"
            if not any(h["marker"] == i and h["flow"] == where for h in hits):
                hits.append({"marker": i, "flow": where})
    tails[key] = window[-keep:] if keep else b""


class CaptureDecoder:
    """What :func:`capture` makes of a stream of Ethernet frames, wherever they come from: the
    AF_PACKET socket of a grader bridge (netns, the grader agent) or a pcap stream of a
    hypervisor's link capture (GNS3). ``feed`` each frame in arrival order; it answers False
    once ``max_bytes`` frame bytes were seen (the caller stops there). ``parsed``/``raw`` give
    the evidence's content, identical on every ground."""

    def __init__(self, markers: list[str], max_bytes: int):
        self.needles = [m.encode() for m in markers if m]
        self.keep = max((len(n) for n in self.needles), default=1) - 1
        self.max_bytes = max_bytes
        self.flows: dict[tuple[str, str, int, str, int], dict[str, Any]] = {}
        self.tails: dict[tuple[str, str, int, str, int], bytes] = {}
        self.hits: list[dict[str, Any]] = []
        self.frames = 0
        self.total = 0
        self.non_ip = 0
        self.ip_other: dict[str, int] = {}

    def feed(self, frame: bytes, at: float = 0.0) -> bool:
        """Account one frame (``at``: seconds from the start of the capture, unused here);
        False when the byte bound is reached."""
        self.frames += 1
        self.total += len(frame)
        parsed = parse_frame(frame)
        if parsed is None:
            other = _other_ipv4(frame)
            if other is None:
                self.non_ip += 1
            else:
                # IPv4 that is neither TCP nor UDP (ICMP, ESP, IP-in-IP...): counted per
                # protocol number, and searched for markers too (an inner packet in clear)
                proto_num, o_src, o_dst, o_payload = other
                self.ip_other[str(proto_num)] = self.ip_other.get(str(proto_num), 0) + 1
                for i, needle in enumerate(self.needles):
                    where = f"ip-proto-{proto_num} {o_src} → {o_dst}"
                    if needle in o_payload and len(self.hits) < _MAX_HITS and \
                            not any(h["marker"] == i and h["flow"] == where for h in self.hits):
                        self.hits.append({"marker": i, "flow": where})
        else:
            _account(parsed, self.flows, self.tails, self.hits, self.needles, self.keep)
        return self.total < self.max_bytes

    def parsed(self, stopped_by: str) -> dict[str, Any]:
        flow_list = sorted(self.flows.values(), key=lambda f: -int(f["payload_bytes"]))
        return {"frames": self.frames, "bytes": self.total, "stopped_by": stopped_by, "flows": flow_list,
                "marker_hits": self.hits, "markers_searched": len(self.needles), "non_ip_frames": self.non_ip,
                "ip_other": self.ip_other}

    def raw(self, where: str, stopped_by: str) -> str:
        flow_list = sorted(self.flows.values(), key=lambda f: -int(f["payload_bytes"]))
        lines = [f"{self.frames} frames, {self.total} bytes captured on {where}; stopped by {stopped_by}; "
                 f"{len(self.hits)} marker hit(s) out of {len(self.needles)} marker(s) searched"]
        for f in flow_list[:20]:
            lines.append(f"{f['proto']} {f['src']}:{f['sport']} → {f['dst']}:{f['dport']}: {f['packets']} packets, "
                         f"{f['payload_bytes']} payload bytes"
                         + (f", greeting {f['greeting']!r}" if f["greeting"] else ""))
        return "\n".join(lines)


def check_bounds(duration_s: float, max_bytes: int) -> str | None:
    """The error of out-of-range bounds of :func:`capture` (None when they are fine)."""
    if not 0 < duration_s <= MAX_DURATION_S or not 0 < max_bytes <= MAX_BYTES:
        return f"duration must be in (0, {MAX_DURATION_S:g}] s and max_bytes in (0, {MAX_BYTES}]"
    return None


@probe("capture.capture")
def capture(
    *,
    markers: list[str],
    ev_id: str,
    source: str,
    check: str | None = None,
    iface: str = "br0",
    duration_s: float = 30.0,
    max_bytes: int = 64 << 20,
    ready: threading.Event | str | None = None,
    stop: threading.Event | str | None = None,
) -> Evidence:
    """Capture on ``iface`` until ``stop`` is set, ``duration_s`` passes or ``max_bytes`` frame
    bytes were seen.

    parsed: ``frames``, ``bytes``, ``stopped_by`` (stop | deadline | max_bytes),
    ``flows`` (one per direction: proto, src, sport, dst, dport, packets, payload_bytes,
    greeting), ``marker_hits`` ([{marker: index, flow}]), ``markers_searched``,
    ``non_ip_frames``, ``ip_other`` (IPv4 frames neither TCP nor UDP, by protocol number, e.g.
    {"1": 4} for ICMP; their payloads are searched for markers too). ``ready`` is set once
    the socket listens, so a caller can start the traffic to observe only then. The frames
    are judged by :class:`CaptureDecoder`, which other grounds (GNS3's link captures) share.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is opened
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="capture", source=source, target=iface,
                   action=f"AF_PACKET capture on {iface} (promiscuous), at most {duration_s:g} s / {max_bytes} bytes")
    meta: dict[str, Any] = {"netns": netns}
    if (bad := check_bounds(duration_s, max_bytes)) is not None:
        return base(started_at=started, ok=False, meta=meta, error=bad)
    try:
        src = FrameSource(iface, duration_s, ready=rendezvous.event(ready), stop=rendezvous.event(stop), rcvbuf=RCVBUF)
    except OSError as exc:
        return base(started_at=started, ok=False, error=f"cannot open a packet socket: {describe_exc(exc)}",
                    meta=meta)
    dec = CaptureDecoder(markers, max_bytes)
    try:
        for frame in src:
            if not dec.feed(frame, src.elapsed):
                src.stopped_by = "max_bytes"
                break
    except OSError as exc:
        return base(started_at=started, ok=False, error=f"capture on {iface} failed: {describe_exc(exc)}", meta=meta)
    finally:
        src.close()
    stopped_by = src.stopped_by
    return base(started_at=started, ok=True, raw=dec.raw(iface, stopped_by), parsed=dec.parsed(stopped_by), meta=meta)


BLOCK_TABLE = "labkit_cut"


@probe("capture.bridge_block")
def bridge_block(block: bool, *, ev_id: str, source: str, check: str | None = None) -> Evidence:
    """Drop (``block``) or let through again everything ``br0`` forwards in this thread's
    namespace, with an nftables ``bridge`` table (``nft`` runs as a child of this thread, so
    in its namespace). The ports keep carrier. kind "fault"; parsed: {``requested``
    (block/unblock), ``table``, ``ruleset`` (what ``nft list ruleset`` shows afterwards),
    ``changed_at``}."""
    netns = assert_in_lab_netns()  # refuse to touch the host's namespace
    started = utcnow()
    want = "block" if block else "unblock"
    base = partial(evidence, ev_id=ev_id, check=check, kind="fault", source=source, target=f"netns:{netns}/br0",
                   action=(f"nft: bridge table {BLOCK_TABLE}, forward hook, policy drop" if block
                           else f"nft delete table bridge {BLOCK_TABLE}"))
    meta = {"netns": netns}
    script = (f"table bridge {BLOCK_TABLE} {{\n chain cut {{\n  type filter hook forward priority 0; policy drop;\n"
              f" }}\n}}\n" if block else f"delete table bridge {BLOCK_TABLE}\n")
    changed_at = utcnow()
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=10,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        listing = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, timeout=10,
                                 env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
    present = f"table bridge {BLOCK_TABLE}" in listing
    ok = proc.returncode == 0 and present == block
    parsed = {"requested": want, "table": BLOCK_TABLE, "ruleset": listing[-2000:], "changed_at": changed_at.isoformat()}
    return base(started_at=started, ok=ok, raw=f"$ nft -f - ({want})\n{proc.stderr.strip()}\n{listing}",
                parsed=parsed, meta=meta,
                error=None if ok else f"nft {want} failed: {(proc.stderr or 'table state unchanged').strip()}")
