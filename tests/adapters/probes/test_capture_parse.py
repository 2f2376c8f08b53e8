"""Frame parsing of the capture probe (pure, no namespace)."""

from __future__ import annotations

import socket
import struct

from labkit.adapters.probes.capture import parse_frame


def test_parse_frame_tcp_udp_ipv6_and_non_ip() -> None:
    src, dst = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 20 + 3, 0, 0, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHLLBBHHH", 40000, 22, 0, 0, 5 << 4, 0x18, 0, 0, 0)
    frame = b"\x00" * 12 + b"\x08\x00" + ip + tcp + b"abc" + b"\x00" * 6  # Ethernet padding ignored
    assert parse_frame(frame) == ("tcp", "10.0.0.1", 40000, "10.0.0.2", 22, b"abc")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + 2, 0, 0, 64, 17, 0, src, dst)
    udp = struct.pack("!HHHH", 5353, 53, 10, 0)
    assert parse_frame(b"\x00" * 12 + b"\x08\x00" + ip + udp + b"hi") == ("udp", "10.0.0.1", 5353, "10.0.0.2", 53,
                                                                          b"hi")
    v6 = struct.pack("!IHBB16s16s", 6 << 28, 8 + 3, 17, 64, socket.inet_pton(socket.AF_INET6, "fe80::1"),
                     socket.inet_pton(socket.AF_INET6, "fe80::2"))
    udp = struct.pack("!HHHH", 40000, 873, 11, 0)
    assert parse_frame(b"\x00" * 12 + b"\x86\xdd" + v6 + udp + b"abc") == ("udp", "fe80::1", 40000, "fe80::2", 873,
                                                                           b"abc")
    assert parse_frame(b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28) is None
    assert parse_frame(b"\x00" * 10) is None
