"""The pure halves of the supervision graders: verdicts from fabricated evidence, no network.
What the cheat variants produce (a canned Prometheus API, notifications forged from another
node, spoofed, sent before the fault or matching no alert Prometheus raised, a log line
nobody forwarded, a made-up NTP answer with no poll of the reference) is judged a fail here."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from graders.supervision import (
    AlertFires,
    AlertRules,
    Availability,
    NtpReference,
    SnmpV3Devices,
    SyslogForwarded,
    TargetsUp,
    alert_groups,
    availability_rows,
    label_fingerprint,
    matching_group,
    parse_read_answer,
    rule_thresholds,
)
from labkit.adapters.probes.ntp import NTP_EPOCH, parse_ntp_reply
from labkit.domain.grading import GraderRegistry
from labkit.models.evidence import Evidence
from tests.graders.evidence import PLAN, make_evidence

T = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


def ev(kind: str, parsed: Any, **kw: Any) -> Evidence:
    return make_evidence(kind, parsed, **{"target": "10.0.0.10:9090", "at": T, **kw})


def prom(data: Any, **meta: Any) -> Evidence:
    return ev("tcp", {"status": 200, "json": {"status": "success", "data": data}}, **meta)


def test_registry_knows_the_supervision_graders() -> None:
    assert GraderRegistry.load().names() >= {
        "supervision.snmpv3_devices", "supervision.targets_up", "supervision.alert_rules",
        "supervision.alert_fires", "supervision.syslog_forwarded", "supervision.ntp_reference",
        "supervision.availability"}


# ---------------------------------------------------------------------------------- SNMP
def _snmp(device: str, answered: bool, name: str | None = None) -> Evidence:
    parsed = {"answered": answered, "values": {"1.3.6.1.2.1.1.5.0": name or device} if answered else {},
              "error_indication": None if answered else "RequestTimedOut"}
    return ev("snmp", parsed, target_name=device)


def test_snmpv3_devices_pass_and_name_each_problem() -> None:
    j = SnmpV3Devices()
    assert j.judge([_snmp("r1", True), _snmp("srv1", True)], {}, PLAN).status == "pass"
    v = j.judge([_snmp("r1", True), _snmp("srv1", False), _snmp("srv2", True, "localhost")], {}, PLAN)
    assert v.status == "fail"
    assert "srv1 does not answer" in v.message.en and "srv2 reports sysName 'localhost'" in v.message.en
    assert j.judge([ev("snmp", None, ok=False, error="boom", target_name="r1")], {}, PLAN).status == "error"


# ------------------------------------------------------------------------------ targets
DEVICES = {"r1": "10.0.0.1", "srv1": "10.0.0.11"}
MON = "10.0.0.10"


def _target(instance: str, health: str = "up", error: str = "") -> dict[str, Any]:
    return {"labels": {"instance": instance, "job": "snmp"}, "health": health, "lastError": error,
            "scrapeUrl": f"http://127.0.0.1:9116/snmp?module=m&target={instance}"}


def _nonce(right: bool = True) -> Evidence:
    value = "3579" if right else "1"
    return prom({"resultType": "vector", "result": [{"metric": {}, "value": [0, value]}]}, phase="nonce", expect=3579)


def _flow(proto: str, src: str, sport: int, dst: str, dport: int) -> dict[str, Any]:
    return {"proto": proto, "src": src, "sport": sport, "dst": dst, "dport": dport, "packets": 2}


def _snmp_wire(devices: dict[str, str] = DEVICES, answered: bool = True) -> Evidence:
    flows = [_flow("udp", MON, 40000 + i, a, 161) for i, a in enumerate(devices.values())]
    if answered:
        flows += [_flow("udp", a, 161, MON, 40000 + i) for i, a in enumerate(devices.values())]
    return ev("capture", {"flows": flows}, phase="wire", segment="lan-a")


def _targets(targets: list[dict[str, Any]], *, nonce: bool = True, wire: Evidence | None = None) -> list[Evidence]:
    return [prom({"activeTargets": targets}, phase="targets"), _nonce(nonce), wire or _snmp_wire()]


def test_targets_up() -> None:
    j, args = TargetsUp(), {"devices": DEVICES, "prometheus": MON, "poller": MON}
    assert j.judge(_targets([_target("10.0.0.1"), _target("10.0.0.11")]), args, PLAN).status == "pass"
    # 10.0.0.1 is not 10.0.0.11's prefix match: srv1 missing is seen
    v = j.judge(_targets([_target("10.0.0.1")]), args, PLAN)
    assert v.status == "fail" and "srv1 (10.0.0.11) is not a target" in v.message.en
    v = j.judge(_targets([_target("10.0.0.1"), _target("10.0.0.11", "down", "timeout")]), args, PLAN)
    assert v.status == "fail" and "timeout" in v.message.en
    # a target named 10.0.0.111 does not stand for 10.0.0.11
    assert j.judge(_targets([_target("10.0.0.1"), _target("10.0.0.111")]), args, PLAN).status == "fail"
    v = j.judge([ev("tcp", None, ok=False, error="refused", phase="targets"), _nonce(), _snmp_wire()], args, PLAN)
    assert v.status == "fail"


def test_targets_up_from_a_canned_api_or_without_polling_fails() -> None:
    j, args = TargetsUp(), {"devices": DEVICES, "prometheus": MON, "poller": MON}
    good = [_target("10.0.0.1"), _target("10.0.0.11")]
    # canned JSON: the nonce query is not computed
    v = j.judge(_targets(good, nonce=False), args, PLAN)
    assert v.status == "fail" and "not Prometheus" in v.message.en
    # the API says up, but nothing polls the devices on the LAN
    v = j.judge(_targets(good, wire=ev("capture", {"flows": []}, phase="wire")), args, PLAN)
    assert v.status == "fail" and "no SNMP request from 10.0.0.10 to r1" in v.message.en
    # polled from another address than the monitoring server
    v = j.judge(_targets(good, wire=_snmp_wire({"x": "10.0.0.99"})), args, PLAN)
    assert v.status == "fail"
    v = j.judge(_targets(good, wire=_snmp_wire(answered=False)), args, PLAN)
    assert v.status == "fail" and "does not answer 10.0.0.10's SNMP" in v.message.en
    # a capture that could not run is an error, not a verdict
    v = j.judge(_targets(good, wire=ev("capture", None, ok=False, error="no socket", phase="wire")), args, PLAN)
    assert v.status == "error"


# -------------------------------------------------------------------------------- rules
def test_rule_thresholds_in_percent() -> None:
    assert rule_thresholds("dskPercent > 80") == [80.0]
    assert rule_thresholds("dskPercent{dskPath='/srv/data'} >= 85") == [85.0]
    assert rule_thresholds("used / size > bool 0.9") == [90.0]
    assert rule_thresholds("up == 0") == []


RULE_ARGS = {"rules": {"Down": {"for_max_s": "3"}, "Disk": {"for_max_s": "3", "threshold_max": "80"}}}


def _rules(disk_expr: str = "dskPercent > 80", disk_for: float = 2, down: bool = True) -> Evidence:
    rules = [{"type": "alerting", "name": "Disk", "query": disk_expr, "duration": disk_for}]
    if down:
        rules.append({"type": "alerting", "name": "Down", "query": 'up{job="snmp"} == 0', "duration": 3})
    return prom({"groups": [{"name": "g", "rules": rules}]}, phase="rules")


def test_alert_rules() -> None:
    j = AlertRules()
    assert j.judge([_rules(), _nonce()], RULE_ARGS, PLAN).status == "pass"
    v = j.judge([_rules("dskPercent > 99"), _nonce()], RULE_ARGS, PLAN)
    assert v.status == "fail" and "99 %" in v.message.en
    v = j.judge([_rules(disk_for=30), _nonce()], RULE_ARGS, PLAN)
    assert v.status == "fail" and "waits 30 s" in v.message.en
    v = j.judge([_rules(down=False), _nonce()], RULE_ARGS, PLAN)
    assert v.status == "fail" and "no alert rule 'Down'" in v.message.en
    assert j.judge([_rules("absent(dskPercent)"), _nonce()], RULE_ARGS, PLAN).status == "fail"
    # the right rules from a server that cannot evaluate PromQL (canned JSON)
    v = j.judge([_rules(), _nonce(right=False)], RULE_ARGS, PLAN)
    assert v.status == "fail" and "not Prometheus" in v.message.en
    assert j.judge([_rules()], RULE_ARGS, PLAN).status == "fail"


# ------------------------------------------------------------------------------- alerts
SENDER = {"node": "mon", "iface": "eth0", "segment": "lan-a", "address": MON}
ALERT_ARGS = {"alert": "Down", "within_s": "20", "sender": SENDER}
LABELS = {"alertname": "Down", "instance": "10.0.0.12", "job": "snmp", "severity": "critical"}
TS = T.timestamp()


def test_label_fingerprint_is_alertmanagers() -> None:
    # seen on a real Alertmanager 0.25 webhook payload for this label set
    labels = {"alertname": "HostUnreachable", "instance": "10.240.108.12", "job": "snmp", "severity": "critical"}
    assert label_fingerprint(labels) == "c93e578c59bbb62f"
    assert label_fingerprint({**labels, "job": "x"}) != "c93e578c59bbb62f"


def _alert(status: str, labels: dict[str, str] = LABELS, starts: float = 4.0, fingerprint: str | None = None,
           ends: float | None = None) -> dict[str, Any]:
    a: dict[str, Any] = {"status": status, "labels": labels,
                         "startsAt": (T + timedelta(seconds=starts)).isoformat().replace("+00:00", "Z"),
                         "endsAt": (T + timedelta(seconds=ends)).isoformat() if ends else "0001-01-01T00:00:00Z"}
    a["fingerprint"] = fingerprint if fingerprint is not None else label_fingerprint(labels)
    return a


def _post(at: float, status: str, *, peer: str = MON, port: int = 40001, **alert: Any) -> dict[str, Any]:
    return {"at": (T + timedelta(seconds=at)).isoformat(), "peer": peer, "peer_port": port, "path": "/alerts",
            "json": {"status": status, "alerts": [_alert(status, **alert)]}}


def _history(pending: float = 2.0, firing: float = 4.0, last: float = 11.0,
             labels: dict[str, str] = LABELS) -> Evidence:
    def series(state: str, a: float, b: float) -> dict[str, Any]:
        return {"metric": {"__name__": "ALERTS", "alertstate": state, **labels},
                "values": [[TS + t, "1"] for t in range(int(a), int(b) + 1)]}
    return prom({"resultType": "matrix", "result": [series("pending", pending, firing - 1),
                                                    series("firing", firing, last)]}, phase="history")


def _alert_evidence(posts: list[dict[str, Any]], *, before: list[dict[str, Any]] | None = None,
                    fault_rc: int = 0, opens: list[tuple[str, int]] | None = None,
                    history: Evidence | None = None) -> list[Evidence]:
    if opens is None:
        opens = [(p["peer"], p["peer_port"]) for p in posts]
    return [
        prom({"alerts": before or []}, phase="before"),
        ev("fault", {"rc": fault_rc, "stderr": "no such pid" if fault_rc else ""}, phase="fault"),
        ev("fault", {"rc": 0}, phase="restore"),
        ev("tcp", {"posts": posts}, phase="receiver", quiet_from=(T - timedelta(seconds=3)).isoformat(),
           fault_at=T.isoformat(), repair_at=(T + timedelta(seconds=10)).isoformat()),
        ev("capture", {"opens": [{"src": a, "sport": p} for a, p in opens]}, phase="witness", port="p2"),
        history if history is not None else _history(),
    ]


GOOD = [_post(5, "firing", port=40001), _post(13, "resolved", port=40002, ends=12.5)]


def test_alert_fires_then_resolves() -> None:
    v = AlertFires().judge(_alert_evidence(GOOD), ALERT_ARGS, PLAN)
    assert v.status == "pass" and "5.0 s after the fault" in v.message.en and "3.0 s after" in v.message.en


def test_alert_groups_and_matching() -> None:
    groups = alert_groups(_history())
    assert groups == [{"labels": LABELS, "pending": TS + 2, "firing": TS + 4, "last_firing": TS + 11}]
    assert matching_group(_alert("firing"), groups) is groups[0]
    assert matching_group(_alert("firing", starts=-30), groups) is None  # started long before
    assert matching_group(_alert("firing", fingerprint="0123456789abcdef"), groups) is None
    assert matching_group(_alert("firing", labels={**LABELS, "instance": "10.0.0.13"}), groups) is None
    # extra labels on the notification (external labels) are allowed; missing ones are not
    assert matching_group(_alert("firing", labels={**LABELS, "cluster": "x"}), groups) is groups[0]
    assert matching_group(_alert("firing", labels={"alertname": "Down"}), groups) is None


def test_alert_fires_too_late_never_or_without_resolution() -> None:
    j = AlertFires()
    late = [_post(25, "firing", starts=4), _post(30, "resolved", port=40002, ends=12.5)]
    assert "after 25.0 s" in j.judge(_alert_evidence(late), ALERT_ARGS, PLAN).message.en
    other = [_post(5, "firing", labels={**LABELS, "alertname": "Other"})]
    v = j.judge(_alert_evidence(other), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "no 'Down' alert" in v.message.en and "received: Other" in v.message.en
    v = j.judge(_alert_evidence([_post(5, "firing")]), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "resolution did not arrive" in v.message.en
    # a resolution from before the repair does not count
    early = [_post(5, "firing"), _post(8, "resolved", port=40002, ends=7.5)]
    assert j.judge(_alert_evidence(early), ALERT_ARGS, PLAN).status == "fail"


def test_a_late_resolution_of_an_older_incident_neither_counts_nor_fails() -> None:
    stale = _post(-1, "resolved", port=40000, starts=-600, ends=-500)
    assert AlertFires().judge(_alert_evidence([stale, *GOOD]), ALERT_ARGS, PLAN).status == "pass"
    v = AlertFires().judge(_alert_evidence([stale, GOOD[0]]), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "resolution did not arrive" in v.message.en


def test_alert_already_firing_before_the_fault_is_not_credited() -> None:
    before = [{"labels": {"alertname": "Down"}, "state": "firing"}]
    v = AlertFires().judge(_alert_evidence(GOOD, before=before), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "already firing" in v.message.en


def test_alert_fault_that_could_not_be_applied_is_an_error() -> None:
    v = AlertFires().judge(_alert_evidence([], fault_rc=1), ALERT_ARGS, PLAN)
    assert v.status == "error" and "no such pid" in v.message.en
    witness_lost = [e for e in _alert_evidence(GOOD) if e.meta.get("phase") != "witness"]
    assert AlertFires().judge(witness_lost, ALERT_ARGS, PLAN).status == "error"


def test_alert_fires_without_a_known_sender_port_is_an_error_not_a_verdict() -> None:
    # the provider could not name the port facing mon (no port_map): no receiver was started
    unknown = [prom({"alerts": []}, phase="before"),
               ev("tcp", None, ok=False, phase="witness",
                  error="RuntimeError: provider x does not say which port of lan-a's bridge faces mon:eth0 "
                        "(port_map): the port is unknown")]
    v = AlertFires().judge(unknown, ALERT_ARGS, PLAN)
    assert v.status == "error" and "could not be watched" in v.message.en and "port_map" in v.message.en
    # the receiver could not listen (no witness recorded): the receiver's error is the one given
    deaf = [prom({"alerts": []}, phase="before"), ev("tcp", None, ok=False, error="EADDRINUSE", phase="receiver")]
    v = AlertFires().judge(deaf, ALERT_ARGS, PLAN)
    assert v.status == "error" and "webhook receiver could not listen: EADDRINUSE" in v.message.en


def test_forged_notifications_fail() -> None:
    j = AlertFires()
    # from another node of the LAN
    v = j.judge(_alert_evidence([_post(5, "firing", peer="10.0.0.11"), *GOOD]), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "came from 10.0.0.11, not from the monitoring server" in v.message.en
    # mon's address, but the connection never entered the LAN through mon's bridge port
    v = j.judge(_alert_evidence(GOOD, opens=[(MON, 40002)]), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "spoofed" in v.message.en
    # a loop posting all the time: something arrived before the fault
    v = j.judge(_alert_evidence([_post(-2, "firing", port=40000, starts=-2), *GOOD]), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "before the grader's fault" in v.message.en
    # hand-written after the fault, but not an alert Prometheus raised: labels, times, fingerprint
    for forged in (_post(5, "firing", labels={"alertname": "Down", "instance": "10.0.0.12"}),
                   _post(5, "firing", starts=5.5 + 10),
                   _post(5, "firing", fingerprint="0123456789abcdef")):
        v = j.judge(_alert_evidence([forged, GOOD[1]]), ALERT_ARGS, PLAN)
        assert v.status == "fail" and "matches no alert Prometheus raised" in v.message.en, v.message.en
    # a well-formed notification while Prometheus's own series shows nothing
    empty = prom({"resultType": "matrix", "result": []}, phase="history")
    v = j.judge(_alert_evidence(GOOD, history=empty), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "matches no alert" in v.message.en
    v = j.judge(_alert_evidence([], history=empty), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "Prometheus did not raise 'Down'" in v.message.en


# ------------------------------------------------------------------------------- syslog
SYSLOG_ARGS = {"emitter": "srv2", "emitter_address": "10.0.1.12", "collector": "logs",
               "collector_address": "10.0.0.20", "directory": "/var/log/remote", "within_s": 10}


def _syslog(*, answered: bool = True, flow: str | None = "tcp 10.0.1.12:41070 → 10.0.0.20:514",
            files: list[str] | None = None) -> list[Evidence]:
    emit = ev("ssh", {"server_version": "SSH-2.0-OpenSSH_9.2p1", "allowed": ["publickey", "password"]}
              if answered else {"allowed": []}, phase="emit")
    wire = ev("capture", {"flows": [], "marker_hits": [{"marker": 0, "flow": flow}] if flow else []}, phase="wire")
    found = ev("exec", {"files": ["/var/log/remote/srv2.log"] if files is None else files, "error": None},
               phase="search")
    return [emit, found, wire]


def test_syslog_forwarded() -> None:
    j = SyslogForwarded()
    v = j.judge(_syslog(), SYSLOG_ARGS, PLAN)
    assert v.status == "pass" and "/var/log/remote/srv2.log" in v.message.en and "10.0.1.12:41070" in v.message.en
    assert j.judge(_syslog(flow="udp 10.0.1.12:514 → 10.0.0.20:514"), SYSLOG_ARGS, PLAN).status == "pass"


def test_syslog_forged_or_unforwarded_fails() -> None:
    j = SyslogForwarded()
    # the nonce never crossed the LAN: a file pre-filled or written by a fake on logs
    v = j.judge(_syslog(flow=None), SYSLOG_ARGS, PLAN)
    assert v.status == "fail" and "did not cross the LAN" in v.message.en
    # it crossed from another address, or to another port
    assert j.judge(_syslog(flow="tcp 10.0.0.11:4000 → 10.0.0.20:514"), SYSLOG_ARGS, PLAN).status == "fail"
    assert j.judge(_syslog(flow="tcp 10.0.1.12:4000 → 10.0.0.20:6514"), SYSLOG_ARGS, PLAN).status == "fail"
    # forwarded but not filed
    v = j.judge(_syslog(files=[]), SYSLOG_ARGS, PLAN)
    assert v.status == "fail" and "in no file under /var/log/remote" in v.message.en
    # srv2's sshd silenced: no line could be provoked
    v = j.judge(_syslog(answered=False), SYSLOG_ARGS, PLAN)
    assert v.status == "fail" and "SSH server does not answer" in v.message.en
    bad = _syslog()
    bad[2] = ev("capture", None, ok=False, error="no socket", phase="wire")
    assert j.judge(bad, SYSLOG_ARGS, PLAN).status == "error"


def _syslog_own(*, flow: str | None = "tcp 10.0.1.12:41070 → 10.0.0.20:514",
                files: list[str] | None = None) -> list[Evidence]:
    """As the collector's own exec reported it (a provider without node_fs)."""
    emit, found, wire = _syslog(flow=flow, files=files)
    found.meta.update(read="node_exec", reported_by="the node's own answer, read through the node's own exec "
                                                    "(inside the candidate's system)")
    return [emit, found, wire]


def test_syslog_read_through_the_collectors_own_exec_says_so() -> None:
    j = SyslogForwarded()
    v = j.judge(_syslog_own(), SYSLOG_ARGS, PLAN)
    assert v.status == "pass" and "logs's own system shows it filed (/var/log/remote/srv2.log" in v.message.en
    assert "not from outside the node" in v.message.en and "le système de logs la montre rangée" in v.message.fr
    # read from outside (node_fs): the message does not speak of the node's own system
    assert "own system" not in j.judge(_syslog(), SYSLOG_ARGS, PLAN).message.en
    # the node's own answer never makes up for the wire: a nonce "found" but never seen crossing fails
    v = j.judge(_syslog_own(flow=None), SYSLOG_ARGS, PLAN)
    assert v.status == "fail" and "did not cross the LAN" in v.message.en
    assert j.judge(_syslog_own(flow="tcp 10.0.1.12:4000 → 10.0.0.20:6514"), SYSLOG_ARGS, PLAN).status == "fail"
    # seen on the wire, but the collector's own answer does not hold it (a canned log, nothing filed)
    v = j.judge(_syslog_own(files=[]), SYSLOG_ARGS, PLAN)
    assert v.status == "fail" and "in no file under /var/log/remote on logs after 10 s (as logs's own system " \
        "shows them)" in v.message.en
    bad = _syslog_own()
    bad[1] = ev("exec", None, ok=False, error="ProviderError: the command did not finish", phase="search",
                read="node_exec")
    assert j.judge(bad, SYSLOG_ARGS, PLAN).status == "error"


def _answer(files: dict[str, bytes]) -> str:
    import base64

    return "".join(f"F {base64.b64encode(name.encode()).decode()} {len(body)}\n{base64.b64encode(body).decode()}\n"
                   for name, body in files.items())


def test_parse_read_answer_searches_on_the_graders_side() -> None:
    nonce = b"lk0123456789ab"
    out = parse_read_answer(_answer({"./srv2.log": b"Nov 30 sshd[7]: Invalid user lk0123456789ab from 10.0.1.200\n",
                                     "./r1.log": b"nothing here\n", "./sub/empty": b""}),
                            "/var/log/remote/", nonce)
    assert out["files"] == ["/var/log/remote/srv2.log"] and out["malformed"] == 0
    assert out["lines"] == ["Nov 30 sshd[7]: Invalid user lk0123456789ab from 10.0.1.200"]
    assert [r["path"] for r in out["read"]] == ["/var/log/remote/srv2.log", "/var/log/remote/r1.log",
                                                "/var/log/remote/sub/empty"]
    # a canned log (a forged reader): well formed, but without the fresh nonce
    canned = _answer({"./srv2.log": b"Nov 30 sshd[1]: Invalid user admin from 10.0.0.1 port 22\n"})
    assert parse_read_answer(canned, "/var/log/remote", nonce)["files"] == []
    # free text holding the nonce is not the script's format: nothing is credited
    loose = "lk0123456789ab\nF !!! 3\n%%%\nsrv2.log lk0123456789ab\n"
    got = parse_read_answer(loose, "/var/log/remote", nonce)
    assert got == {"files": [], "read": [], "lines": [], "malformed": 3}


# ---------------------------------------------------------------------------------- NTP
NTP_ARGS = {"reference": "r1", "reference_address": "10.0.0.1", "wire_seconds": 5, "max_age_s": 60,
            "nodes": {"r1": {"address": "10.0.0.1"},
                      "r2": {"address": "10.0.1.1", "wire": "link:wan", "wire_address": "172.16.0.2"},
                      "srv1": {"address": "10.0.0.11", "wire": "lan-a"},
                      "srv2": {"address": "10.0.1.12", "wire": "lan-b"}}}


def _ntp(node: str, *, refid: str = "10.0.0.1", stratum: int = 9, leap: int = 0, answered: bool = True,
         offset: float = 0.1, age: float = 1.0) -> Evidence:
    parsed = {"answered": answered, "mode": 4, "stratum": stratum, "leap": leap, "refid": refid,
              "origin_matches": True, "transmit_time": TS + offset, "reference_time": TS - age}
    return ev("udp", parsed if answered else {"answered": False}, target_name=node)


def _ntp_wire(seg: str, *clients: str) -> Evidence:
    flows = [f for c in clients for f in (_flow("udp", c, 123, "10.0.0.1", 123), _flow("udp", "10.0.0.1", 123, c, 123))]
    return ev("capture", {"flows": flows}, phase="wire", segment=seg)


def _ntp_all(**override: Evidence) -> list[Evidence]:
    answers = {"r1": _ntp("r1", refid="LOCL", stratum=8), "r2": _ntp("r2"), "srv1": _ntp("srv1"), "srv2": _ntp("srv2")}
    answers.update({k: v for k, v in override.items() if k in answers})
    wires = [override.get("lan-a") or _ntp_wire("lan-a", "10.0.0.11"),
             override.get("lan-b") or _ntp_wire("lan-b", "10.0.1.12"),
             override.get("link:wan") or _ntp_wire("link:wan", "172.16.0.2")]
    return [*answers.values(), *wires]


def test_ntp_reference() -> None:
    j = NtpReference()
    assert j.judge(_ntp_all(), NTP_ARGS, PLAN).status == "pass"
    v = j.judge(_ntp_all(srv1=_ntp("srv1", refid="192.0.2.1")), NTP_ARGS, PLAN)
    assert v.status == "fail" and "srv1 uses 192.0.2.1" in v.message.en
    v = j.judge(_ntp_all(srv1=_ntp("srv1", stratum=0, leap=3)), NTP_ARGS, PLAN)
    assert v.status == "fail" and "not synchronised" in v.message.en
    v = j.judge(_ntp_all(r1=_ntp("r1", answered=False)), NTP_ARGS, PLAN)
    assert v.status == "fail" and "r1 does not answer NTP" in v.message.en


def test_ntp_made_up_answers_fail() -> None:
    j = NtpReference()
    # a responder that names r1 but never polls it: nothing on the wire
    v = j.judge(_ntp_all(**{"lan-b": _ntp_wire("lan-b")}), NTP_ARGS, PLAN)
    assert v.status == "fail" and "srv2 does not poll r1" in v.message.en
    # r2 polls r1 over the wan link, from its wan address: its LAN address polling proves nothing
    v = j.judge(_ntp_all(**{"link:wan": _ntp_wire("link:wan", "10.0.1.1")}), NTP_ARGS, PLAN)
    assert v.status == "fail" and "r2 does not poll r1" in v.message.en
    # polls go out but r1 never answers them
    lonely = ev("capture", {"flows": [_flow("udp", "10.0.0.11", 123, "10.0.0.1", 123)]}, phase="wire",
                segment="lan-a")
    v = j.judge(_ntp_all(**{"lan-a": lonely}), NTP_ARGS, PLAN)
    assert v.status == "fail" and "r1 does not answer srv1's NTP requests" in v.message.en
    # a made-up time, a made-up stratum, a reference never updated
    v = j.judge(_ntp_all(r2=_ntp("r2", offset=30)), NTP_ARGS, PLAN)
    assert v.status == "fail" and "not the shared clock's" in v.message.en
    v = j.judge(_ntp_all(r2=_ntp("r2", stratum=3)), NTP_ARGS, PLAN)
    assert v.status == "fail" and "not 9 (one below r1)" in v.message.en
    v = j.judge(_ntp_all(r2=_ntp("r2", age=600)), NTP_ARGS, PLAN)
    assert v.status == "fail" and "has not updated from r1" in v.message.en


def test_parse_ntp_reply() -> None:
    tx = 123456789
    ts = (NTP_EPOCH + 1_795_000_000) << 32
    data = struct.pack("!BBbbII4sQQQQ", (0 << 6) | (4 << 3) | 4, 9, 0, -20, 0, 0, bytes([10, 0, 0, 1]), ts, tx, ts, ts)
    p = parse_ntp_reply(data, tx)
    assert (p["mode"], p["stratum"], p["refid"], p["leap"], p["origin_matches"]) == (4, 9, "10.0.0.1", 0, True)
    assert p["transmit_time"] == 1_795_000_000
    local = struct.pack("!BBbbII4sQQQQ", (0 << 6) | (4 << 3) | 4, 1, 0, 0, 0, 0, b"LOCL", 0, 0, 0, 0)
    assert parse_ntp_reply(local)["refid"] == "LOCL"
    with pytest.raises(ValueError):
        parse_ntp_reply(b"short")


# -------------------------------------------------------------------------- availability
def test_availability_rows_and_judge() -> None:
    series = [{"metric": {"instance": "10.0.0.1", "job": "snmp"}, "values": [[t, "1"] for t in range(0, 20, 2)]},
              {"metric": {"instance": "10.0.0.11", "job": "snmp"},
               "values": [[0, "1"], [2, "0"], [4, "0"], [6, "1"], [8, "1"]]}]
    rows = {r["device"]: r for r in availability_rows(series, DEVICES, 2)}
    assert rows["r1"]["availability_pct"] == 100 and rows["r1"]["down_periods"] == []
    assert rows["srv1"]["availability_pct"] == 60
    assert rows["srv1"]["down_periods"] == [{"from": "1970-01-01T00:00:02+00:00", "to": "1970-01-01T00:00:04+00:00",
                                             "seconds": 4.0}]
    j, args = Availability(), {"devices": DEVICES, "step_s": 2}
    v = j.judge([prom({"resultType": "matrix", "result": series}, phase="history"), _nonce()], args, PLAN)
    assert v.status == "pass" and "srv1 60 %" in v.message.en
    v = j.judge([prom({"resultType": "matrix", "result": series[:1]}, phase="history"), _nonce()], args, PLAN)
    assert v.status == "fail" and "srv1" in v.message.en
    # a canned history that cannot compute a fresh PromQL query
    v = j.judge([prom({"resultType": "matrix", "result": series}, phase="history"), _nonce(False)], args, PLAN)
    assert v.status == "fail" and "not Prometheus" in v.message.en
