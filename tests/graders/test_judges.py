"""The pure halves of the graders: verdicts from fabricated evidence, no network."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from graders.routing import LanReachability, OspfAdjacency, OspfRoutes, WanResilience
from graders.snmp import NoCommunityAccess, V3SysName
from labkit.domain.grading import GraderRegistry
from labkit.models.evidence import Evidence
from tests.graders.evidence import PLAN, make_evidence

T = datetime(2026, 11, 28, tzinfo=UTC)


def ev(kind: str, parsed: Any, **kw: Any) -> Evidence:
    return make_evidence(kind, parsed, **{"source": "v-hq", "at": T, **kw})


def test_registry_knows_every_builtin_grader() -> None:
    assert GraderRegistry.load().names() >= {
        "routing.lan_reachability", "routing.ospf_adjacency", "routing.ospf_routes", "routing.wan_resilience",
        "snmp.v3_sysname", "snmp.no_community_access"}


def test_reachability_pass_fail_error() -> None:
    j = LanReachability()
    ok = [ev("icmp", {"reachable": True}), ev("icmp", {"reachable": True})]
    assert j.judge(ok, {}, PLAN).status == "pass"
    bad = [ev("icmp", {"reachable": True}), ev("icmp", {"reachable": False}, target_name="pc-br2")]
    v = j.judge(bad, {}, PLAN)
    assert v.status == "fail" and "pc-br2" in v.message.fr and "pc-br2" in v.message.en
    assert j.judge([ev("icmp", None, ok=False, error="netns gone")], {}, PLAN).status == "error"
    assert j.judge([], {}, PLAN).status == "error"


def _ospf(neigh_state: str = "Full/-", net_type: str = "POINTOPOINT") -> list[dict[str, Any]]:
    return [
        {"cmd": "n", "json": {"neighbors": {"1.1.1.1": [{"state": neigh_state, "ifaceName": "eth1:172.16.0.1"}]}}},
        {"cmd": "i", "json": {"interfaces": {"eth1": {"networkType": net_type}}}},
    ]


ADJ_ARGS = {"links": {"wan-a": {"r-hq": "eth1"}}}


@pytest.mark.parametrize("state,net,status", [
    ("Full/-", "POINTOPOINT", "pass"),
    ("ExStart/-", "POINTOPOINT", "fail"),
    ("Full/DR", "BROADCAST", "fail"),
])
def test_ospf_adjacency(state: str, net: str, status: str) -> None:
    v = OspfAdjacency().judge([ev("ssh", _ospf(state, net), target_name="r-hq")], ADJ_ARGS, PLAN)
    assert v.status == status


def test_ospf_adjacency_daemon_not_running_is_fail() -> None:
    parsed = [{"cmd": "n", "json": None, "stdout": "ospfd is not running"}, {"cmd": "i", "json": None}]
    v = OspfAdjacency().judge([ev("ssh", parsed, target_name="r-hq")], ADJ_ARGS, PLAN)
    assert v.status == "fail" and "OSPF" in v.message.en


ROUTE_ARGS = {"prefixes": {"r-hq": "10.1.0.0/24", "r-br1": "10.2.0.0/24"}}


@pytest.mark.parametrize("routes,status", [
    ([{"dst": "10.2.0.0/24", "prefixlen": 24, "protocol": "ospf"}], "pass"),
    ([{"dst": "10.2.0.0", "prefixlen": 24, "protocol": "ospf"}], "pass"),
    ([{"dst": "10.2.0.0/24", "prefixlen": 24, "protocol": "static"}], "fail"),
    ([{"dst": "10.2.0.0/24", "prefixlen": 24, "protocol": "ospf"},
      {"dst": "10.2.0.0/24", "prefixlen": 24, "protocol": "boot"}], "fail"),
    ([], "fail"),
])
def test_ospf_routes(routes: list[dict[str, Any]], status: str) -> None:
    v = OspfRoutes().judge([ev("netlink", routes, target_name="r-hq")], ROUTE_ARGS, PLAN)
    assert v.status == status


RES_ARGS = {"cut": {"link": "wan-a", "ends": {"r-hq": "eth1"}}, "within": 10}


def _resilience(after_s: float | None, before_ok: bool = True, fault_ok: bool = True) -> list[Evidence]:
    return [
        ev("icmp", {"reachable": before_ok}, phase="before"),
        ev("fault", {"iface": "eth1"}, ok=fault_ok, error=None if fault_ok else "EPERM"),
        ev("icmp", {"reachable": after_s is not None, "first_reply_after_s": after_s}, phase="after-cut",
           target_name="v-br1"),
        ev("fault", {"iface": "eth1"}),
        ev("icmp", {"reachable": True}, phase="restored"),
    ]


def test_resilience_verdicts() -> None:
    j = WanResilience()
    assert j.judge(_resilience(2.5), RES_ARGS, PLAN).status == "pass"
    assert j.judge(_resilience(None), RES_ARGS, PLAN).status == "fail"
    assert j.judge(_resilience(12.0), RES_ARGS, PLAN).status == "fail"
    before = j.judge(_resilience(1.0, before_ok=False), RES_ARGS, PLAN)
    assert before.status == "fail" and "before" in before.message.en.lower()
    assert j.judge(_resilience(1.0, fault_ok=False), RES_ARGS, PLAN).status == "error"


SNMP_ARGS = {"routers": {"r-hq": "v-hq"}}


def test_snmpv3_sysname() -> None:
    j = V3SysName()
    good = ev("snmp", {"answered": True, "values": {"1.3.6.1.2.1.1.5.0": "r-hq"}}, target_name="r-hq")
    assert j.judge([good], SNMP_ARGS, PLAN).status == "pass"
    wrong = ev("snmp", {"answered": True, "values": {"1.3.6.1.2.1.1.5.0": "vm"}}, target_name="r-hq")
    assert j.judge([wrong], SNMP_ARGS, PLAN).status == "fail"
    report = ev("snmp", {"answered": False, "error_indication": "Unsupported SNMP security level"},
                target_name="r-hq")
    assert j.judge([report], SNMP_ARGS, PLAN).status == "fail"


def test_no_community_access() -> None:
    j = NoCommunityAccess()
    alive = ev("snmp", {"answered": False, "error_indication_type": "UnsupportedSecLevel"},
               target_name="r-hq", purpose="v3-liveness")
    silent = ev("snmp", {"answered": False, "error_indication_type": "RequestTimedOut"},
                target_name="r-hq", purpose="v3-liveness")
    closed = ev("snmp", {"answered": False}, target_name="r-hq", version="2c", community_label="public")
    opened = ev("snmp", {"answered": True}, target_name="r-hq", version="2c", community_label="public")
    assert j.judge([alive, closed], SNMP_ARGS, PLAN).status == "pass"
    assert j.judge([alive, opened], SNMP_ARGS, PLAN).status == "fail"
    # an agent that listens nowhere refuses v2c vacuously: no credit
    assert j.judge([silent, closed], SNMP_ARGS, PLAN).status == "fail"
