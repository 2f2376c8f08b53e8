"""The pure halves of the graders: verdicts from fabricated evidence, no network."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from graders.routing import LanReachability, OspfAdjacency, OspfRoutes, WanResilience
from graders.snmp import NoCommunityAccess, V3SysName, community_get_packet, fresh_address, v3_discovery_packet
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


# --------------------------------------------------------------- OSPF seen on the wire
A1, A2 = "172.16.0.1", "172.16.0.2"  # r-hq and r-br1 on wan-a
RID_HQ, RID_BR1 = "10.1.0.1", "10.2.0.1"
ADJ_ARGS = {"links": {"wan-a": {"r-hq": A1, "r-br1": A2}}, "area": "0.0.0.0", "hello": 1, "dead": 4}


def hello(src: str, rid: str, neighbors: list[str], *, area: str = "0.0.0.0", h: int = 1, d: int = 4,
          dr: str = "0.0.0.0", bdr: str = "0.0.0.0") -> dict[str, Any]:
    return {"src": src, "router_id": rid, "area": area, "hello": h, "dead": d, "mask": "255.255.255.252",
            "priority": 1, "dr": dr, "bdr": bdr, "neighbors": neighbors, "count": 3, "first_s": 0.1, "last_s": 2.1}


def cap(hellos: list[dict[str, Any]], lsas: list[dict[str, Any]] | None = None, link: str = "wan-a",
        **kw: Any) -> Evidence:
    return ev("capture", {"hellos": hellos, "lsas": lsas or []}, link=link, source=f"link:{link}", **kw)


GOOD_HELLOS = [hello(A1, RID_HQ, [RID_BR1]), hello(A2, RID_BR1, [RID_HQ])]


def test_ospf_adjacency_from_hellos_on_the_wire() -> None:
    j = OspfAdjacency()
    assert j.judge([cap(GOOD_HELLOS)], ADJ_ARGS, PLAN).status == "pass"
    # default timers, a wrong area, a DR elected (broadcast), one-way: each fails and says where
    cases = [
        ([hello(A1, RID_HQ, [RID_BR1], h=10, d=40), hello(A2, RID_BR1, [RID_HQ], h=10, d=40)], "10/40"),
        ([hello(A1, RID_HQ, [RID_BR1]), hello(A2, RID_BR1, [RID_HQ], area="0.0.0.1")], "area 0.0.0.1"),
        ([hello(A1, RID_HQ, [RID_BR1], dr=A1), hello(A2, RID_BR1, [RID_HQ], dr=A1, bdr=A2)], "DR/BDR"),
        ([hello(A1, RID_HQ, []), hello(A2, RID_BR1, [RID_HQ])], "does not list r-br1"),
    ]
    for hellos, needle in cases:
        v = j.judge([cap(hellos)], ADJ_ARGS, PLAN)
        assert v.status == "fail" and needle in v.message.en, (needle, v.message.en)


def test_ospf_adjacency_a_silent_router_fails_whatever_its_vtysh_says() -> None:
    # forged-vtysh: r-br1 runs no ospfd; only r-hq's hellos are on the wire
    v = OspfAdjacency().judge([cap([hello(A1, RID_HQ, [])])], ADJ_ARGS, PLAN)
    assert v.status == "fail" and "r-br1" in v.message.en and "no OSPF hello" in v.message.en
    # hellos sent from an address that is not the router's planned one do not count for it
    v = OspfAdjacency().judge([cap([hello(A1, RID_HQ, [RID_BR1]), hello("172.16.0.9", RID_BR1, [RID_HQ])])],
                              ADJ_ARGS, PLAN)
    assert v.status == "fail" and "r-br1" in v.message.en


def test_ospf_adjacency_error_when_a_link_was_not_captured() -> None:
    assert OspfAdjacency().judge([cap([], ok=False, error="netns gone")], ADJ_ARGS, PLAN).status == "error"
    other = {"links": {**ADJ_ARGS["links"], "wan-b": {"r-hq": "172.16.0.5"}}}
    assert OspfAdjacency().judge([cap(GOOD_HELLOS)], other, PLAN).status == "error"


def router_lsa(adv: str, links: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {"type": 1, "lsid": adv, "adv_router": adv, "seq": "80000005", "age": 1,
            "links": [{"type": t, "id": i, "data": d, "metric": 10} for t, i, d in links]}


ROUTE_ARGS = {"links": ADJ_ARGS["links"], "prefixes": {"r-hq": "10.1.0.0/24", "r-br1": "10.2.0.0/24"}}
LSA_HQ = router_lsa(RID_HQ, [("stub", "10.1.0.0", "255.255.255.0"), ("p2p", RID_BR1, A1)])
LSA_BR1 = router_lsa(RID_BR1, [("stub", "10.2.0.0", "255.255.255.0"), ("p2p", RID_HQ, A2)])


@pytest.mark.parametrize("lsas,routes,status,needle", [
    ([LSA_HQ, LSA_BR1], [{"dst": "10.2.0.0/24", "prefixlen": 24, "protocol": "ospf"}], "pass", ""),
    # missing-lan-network: r-br1's router-LSA has no stub for its LAN
    ([LSA_HQ, router_lsa(RID_BR1, [("p2p", RID_HQ, A2)])], [], "fail", "do not advertise its LAN 10.2.0.0/24"),
    # no router-LSA of r-br1 seen at all
    ([LSA_HQ], [], "fail", "no router-LSA of r-br1"),
    # r-hq advertising branch 1's LAN in its own LSA does not make r-br1 advertise it
    ([router_lsa(RID_HQ, [("stub", "10.1.0.0", "255.255.255.0"), ("stub", "10.2.0.0", "255.255.255.0")]),
      router_lsa(RID_BR1, [("p2p", RID_HQ, A2)])], [], "fail", "r-br1's router-LSAs"),
    # the wire is right, but the kernel table shows a static route: supporting evidence takes the points
    ([LSA_HQ, LSA_BR1], [{"dst": "10.2.0.0/24", "prefixlen": 24, "protocol": "static"}], "fail", "static route"),
])
def test_ospf_routes_from_lsas_on_the_wire(lsas: list[dict[str, Any]], routes: list[dict[str, Any]], status: str,
                                           needle: str) -> None:
    evidence = [cap(GOOD_HELLOS, lsas), ev("netlink", routes, target_name="r-hq")]
    v = OspfRoutes().judge(evidence, ROUTE_ARGS, PLAN)
    assert v.status == status and needle in v.message.en, v.message.en


def test_ospf_routes_proto_ospf_in_the_kernel_gives_nothing() -> None:
    # proto-ospf-static: routes tagged "proto ospf" by hand, no OSPF from r-br1 on the wire
    forged = [{"dst": "10.1.0.0/24", "prefixlen": 24, "protocol": "ospf"}]
    v = OspfRoutes().judge([cap([hello(A1, RID_HQ, [])], [LSA_HQ]), ev("netlink", forged, target_name="r-br1")],
                           ROUTE_ARGS, PLAN)
    assert v.status == "fail" and "r-br1 sends no OSPF hello" in v.message.en
    # a netlink read alone is no evidence at all
    v = OspfRoutes().judge([ev("netlink", forged, target_name="r-br1")], ROUTE_ARGS, PLAN)
    assert v.status == "error"


def test_ospf_routes_knows_a_router_whose_hellos_the_capture_missed_by_its_lsa() -> None:
    """Default timers (hello 10 s) on a ~10 s capture: r-hq's hellos may all fall outside it.
    Its router-LSA, whose point-to-point link carries r-hq's planned address, names it."""
    only_br1 = [hello(A2, RID_BR1, [RID_HQ])]
    v = OspfRoutes().judge([cap(only_br1, [LSA_HQ, LSA_BR1])], ROUTE_ARGS, PLAN)
    assert v.status == "pass", v.message.en
    # the LSA names r-hq, but does not carry r-hq's LAN: it fails on the LAN, not on the identity
    v = OspfRoutes().judge([cap(only_br1, [router_lsa(RID_HQ, [("p2p", RID_BR1, A1)]), LSA_BR1])], ROUTE_ARGS, PLAN)
    assert v.status == "fail" and "r-hq's router-LSAs do not advertise its LAN" in v.message.en


def test_ospf_routes_an_lsa_cannot_lend_another_router_an_identity() -> None:
    # r-br1 (known by its hellos) floods an LSA claiming r-hq's address and LAN: r-hq stays unknown
    only_br1 = [hello(A2, RID_BR1, [RID_HQ])]
    forged = router_lsa(RID_BR1, [("stub", "10.1.0.0", "255.255.255.0"), ("stub", "10.2.0.0", "255.255.255.0"),
                                  ("p2p", RID_HQ, A1), ("p2p", RID_HQ, A2)])
    v = OspfRoutes().judge([cap(only_br1, [forged])], ROUTE_ARGS, PLAN)
    assert v.status == "fail" and "r-hq sends no OSPF hello" in v.message.en
    # an LSA carrying the planned addresses of two routers names neither
    both = router_lsa("10.9.9.9", [("stub", "10.1.0.0", "255.255.255.0"), ("stub", "10.2.0.0", "255.255.255.0"),
                                   ("p2p", RID_BR1, A1), ("p2p", RID_HQ, A2)])
    v = OspfRoutes().judge([cap([], [both])], ROUTE_ARGS, PLAN)
    assert v.status == "fail" and "r-hq sends no OSPF hello" in v.message.en and "r-br1 sends no" in v.message.en


def not_observed(router: str) -> Evidence:
    return ev("netlink", None, target_name=router, not_observed="node_kernel",
              why="this provider cannot read a node's kernel from outside it")


def test_ospf_routes_needs_the_wire_and_only_wants_the_kernel() -> None:
    assert "node_kernel" not in OspfRoutes.needs and set(OspfRoutes.wants) == {"node_kernel"}
    assert OspfRoutes.needs >= {"capture", "link_cut", "vantage", "grader_echo"}


def test_ospf_routes_without_the_kernel_tables_says_what_was_not_checked() -> None:
    wire = cap(GOOD_HELLOS, [LSA_HQ, LSA_BR1])
    v = OspfRoutes().judge([wire, not_observed("r-hq"), not_observed("r-br1")], ROUTE_ARGS, PLAN)
    assert v.status == "pass", v.message.en
    assert v.message.en.endswith("Not checked: the routers' own routing tables (a static route to another site's "
                                 "LAN) (r-br1, r-hq; this provider cannot read a node's kernel from outside it).")
    assert "Non vérifié : les tables de routage des routeurs" in v.message.fr
    # the wire still decides: a LAN missing from the LSAs fails, and the note is still there
    v = OspfRoutes().judge([cap(GOOD_HELLOS, [LSA_HQ]), not_observed("r-br1")], ROUTE_ARGS, PLAN)
    assert v.status == "fail" and "no router-LSA of r-br1" in v.message.en and "Not checked:" in v.message.en
    # with the tables read, nothing is said about them (unchanged message)
    v = OspfRoutes().judge([wire, ev("netlink", [], target_name="r-hq")], ROUTE_ARGS, PLAN)
    assert v.status == "pass" and "Not checked" not in v.message.en and "Non vérifié" not in v.message.fr


RES_ARGS = {"cut": {"link": "wan-a", "ends": {"r-hq": A1, "r-br1": A2}}, "within": 10}


def echo(phase: str, after_s: float | None = 0.1, reachable: bool = True, **kw: Any) -> Evidence:
    return ev("udp", {"reachable": reachable and (after_s is not None), "first_reply_after_s": after_s,
                      "forged": 0}, phase=phase, target_name="v-br1", **kw)


def fault(name: str, phase: str, ok: bool = True) -> Evidence:
    return ev("fault", {}, ok=ok, error=None if ok else "EPERM", fault=name, phase=phase, link="wan-a",
              source="link:wan-a")


def pre(name: str, two_way: bool = True) -> Evidence:
    return cap(GOOD_HELLOS if two_way else [hello(A1, RID_HQ, [])], phase=f"pre-{name}", fault=name,
               two_way=two_way)


def _resilience(silent: float | None, pull: float | None, *, before_ok: bool = True,
                fault_ok: bool = True) -> list[Evidence]:
    return [
        echo("before", reachable=before_ok),
        pre("silent-cut"), fault("silent-cut", "apply", fault_ok), echo("after-silent-cut", silent),
        fault("silent-cut", "restore"), echo("restored-silent-cut"),
        pre("cable-pull"), fault("cable-pull", "apply"), fault("cable-pull", "apply"),
        echo("after-cable-pull", pull),
        fault("cable-pull", "restore"), fault("cable-pull", "restore"), echo("restored-cable-pull"),
    ]


def test_resilience_verdicts() -> None:
    j = WanResilience()
    v = j.judge(_resilience(4.2, 0.4), RES_ARGS, PLAN)
    assert v.status == "pass" and "4.20" in v.message.en and "0.40" in v.message.en
    # default timers: the silent cut is noticed only after the dead interval (40 s)
    v = j.judge(_resilience(None, 0.4), RES_ARGS, PLAN)
    assert v.status == "fail" and "silent cut" in v.message.en and "cable pull" not in v.message.en
    assert j.judge(_resilience(4.0, 12.0), RES_ARGS, PLAN).status == "fail"
    before = j.judge(_resilience(1.0, 1.0, before_ok=False), RES_ARGS, PLAN)
    assert before.status == "fail" and "before" in before.message.en.lower()
    assert j.judge(_resilience(1.0, 1.0, fault_ok=False), RES_ARGS, PLAN).status == "error"
    # no fault made at all: nothing was tested
    assert j.judge([echo("before")], RES_ARGS, PLAN).status == "error"
    # the link to cut carried no OSPF adjacency: the fault would test nothing, no credit
    v = j.judge([echo("before"), pre("silent-cut", two_way=False)], RES_ARGS, PLAN)
    assert v.status == "fail" and "carries no OSPF adjacency" in v.message.en


def test_two_way_needs_both_ends_listing_each_other() -> None:
    from graders.routing import _two_way

    ends = {"r-hq": A1, "r-br1": A2}
    assert _two_way(cap(GOOD_HELLOS), ends)
    assert not _two_way(cap([hello(A1, RID_HQ, [RID_BR1]), hello(A2, RID_BR1, [])]), ends)
    assert not _two_way(cap([hello(A1, RID_HQ, [RID_BR1])]), ends)


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
    fresh_ok = ev("snmp", {"answered": True, "source_address": "10.1.0.77"}, target_name="r-hq",
                  purpose="v3-fresh-source")
    fresh_silent = ev("snmp", {"answered": False, "source_address": "10.1.0.77"}, target_name="r-hq",
                      purpose="v3-fresh-source")
    closed = ev("snmp", {"answered": False}, target_name="r-hq", version="2c", community_label="public")
    opened = ev("snmp", {"answered": True}, target_name="r-hq", version="2c", community_label="public")
    assert j.judge([alive, fresh_ok, closed], SNMP_ARGS, PLAN).status == "pass"
    assert j.judge([alive, fresh_ok, opened], SNMP_ARGS, PLAN).status == "fail"
    # an agent that listens nowhere refuses v2c vacuously: no credit
    assert j.judge([silent, fresh_ok, closed], SNMP_ARGS, PLAN).status == "fail"
    # nor one that ignores every address but the probe's: the fresh address must get v3 answers
    v = j.judge([alive, fresh_silent, closed], SNMP_ARGS, PLAN)
    assert v.status == "fail" and "fresh" in v.message.en
    # no v1/v2c request sent: nothing observed
    assert j.judge([alive, fresh_ok], SNMP_ARGS, PLAN).status == "error"


def test_snmp_requests_are_well_formed_ber() -> None:
    # what net-snmp's snmpget -v2c -c public sends for sysDescr.0 with request id 123456
    assert community_get_packet("public", "2c", 123456).hex() == (
        "302802010104067075626c6963a01b020301e240020100020100300e300c06082b060102010101000500")
    assert community_get_packet("public", "1", 1)[4] == 0  # version 0 = SNMPv1
    pkt = v3_discovery_packet(123456)
    assert pkt[0] == 0x30 and pkt[2:5] == b"\x02\x01\x03"  # a SEQUENCE starting with msgVersion 3
    assert bytes.fromhex("020301e240") in pkt  # the message id the reply must carry


def test_fresh_address_avoids_every_planned_address() -> None:
    import random

    rng = random.Random(1)
    taken = {f"10.1.0.{i}" for i in range(1, 255) if i != 77}
    assert fresh_address("10.1.0.5/24", taken, rng) == "10.1.0.77/24"
    with pytest.raises(ValueError):
        fresh_address("10.1.0.5/24", taken | {"10.1.0.77"}, rng)


# ------------------------------------------------- a network device's static routes, via its CLI
FRR_STATIC = """Codes: K - kernel route, C - connected, S - static, R - RIP,
       > - selected route, * - FIB route, q - queued, r - rejected, b - backup

S>* 10.2.0.0/24 [1/0] via 172.16.0.2, eth1, weight 1, 00:00:07
"""
IOS_STATIC = """Gateway of last resort is not set

      10.0.0.0/8 is variably subnetted, 2 subnets, 2 masks
S        10.2.0.0/24 [1/0] via 172.16.0.2
      172.16.0.0/30 is subnetted, 1 subnets
S        172.16.9.0 [1/0] via 172.16.0.2
"""


def test_static_prefixes_reads_frr_and_ios_outputs() -> None:
    from graders.routing import static_prefixes

    assert static_prefixes(FRR_STATIC) == {"10.2.0.0/24"}
    assert static_prefixes(IOS_STATIC) == {"10.2.0.0/24", "172.16.9.0/30"}
    assert static_prefixes("") == set()
    assert static_prefixes("% Unknown command.\nC>* 10.1.0.0/24 is directly connected, eth0") == set()


def device_cli(router: str, output: str, ok: bool = True) -> Evidence:
    return ev("ssh", [{"cmd": "show ip route static", "output": output}], ok=ok, target_name=router,
              device_cli=True, supporting_only=True)


def test_ospf_routes_a_devices_static_route_read_through_its_cli_takes_the_points() -> None:
    wire = cap(GOOD_HELLOS, [LSA_HQ, LSA_BR1])
    v = OspfRoutes().judge([wire, device_cli("r-hq", FRR_STATIC)], ROUTE_ARGS, PLAN)
    assert v.status == "fail" and "r-hq reaches 10.2.0.0/24 through a static route (its CLI" in v.message.en
    # a static route to its own LAN, or none at all, takes nothing; a CLI that failed gives nothing either
    v = OspfRoutes().judge([wire, device_cli("r-br1", FRR_STATIC), device_cli("r-hq", "")], ROUTE_ARGS, PLAN)
    assert v.status == "pass", v.message.en
    assert OspfRoutes().judge([wire, device_cli("r-hq", FRR_STATIC, ok=False)], ROUTE_ARGS, PLAN).status == "pass"
    # the CLI never gives points: a LAN missing from the LSAs fails whatever it prints
    v = OspfRoutes().judge([cap(GOOD_HELLOS, [LSA_HQ]), device_cli("r-br1", "")], ROUTE_ARGS, PLAN)
    assert v.status == "fail" and "no router-LSA of r-br1" in v.message.en


def test_ospf_routes_says_why_a_devices_routes_were_not_read() -> None:
    wire = cap(GOOD_HELLOS, [LSA_HQ, LSA_BR1])
    unread = ev("netlink", None, target_name="r-hq", not_observed="node_kernel",
                why="this device's CLI cannot be reached over SSH from a grader vantage point",
                why_fr="la CLI de cet équipement n'est pas joignable en SSH depuis un point de mesure de l'évaluateur")
    v = OspfRoutes().judge([wire, unread, not_observed("r-br1")], ROUTE_ARGS, PLAN)
    assert v.status == "pass"
    assert "(r-br1; this provider cannot read a node's kernel from outside it / r-hq; this device's CLI" \
        in v.message.en, v.message.en
    assert "r-hq ; la CLI de cet équipement" in v.message.fr
