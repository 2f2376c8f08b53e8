"""Shared by the vpcs and qemu stand-ins (test-only, the project's own code): an Ethernet end
point that answers ARP and ICMP echo requests for the address it was given, and a telnet
negotiation filter for consoles reached through gns3-server's telnet wrapper."""

from __future__ import annotations

import ipaddress
import re
import struct
import threading


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Pc:
    def __init__(self, mac: bytes):
        self.mac = mac
        self.ip: ipaddress.IPv4Interface | None = None
        self.gw: str | None = None
        self.lock = threading.Lock()

    def set_ip(self, words: list[str]) -> str:
        try:
            if len(words) >= 2 and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", words[1]) and "/" not in words[0]:
                iface = ipaddress.IPv4Interface(f"{words[0]}/{words[1]}")
                gw = words[2] if len(words) > 2 else None
            else:
                iface = ipaddress.IPv4Interface(words[0] if "/" in words[0] else f"{words[0]}/24")
                gw = words[1] if len(words) > 1 else None
        except (ValueError, IndexError):
            return "Invalid address"
        with self.lock:
            self.ip, self.gw = iface, gw
        return f"PC1 : {iface} gateway {gw or '0.0.0.0'}"

    def answer(self, frame: bytes) -> bytes | None:
        if len(frame) < 14 or self.ip is None:
            return None
        dst, src, etype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
        me = self.ip.ip.packed
        if etype == 0x0806 and len(frame) >= 42:
            arp = frame[14:42]
            op = struct.unpack("!H", arp[6:8])[0]
            if op == 1 and arp[24:28] == me:
                reply = arp[:6] + struct.pack("!H", 2) + self.mac + me + arp[8:14] + arp[14:18]
                return src + self.mac + struct.pack("!H", 0x0806) + reply
        if etype == 0x0800 and dst == self.mac and len(frame) >= 34:
            ihl = (frame[14] & 0x0F) * 4
            ip = frame[14:14 + ihl]
            total = struct.unpack("!H", ip[2:4])[0]
            payload = frame[14 + ihl:14 + total]
            if ip[9] == 1 and ip[16:20] == me and payload[:1] == b"\x08":
                icmp = b"\x00\x00\x00\x00" + payload[4:]
                icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
                hdr = bytearray(ip[:20])
                hdr[8] = 64
                hdr[12:16], hdr[16:20] = ip[16:20], ip[12:16]
                hdr[10:12] = b"\0\0"
                hdr[2:4] = struct.pack("!H", 20 + len(icmp))
                hdr[10:12] = struct.pack("!H", csum(bytes(hdr)))
                return src + self.mac + struct.pack("!H", 0x0800) + bytes(hdr) + icmp
        return None


def strip_telnet(data: bytes) -> bytes:
    """Drop telnet negotiation (IAC ...): gns3-server's console wrapper speaks telnet."""
    out, i = bytearray(), 0
    while i < len(data):
        b = data[i]
        if b != 0xFF:
            out.append(b)
            i += 1
        elif i + 1 < len(data) and data[i + 1] in (0xFB, 0xFC, 0xFD, 0xFE):  # WILL WONT DO DONT opt
            i += 3
        elif i + 1 < len(data) and data[i + 1] == 0xFA:  # SB ... IAC SE
            end = data.find(b"\xff\xf0", i)
            i = len(data) if end < 0 else end + 2
        elif i + 1 < len(data) and data[i + 1] == 0xFF:
            out.append(0xFF)
            i += 2
        else:
            i += 2
    return bytes(out)
