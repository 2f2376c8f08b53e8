"""OSPFv2 decoding of the OSPF capture probe (pure, no namespace): hellos and router-LSAs
as FRR puts them on a point-to-point link."""

from __future__ import annotations

import socket
import struct

from labkit.adapters.probes.ospf import parse_ospf_frame


def _ip(a: str) -> bytes:
    return socket.inet_aton(a)


def _frame(src: str, ptype: int, rid: str, body: bytes, area: str = "0.0.0.0") -> bytes:
    ospf = struct.pack("!BBH4s4sHH8s", 2, ptype, 24 + len(body), _ip(rid), _ip(area), 0, 0, b"") + body
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(ospf), 1, 0, 1, 89, 0, _ip(src), _ip("224.0.0.5"))
    return b"\x01\x00\x5e\x00\x00\x05" + b"\x02" * 6 + b"\x08\x00" + ip + ospf


def test_hello_point_to_point() -> None:
    body = struct.pack("!4sHBBI4s4s", _ip("255.255.255.252"), 1, 0x02, 1, 4, _ip("0.0.0.0"), _ip("0.0.0.0"))
    body += _ip("10.2.0.1")
    got = parse_ospf_frame(_frame("172.16.0.1", 1, "10.1.0.1", body))
    assert got == {"src": "172.16.0.1", "dst": "224.0.0.5", "type": "hello", "router_id": "10.1.0.1",
                   "area": "0.0.0.0", "mask": "255.255.255.252", "hello": 1, "dead": 4, "priority": 1,
                   "dr": "0.0.0.0", "bdr": "0.0.0.0", "neighbors": ["10.2.0.1"]}


def test_ls_update_router_lsa_with_stub_and_p2p_links() -> None:
    links = struct.pack("!4s4sBBH", _ip("10.1.0.0"), _ip("255.255.255.0"), 3, 0, 10)
    links += struct.pack("!4s4sBBH", _ip("10.2.0.1"), _ip("172.16.0.1"), 1, 0, 10)
    rlsa = struct.pack("!BBH", 0, 0, 2) + links
    header = struct.pack("!HBB4s4sIHH", 2, 0x02, 1, _ip("10.1.0.1"), _ip("10.1.0.1"), 0x80000006, 0,
                         20 + len(rlsa))
    body = struct.pack("!I", 1) + header + rlsa
    got = parse_ospf_frame(_frame("172.16.0.2", 4, "10.2.0.1", body))
    assert got is not None and got["type"] == "ls-update" and got["router_id"] == "10.2.0.1"
    (lsa,) = got["lsas"]
    assert lsa["adv_router"] == "10.1.0.1" and lsa["seq"] == "80000006" and lsa["type"] == 1
    assert lsa["links"] == [{"type": "stub", "id": "10.1.0.0", "data": "255.255.255.0", "metric": 10},
                            {"type": "p2p", "id": "10.2.0.1", "data": "172.16.0.1", "metric": 10}]


def test_not_ospf_or_truncated_is_none() -> None:
    body = struct.pack("!4sHBBI4s4s", _ip("255.255.255.252"), 1, 0, 1, 4, _ip("0.0.0.0"), _ip("0.0.0.0"))
    frame = _frame("172.16.0.1", 1, "10.1.0.1", body)
    assert parse_ospf_frame(frame[:14 + 20 + 10]) is None  # OSPF header cut
    udp = bytearray(frame)
    udp[14 + 9] = 17
    assert parse_ospf_frame(bytes(udp)) is None
    assert parse_ospf_frame(b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28) is None
    # an LS update announcing more LSAs than it carries is malformed, not a partial answer
    bad = struct.pack("!I", 2) + struct.pack("!HBB4s4sIHH", 1, 0, 1, _ip("1.1.1.1"), _ip("1.1.1.1"), 1, 0, 24)
    assert parse_ospf_frame(_frame("172.16.0.2", 4, "10.2.0.1", bad + b"\x00" * 4)) is None
