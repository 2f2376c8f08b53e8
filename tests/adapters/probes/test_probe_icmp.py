"""ICMP probes against a two-namespace topology."""

from __future__ import annotations

import json
import threading

import pytest
from probe_testlib import root_only, sh

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes import ping, wait_reachable

pytestmark = root_only


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("icmp", 11)


def test_ping_reachable(lab):
    ev = run_in_netns(lab.v, lambda: ping(lab.n_ip, ev_id="p1", source="vantage", check="c1", count=3,
                                          interval=0.05, timeout=1.0))
    assert ev.ok and ev.kind == "icmp" and ev.check == "c1" and ev.target == lab.n_ip
    assert ev.parsed["sent"] == 3 and ev.parsed["received"] == 3
    assert ev.parsed["reachable"] is True
    assert len(ev.parsed["rtt_ms"]) == 3 and all(r >= 0 for r in ev.parsed["rtt_ms"])
    assert ev.parsed["replies"][0]["ttl"] == 64
    assert ev.meta["netns"] == lab.v
    assert ev.started_at.tzinfo is not None and ev.ended_at >= ev.started_at
    assert "3 received" in ev.raw
    ev.model_dump_json()  # JSON-able


def test_ping_ipv6_link_local(lab):
    info = json.loads(sh("ip", "-n", lab.n, "-j", "addr", "show", "dev", "eth0").stdout)[0]
    ll = next(a["local"] for a in info["addr_info"] if a["family"] == "inet6" and a["scope"] == "link")
    target = f"{ll}%eth0"
    # DAD may still be running right after the link came up: allow a few tries
    ev = run_in_netns(lab.v, lambda: wait_reachable(target, deadline_s=5.0, ev_id="p6w", source="v"))
    assert ev.parsed["reachable"], ev.raw
    ev = run_in_netns(lab.v, lambda: ping(target, ev_id="p6", source="v", count=2, interval=0.05))
    assert ev.ok and ev.parsed["received"] == 2 and ev.meta["family"] == 6


def test_ping_unreachable_on_link(lab):
    # nobody owns .77: ARP fails, no reply; a completed observation (ok=True)
    ev = run_in_netns(lab.v, lambda: ping(f"10.250.{lab.subnet}.77", ev_id="p2", source="vantage",
                                          count=2, interval=0.1, timeout=0.4))
    assert ev.ok and ev.error is None
    assert ev.parsed["received"] == 0 and ev.parsed["reachable"] is False
    assert ev.duration < 2.0


def test_ping_no_route(lab):
    ev = run_in_netns(lab.v, lambda: ping("10.250.200.1", ev_id="p3", source="vantage", count=2,
                                          interval=0.05, timeout=0.3))
    assert ev.ok and ev.parsed["reachable"] is False
    assert ev.parsed["sent"] == 0 and len(ev.parsed["send_errors"]) == 2
    assert "unreachable" in ev.parsed["send_errors"][0]["error"].lower()


def test_ping_rejects_names(lab):
    ev = run_in_netns(lab.v, lambda: ping("node.example", ev_id="p4", source="vantage"))
    assert not ev.ok and "not an IP address" in ev.error


def test_concurrent_pings_do_not_mix(lab):
    results = {}

    def one(key, target):
        results[key] = run_in_netns(lab.v, lambda: ping(target, ev_id=key, source="v", count=3,
                                                         interval=0.05, timeout=0.5))

    threads = [threading.Thread(target=one, args=("good", lab.n_ip)),
               threading.Thread(target=one, args=("bad", f"10.250.{lab.subnet}.99"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["good"].parsed["received"] == 3
    assert results["bad"].parsed["received"] == 0


def test_wait_reachable_immediate(lab):
    ev = run_in_netns(lab.v, lambda: wait_reachable(lab.n_ip, deadline_s=2.0, ev_id="w1", source="v"))
    assert ev.ok and ev.parsed["reachable"] is True
    assert 0 <= ev.parsed["first_reply_after_s"] < 1.0


def test_wait_reachable_never(lab):
    ev = run_in_netns(lab.v, lambda: wait_reachable(f"10.250.{lab.subnet}.77", deadline_s=0.6,
                                                    interval=0.1, ev_id="w2", source="v"))
    assert ev.ok and ev.parsed["reachable"] is False
    assert ev.parsed["first_reply_after_s"] is None
    assert 0.5 <= ev.duration < 1.5


def test_wait_reachable_measures_recovery(lab):
    sh("ip", "-n", lab.n, "link", "set", "eth0", "down")
    timer = threading.Timer(0.8, lambda: sh("ip", "-n", lab.n, "link", "set", "eth0", "up"))
    timer.start()
    try:
        ev = run_in_netns(lab.v, lambda: wait_reachable(lab.n_ip, deadline_s=6.0, interval=0.05,
                                                        ev_id="w3", source="v"))
    finally:
        timer.join()
        sh("ip", "-n", lab.n, "link", "set", "eth0", "up")
    assert ev.ok and ev.parsed["reachable"] is True
    assert 0.8 <= ev.parsed["first_reply_after_s"] < 5.0
    assert ev.parsed["sent"] > 1
