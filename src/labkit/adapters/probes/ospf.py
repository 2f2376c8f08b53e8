"""OSPFv2 seen on the wire: a passive capture on a point-to-point link's bridge.

Run :func:`capture_ospf` at ``link:NAME`` (the grader-owned namespace the link passes
through, bridge ``br0``). It opens a raw ``AF_PACKET`` socket (promiscuous through a packet
membership, dropped when the socket closes), keeps IPv4 packets of protocol 89 only, and
decodes what the routers put on the wire themselves:

- Hello: source address, router id, area id, hello and dead intervals, network mask,
  priority, DR, BDR and the neighbour list;
- LS Update: every router-LSA with its links (point-to-point, transit, stub, virtual);
  other LSA types are counted by type.

Nothing is sent. Bounded by ``duration_s``, ``max_frames`` and an optional ``stop`` event.
Identical hellos are folded into one row with a count and first/last offsets (seconds
from the start of the capture), so the evidence stays small.
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

__all__ = ["LINK_TYPES", "OspfDecoder", "capture_ospf", "check_bounds", "parse_ospf_frame"]

IPPROTO_OSPF = 89
MAX_DURATION_S = 120.0
MAX_FRAMES = 20000
_MAX_ROWS = 500
PACKET_TYPES = {1: "hello", 2: "db-description", 3: "ls-request", 4: "ls-update", 5: "ls-ack"}
LINK_TYPES = {1: "p2p", 2: "transit", 3: "stub", 4: "virtual"}


def _ip(b: bytes) -> str:
    return socket.inet_ntoa(b)


def _router_lsa(body: bytes) -> dict[str, Any] | None:
    if len(body) < 4:
        return None
    flags, _, n = struct.unpack("!BBH", body[:4])
    links = []
    off = 4
    for _ in range(n):
        if off + 12 > len(body):
            return None
        lid, ldata, ltype, ntos, metric = struct.unpack("!4s4sBBH", body[off:off + 12])
        links.append({"type": LINK_TYPES.get(ltype, str(ltype)), "id": _ip(lid), "data": _ip(ldata),
                      "metric": metric})
        off += 12 + 4 * ntos
    return {"flags": flags, "links": links}


def _ls_update(body: bytes) -> list[dict[str, Any]] | None:
    if len(body) < 4:
        return None
    (count,) = struct.unpack("!I", body[:4])
    lsas = []
    off = 4
    for _ in range(min(count, 1000)):
        if off + 20 > len(body):
            return None
        age, _opts, ltype, lsid, adv, seq, _ck, length = struct.unpack("!HBB4s4sIHH", body[off:off + 20])
        if length < 20 or off + length > len(body):
            return None
        row: dict[str, Any] = {"type": ltype, "lsid": _ip(lsid), "adv_router": _ip(adv), "seq": f"{seq:08x}",
                               "age": age}
        if ltype == 1:
            parsed = _router_lsa(body[off + 20:off + length])
            if parsed is None:
                return None
            row.update(parsed)
        elif ltype in (2, 3, 5) and length >= 24:
            row["mask"] = _ip(body[off + 20:off + 24])
        lsas.append(row)
        off += length
    return lsas


def parse_ospf_frame(frame: bytes) -> dict[str, Any] | None:
    """The OSPFv2 packet carried by an Ethernet IPv4 frame, decoded; None if the frame is
    not OSPF (or not well formed). ``type`` is hello, ls-update, db-description, ls-request
    or ls-ack; a hello adds hello/dead intervals, mask, priority, dr, bdr, neighbors; an LS
    update adds ``lsas`` (router-LSAs with their ``links``)."""
    if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ihl < 20 or ip[9] != IPPROTO_OSPF:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    pkt = ip[ihl:total] if ihl <= total <= len(ip) else ip[ihl:]
    if len(pkt) < 24:
        return None
    version, ptype, plen, rid, area = struct.unpack("!BBH4s4s", pkt[:12])
    if version != 2 or plen < 24 or plen > len(pkt):
        return None
    body = pkt[24:plen]
    out: dict[str, Any] = {"src": _ip(ip[12:16]), "dst": _ip(ip[16:20]),
                           "type": PACKET_TYPES.get(ptype, str(ptype)),
                           "router_id": _ip(rid), "area": _ip(area)}
    if ptype == 1:
        if len(body) < 20:
            return None
        mask, hello, _opts, prio, dead, dr, bdr = struct.unpack("!4sHBBI4s4s", body[:20])
        nbrs = [_ip(body[i:i + 4]) for i in range(20, len(body) - 3, 4)]
        out.update({"mask": _ip(mask), "hello": hello, "dead": dead, "priority": prio, "dr": _ip(dr),
                    "bdr": _ip(bdr), "neighbors": nbrs})
    elif ptype == 4:
        lsas = _ls_update(body)
        if lsas is None:
            return None
        out["lsas"] = lsas
    return out


def _record(pkt: dict[str, Any], at: float, hellos: dict[tuple[Any, ...], dict[str, Any]],
            lsas: dict[tuple[Any, ...], dict[str, Any]]) -> None:
    """Keep distinct hellos (with a count and first/last time) and distinct LSAs."""
    if pkt["type"] == "hello":
        key = (pkt["src"], pkt["router_id"], pkt["area"], pkt["hello"], pkt["dead"], pkt["mask"],
               pkt["priority"], pkt["dr"], pkt["bdr"], tuple(pkt["neighbors"]))
        row = hellos.get(key)
        if row is None:
            if len(hellos) >= _MAX_ROWS:
                return
            row = hellos[key] = {k: pkt[k] for k in ("src", "router_id", "area", "hello", "dead", "mask",
                                                     "priority", "dr", "bdr", "neighbors")}
            row.update(count=0, first_s=at)
        row["count"] += 1
        row["last_s"] = at
    elif pkt["type"] == "ls-update":
        for lsa in pkt["lsas"]:
            lkey = (lsa["type"], lsa["lsid"], lsa["adv_router"], lsa["seq"])
            if lkey not in lsas and len(lsas) < _MAX_ROWS:
                lsas[lkey] = {**lsa, "from": pkt["src"], "first_s": at}


class OspfDecoder:
    """What :func:`capture_ospf` makes of a stream of Ethernet frames, wherever they come
    from (the AF_PACKET socket of a grader bridge, or a hypervisor's pcap stream of a link,
    GNS3): ``feed`` each frame with its offset in seconds from the start of the capture; it
    answers False once ``max_frames`` frames were read. ``parsed``/``raw`` give the evidence's
    content, identical on every ground."""

    def __init__(self, max_frames: int):
        self.max_frames = max_frames
        self.frames = 0
        self.hellos: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.lsas: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.by_type: dict[str, int] = {}
        self.ospf = 0
        self.malformed = 0

    def feed(self, frame: bytes, at: float) -> bool:
        self.frames += 1
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00" and frame[14 + 9] == IPPROTO_OSPF:
            pkt = parse_ospf_frame(frame)
            if pkt is None:
                self.malformed += 1
            else:
                self.ospf += 1
                self.by_type[pkt["type"]] = self.by_type.get(pkt["type"], 0) + 1
                _record(pkt, round(at, 3), self.hellos, self.lsas)
        return self.frames < self.max_frames

    def parsed(self, stopped_by: str, elapsed: float) -> dict[str, Any]:
        return {"frames": self.frames, "ospf_packets": self.ospf, "by_type": self.by_type,
                "malformed": self.malformed, "stopped_by": stopped_by, "duration_s": round(elapsed, 3),
                "hellos": list(self.hellos.values()), "lsas": list(self.lsas.values())}

    def raw(self, where: str, stopped_by: str, elapsed: float) -> str:
        elapsed = round(elapsed, 3)
        lines = [f"{self.frames} frames read on {where} in {elapsed:g} s, {self.ospf} OSPF packets "
                 f"({', '.join(f'{k} {v}' for k, v in sorted(self.by_type.items())) or 'none'}); "
                 f"stopped by {stopped_by}"]
        for h in self.hellos.values():
            lines.append(f"hello {h['src']} rid {h['router_id']} area {h['area']} hello {h['hello']}s "
                         f"dead {h['dead']}s DR {h['dr']} BDR {h['bdr']} neighbours "
                         f"{','.join(h['neighbors']) or '-'} x{h['count']}")
        for lsa in self.lsas.values():
            links = "; ".join(f"{x['type']} {x['id']}/{x['data']}" for x in lsa.get("links", []))
            lines.append(f"LSA type {lsa['type']} adv {lsa['adv_router']} id {lsa['lsid']} seq {lsa['seq']}"
                         + (f": {links}" if links else ""))
        return "\n".join(lines)


def check_bounds(duration_s: float, max_frames: int) -> str | None:
    """The error of out-of-range bounds of :func:`capture_ospf` (None when they are fine)."""
    if not 0 < duration_s <= MAX_DURATION_S or not 0 < max_frames <= MAX_FRAMES:
        return f"duration must be in (0, {MAX_DURATION_S:g}] s and max_frames in (0, {MAX_FRAMES}]"
    return None


@probe("ospf.capture_ospf")
def capture_ospf(
    *,
    ev_id: str,
    source: str,
    check: str | None = None,
    iface: str = "br0",
    duration_s: float = 5.0,
    max_frames: int = 5000,
    ready: threading.Event | str | None = None,
    stop: threading.Event | str | None = None,
) -> Evidence:
    """Capture OSPF on ``iface`` until ``stop`` is set, ``duration_s`` passes or
    ``max_frames`` frames were read.

    parsed: ``frames`` (all frames read), ``ospf_packets``, ``by_type`` (count per OSPF
    packet type), ``malformed`` (protocol-89 frames that did not decode), ``stopped_by``
    (stop | deadline | max_frames), ``duration_s`` (actual), ``hellos`` (distinct hellos:
    src, router_id, area, hello, dead, mask, priority, dr, bdr, neighbors, count, first_s,
    last_s) and ``lsas`` (distinct LSAs seen in LS updates: type, lsid, adv_router, seq,
    links for router-LSAs, from (packet source), first_s). The frames are judged by
    :class:`OspfDecoder`, which other grounds (GNS3's link captures) share.
    """
    netns = assert_in_lab_netns()
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="capture", source=source, target=iface,
                   action=f"AF_PACKET capture of OSPF (IP protocol 89) on {iface}, at most {duration_s:g} s / "
                          f"{max_frames} frames")
    meta: dict[str, Any] = {"netns": netns}
    if (bad := check_bounds(duration_s, max_frames)) is not None:
        return base(started_at=started, ok=False, meta=meta, error=bad)
    try:
        src = FrameSource(iface, duration_s, ready=rendezvous.event(ready), stop=rendezvous.event(stop))
    except OSError as exc:
        return base(started_at=started, ok=False, error=f"cannot open a packet socket: {describe_exc(exc)}",
                    meta=meta)
    dec = OspfDecoder(max_frames)
    try:
        for frame in src:
            if not dec.feed(frame, src.elapsed):
                src.stopped_by = "max_frames"
                break
    except OSError as exc:
        return base(started_at=started, ok=False, error=f"capture on {iface} failed: {describe_exc(exc)}", meta=meta)
    finally:
        src.close()
    stopped_by, elapsed = src.stopped_by, src.elapsed
    return base(started_at=started, ok=True, raw=dec.raw(iface, stopped_by, elapsed),
                parsed=dec.parsed(stopped_by, elapsed), meta=meta)
