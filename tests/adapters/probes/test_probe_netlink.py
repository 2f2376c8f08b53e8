"""Netlink probes: routes, addresses and link faults of a lab namespace."""

from __future__ import annotations

import json
import time

import pytest
from probe_testlib import root_only, sh

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes import addresses, ping, routes, set_link_state

pytestmark = root_only


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab("nl", 15)
    lab.add_link("eth1", "10.250.16.1", "10.250.16.2", 24)  # the link the fault test toggles
    sh("ip", "-n", lab.v, "route", "add", "10.250.99.0/24", "via", lab.n_ip, "proto", "static")
    sh("ip", "-n", lab.v, "route", "add", "10.250.98.0/24", "via", lab.n_ip, "proto", "188", "metric", "20")
    sh("ip", "-n", lab.v, "route", "add", "blackhole", "10.250.97.0/24")
    # no default route in v: the fault test must not reach eth1's peer another way
    sh("ip", "-n", lab.n, "route", "add", "default", "via", lab.v_ip)
    return lab


def link_json(ns: str, dev: str) -> dict:
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", "dev", dev).stdout)[0]


def test_routes(lab):
    ev = run_in_netns(lab.v, lambda: routes(ev_id="r1", source="v", check="c"))
    assert ev.ok and ev.kind == "netlink" and ev.target == f"netns:{lab.v}"
    by_dst = {r["dst"]: r for r in ev.parsed}
    static = by_dst["10.250.99.0/24"]
    assert static["protocol"] == "static" and static["gateway"] == lab.n_ip and static["oif"] == "eth0"
    ospf = by_dst["10.250.98.0/24"]
    assert ospf["protocol"] == "ospf" and ospf["protocol_num"] == 188 and ospf["metric"] == 20
    connected = by_dst[f"10.250.{lab.subnet}.0/24"]
    assert connected["protocol"] == "kernel" and connected["scope"] == "link" and connected["gateway"] is None
    hole = by_dst["10.250.97.0/24"]
    assert hole["type"] == "blackhole" and hole["protocol"] == "boot" and hole["oif"] is None
    assert "blackhole 10.250.97.0/24 proto boot" in ev.raw
    assert "10.250.99.0/24 via 10.250.15.2 dev eth0 proto static" in ev.raw
    assert all(not r["dst"].startswith("127.") for r in ev.parsed)  # main table only


def test_routes_are_per_namespace(lab):
    ev = run_in_netns(lab.n, lambda: routes(ev_id="r2", source="n"))
    assert {r["dst"] for r in ev.parsed} == {"0.0.0.0/0", f"10.250.{lab.subnet}.0/24", "10.250.16.0/24"}
    default = ev.parsed[0]  # default route first
    assert default["dst"] == "0.0.0.0/0" and default["prefixlen"] == 0 and default["gateway"] == lab.v_ip
    assert ev.raw.splitlines()[0] == f"default via {lab.v_ip} dev eth0 proto boot"


def test_addresses(lab):
    ev = run_in_netns(lab.v, lambda: addresses(ev_id="a1", source="v"))
    assert ev.ok
    by_name = {i["name"]: i for i in ev.parsed}
    assert set(by_name) == {"lo", "eth0", "eth1"}
    eth0 = by_name["eth0"]
    assert eth0["state"] == "up" and eth0["carrier"] is True and eth0["operstate"] == "up"
    assert {"address": f"{lab.v_ip}/24", "family": 4, "scope": "global"} in eth0["addresses"]
    assert by_name["lo"]["addresses"][0]["address"] == "127.0.0.1/8"


def test_set_link_state_down_then_up(lab):
    ev = run_in_netns(lab.v, lambda: set_link_state("eth1", False, ev_id="f1", source="grader", check="c"))
    assert ev.ok and ev.kind == "fault"
    assert ev.parsed["before"]["state"] == "up" and ev.parsed["after"]["state"] == "down"
    assert ev.parsed["changed"] is True and ev.parsed["requested"] == "down"
    assert "UP" not in link_json(lab.v, "eth1")["flags"]
    assert link_json(lab.v, "eth0")["operstate"] == "UP"  # only eth1 was touched
    # the peer sees the carrier go away
    peer = {i["name"]: i for i in run_in_netns(lab.n, lambda: addresses(ev_id="a2", source="n")).parsed}
    assert peer["eth1"]["carrier"] is False
    lost = run_in_netns(lab.v, lambda: ping("10.250.16.2", ev_id="p", source="v", count=1, timeout=0.3))
    assert lost.parsed["reachable"] is False

    ev = run_in_netns(lab.v, lambda: set_link_state("eth1", True, ev_id="f2", source="grader"))
    assert ev.ok and ev.parsed["before"]["state"] == "down" and ev.parsed["after"]["state"] == "up"
    assert "UP" in link_json(lab.v, "eth1")["flags"]
    deadline = time.monotonic() + 5
    while link_json(lab.v, "eth1")["operstate"] != "UP" and time.monotonic() < deadline:
        time.sleep(0.05)
    back = run_in_netns(lab.v, lambda: ping("10.250.16.2", ev_id="p", source="v", count=1, timeout=1.0))
    assert back.parsed["reachable"] is True


def test_set_link_state_same_state_and_missing(lab):
    ev = run_in_netns(lab.v, lambda: set_link_state("eth0", True, ev_id="f3", source="grader"))
    assert ev.ok and ev.parsed["changed"] is False
    ev = run_in_netns(lab.v, lambda: set_link_state("eth9", False, ev_id="f4", source="grader"))
    assert ev.ok is False and "eth9" in ev.error
