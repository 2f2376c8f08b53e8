"""DNS probe against a tiny in-process DNS server living in the node namespace."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from probe_testlib import root_only

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes.dns import dns_query
from labkit.errors import NamespaceSafetyError

pytestmark = root_only

ZONE = "example.lan."
PORT = 5353


def _server(addr: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, PORT))
    s.settimeout(0.2)
    return s


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab("dns", 30)
    srv = run_in_netns(lab.n, lambda: _server(lab.n_ip))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = srv.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            resp = dns.message.make_response(query)
            q = query.question[0]
            name = q.name.to_text()
            if q.rdtype == dns.rdatatype.SRV and name == f"_ldap._tcp.{ZONE}":
                resp.answer.append(dns.rrset.from_text(name, 60, "IN", "SRV", f"0 100 389 dc1.{ZONE}"))
            elif q.rdtype == dns.rdatatype.A and name == f"dc1.{ZONE}":
                resp.answer.append(dns.rrset.from_text(name, 60, "IN", "A", lab.n_ip))
            else:
                resp.set_rcode(dns.rcode.NXDOMAIN)
            srv.sendto(resp.to_wire(), peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield lab
    stop.set()
    t.join(timeout=2)
    srv.close()


def test_srv_answer_is_parsed(lab):
    ev = run_in_netns(lab.v, lambda: dns_query(lab.n_ip, f"_ldap._tcp.{ZONE}", "SRV", ev_id="d1", source="v",
                                               check="c", port=PORT))
    assert ev.ok and ev.kind == "dns" and ev.target == f"{lab.n_ip}:{PORT}"
    assert ev.parsed["rcode"] == "NOERROR"
    assert ev.parsed["answers"] == [{"priority": 0, "weight": 100, "port": 389, "target": "dc1.example.lan"}]
    assert "_ldap._tcp.example.lan" in ev.raw


def test_a_answer_and_nxdomain(lab):
    ev = run_in_netns(lab.v, lambda: dns_query(lab.n_ip, f"dc1.{ZONE}", "A", ev_id="d2", source="v", port=PORT))
    assert ev.ok and ev.parsed["answers"] == [{"address": lab.n_ip}]
    ev = run_in_netns(lab.v, lambda: dns_query(lab.n_ip, f"nope.{ZONE}", "A", ev_id="d3", source="v", port=PORT))
    assert ev.ok and ev.parsed["rcode"] == "NXDOMAIN" and ev.parsed["answers"] == []


def test_no_server_is_not_ok(lab):
    ev = run_in_netns(lab.v, lambda: dns_query(lab.n_ip, f"dc1.{ZONE}", "A", ev_id="d4", source="v",
                                               port=PORT + 1, timeout=0.5))
    assert not ev.ok and ev.error


def test_bad_input_and_outside_lab():
    with pytest.raises(NamespaceSafetyError):
        dns_query("10.250.30.2", "x.lan", "A", ev_id="d5", source="v")
