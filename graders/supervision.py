"""Supervision checks, observed from the grader's side: SNMPv3 answers the grader parses,
Prometheus's own HTTP API read from a vantage point, alerts the grader provokes for real and
receives on its own webhook, a log line it emits and looks for on the log server, and NTP
answers to its own client requests.

Three checks touch candidate nodes and their ``doc`` says so: ``alert_fires`` breaks
something itself (stops an agent by its pid file or fills a volume through the provider's
exec in the node, or sets a link down over netlink in the node), always undoes it, and records
both as ``fault`` evidence; ``syslog_forwarded`` runs ``logger`` in the emitting node and
reads the log server's files (read-only ``grep``).
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from labkit.adapters.probes import http, netlink, ntp, snmp
from labkit.domain.grading import CheckContext, error_if_unrun, utcnow
from labkit.models.evidence import Evidence
from labkit.models.instance import InstancePlan
from labkit.models.results import Verdict

SYS_NAME = "1.3.6.1.2.1.1.5.0"
PROM_PORT = 9090
FILL_FILE = ".labkit-grader-fill"



def _prom_get(ctx: CheckContext, source: str, host: str, path: str, query: dict[str, str] | None = None,
              meta: dict[str, Any] | None = None) -> Evidence:
    probe = partial(http.http_get_json, host, PROM_PORT, path, source=source, check=ctx.check.id, query=query,
                    timeout=3.0)
    ev = ctx.probe(source, "tcp", f"{host}:{PROM_PORT}", f"HTTP GET {path}", probe, timeout=10.0)
    ev.meta.update(meta or {})
    return ev


def _prom_data(ev: Evidence) -> Any:
    doc = (ev.parsed or {}).get("json") or {}
    return doc.get("data") if isinstance(doc, dict) and doc.get("status") == "success" else None


def _names_device(text: str, address: str) -> bool:
    """``text`` (an instance label, a scrape URL) designates the device at ``address``."""
    return re.search(r"(?<![0-9.])" + re.escape(address) + r"(?![0-9])", text) is not None


# ---------------------------------------------------------------------------------- SNMP
class SnmpV3Devices:
    """Every device answers SNMPv3 authPriv (user, SHA, AES of the brief) with its sysName."""

    name = "supervision.snmpv3_devices"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        calls = []
        for device, where in args["devices"].items():
            probe = partial(snmp.snmp_get_v3, where["address"], [SYS_NAME], user=args["user"],
                            auth_protocol=args["auth"]["protocol"], auth_key=args["auth"]["key"],
                            priv_protocol=args["priv"]["protocol"], priv_key=args["priv"]["key"],
                            source=where["vantage"], check=ctx.check.id, timeout=1.0, retries=1)
            calls.append(ctx.deferred(where["vantage"], "snmp", where["address"], f"snmpget v3 {SYS_NAME}", probe,
                                      meta={"target_name": device}))
        return ctx.parallel(calls)

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not evidence:
            return Verdict.errored("Aucun équipement n'a été interrogé.", "No device was queried.")
        problems: list[tuple[str, str]] = []
        for ev in evidence:
            device = ev.meta.get("target_name", ev.target)
            p = ev.parsed or {}
            if not p.get("answered"):
                why = p.get("error_indication") or "no answer"
                problems.append((f"{device} ne répond pas en SNMPv3 authPriv ({why})",
                                 f"{device} does not answer SNMPv3 authPriv ({why})"))
            elif (got := (p.get("values") or {}).get(SYS_NAME)) != device:
                problems.append((f"{device} annonce sysName « {got} »", f"{device} reports sysName '{got}'"))
        return Verdict.from_problems(
            problems,
            f"Les {len(evidence)} équipements répondent en SNMPv3 authPriv avec le bon sysName.",
            f"All {len(evidence)} devices answer SNMPv3 authPriv with the right sysName.")


# ------------------------------------------------------------------------------ targets
class TargetsUp:
    """Prometheus's /api/v1/targets, read from a vantage point: every device is an active
    target (named by its address in the instance label or the scrape URL) whose health is up."""

    name = "supervision.targets_up"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        return [_prom_get(ctx, args["source"], args["prometheus"], "/api/v1/targets", {"state": "active"})]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        data = _prom_data(evidence[0])
        if data is None:
            return Verdict.failed("Prometheus ne renvoie pas de liste de cibles.",
                                  "Prometheus returns no list of targets.")
        targets = data.get("activeTargets") or []
        problems: list[tuple[str, str]] = []
        for device, address in args["devices"].items():
            mine = [t for t in targets
                    if _names_device(str((t.get("labels") or {}).get("instance", "")), address)
                    or _names_device(str(t.get("scrapeUrl", "")), address)]
            if not mine:
                problems.append((f"{device} ({address}) n'est pas une cible", f"{device} ({address}) is not a target"))
            elif not any(t.get("health") == "up" for t in mine):
                why = next((t.get("lastError") for t in mine if t.get("lastError")), "") or "down"
                problems.append((f"la cible {device} ({address}) est en échec : {why}",
                                 f"target {device} ({address}) is failing: {why}"))
        return Verdict.from_problems(
            problems,
            f"Les {len(args['devices'])} équipements sont des cibles actives et joignables.",
            f"All {len(args['devices'])} devices are active targets and up.")


# -------------------------------------------------------------------------------- rules
_COMPARISON = re.compile(r"(?:>=?|<=?)\s*(?:bool\s+)?([0-9]+(?:\.[0-9]+)?)")


def rule_thresholds(query: str) -> list[float]:
    """Numbers a PromQL expression compares against, in percent (a ratio ≤ 1 counts as its
    percentage): ``dskPercent > 80`` → [80.0]; ``used / size > 0.9`` → [90.0]."""
    out = []
    for m in _COMPARISON.finditer(query):
        v = float(m.group(1))
        out.append(v * 100 if 0 < v <= 1 else v)
    return out


class AlertRules:
    """Prometheus's /api/v1/rules: each required alert exists, its ``for`` is at most the
    brief's delay, and where a threshold is required the rule compares against at most it."""

    name = "supervision.alert_rules"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        return [_prom_get(ctx, args["source"], args["prometheus"], "/api/v1/rules", {"type": "alert"})]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        data = _prom_data(evidence[0])
        if data is None:
            return Verdict.failed("Prometheus ne renvoie pas de règles.", "Prometheus returns no rules.")
        rules = [r for g in data.get("groups") or [] for r in g.get("rules") or [] if r.get("type") == "alerting"]
        problems: list[tuple[str, str]] = []
        for alert, want in args["rules"].items():
            mine = [r for r in rules if r.get("name") == alert]
            if not mine:
                problems.append((f"aucune règle d'alerte « {alert} »", f"no alert rule '{alert}'"))
                continue
            rule = mine[0]
            delay = float(rule.get("duration") or 0)
            if delay > float(want["for_max_s"]):
                problems.append((f"« {alert} » attend {delay:g} s (au plus {want['for_max_s']} s demandé)",
                                 f"'{alert}' waits {delay:g} s (at most {want['for_max_s']} s required)"))
            if "threshold_max" in want:
                found = rule_thresholds(str(rule.get("query", "")))
                limit = float(want["threshold_max"])
                if not found:
                    problems.append((f"« {alert} » ne compare à aucun seuil", f"'{alert}' compares with no threshold"))
                elif min(found) > limit:
                    problems.append((f"le seuil de « {alert} » est {min(found):g} % (au plus {limit:g} % demandé)",
                                     f"'{alert}' threshold is {min(found):g} % (at most {limit:g} % required)"))
        return Verdict.from_problems(
            problems,
            f"Les {len(args['rules'])} règles d'alerte existent avec les seuils et délais demandés.",
            f"All {len(args['rules'])} alert rules exist with the required thresholds and delays.")


# ------------------------------------------------------------------------------- alerts
def _alerts_in(post: dict[str, Any], alert: str, status: str) -> list[dict[str, Any]]:
    doc = post.get("json")
    if not isinstance(doc, dict):
        return []
    return [a for a in doc.get("alerts") or [] if isinstance(a, dict)
            and (a.get("labels") or {}).get("alertname") == alert and a.get("status") == status]


def _ts(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


class AlertFires:
    """The grader breaks something itself (``fault``: stop an agent, cut a link, fill a
    volume), waits for the brief's alert on its own webhook receiver within ``within_s``,
    repairs (always), and waits for the resolution. Prometheus's ALERTS series gives the
    monitoring server's own times (artifact ``alert-timeline``)."""

    name = "supervision.alert_fires"

    def _apply(self, ctx: CheckContext, fault: dict[str, Any], undo: bool) -> Evidence:
        kind, node = fault["kind"], fault["node"]
        meta = {"phase": "restore" if undo else "fault"}
        if kind == "link-down":
            iface = fault["iface"]
            probe = partial(netlink.set_link_state, iface, undo, source=node, check=ctx.check.id)
            ev = ctx.probe(node, "fault", iface, f"ip link set dev {iface} {'up' if undo else 'down'}", probe,
                           timeout=10.0)
            ev.meta.update(meta, what=f"{node} {iface} set {'up' if undo else 'down'} by the grader")
            return ev
        if kind == "stop-service":
            argv = [str(a) for a in (fault["start"] if undo else fault["stop"])]
            what = f"{'started' if undo else 'stopped'} by the grader on {node}: {shlex.join(argv)}"
        elif kind == "fill":
            path = shlex.quote(str(fault["path"]))
            target = f"{path}/{FILL_FILE}"
            if undo:
                script = f"rm -f {target}; df -P {path} | tail -n 1"
                what = f"fill file removed from {fault['path']} on {node}"
            else:
                pct = int(fault["percent"])
                script = (f"set -e; rm -f {target}; set -- $(stat -f -c '%b %a %S' {path}); "
                          f"need=$(( ($1 * {pct} / 100 - ($1 - $2)) * $3 )); "
                          f"if [ $need -gt 0 ]; then head -c $need /dev/zero > {target}; fi; df -P {path} | tail -n 1")
                what = f"{fault['path']} filled to {pct} % on {node} by the grader"
            argv = ["/bin/sh", "-c", script]
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        return ctx.node_exec(node, argv, source="grader", kind="fault", label=meta["phase"], timeout=30,
                             meta={**meta, "what": what})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        alert, fault, rx = args["alert"], args["fault"], args["receiver"]
        within = float(args["within_s"])
        prom, source = args["prometheus"], rx["vantage"]
        evidence = [_prom_get(ctx, source, prom, "/api/v1/alerts", meta={"phase": "before"})]
        receiver = http.WebhookReceiver(
            rx["address"], int(rx["port"]), source=source, max_lifetime=3 * within + 30,
            open_in=lambda fn: ctx.provider.run_at(ctx.state, source, fn, 5.0))
        try:
            receiver.start()
        except Exception as exc:  # noqa: BLE001 - the receiver could not listen: the check cannot run
            evidence.append(Evidence(id=ctx.eid("webhook"), check=ctx.check.id, kind="tcp", source=source,
                                     target=f"{rx['address']}:{rx['port']}", action="HTTP webhook receiver",
                                     started_at=utcnow(), ended_at=utcnow(), ok=False,
                                     error=f"{type(exc).__name__}: {exc}", meta={"phase": "receiver"}))
            return evidence
        fired: dict[str, Any] | None = None
        resolved: dict[str, Any] | None = None
        repair: Evidence | None = None
        try:
            t_fault = utcnow()
            applied = self._apply(ctx, fault, undo=False)
            evidence.append(applied)
            if applied.ok:
                fired = receiver.wait_for(
                    lambda p: bool(_alerts_in(p, alert, "firing")) and (_ts(p["at"]) or t_fault) >= t_fault, within)
        finally:
            t_repair = utcnow()
            repair = self._apply(ctx, fault, undo=True)
            evidence.append(repair)
        try:
            if fired is not None and repair.ok:
                resolved = receiver.wait_for(
                    lambda p: bool(_alerts_in(p, alert, "resolved")) and (_ts(p["at"]) or t_repair) >= t_repair,
                    within)
        finally:
            receiver.stop()
        rx_ev = receiver.evidence(ev_id=ctx.eid(f"{source}-webhook"), check=ctx.check.id)
        rx_ev.meta.update(phase="receiver", fault_at=t_fault.isoformat(), repair_at=t_repair.isoformat())
        evidence.append(rx_ev)
        # the monitoring server's own account: its ALERTS series around the fault
        start = t_fault.timestamp() - 2
        hist = _prom_get(ctx, source, prom, "/api/v1/query_range",
                         {"query": f'ALERTS{{alertname="{alert}"}}', "start": f"{start:.3f}",
                          "end": f"{time.time():.3f}", "step": "1"}, meta={"phase": "history"})
        evidence.append(hist)
        evidence.append(self._timeline(ctx, alert, fault, t_fault, t_repair, fired, resolved, hist))
        return evidence

    def _timeline(self, ctx: CheckContext, alert: str, fault: dict[str, Any], t_fault: datetime,
                  t_repair: datetime, fired: dict[str, Any] | None, resolved: dict[str, Any] | None,
                  hist: Evidence) -> Evidence:
        firing_at = pending_at = last_firing = None
        for series in (_prom_data(hist) or {}).get("result") or []:
            state = (series.get("metric") or {}).get("alertstate")
            stamps = [float(v[0]) for v in series.get("values") or []]
            if not stamps:
                continue
            if state == "firing":
                firing_at = min(stamps) if firing_at is None else min(firing_at, min(stamps))
                last_firing = max(stamps) if last_firing is None else max(last_firing, max(stamps))
            elif state == "pending":
                pending_at = min(stamps) if pending_at is None else min(pending_at, min(stamps))

        def delay(at: float | None, since: datetime) -> float | None:
            return None if at is None else round(at - since.timestamp(), 1)

        def iso(at: float | None) -> str | None:
            return None if at is None else _iso(at)

        notified = _ts(fired["at"]) if fired else None
        resolved_at = _ts(resolved["at"]) if resolved else None
        row = {
            "alert": alert, "check": ctx.check.id, "fault": f"{fault['kind']} {fault['node']}",
            "fault_at": t_fault.isoformat(), "repaired_at": t_repair.isoformat(),
            "pending_at": iso(pending_at), "firing_at": iso(firing_at), "last_firing_sample": iso(last_firing),
            "detection_delay_s": delay(firing_at, t_fault),
            "notified_delay_s": delay(notified.timestamp() if notified else None, t_fault),
            "resolution_notified_delay_s": delay(resolved_at.timestamp() if resolved_at else None, t_repair),
        }
        return Evidence(id=ctx.eid("alert-timeline"), check=ctx.check.id, kind="artifact", source=hist.source,
                        target=hist.target, action="alert timeline from Prometheus ALERTS and the webhook receiver",
                        started_at=t_fault, ended_at=utcnow(), ok=True, parsed=[row],
                        meta={"artifact": "alert-timeline", "phase": "timeline"})

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        alert, within = args["alert"], float(args["within_s"])
        by_phase = {e.meta.get("phase"): e for e in evidence}
        rx = by_phase.get("receiver")
        if rx is None or not rx.ok:
            why = rx.error if rx else "no receiver"
            return Verdict.errored(f"Le récepteur webhook n'a pas pu écouter : {why}.",
                                   f"The webhook receiver could not listen: {why}.")
        fault, repair = by_phase.get("fault"), by_phase.get("restore")
        for ev in (fault, repair):
            if ev is None or not ev.ok or (ev.parsed or {}).get("rc", 0) != 0:
                why = (ev.error or (ev.parsed or {}).get("stderr") or "") if ev else "not recorded"
                return Verdict.errored(f"L'incident n'a pas pu être provoqué ou réparé : {why}.",
                                       f"The fault could not be applied or undone: {why}.")
        before = by_phase.get("before")
        if before is not None and before.ok:
            already = [a for a in (_prom_data(before) or {}).get("alerts") or []
                       if (a.get("labels") or {}).get("alertname") == alert and a.get("state") == "firing"]
            if already:
                return Verdict.failed(f"« {alert} » était déjà active avant l'incident provoqué.",
                                      f"'{alert}' was already firing before the grader's fault.")
        t_fault = _ts(rx.meta.get("fault_at"))
        t_repair = _ts(rx.meta.get("repair_at"))
        posts = (rx.parsed or {}).get("posts") or []
        if t_fault is None or t_repair is None:
            return Verdict.errored("Horodatage de l'incident manquant.", "The fault's timestamps are missing.")
        fired = [p for p in posts if _alerts_in(p, alert, "firing") and (_ts(p.get("at")) or t_fault) >= t_fault]
        if not fired:
            other = sorted({str((a.get("labels") or {}).get("alertname")) for p in posts
                            for a in ((p.get("json") or {}).get("alerts") or [])})
            seen = f" (reçu : {', '.join(other)})" if other else ""
            seen_en = f" (received: {', '.join(other)})" if other else ""
            return Verdict.failed(f"Le support n'a reçu aucune alerte « {alert} » dans les {within:g} s{seen}.",
                                  f"The helpdesk got no '{alert}' alert within {within:g} s{seen_en}.")
        first = _ts(fired[0]["at"]) or t_fault
        delay = (first - t_fault).total_seconds()
        if delay > within:
            return Verdict.failed(f"« {alert} » reçue après {delay:.1f} s (au plus {within:g} s demandé).",
                                  f"'{alert}' received after {delay:.1f} s (at most {within:g} s required).")
        done = [p for p in posts if _alerts_in(p, alert, "resolved") and (_ts(p.get("at")) or t_repair) >= t_repair]
        if not done:
            return Verdict.failed(
                f"« {alert} » reçue après {delay:.1f} s, mais sa résolution n'est pas arrivée dans les {within:g} s "
                "suivant la réparation.",
                f"'{alert}' received after {delay:.1f} s, but its resolution did not arrive within {within:g} s of "
                "the repair.")
        rdelay = ((_ts(done[0]["at"]) or t_repair) - t_repair).total_seconds()
        return Verdict.passed(
            f"« {alert} » reçue par le support {delay:.1f} s après l'incident, résolution {rdelay:.1f} s après la "
            "réparation.",
            f"'{alert}' reached the helpdesk {delay:.1f} s after the fault, its resolution {rdelay:.1f} s after the "
            "repair.")


# ------------------------------------------------------------------------------- syslog
class SyslogForwarded:
    """A unique line emitted with ``logger`` in the emitting node must show up in a file
    under ``directory`` on the collector within ``within_s`` (read-only ``grep`` there)."""

    name = "supervision.syslog_forwarded"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        marker = f"labkit-grader-{secrets.token_hex(8)}"
        emitter, collector, directory = args["emitter"], args["collector"], str(args["directory"])
        within = float(args.get("within_s", 10))
        emit = ctx.node_exec(emitter, ["logger", "-t", "labkit-grader", "-p", "user.notice", marker],
                             source="grader", label="logger", meta={"phase": "emit", "marker": marker})
        evidence = [emit]
        search: Evidence | None = None
        end = time.monotonic() + within
        while True:
            search = ctx.node_exec(collector, ["grep", "-rlF", "--", marker, directory], source="grader",
                                   label="grep", meta={"phase": "search", "marker": marker})
            if not search.ok or (search.parsed or {}).get("rc") == 0 or time.monotonic() > end:
                break
            time.sleep(0.5)
        evidence.append(search)
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        by_phase = {e.meta.get("phase"): e for e in evidence}
        emit, search = by_phase.get("emit"), by_phase.get("search")
        if emit is None or search is None:
            return Verdict.errored("Mesure incomplète.", "Incomplete measurement.")
        if (emit.parsed or {}).get("rc") != 0:
            return Verdict.errored(f"logger a échoué sur {args['emitter']}.", f"logger failed on {args['emitter']}.")
        files = str((search.parsed or {}).get("stdout", "")).split()
        if (search.parsed or {}).get("rc") != 0 or not files:
            return Verdict.failed(
                f"La ligne émise sur {args['emitter']} n'est pas arrivée dans {args['directory']} sur "
                f"{args['collector']} en {args.get('within_s', 10)} s.",
                f"The line emitted on {args['emitter']} did not reach {args['directory']} on {args['collector']} "
                f"within {args.get('within_s', 10)} s.")
        return Verdict.passed(f"La ligne émise sur {args['emitter']} est arrivée sur {args['collector']} "
                              f"({', '.join(files)}).",
                              f"The line emitted on {args['emitter']} reached {args['collector']} "
                              f"({', '.join(files)}).")


# ---------------------------------------------------------------------------------- NTP
class NtpReference:
    """Each node answers the grader's NTP request (mode 3 → mode 4). The reference node is
    synchronised (leap ≠ 3, stratum 1..15); every other node is synchronised and names the
    reference's address as its refid."""

    name = "supervision.ntp_reference"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        return ctx.parallel([
            ctx.deferred(where["vantage"], "udp", where["address"], "NTP mode 3 request",
                         partial(ntp.ntp_query, where["address"], source=where["vantage"], check=ctx.check.id,
                                 timeout=1.0, tries=2),
                         meta={"target_name": node})
            for node, where in args["nodes"].items()])

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not evidence:
            return Verdict.errored("Aucun nœud n'a été interrogé.", "No node was queried.")
        ref, ref_addr = args["reference"], args["reference_address"]
        problems: list[tuple[str, str]] = []
        for ev in evidence:
            node, p = ev.meta.get("target_name", ev.target), ev.parsed or {}
            if not p.get("answered"):
                problems.append((f"{node} ne répond pas en NTP", f"{node} does not answer NTP"))
            elif p.get("mode") != 4:
                problems.append((f"{node} répond en mode {p.get('mode')}", f"{node} answers in mode {p.get('mode')}"))
            elif p.get("leap") == 3 or not 1 <= int(p.get("stratum", 0)) <= 15:
                problems.append((f"{node} n'est pas synchronisé (strate {p.get('stratum')})",
                                 f"{node} is not synchronised (stratum {p.get('stratum')})"))
            elif node != ref and p.get("refid") != ref_addr:
                problems.append((f"{node} a pour référence {p.get('refid')} et non {ref} ({ref_addr})",
                                 f"{node} uses {p.get('refid')} as its reference, not {ref} ({ref_addr})"))
        return Verdict.from_problems(
            problems,
            f"Les {len(evidence)} nœuds répondent en NTP, synchronisés sur {ref}.",
            f"All {len(evidence)} nodes answer NTP, synchronised on {ref}.")


# -------------------------------------------------------------------------- availability
def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def availability_rows(series: list[dict[str, Any]], devices: dict[str, str], step: float) -> list[dict[str, Any]]:
    """Per device, from ``up`` samples (a Prometheus matrix): samples, availability and the
    periods it was down. Pure."""
    rows = []
    for device, address in devices.items():
        values: list[tuple[float, float]] = []
        for s in series:
            inst = str((s.get("metric") or {}).get("instance", ""))
            if _names_device(inst, address):
                values += [(float(t), float(v)) for t, v in s.get("values") or []]
        values.sort()
        down: list[list[float]] = []
        for t, v in values:
            if v < 1:
                if down and t - down[-1][1] <= step * 1.5:
                    down[-1][1] = t
                else:
                    down.append([t, t])
        up = sum(1 for _, v in values if v >= 1)
        rows.append({
            "device": device, "address": address, "samples": len(values),
            "availability_pct": round(100 * up / len(values), 2) if values else None,
            "from": _iso(values[0][0]) if values else None, "to": _iso(values[-1][0]) if values else None,
            "down_periods": [{"from": _iso(a), "to": _iso(b), "seconds": round(b - a + step, 1)} for a, b in down],
        })
    return rows


class Availability:
    """Each device's ``up`` history over the graded window, read from Prometheus
    (query_range): every device must have been recorded. The table is stored as the
    ``availability`` artifact."""

    name = "supervision.availability"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        end = time.time()
        step = float(args.get("step_s", 2))
        q = {"query": "up", "start": f"{end - float(args['window_s']):.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        hist = _prom_get(ctx, args["source"], args["prometheus"], "/api/v1/query_range", q, meta={"phase": "history"})
        rows = availability_rows((_prom_data(hist) or {}).get("result") or [], args["devices"], step)
        table = Evidence(id=ctx.eid("availability"), check=ctx.check.id, kind="artifact", source=hist.source,
                         target=hist.target, action="availability table from Prometheus up history",
                         started_at=hist.started_at, ended_at=utcnow(), ok=hist.ok, parsed=rows,
                         meta={"artifact": "availability", "phase": "table", "window_s": args["window_s"]})
        return [hist, table]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        hist = next((e for e in evidence if e.meta.get("phase") == "history"), None)
        if hist is None or _prom_data(hist) is None:
            return Verdict.failed("Prometheus ne renvoie pas d'historique.", "Prometheus returns no history.")
        rows = availability_rows(_prom_data(hist).get("result") or [], args["devices"], float(args.get("step_s", 2)))
        missing = [r["device"] for r in rows if not r["samples"]]
        if missing:
            return Verdict.failed("Aucun historique de disponibilité pour : " + ", ".join(missing) + ".",
                                  "No availability history for: " + ", ".join(missing) + ".")
        summary = ", ".join(f"{r['device']} {r['availability_pct']:g} %" for r in rows)
        return Verdict.passed(f"Disponibilité enregistrée pour chaque équipement : {summary}.",
                              f"Availability recorded for every device: {summary}.")


GRADERS = [SnmpV3Devices(), TargetsUp(), AlertRules(), AlertFires(), SyslogForwarded(), NtpReference(),
           Availability()]
