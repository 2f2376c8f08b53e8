#!/usr/bin/python3
"""A tiny DNS responder written from the brief (cheat dns-hand-zone): SRV records of the realm
point to dc1, A records of dc1 and of the realm give dc1's address; anything else: NXDOMAIN.
Usage: tiny_dns.py REALM DC_NAME DC_ADDRESS PORT"""
import socket
import struct
import sys

realm, dc_name, dc_ip, port = sys.argv[1].lower(), sys.argv[2].lower(), sys.argv[3], int(sys.argv[4])
dc_fqdn = f"{dc_name}.{realm}"
PORTS = {"_ldap": 389, "_kerberos": 88, "_kpasswd": 464, "_gc": 3268, "_kerberos-master": 88}


def name_bytes(name):
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"


def parse_qname(data, pos):
    labels = []
    while data[pos]:
        n = data[pos]
        labels.append(data[pos + 1:pos + 1 + n].decode(errors="replace"))
        pos += n + 1
    return ".".join(labels).lower(), pos + 1


sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", port))
while True:
    data, peer = sock.recvfrom(512)
    try:
        qid, _flags, qd = struct.unpack(">HHH", data[:6])
        qname, end = parse_qname(data, 12)
        qtype, _qclass = struct.unpack(">HH", data[end:end + 4])
    except Exception:
        continue
    question = data[12:end + 4]
    answer = b""
    if qtype == 33 and qname.endswith(realm):  # SRV
        service = qname.split(".")[0]
        if service in PORTS:
            target = name_bytes(dc_fqdn)
            rdata = struct.pack(">HHH", 0, 100, PORTS[service]) + target
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 33, 1, 600, len(rdata)) + rdata
    elif qtype == 1 and qname in (dc_fqdn, realm):
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 600, 4) + socket.inet_aton(dc_ip)
    rcode = 0 if answer or qname.endswith(realm) else 3
    if not answer and qname.endswith(realm) and qtype in (1, 33) and qname not in (dc_fqdn, realm):
        rcode = 3
    header = struct.pack(">HHHHHH", qid, 0x8400 | rcode, 1, 1 if answer else 0, 0, 0)
    sock.sendto(header + question + answer, peer)
