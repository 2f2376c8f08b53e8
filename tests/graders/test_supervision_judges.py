"""The pure halves of the supervision graders: verdicts from fabricated evidence, no network."""

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
    availability_rows,
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


def _target(instance: str, health: str = "up", error: str = "") -> dict[str, Any]:
    return {"labels": {"instance": instance, "job": "snmp"}, "health": health, "lastError": error,
            "scrapeUrl": f"http://127.0.0.1:9116/snmp?module=m&target={instance}"}


def test_targets_up() -> None:
    j, args = TargetsUp(), {"devices": DEVICES}
    assert j.judge([prom({"activeTargets": [_target("10.0.0.1"), _target("10.0.0.11")]})], args, PLAN).status == "pass"
    # 10.0.0.1 is not 10.0.0.11's prefix match: srv1 missing is seen
    v = j.judge([prom({"activeTargets": [_target("10.0.0.1")]})], args, PLAN)
    assert v.status == "fail" and "srv1 (10.0.0.11) is not a target" in v.message.en
    v = j.judge([prom({"activeTargets": [_target("10.0.0.1"), _target("10.0.0.11", "down", "timeout")]})], args,
                PLAN)
    assert v.status == "fail" and "timeout" in v.message.en
    # a target named 10.0.0.111 does not stand for 10.0.0.11
    v = j.judge([prom({"activeTargets": [_target("10.0.0.1"), _target("10.0.0.111")]})], args, PLAN)
    assert v.status == "fail"
    assert j.judge([ev("tcp", None, ok=False, error="refused")], args, PLAN).status == "error"


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
    return prom({"groups": [{"name": "g", "rules": rules}]})


def test_alert_rules() -> None:
    j = AlertRules()
    assert j.judge([_rules()], RULE_ARGS, PLAN).status == "pass"
    v = j.judge([_rules("dskPercent > 99")], RULE_ARGS, PLAN)
    assert v.status == "fail" and "99 %" in v.message.en
    v = j.judge([_rules(disk_for=30)], RULE_ARGS, PLAN)
    assert v.status == "fail" and "waits 30 s" in v.message.en
    v = j.judge([_rules(down=False)], RULE_ARGS, PLAN)
    assert v.status == "fail" and "no alert rule 'Down'" in v.message.en
    assert j.judge([_rules("absent(dskPercent)")], RULE_ARGS, PLAN).status == "fail"


# ------------------------------------------------------------------------------- alerts
ALERT_ARGS = {"alert": "Down", "within_s": "20"}


def _post(at: datetime, status: str, name: str = "Down") -> dict[str, Any]:
    return {"at": at.isoformat(), "peer": "10.0.0.10", "path": "/alerts",
            "json": {"status": status, "alerts": [{"status": status, "labels": {"alertname": name}}]}}


def _alert_evidence(posts: list[dict[str, Any]], *, before: list[dict[str, Any]] | None = None,
                    fault_rc: int = 0) -> list[Evidence]:
    return [
        prom({"alerts": before or []}, phase="before"),
        ev("fault", {"rc": fault_rc, "stderr": "no such pid" if fault_rc else ""}, phase="fault"),
        ev("fault", {"rc": 0}, phase="restore"),
        ev("tcp", {"posts": posts}, phase="receiver", fault_at=T.isoformat(),
           repair_at=(T + timedelta(seconds=10)).isoformat()),
    ]


def test_alert_fires_then_resolves() -> None:
    j = AlertFires()
    posts = [_post(T + timedelta(seconds=5), "firing"), _post(T + timedelta(seconds=13), "resolved")]
    v = j.judge(_alert_evidence(posts), ALERT_ARGS, PLAN)
    assert v.status == "pass" and "5.0 s after the fault" in v.message.en and "3.0 s after" in v.message.en


def test_alert_fires_too_late_never_or_without_resolution() -> None:
    j = AlertFires()
    late = [_post(T + timedelta(seconds=25), "firing"), _post(T + timedelta(seconds=30), "resolved")]
    assert "after 25.0 s" in j.judge(_alert_evidence(late), ALERT_ARGS, PLAN).message.en
    other = [_post(T + timedelta(seconds=5), "firing", name="Other")]
    v = j.judge(_alert_evidence(other), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "no 'Down' alert" in v.message.en and "received: Other" in v.message.en
    v = j.judge(_alert_evidence([_post(T + timedelta(seconds=5), "firing")]), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "resolution did not arrive" in v.message.en
    # a resolution from before the repair does not count
    early = [_post(T + timedelta(seconds=5), "firing"), _post(T + timedelta(seconds=8), "resolved")]
    assert j.judge(_alert_evidence(early), ALERT_ARGS, PLAN).status == "fail"


def test_alert_already_firing_before_the_fault_is_not_credited() -> None:
    posts = [_post(T + timedelta(seconds=5), "firing"), _post(T + timedelta(seconds=13), "resolved")]
    before = [{"labels": {"alertname": "Down"}, "state": "firing"}]
    v = AlertFires().judge(_alert_evidence(posts, before=before), ALERT_ARGS, PLAN)
    assert v.status == "fail" and "already firing" in v.message.en


def test_alert_fault_that_could_not_be_applied_is_an_error() -> None:
    v = AlertFires().judge(_alert_evidence([], fault_rc=1), ALERT_ARGS, PLAN)
    assert v.status == "error" and "no such pid" in v.message.en


# ------------------------------------------------------------------------------- syslog
SYSLOG_ARGS = {"emitter": "srv2", "collector": "logs", "directory": "/var/log/remote", "within_s": 10}


def test_syslog_forwarded() -> None:
    j = SyslogForwarded()
    emit = ev("exec", {"rc": 0, "stdout": ""}, phase="emit")
    found = ev("exec", {"rc": 0, "stdout": "/var/log/remote/srv2.log\n"}, phase="search")
    v = j.judge([emit, found], SYSLOG_ARGS, PLAN)
    assert v.status == "pass" and "/var/log/remote/srv2.log" in v.message.en
    missing = ev("exec", {"rc": 1, "stdout": ""}, phase="search")
    assert j.judge([emit, missing], SYSLOG_ARGS, PLAN).status == "fail"
    bad_emit = ev("exec", {"rc": 1, "stdout": ""}, phase="emit")
    assert j.judge([bad_emit, found], SYSLOG_ARGS, PLAN).status == "error"


# ---------------------------------------------------------------------------------- NTP
NTP_ARGS = {"reference": "r1", "reference_address": "10.0.0.1"}


def _ntp(node: str, *, refid: str = "10.0.0.1", stratum: int = 9, leap: int = 0, answered: bool = True) -> Evidence:
    parsed = {"answered": answered, "mode": 4, "stratum": stratum, "leap": leap, "refid": refid}
    return ev("udp", parsed if answered else {"answered": False}, target_name=node)


def test_ntp_reference() -> None:
    j = NtpReference()
    good = [_ntp("r1", refid="LOCL", stratum=8), _ntp("srv1"), _ntp("srv2")]
    assert j.judge(good, NTP_ARGS, PLAN).status == "pass"
    v = j.judge([_ntp("r1", refid="LOCL", stratum=8), _ntp("srv1", refid="192.0.2.1")], NTP_ARGS, PLAN)
    assert v.status == "fail" and "srv1 uses 192.0.2.1" in v.message.en
    v = j.judge([_ntp("r1", refid="LOCL", stratum=8), _ntp("srv1", stratum=0, leap=3)], NTP_ARGS, PLAN)
    assert v.status == "fail" and "not synchronised" in v.message.en
    v = j.judge([_ntp("r1", answered=False)], NTP_ARGS, PLAN)
    assert v.status == "fail" and "r1 does not answer NTP" in v.message.en


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
    v = j.judge([prom({"resultType": "matrix", "result": series}, phase="history")], args, PLAN)
    assert v.status == "pass" and "srv1 60 %" in v.message.en
    v = j.judge([prom({"resultType": "matrix", "result": series[:1]}, phase="history")], args, PLAN)
    assert v.status == "fail" and "srv1" in v.message.en
