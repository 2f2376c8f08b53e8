"""Bytes per TCP direction from sequence numbers: dropped frames in between change nothing."""

from __future__ import annotations

import socket
import struct

from labkit.adapters.probes.tcpspan import FlowSpan, parse_tcp


def frame(seq: int, payload: bytes = b"", flags: int = 0x10, src: str = "10.0.0.10", dst: str = "10.0.0.20",
          sport: int = 40000, dport: int = 22) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, socket.inet_aton(src),
                     socket.inet_aton(dst))
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp


def test_parse_tcp() -> None:
    t = parse_tcp(frame(7, b"SSH-2.0-x\r\n"))
    assert t == ("10.0.0.10", 40000, "10.0.0.20", 22, 7, 0x10, b"SSH-2.0-x\r\n")
    assert parse_tcp(b"\x00" * 12 + b"\x86\xdd" + b"\x00" * 60) is None  # not IPv4


def test_span_counts_from_the_syn_across_drops_and_wraparound() -> None:
    isn = (1 << 32) - 100  # the sequence numbers wrap during the transfer
    f = FlowSpan(("10.0.0.10", 40000, "10.0.0.20", 22))
    for seq, payload, flags in [(isn, b"", 0x02), (isn + 1, b"SSH-2.0-OpenSSH\r\n", 0x18),
                                ((isn + 1 + 17 + 5000) % (1 << 32), b"x" * 1000, 0x10),  # 5000 bytes dropped
                                ((isn + 1 + 17) % (1 << 32), b"y" * 100, 0x10)]:  # an earlier one, late
        f.add(seq, flags, payload)
    row = f.row()
    assert row["bytes"] == 17 + 5000 + 1000 and row["payload_seen"] == 1117 and row["syn_seen"]
    assert row["greeting"] == "SSH-2.0-OpenSSH"


def test_span_without_syn_counts_from_the_first_packet() -> None:
    f = FlowSpan(("a", 1, "b", 2))
    f.add(1000, 0x10, b"z" * 10)
    f.add(3000, 0x10, b"z" * 10)
    f.add(900, 0x10, b"z" * 10)  # before the first seen: ignored
    assert f.row()["bytes"] == 2010 and not f.row()["syn_seen"]
