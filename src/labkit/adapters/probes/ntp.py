"""A minimal SNTP client (RFC 4330) run inside a lab namespace: one mode-3 request, the
server's mode-4 answer parsed (stratum, reference id, leap indicator, times)."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from functools import partial
from typing import Any

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from labkit.adapters.probes.registry import probe

__all__ = ["ntp_query", "parse_ntp_reply"]

NTP_EPOCH = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_PACKET = struct.Struct("!BBbbII4sQQQQ")


def _ntp_time(value: int) -> float:
    return (value >> 32) - NTP_EPOCH + (value & 0xFFFFFFFF) / 2**32


def refid_text(stratum: int, refid: bytes) -> str:
    """An IPv4 address for stratum ≥ 2, else the ASCII code (``LOCL``, ``GPS``, a kiss code)."""
    if stratum >= 2:
        return str(ipaddress.IPv4Address(refid))
    return refid.rstrip(b"\0").decode("ascii", "replace")


def parse_ntp_reply(data: bytes, sent_transmit: int | None = None) -> dict[str, Any]:
    """Decode a 48-byte NTP header; pure, for tests too."""
    if len(data) < _PACKET.size:
        raise ValueError(f"NTP reply is {len(data)} bytes, shorter than 48")
    (li_vn_mode, stratum, poll, precision, root_delay, root_disp, refid,
     ref_ts, orig_ts, rx_ts, tx_ts) = _PACKET.unpack_from(data)
    return {
        "leap": li_vn_mode >> 6, "version": (li_vn_mode >> 3) & 7, "mode": li_vn_mode & 7,
        "stratum": stratum, "poll": poll, "precision": precision,
        "root_delay_s": round(root_delay / 65536, 6), "root_dispersion_s": round(root_disp / 65536, 6),
        "refid": refid_text(stratum, refid), "refid_hex": refid.hex(),
        "reference_time": round(_ntp_time(ref_ts), 3) if ref_ts else None,
        "transmit_time": round(_ntp_time(tx_ts), 3) if tx_ts else None,
        "origin_matches": None if sent_transmit is None else orig_ts == sent_transmit,
    }


@probe("ntp.ntp_query")
def ntp_query(host: str, *, ev_id: str, source: str, check: str | None = None, port: int = 123,
              timeout: float = 1.0, tries: int = 2) -> Evidence:
    """Send a client request (mode 3, version 4) to ``host`` and parse the answer.

    kind "udp". parsed: {``answered``, and when answered the fields of
    :func:`parse_ntp_reply` plus ``rtt_ms``}. No answer is ``answered: false`` with ok=True.
    """
    netns = assert_in_lab_netns()
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="udp", source=source, target=f"{host}:{port}",
                   action=f"NTP client request (mode 3) to {host}:{port}")
    meta: dict[str, Any] = {"netns": netns, "timeout_s": timeout, "tries": tries}
    try:
        addr = ip_literal(host)
        if not 0 < timeout <= 10 or not 1 <= tries <= 5:
            raise ValueError("timeout must be in (0, 10] s and tries in [1, 5]")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            for _ in range(tries):
                # random transmit timestamp: the server must echo it as the origin (RFC 5905)
                tx = int.from_bytes(os.urandom(8), "big")
                packet = _PACKET.pack((0 << 6) | (4 << 3) | 3, 0, 0, 0, 0, 0, b"\0" * 4, 0, 0, 0, tx)
                t0 = time.monotonic()
                sock.sendto(packet, (str(addr), port))
                try:
                    while True:
                        data, _peer = sock.recvfrom(512)
                        parsed = parse_ntp_reply(data, tx)
                        if parsed["origin_matches"]:
                            break
                except TimeoutError:
                    continue
                except ConnectionRefusedError:
                    return base(started_at=started, ok=True, parsed={"answered": False, "refused": True},
                                meta=meta)
                parsed.update(answered=True, rtt_ms=round((time.monotonic() - t0) * 1000, 2))
                return base(started_at=started, ok=True, raw=data.hex(), parsed=parsed, meta=meta)
    except (OSError, ValueError) as exc:
        return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
    return base(started_at=started, ok=True, parsed={"answered": False, "refused": False}, meta=meta)
