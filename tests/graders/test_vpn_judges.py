"""The pure halves of the VPN graders: verdicts from fabricated evidence, no network."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from graders.vpn import ExposedPorts, ImpostorRefused, LaptopScope, OpenvpnTls, RestartRecovery, WireConfidentiality
from labkit.domain.grading import GraderRegistry
from labkit.models.evidence import Evidence
from tests.graders.evidence import PLAN, make_evidence

T = datetime(2026, 11, 28, tzinfo=UTC)


def ev(kind: str, parsed: Any, **kw: Any) -> Evidence:
    return make_evidence(kind, parsed, **{"at": T, **kw})


def test_registry_knows_the_vpn_graders() -> None:
    assert GraderRegistry.load().names() >= {
        "vpn.wire_confidentiality", "vpn.exposed_ports", "vpn.restart_recovery", "vpn.laptop_scope",
        "vpn.openvpn_tls", "vpn.impostor_refused"}


# ------------------------------------------------------------------ confidentiality
CONF_ARGS = {"vpn_ports": ["51820/udp", "1194/udp"]}


def _flow(proto: str, sport: int, dport: int) -> dict[str, Any]:
    return {"proto": proto, "src": "198.51.100.2", "sport": sport, "dst": "203.0.113.2", "dport": dport,
            "packets": 3, "payload_bytes": 300, "greeting": None}


def _conf(flows: list[dict[str, Any]], hits: list[dict[str, Any]] | None = None, received: int = 5,
          sent: int = 5) -> list[Evidence]:
    cap = {"frames": 10, "bytes": 1000, "flows": flows, "marker_hits": hits or [], "markers_searched": 1}
    return [ev("capture", cap, role="tap", segment="inet-a"),
            ev("udp", {"received": received, "other": 0}, role="receiver"),
            ev("udp", {"sent": sent, "send_errors": []}, role="sender")]


def test_confidentiality_pass() -> None:
    v = WireConfidentiality().judge(_conf([_flow("udp", 51820, 51820), _flow("udp", 40000, 1194)]), CONF_ARGS, PLAN)
    assert v.status == "pass"


def test_confidentiality_fails_on_a_marker_in_clear() -> None:
    hits = [{"marker": 0, "flow": "udp 10.1.0.250:5 → 10.2.0.250:41000"}]
    v = WireConfidentiality().judge(_conf([_flow("udp", 51820, 51820)], hits), CONF_ARGS, PLAN)
    assert v.status == "fail" and "inet-a" in v.message.en and "clear" in v.message.en


def test_confidentiality_fails_on_traffic_outside_the_vpn_ports() -> None:
    v = WireConfidentiality().judge(_conf([_flow("tcp", 50000, 22)]), CONF_ARGS, PLAN)
    assert v.status == "fail" and ":22" in v.message.en


def test_confidentiality_fails_on_other_ip_protocols_but_tolerates_icmp() -> None:
    evidence = _conf([_flow("udp", 51820, 51820)])
    evidence[0].parsed["ip_other"] = {"1": 3}
    assert WireConfidentiality().judge(evidence, CONF_ARGS, PLAN).status == "pass"
    evidence[0].parsed["ip_other"] = {"1": 3, "4": 5}
    v = WireConfidentiality().judge(evidence, CONF_ARGS, PLAN)
    assert v.status == "fail" and "IP protocol 4" in v.message.en


def test_confidentiality_fails_when_the_marker_never_arrives() -> None:
    v = WireConfidentiality().judge(_conf([], received=0), CONF_ARGS, PLAN)
    assert v.status == "fail" and "did not arrive" in v.message.en


def test_confidentiality_errors() -> None:
    j = WireConfidentiality()
    broken = _conf([])
    broken[0] = ev("capture", None, ok=False, error="cannot open a packet socket", role="tap")
    assert j.judge(broken, CONF_ARGS, PLAN).status == "error"
    assert j.judge(_conf([], sent=0), CONF_ARGS, PLAN).status == "error"
    assert j.judge([], CONF_ARGS, PLAN).status == "error"


# --------------------------------------------------------------------------- exposure
def _scan(states: dict[int, str]) -> list[Evidence]:
    return [ev("tcp", {"state": s}, target=f"198.51.100.2:{p}", target_name="gw-a", port=p) for p, s in states.items()]


def test_exposure_pass_fail_error() -> None:
    j = ExposedPorts()
    assert j.judge(_scan({22: "timeout", 80: "refused"}), {}, PLAN).status == "pass"
    v = j.judge(_scan({22: "open", 80: "timeout"}), {}, PLAN)
    assert v.status == "fail" and "198.51.100.2:22" in v.message.en
    assert j.judge(_scan({22: "open"}), {"allowed_tcp": [22]}, PLAN).status == "pass"
    assert j.judge([ev("tcp", None, ok=False, error="netns gone")], {}, PLAN).status == "error"
    assert j.judge([], {}, PLAN).status == "error"


# --------------------------------------------------------------------------- recovery
REC_ARGS = {"node": "gw-b", "command": ["service", "vpn-s2s", "restart"], "within": 15}


def _recovery(before: bool = True, rc: int | None = 0, after: list[float | None] | None = None,
              fault_ok: bool = True) -> list[Evidence]:
    out = [ev("icmp", {"reachable": before}, phase="before"), ev("icmp", {"reachable": True}, phase="before")]
    if rc is not None:
        out.append(ev("fault", {"rc": rc, "stderr": "vpn-s2s: unrecognized service"} if fault_ok else None,
                      ok=fault_ok, error=None if fault_ok else "ProviderError: node gone", phase="fault"))
    for t in after if after is not None else [0.4, 0.6]:
        out.append(ev("icmp", {"reachable": t is not None, "first_reply_after_s": t}, phase="after"))
    return out


def test_recovery_pass() -> None:
    v = RestartRecovery().judge(_recovery(), REC_ARGS, PLAN)
    assert v.status == "pass" and "0.60" in v.message.en


@pytest.mark.parametrize("kwargs,needle", [
    ({"before": False}, "already"),
    ({"rc": 1}, "unrecognized service"),
    ({"after": [0.5, None]}, "no recovery"),
    ({"after": [0.5, 16.0]}, "no recovery"),
])
def test_recovery_fails(kwargs: dict[str, Any], needle: str) -> None:
    v = RestartRecovery().judge(_recovery(**kwargs), REC_ARGS, PLAN)
    assert v.status == "fail" and needle in v.message.en


def test_recovery_errors() -> None:
    j = RestartRecovery()
    assert j.judge(_recovery(fault_ok=False), REC_ARGS, PLAN).status == "error"
    assert j.judge(_recovery(rc=None, after=[]), REC_ARGS, PLAN).status == "error"
    assert j.judge([ev("icmp", None, ok=False, error="timeout", phase="before")], REC_ARGS, PLAN).status == "error"


# ----------------------------------------------------------------------------- laptop
def test_laptop_scope() -> None:
    j = LaptopScope()
    args = {"node": "laptop"}
    good = [ev("icmp", {"reachable": True}, expect="allowed", target_name="ws-a", source="laptop"),
            ev("icmp", {"reachable": False}, expect="denied", target_name="ws-b", source="laptop")]
    assert j.judge(good, args, PLAN).status == "pass"
    into_b = [good[0], ev("icmp", {"reachable": True}, expect="denied", target_name="ws-b", source="laptop")]
    v = j.judge(into_b, args, PLAN)
    assert v.status == "fail" and "ws-b" in v.message.en and "reachable" in v.message.en
    no_tunnel = [ev("icmp", {"reachable": False}, expect="allowed", target_name="ws-a", source="laptop"), good[1]]
    assert j.judge(no_tunnel, args, PLAN).status == "fail"
    assert j.judge([ev("icmp", None, ok=False, error="node gone")], args, PLAN).status == "error"
    assert j.judge([], args, PLAN).status == "error"


# ------------------------------------------------------------------------ remote access
TLS_ARGS = {"server": "198.51.100.2", "port": 1194}


def test_openvpn_tls() -> None:
    j = OpenvpnTls()
    assert j.judge([ev("udp", {"answered": True, "opcode": 8})], TLS_ARGS, PLAN).status == "pass"
    v = j.judge([ev("udp", {"answered": False, "opcode": None})], TLS_ARGS, PLAN)
    assert v.status == "fail" and "static key" in v.message.en
    v = j.judge([ev("udp", {"answered": False, "port_unreachable": True})], TLS_ARGS, PLAN)
    assert v.status == "fail" and "Nothing listens" in v.message.en
    assert j.judge([ev("udp", None, ok=False, error="timeout")], TLS_ARGS, PLAN).status == "error"
    assert j.judge([], TLS_ARGS, PLAN).status == "error"


IMP_ARGS = {"ca_node": "gw-a", "ca_path": "/etc/openvpn/server/ca.crt"}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_impostor() -> None:
    j = ImpostorRefused()
    ca = ev("exec", {"rc": 0, "stdout": PEM}, role="ca")
    refused = ev("exec", {"accepted": False, "tls_failed": True, "exit": "killed"})
    assert j.judge([ca, refused], IMP_ARGS, PLAN).status == "pass"
    accepted = ev("exec", {"accepted": True, "tls_failed": False, "exit": "killed"})
    v = j.judge([ca, accepted], IMP_ARGS, PLAN)
    assert v.status == "fail" and "self-signed" in v.message.en
    no_ca = ev("exec", {"rc": 1, "stdout": ""}, role="ca")
    assert j.judge([no_ca], IMP_ARGS, PLAN).status == "fail"
    assert j.judge([ca], IMP_ARGS, PLAN).status == "error"
    assert j.judge([ca, ev("exec", None, ok=False, error="openvpn missing")], IMP_ARGS, PLAN).status == "error"
