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
    # open to one scanner only (a filter that exempts the other scanner's network): still open
    hidden = _scan({22: "timeout"}) + [ev("tcp", {"state": "open"}, source="v-ib", target="198.51.100.2:22",
                                          target_name="gw-a", port=22)]
    v = j.judge(hidden, {}, PLAN)
    assert v.status == "fail" and "198.51.100.2:22/tcp (v-ib)" in v.message.en
    assert j.judge([ev("tcp", None, ok=False, error="netns gone")], {}, PLAN).status == "error"
    assert j.judge([], {}, PLAN).status == "error"


# --------------------------------------------------------------------------- recovery
REC_ARGS = {"node": "gw-b", "near": "v-b", "far": "v-a", "within": 15}
WG: dict[str, Any] = {"pid": 4242, "nspid": "116", "comm": "wireguard-go", "iff": ["wg0"]}


def _recovery(before: bool = True, oif: str | None = "wg0", holders: list[dict[str, Any]] | None = None,
              gone: bool | None = True, after: list[float | None] | None = None) -> list[Evidence]:
    out = [ev("udp", {"reachable": before}, phase="before", target_name="v-b"),
           ev("udp", {"reachable": True}, phase="before", target_name="v-a")]
    if not before:
        return out
    out.append(ev("netlink", {"oif": oif, "gateway": None}, phase="route", source="gw-b"))
    held = [WG] if holders is None else holders
    out.append(ev("artifact", {"holders": held}, phase="daemons", source="grader", target="gw-b"))
    if not any(oif in h["iff"] for h in held):
        return out
    if gone is not None:
        out.append(ev("fault", {"killed": [4242], "gone": gone, "errors": []}, phase="fault", source="grader",
                      target="gw-b"))
    for t in after if after is not None else [0.4, 1.6]:
        out.append(ev("udp", {"reachable": t is not None, "first_reply_after_s": t}, phase="after", target_name="v-a"))
    return out


def test_recovery_pass() -> None:
    v = RestartRecovery().judge(_recovery(), REC_ARGS, PLAN)
    assert v.status == "pass" and "1.60" in v.message.en and "wireguard-go" in v.message.en


@pytest.mark.parametrize("kwargs,needle", [
    ({"before": False}, "already"),
    # the LANs reach each other in clear: the route leaves through the Internet interface
    ({"oif": "eth1"}, "no tunnel daemon"),
    # a decoy TUN holder on another interface does not count for the routed one
    ({"holders": [{**WG, "iff": ["wg9"]}]}, "no tunnel daemon"),
    ({"holders": []}, "no tunnel daemon"),
    # nothing restarted the killed daemon (e.g. a no-op `restart` and no supervisor)
    ({"after": [0.5, None]}, "no recovery"),
    ({"after": [0.5, 16.0]}, "no recovery"),
])
def test_recovery_fails(kwargs: dict[str, Any], needle: str) -> None:
    v = RestartRecovery().judge(_recovery(**kwargs), REC_ARGS, PLAN)
    assert v.status == "fail" and needle in v.message.en


def test_recovery_errors() -> None:
    j = RestartRecovery()
    assert j.judge(_recovery(gone=False), REC_ARGS, PLAN).status == "error"  # the grader could not kill it
    assert j.judge(_recovery(gone=None, after=[]), REC_ARGS, PLAN).status == "error"
    assert j.judge(_recovery()[:5], REC_ARGS, PLAN).status == "error"  # killed, return never measured
    assert j.judge(_recovery()[:4], REC_ARGS, PLAN).status == "error"  # found, never killed
    assert j.judge([ev("udp", None, ok=False, error="timeout", phase="before")], REC_ARGS, PLAN).status == "error"
    assert j.judge([], REC_ARGS, PLAN).status == "error"
    broken = _recovery()
    broken[3] = ev("artifact", None, ok=False, error="node gone", phase="daemons")
    assert j.judge(broken, REC_ARGS, PLAN).status == "error"


# --------------------------------------------------------------------- node files
def _files(role: str, node: str, **present: bool) -> Evidence:
    files = {name: {"path": f"/etc/openvpn/{name}", "present": ok, "pem": ok, "size": 600 if ok else 0}
             for name, ok in present.items()}
    return ev("artifact", {"files": files}, role=role, source="grader", target=node)


def _session(**p: Any) -> dict[str, Any]:
    base = {"server_answered": True, "server_verified": True, "client_refused_server": False, "accepted": True,
            "tls_failed": False, "pushed_routes": [], "tun_ip": "172.16.9.2", "exit": "killed", "routes_set": []}
    return {**base, **p}


# ----------------------------------------------------------------------------- laptop
LAP_ARGS = {"node": "laptop", "tunnel_routes": ["10.1.0.0/24", "10.2.0.0/24"]}


def _laptop(session: dict[str, Any] | None = None, a: bool = True, b_tunnel: bool = False,
            b_internet: bool = False, files_ok: bool = True) -> list[Evidence]:
    out = [_files("client-identity", "laptop", ca=files_ok, cert=True, key=True),
           ev("udp", {"reachable": b_internet}, expect="denied", path="internet", target_name="v-b", source="v-net")]
    if not files_ok:
        return out
    s = session or _session(routes_set=["10.1.0.0/24", "10.2.0.0/24"])
    out.append(ev("exec", s, role="session", source="v-road"))
    if s.get("accepted"):
        out += [ev("udp", {"reachable": a}, expect="allowed", path="tunnel", target_name="v-a", source="v-road"),
                ev("udp", {"reachable": b_tunnel}, expect="denied", path="tunnel", target_name="v-b",
                   source="v-road")]
    return out


def test_laptop_scope_pass() -> None:
    v = LaptopScope().judge(_laptop(), LAP_ARGS, PLAN)
    assert v.status == "pass" and "3 verified" in v.message.en


@pytest.mark.parametrize("kwargs,needle", [
    ({"b_tunnel": True}, "v-b (10.0.0.1) reachable through the tunnel"),
    ({"b_internet": True}, "reachable from the Internet, outside the tunnel"),
    ({"a": False}, "v-a (10.0.0.1) unreachable through the tunnel"),
    # no remote-access server, a static key, or a server that refuses the laptop's certificate
    ({"session": _session(accepted=False, server_answered=False, exit="exited 1")}, "gets no session"),
    ({"files_ok": False}, "the laptop's identity"),
])
def test_laptop_scope_fails(kwargs: dict[str, Any], needle: str) -> None:
    v = LaptopScope().judge(_laptop(**kwargs), LAP_ARGS, PLAN)
    assert v.status == "fail" and needle in v.message.en, v.message.en


def test_laptop_scope_errors() -> None:
    j = LaptopScope()
    # the grader could not route both LANs into its own tunnel: nothing measured about B
    assert j.judge(_laptop(session=_session(routes_set=["10.1.0.0/24"])), LAP_ARGS, PLAN).status == "error"
    assert j.judge(_laptop()[:2], LAP_ARGS, PLAN).status == "error"  # the client never ran
    assert j.judge([ev("udp", None, ok=False, error="netns gone")], LAP_ARGS, PLAN).status == "error"
    assert j.judge([], LAP_ARGS, PLAN).status == "error"


# ------------------------------------------------------------------------ remote access
RW_ARGS = {"server": "198.51.100.2", "port": 1194}


def _legit(control: dict[str, Any] | None = None, ca: bool = True, issued: bool = True) -> list[Evidence]:
    ident = _files("client-identity", "laptop", cert=True, key=True)
    ident.parsed.update(issued_by_published_ca=issued, openssl_verify="OK" if issued else "unable to get issuer")
    out = [_files("published-ca", "gw-a", ca=ca), ident]
    if ca:
        out.append(ev("exec", control or _session(), role="control", source="v-net"))
    return out


def _tls(answered: bool = True, unreachable: bool = False, **legit: Any) -> list[Evidence]:
    return [ev("udp", {"answered": answered, "opcode": 8 if answered else None, "port_unreachable": unreachable},
               role="hard-reset"), *_legit(**legit)]


def test_openvpn_tls_pass() -> None:
    v = OpenvpnTls().judge(_tls(), RW_ARGS, PLAN)
    assert v.status == "pass" and "gets a session" in v.message.en


@pytest.mark.parametrize("kwargs,needle", [
    ({"answered": False}, "static key"),
    ({"answered": False, "unreachable": True}, "Nothing listens"),
    # a forged hard-reset answer without a real TLS server behind it
    ({"control": _session(accepted=False, server_answered=False)}, "no OpenVPN TLS server answers"),
    ({"control": _session(accepted=False, server_verified=False, client_refused_server=True)},
     "not signed by the published CA"),
    ({"issued": False}, "laptop's certificate is not signed"),
    ({"ca": False}, "absent"),
])
def test_openvpn_tls_fails(kwargs: dict[str, Any], needle: str) -> None:
    v = OpenvpnTls().judge(_tls(**kwargs), RW_ARGS, PLAN)
    assert v.status == "fail" and needle in v.message.en, v.message.en


def test_openvpn_tls_errors() -> None:
    j = OpenvpnTls()
    assert j.judge([ev("udp", None, ok=False, error="timeout", role="hard-reset")], RW_ARGS, PLAN).status == "error"
    assert j.judge([], RW_ARGS, PLAN).status == "error"


REFUSED = {"accepted": False, "server_answered": True, "server_verified": True, "client_refused_server": False,
           "tls_failed": True, "exit": "killed"}


def _impostor(imp: dict[str, Any] | None = None, **legit: Any) -> list[Evidence]:
    out = _legit(**legit)
    if imp is not None:
        out.append(ev("exec", imp, role="impostor", source="v-net"))
    return out


def test_impostor_refused_after_a_positive_control() -> None:
    v = ImpostorRefused().judge(_impostor(REFUSED), RW_ARGS, PLAN)
    assert v.status == "pass" and "legitimate client" in v.message.en


@pytest.mark.parametrize("kwargs,needle", [
    ({"imp": {**REFUSED, "accepted": True}}, "self-signed"),
    # no server at all: the impostor "gets nothing", and so does the legitimate client
    ({"control": _session(accepted=False, server_answered=False, server_verified=False)},
     "no OpenVPN TLS server answers"),
    # the published CA is not the server's: the impostor could only refuse the server itself
    ({"control": _session(accepted=False, server_verified=False, client_refused_server=True)},
     "server's certificate is not signed by the published CA"),
    ({"control": _session(accepted=False)}, "opens no session for the legitimate client"),
    ({"issued": False}, "laptop's certificate is not signed by the published CA"),
    ({"ca": False}, "absent"),
    # the refusal must come from the server: silence to the impostor, or the impostor refusing the server
    ({"imp": {**REFUSED, "server_answered": False}}, "does not answer the impostor"),
    ({"imp": {**REFUSED, "client_refused_server": True, "server_verified": False}}, "could not authenticate"),
])
def test_impostor_fails(kwargs: dict[str, Any], needle: str) -> None:
    v = ImpostorRefused().judge(_impostor(**kwargs), RW_ARGS, PLAN)
    assert v.status == "fail" and needle in v.message.en, v.message.en


def test_impostor_errors() -> None:
    j = ImpostorRefused()
    assert j.judge(_impostor(None), RW_ARGS, PLAN).status == "error"  # control passed, impostor never ran
    assert j.judge(_impostor(None) + [ev("exec", None, ok=False, error="openvpn missing", role="impostor")],
                   RW_ARGS, PLAN).status == "error"
    assert j.judge([], RW_ARGS, PLAN).status == "error"
