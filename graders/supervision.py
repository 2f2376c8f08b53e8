"""Supervision checks, observed from the grader's side: SNMPv3 answers the grader parses,
Prometheus's own HTTP API read from a vantage point (and proven to be a PromQL engine by a
query with a fresh nonce, and to poll the devices by a capture of its SNMP traffic on the
LAN's bridge), alerts the grader provokes for real and receives on its own webhook (matched
against Prometheus's own ``ALERTS`` series and proven to come from the monitoring server's
bridge port), a log line the grader makes srv2's sshd write (an SSH login attempt with a
nonce user name) seen on the wire and in the log server's files, and NTP answers to its own
client requests plus the clients' polls of the reference seen on the wire.

Where a check touches candidate nodes its ``doc`` says so: ``alert_fires`` breaks something
itself (stops an agent by its pid file or fills a volume through the provider's exec in the
node, or cuts a link on the grader-owned bridge it passes through, never in the node), always
undoes it, and records both as ``fault`` evidence; ``syslog_forwarded`` reads the log
server's files with the grader's own code where the provider can (``ctx.node_fs``: nothing
runs in the node), else asks the log server's own system for them (``node_exec``) and says so.

What they need, they cannot do without (a provider lacking it refuses them): ``alert_fires``
proves who sent a notification by the bridge port facing the monitoring server, named by the
provider's own wiring record (``port_map``: netns from the order it plugs ports in, Proxmox
from the grader guest's places), never by the node: that witness is decisive, not
supporting; its other faults run in the node (``node_exec``). ``syslog_forwarded``'s line
must be seen crossing to the collector's syslog port (``capture``: decisive everywhere) and
then found on the collector. Read from outside the node (``node_fs``, a want) that shows the
line was kept. Without it the collector's own exec lists and reads its recent files (the
command never holds the nonce; the grader searches the bytes): a node's own answer, which can
only hold the random nonce if the line reached it, but whose claim that the line is filed
there is the candidate's system's word. In this module that is the only place a node's own
answer gives points, and only beside the grader's own capture of the same nonce.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import shlex
import threading
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from labkit.adapters.probes import capture, http, netlink, ntp, rendezvous, snmp, sshauth
from labkit.domain.grading import CheckContext, error_if_unrun, utcnow
from labkit.models.capabilities import Capability
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


def _prom_nonce(ctx: CheckContext, source: str, host: str) -> Evidence:
    """A PromQL query with two fresh random numbers: only an engine that evaluates PromQL
    answers their sum (canned JSON cannot)."""
    a, b = 1000 + secrets.randbelow(10**6), 1000 + secrets.randbelow(10**6)
    return _prom_get(ctx, source, host, "/api/v1/query", {"query": f"vector({a}) + {b}"},
                     meta={"phase": "nonce", "expect": a + b})


def nonce_problem(evidence: list[Evidence]) -> tuple[str, str] | None:
    """None when the nonce query (phase ``nonce``) was answered with the right sum. Pure."""
    ev = next((e for e in evidence if e.meta.get("phase") == "nonce"), None)
    if ev is None:
        return ("la requête de contrôle PromQL n'a pas été faite", "the PromQL control query was not made")
    data = _prom_data(ev)
    try:
        got = float(data["result"][0]["value"][1]) if data and data.get("resultType") == "vector" else None
    except (KeyError, IndexError, TypeError, ValueError):
        got = None
    if got is None or got != float(ev.meta.get("expect", -1)):
        return ("le serveur du port 9090 ne calcule pas une requête PromQL nouvelle (réponse toute faite ?) : "
                "ce n'est pas Prometheus",
                "the server on port 9090 does not evaluate a fresh PromQL query (a canned answer?): it is not "
                "Prometheus")
    return None


def sender_port(ctx: CheckContext, node: str, iface: str, segment: str) -> str:
    """The port of ``segment``'s grader-owned bridge that faces ``node``'s ``iface``, from the
    provider's own wiring record (its ``segment_port``; capability ``port_map``): nothing is
    asked of the node. Raises when the provider cannot say."""
    finder = getattr(ctx.provider, "segment_port", None)
    port = finder(ctx.state, segment, f"{node}:{iface}") if callable(finder) else None
    if not port:
        raise RuntimeError(f"provider {getattr(ctx.provider, 'name', '?')} does not say which port of {segment}'s "
                           f"bridge faces {node}:{iface} (port_map): the port is unknown")
    return str(port)


def _flows(ev: Evidence | None) -> list[dict[str, Any]]:
    return list(((ev.parsed or {}).get("flows") or []) if ev is not None else [])


def _seen(flows: list[dict[str, Any]], proto: str, src: str, dst: str, dport: int | None = None,
          sport: int | None = None) -> bool:
    return any(f.get("proto") == proto and f.get("src") == src and f.get("dst") == dst
               and (dport is None or f.get("dport") == dport) and (sport is None or f.get("sport") == sport)
               and int(f.get("packets") or 0) > 0 for f in flows)


def _capture_call(ctx: CheckContext, segment: str, seconds: float, markers: list[str] | None = None,
                  stop: str | None = None, meta: dict[str, Any] | None = None):  # noqa: ANN202
    """A bounded capture on the bridge of a LAN (``segment``) or of a point-to-point link
    (``link:NAME``), both grader-owned."""
    where = segment if segment.startswith("link:") else f"segment:{segment}"
    return ctx.deferred(where, "capture", "br0", "capture",
                        partial(capture.capture, markers=markers or [], source=where, check=ctx.check.id,
                                duration_s=seconds, max_bytes=32 << 20, stop=stop),
                        timeout=seconds + 15, meta={"phase": "wire", "segment": segment, **(meta or {})})


# ---------------------------------------------------------------------------------- SNMP
class SnmpV3Devices:
    """Every device answers SNMPv3 authPriv (user, SHA, AES of the brief) with its sysName."""

    name = "supervision.snmpv3_devices"
    needs: frozenset[Capability] = frozenset({"vantage"})

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
    target (named by its address in the instance label or the scrape URL) whose health is up.
    The answer must come from a PromQL engine (a nonce query), and the grader's own capture
    on the LAN's bridge must show the monitoring server polling each device over SNMP (UDP
    161) and each device answering it, within ``capture.seconds`` (the brief's 2 s scrape)."""

    name = "supervision.targets_up"
    needs: frozenset[Capability] = frozenset({"vantage", "capture"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        cap = args["capture"]
        src, prom = args["source"], args["prometheus"]
        return ctx.parallel([
            _capture_call(ctx, cap["segment"], float(cap["seconds"])),
            lambda: _prom_get(ctx, src, prom, "/api/v1/targets", {"state": "active"}, meta={"phase": "targets"}),
            lambda: _prom_nonce(ctx, src, prom)])

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun([e for e in evidence if e.meta.get("phase") == "wire"])) is not None:
            return err
        by_phase = {e.meta.get("phase"): e for e in evidence}
        targets_ev = by_phase.get("targets")
        data = _prom_data(targets_ev) if targets_ev is not None and targets_ev.ok else None
        if data is None:
            return Verdict.failed("Prometheus ne renvoie pas de liste de cibles.",
                                  "Prometheus returns no list of targets.")
        problems: list[tuple[str, str]] = []
        if (fake := nonce_problem(evidence)) is not None:
            problems.append(fake)
        targets = data.get("activeTargets") or []
        poller, flows = args.get("poller", args["prometheus"]), _flows(by_phase.get("wire"))
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
            elif not _seen(flows, "udp", poller, address, dport=161):
                problems.append((f"aucune requête SNMP de {poller} vers {device} ({address}) vue sur le LAN",
                                 f"no SNMP request from {poller} to {device} ({address}) seen on the LAN"))
            elif not _seen(flows, "udp", address, poller, sport=161):
                problems.append((f"{device} ({address}) ne répond pas en SNMP à {poller} (vu sur le LAN)",
                                 f"{device} ({address}) does not answer {poller}'s SNMP (seen on the LAN)"))
        return Verdict.from_problems(
            problems,
            f"Les {len(args['devices'])} équipements sont des cibles actives et joignables, interrogées en SNMP "
            "par le serveur de supervision (vu sur le LAN).",
            f"All {len(args['devices'])} devices are active targets and up, polled over SNMP by the monitoring "
            "server (seen on the LAN).")


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
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        return [_prom_get(ctx, args["source"], args["prometheus"], "/api/v1/rules", {"type": "alert"},
                          meta={"phase": "rules"}),
                _prom_nonce(ctx, args["source"], args["prometheus"])]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        rules_ev = next((e for e in evidence if e.meta.get("phase", "rules") == "rules"), None)
        if rules_ev is None:
            return Verdict.errored("Mesure incomplète.", "Incomplete measurement.")
        if (err := error_if_unrun([rules_ev])) is not None:
            return err
        data = _prom_data(rules_ev)
        if data is None:
            return Verdict.failed("Prometheus ne renvoie pas de règles.", "Prometheus returns no rules.")
        rules = [r for g in data.get("groups") or [] for r in g.get("rules") or [] if r.get("type") == "alerting"]
        problems: list[tuple[str, str]] = []
        if (fake := nonce_problem(evidence)) is not None:
            problems.append(fake)
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
_alerts_in = http.alerts_in
_ts = http.post_time


def label_fingerprint(labels: dict[str, str]) -> str:
    """Prometheus's ``LabelSet.Fingerprint`` (FNV-1a 64 over the sorted names and values,
    each followed by byte 0xff), as Alertmanager prints it. Pure."""
    h = 14695981039346656037
    for name in sorted(labels):
        for part in (name, str(labels[name])):
            for byte in part.encode() + b"\xff":
                h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def alert_groups(hist: Evidence | None) -> list[dict[str, Any]]:
    """Prometheus's ALERTS history (a matrix) per alert, i.e. per label set without
    ``alertstate``: ``labels``, ``pending`` (first pending sample), ``firing`` and
    ``last_firing`` (epoch seconds or None). Pure."""
    groups: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for series in ((_prom_data(hist) or {}).get("result") or []) if hist is not None else []:
        metric = dict(series.get("metric") or {})
        state = metric.pop("alertstate", None)
        metric.pop("__name__", None)
        stamps = [float(v[0]) for v in series.get("values") or []]
        if not stamps:
            continue
        g = groups.setdefault(tuple(sorted(metric.items())),
                              {"labels": metric, "pending": None, "firing": None, "last_firing": None})
        if state == "pending":
            g["pending"] = min(stamps) if g["pending"] is None else min(g["pending"], min(stamps))
        elif state == "firing":
            g["firing"] = min(stamps) if g["firing"] is None else min(g["firing"], min(stamps))
            g["last_firing"] = max(stamps) if g["last_firing"] is None else max(g["last_firing"], max(stamps))
    return list(groups.values())


SLACK_S = 2.5


def matching_group(alert: dict[str, Any], groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The alert Prometheus raised that a notified ``alert`` stands for: every label of the
    ALERTS series is in the notification with the same value, the notification's fingerprint
    (when given) is that of its labels, and its ``startsAt`` falls between the series' first
    pending and first firing samples (± SLACK_S). Pure."""
    labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
    if alert.get("fingerprint") and alert["fingerprint"] != label_fingerprint(labels):
        return None
    starts = _ts(alert.get("startsAt"))
    for g in groups:
        if g["firing"] is None or any(labels.get(k) != str(v) for k, v in g["labels"].items()):
            continue
        lo = (g["pending"] if g["pending"] is not None else g["firing"]) - SLACK_S
        if starts is not None and lo <= starts.timestamp() <= g["firing"] + SLACK_S:
            return g
    return None


class AlertFires:
    """The grader breaks something itself (``fault``: stop an agent, cut a link on the grader's
    own bridge of that link, fill a volume), waits for the brief's alert on its own webhook
    receiver within ``within_s``, repairs (always), and waits for the resolution.

    A notification counts only if it is proven to be the monitoring server's account of an
    alert Prometheus itself raised after the fault: it comes from ``sender``'s address AND
    its TCP connection entered the LAN through the bridge port facing ``sender`` (grader-owned
    L2, watched for the whole check; the port named by the provider's own wiring record,
    ``segment_port``, never by the node); each of its alerts matches a series of Prometheus's own
    ``ALERTS`` (labels, fingerprint, ``startsAt`` between pending and firing) that started
    after the fault; nothing for this alert reaches the helpdesk during the ``quiet_s``
    before the fault. Any notification for this alert that breaks one of these fails the
    check. Prometheus's ALERTS series also gives the ``alert-timeline`` artifact."""

    name = "supervision.alert_fires"
    needs: frozenset[Capability] = frozenset({"vantage", "capture", "link_cut", "node_exec", "port_map"})

    def _apply(self, ctx: CheckContext, fault: dict[str, Any], undo: bool) -> Evidence:
        kind, node = fault["kind"], fault["node"]
        meta = {"phase": "restore" if undo else "fault"}
        if kind == "link-down":
            # only on the grader-owned bridge the link passes through: the port facing ``node``
            # goes down, so ``node``'s interface loses carrier (admin still up). Never in the node
            # itself: a fault without a grader link, or a port that cannot be set, is recorded as
            # not applied (the check then errs) rather than cut somewhere else.
            iface = str(fault.get("port", "p2"))
            if not fault.get("link"):
                return Evidence(id=ctx.eid(f"{node}-link-down"), check=ctx.check.id, kind="fault", source="grader",
                                target=node, action="link down", started_at=utcnow(), ended_at=utcnow(), ok=False,
                                error=f"the link-down fault on {node} names no grader link ('link:'): the grader "
                                      "cuts a link only on a bridge it owns", meta=meta)
            where = f"link:{fault['link']}"
            probe = partial(netlink.set_link_state, iface, undo, source=where, check=ctx.check.id)
            ev = ctx.probe(where, "fault", iface, f"ip link set dev {iface} {'up' if undo else 'down'}", probe,
                           timeout=10.0)
            ev.meta.update(meta, what=f"{fault['link']} bridge port {iface} (facing {node}) set "
                                      f"{'up' if undo else 'down'} by the grader")
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
        alert, fault, rx, sender = args["alert"], args["fault"], args["receiver"], args["sender"]
        within, quiet = float(args["within_s"]), float(args.get("quiet_s", 3))
        prom, source = args["prometheus"], args.get("source", rx["vantage"])
        evidence = [_prom_get(ctx, source, prom, "/api/v1/alerts", meta={"phase": "before"})]
        lifetime = quiet + 3 * within + 30

        def unrun(label: str, target: str, action: str, exc: BaseException, phase: str) -> Evidence:
            return Evidence(id=ctx.eid(label), check=ctx.check.id, kind="tcp", source=source, target=target,
                            action=action, started_at=utcnow(), ended_at=utcnow(), ok=False,
                            error=f"{type(exc).__name__}: {exc}", meta={"phase": phase})

        # the grader's witness of who really opens connections to the helpdesk: the bridge
        # port facing the monitoring server, watched for the whole check
        try:
            port = sender_port(ctx, sender["node"], sender["iface"], sender["segment"])
        except Exception as exc:  # noqa: BLE001 - the check cannot be observed
            evidence.append(unrun("sender-port", sender["node"], "find the bridge port facing the sender", exc,
                                  "witness"))
            return evidence
        stop, ready = rendezvous.new_name("stop"), rendezvous.new_name("ready")
        witness: list[Evidence] = []
        where = f"segment:{sender['segment']}"
        watch = threading.Thread(target=lambda: witness.append(ctx.probe(
            where, "capture", port, f"TCP opens to the helpdesk through {port}",
            partial(http.tcp_opens, port, rx["address"], int(rx["port"]), source=where, check=ctx.check.id,
                    duration_s=min(lifetime, 300.0), stop=stop, ready=ready),
            timeout=min(lifetime, 300.0) + 15)), name="webhook-witness", daemon=True)
        watch.start()
        ctx.wait_signal(where, ready, 5.0)
        handle = rendezvous.new_name("webhook")
        started = ctx.probe(rx["vantage"], "tcp", f"{rx['address']}:{rx['port']}", "HTTP webhook receiver",
                            partial(http.webhook_start, rx["address"], int(rx["port"]), handle=handle,
                                    source=rx["vantage"], check=ctx.check.id, max_lifetime=lifetime), timeout=10.0)
        if not started.ok:  # the receiver could not listen: the check cannot run
            ctx.signal(where, stop)
            watch.join(20)
            started.meta.update(phase="receiver")
            started.source = source
            evidence.append(started)
            return evidence
        from_sender = sender["address"]

        def wait(status: str, since: datetime) -> dict[str, Any] | None:
            ev = ctx.probe(rx["vantage"], "tcp", handle, f"wait for a {status} notification",
                           partial(http.webhook_wait, handle, peer=from_sender, alert=alert, status=status,
                                   since=since.isoformat(), deadline_s=within, source=rx["vantage"],
                                   check=ctx.check.id), timeout=within + 15)
            if not ev.ok:
                raise RuntimeError(f"the grader's webhook receiver could not be read: {ev.error}")
            post = (ev.parsed or {}).get("post")
            return post if isinstance(post, dict) else None

        fired: dict[str, Any] | None = None
        resolved: dict[str, Any] | None = None
        t_quiet = utcnow()
        time.sleep(quiet)  # nothing for this alert may reach the helpdesk before the fault
        try:
            t_fault = utcnow()
            applied = self._apply(ctx, fault, undo=False)
            evidence.append(applied)
            if applied.ok:
                fired = wait("firing", t_fault)
        finally:
            t_repair = utcnow()
            repair = self._apply(ctx, fault, undo=True)
            evidence.append(repair)
        try:
            if fired is not None and repair.ok:
                resolved = wait("resolved", t_repair)
        finally:
            rx_ev = ctx.probe(rx["vantage"], "tcp", f"{rx['address']}:{rx['port']}", "HTTP webhook receiver",
                              partial(http.webhook_finish, handle, source=rx["vantage"], check=ctx.check.id),
                              timeout=15.0)
            ctx.signal(where, stop)
            watch.join(20)
        rx_ev.meta.update(phase="receiver", quiet_from=t_quiet.isoformat(), fault_at=t_fault.isoformat(),
                          repair_at=t_repair.isoformat())
        evidence.append(rx_ev)
        if witness:
            witness[0].meta.update(phase="witness", port=port)
            evidence.append(witness[0])
        # the monitoring server's own account: its ALERTS series around the fault
        start = t_quiet.timestamp() - 2
        hist = _prom_get(ctx, source, prom, "/api/v1/query_range",
                         {"query": f'ALERTS{{alertname="{alert}"}}', "start": f"{start:.3f}",
                          "end": f"{time.time():.3f}", "step": "1"}, meta={"phase": "history"})
        evidence.append(hist)
        evidence.append(self._timeline(ctx, alert, fault, t_fault, t_repair, fired, resolved, hist))
        return evidence

    def _timeline(self, ctx: CheckContext, alert: str, fault: dict[str, Any], t_fault: datetime,
                  t_repair: datetime, fired: dict[str, Any] | None, resolved: dict[str, Any] | None,
                  hist: Evidence) -> Evidence:
        groups = alert_groups(hist)

        def first(key: str) -> float | None:
            stamps = [g[key] for g in groups if g[key] is not None]
            return min(stamps) if stamps else None

        firing_at, pending_at = first("firing"), first("pending")
        last = [g["last_firing"] for g in groups if g["last_firing"] is not None]
        last_firing = max(last) if last else None

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
        sender = args["sender"]
        mon = sender["address"]
        by_phase = {e.meta.get("phase"): e for e in evidence}
        rx, witness = by_phase.get("receiver"), by_phase.get("witness")
        watched = ((rx, "Le récepteur webhook n'a pas pu écouter", "The webhook receiver could not listen"),
                   (witness, "Le port du pont face au serveur de supervision n'a pas pu être observé",
                    "The bridge port facing the monitoring server could not be watched"))
        # a recorded failure first (e.g. the sender's port unknown: no receiver was started)
        for ev, what, what_en in sorted(watched, key=lambda w: w[0] is None):
            if ev is None or not ev.ok:
                why = ev.error if ev else "not recorded"
                return Verdict.errored(f"{what} : {why}.", f"{what_en}: {why}.")
        assert rx is not None and witness is not None
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
        t_fault, t_repair = _ts(rx.meta.get("fault_at")), _ts(rx.meta.get("repair_at"))
        if t_fault is None or t_repair is None:
            return Verdict.errored("Horodatage de l'incident manquant.", "The fault's timestamps are missing.")
        posts = (rx.parsed or {}).get("posts") or []
        opens = {(o.get("src"), o.get("sport")) for o in (witness.parsed or {}).get("opens") or []}
        groups = alert_groups(by_phase.get("history"))
        mine = [p for p in posts if _alerts_in(p, alert)]
        # 1. who sent it: the monitoring server's address, through its own bridge port
        for p in mine:
            if p.get("peer") != mon:
                return Verdict.failed(
                    f"Une notification « {alert} » est venue de {p.get('peer')}, pas du serveur de supervision "
                    f"({mon}).",
                    f"A '{alert}' notification came from {p.get('peer')}, not from the monitoring server ({mon}).")
            if (p.get("peer"), p.get("peer_port")) not in opens:
                return Verdict.failed(
                    f"Une notification « {alert} » porte l'adresse {mon} sans être entrée sur le LAN par le port du "
                    "serveur de supervision : adresse usurpée.",
                    f"A '{alert}' notification carries {mon}'s address but did not enter the LAN through the "
                    "monitoring server's port: a spoofed address.")
        # 2. when: nothing before the fault
        early = [p for p in mine if _alerts_in(p, alert, "firing") and (_ts(p.get("at")) or t_fault) < t_fault]
        if early:
            return Verdict.failed(
                f"Le support a reçu « {alert} » avant l'incident provoqué par l'évaluateur : ce n'est pas une "
                "alerte causée par l'incident.",
                f"The helpdesk got '{alert}' before the grader's fault: it is not an alert caused by the fault.")
        # 3. what: each notified alert is one Prometheus raised (a late resolution of an
        # incident older than this check, e.g. retried by Alertmanager, neither counts nor fails)
        quiet_from = _ts(rx.meta.get("quiet_from")) or t_fault
        for p in mine:
            for a in _alerts_in(p, alert):
                starts = _ts(a.get("startsAt"))
                if a.get("status") == "resolved" and starts is not None and \
                        starts.timestamp() < quiet_from.timestamp() - SLACK_S:
                    continue
                if matching_group(a, groups) is None:
                    named = ", ".join(str(g["labels"].get("instance", "?")) for g in groups if g["firing"]) or "-"
                    return Verdict.failed(
                        f"Une notification « {alert} » ({a.get('status')}, labels {a.get('labels')}) ne correspond à "
                        f"aucune alerte levée par Prometheus (série ALERTS ; levées : {named}).",
                        f"A '{alert}' notification ({a.get('status')}, labels {a.get('labels')}) matches no alert "
                        f"Prometheus raised (ALERTS series; raised: {named}).")
        raised = [g for g in groups if g["firing"] is not None and g["firing"] >= t_fault.timestamp() - 1]
        fired = [p for p in mine if _alerts_in(p, alert, "firing") and (_ts(p.get("at")) or t_fault) >= t_fault
                 and any(matching_group(a, raised) for a in _alerts_in(p, alert, "firing"))]
        if not fired:
            other = sorted({str((a.get("labels") or {}).get("alertname")) for p in posts
                            for a in ((p.get("json") or {}).get("alerts") or []) if isinstance(a, dict)})
            seen = f" (reçu : {', '.join(other)})" if other else ""
            seen_en = f" (received: {', '.join(other)})" if other else ""
            if not raised:
                return Verdict.failed(f"Prometheus n'a pas levé « {alert} » après l'incident{seen}.",
                                      f"Prometheus did not raise '{alert}' after the fault{seen_en}.")
            return Verdict.failed(f"Le support n'a reçu aucune alerte « {alert} » dans les {within:g} s{seen}.",
                                  f"The helpdesk got no '{alert}' alert within {within:g} s{seen_en}.")
        first = _ts(fired[0]["at"]) or t_fault
        delay = (first - t_fault).total_seconds()
        if delay > within:
            return Verdict.failed(f"« {alert} » reçue après {delay:.1f} s (au plus {within:g} s demandé).",
                                  f"'{alert}' received after {delay:.1f} s (at most {within:g} s required).")
        done = [p for p in mine if _alerts_in(p, alert, "resolved") and (_ts(p.get("at")) or t_repair) >= t_repair
                and any(matching_group(a, raised) for a in _alerts_in(p, alert, "resolved"))]
        if not done:
            return Verdict.failed(
                f"« {alert} » reçue après {delay:.1f} s, mais sa résolution n'est pas arrivée dans les {within:g} s "
                "suivant la réparation.",
                f"'{alert}' received after {delay:.1f} s, but its resolution did not arrive within {within:g} s of "
                "the repair.")
        rdelay = ((_ts(done[0]["at"]) or t_repair) - t_repair).total_seconds()
        return Verdict.passed(
            f"« {alert} » reçue par le support {delay:.1f} s après l'incident, résolution {rdelay:.1f} s après la "
            "réparation ; notifications venues du serveur de supervision, conformes aux alertes de Prometheus.",
            f"'{alert}' reached the helpdesk {delay:.1f} s after the fault, its resolution {rdelay:.1f} s after the "
            "repair; notifications from the monitoring server, matching Prometheus's own alerts.")


# ------------------------------------------------------------------------------- syslog
def _find_in_tree(fs: Any, directory: str, needle: bytes, max_files: int = 2000) -> list[str]:
    """Files below ``directory`` (read by the grader, in the node's root) whose last 4 MiB
    hold ``needle``."""
    found = []
    for rel, fd in fs.walk_files(directory, max_files):
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - (4 << 20)), os.SEEK_SET)
        chunks, total = [], 0
        while total < (4 << 20) and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            total += len(chunk)
        if needle in b"".join(chunks):
            found.append(f"{directory.rstrip('/')}/{rel}")
    return found


# The collector's files read through its own exec (no ``node_fs``): a fixed script, the same
# for every grading, that never contains the nonce: the ``READ_FILES`` most recently modified
# files under the directory ($1), the last ``READ_TAIL`` bytes of each, names and contents in
# base64. The grader decodes and searches the answer itself. The answer is bounded
# (``READ_FILES`` x base64 of ``READ_TAIL``, under the Proxmox guest agent's 1 MiB).
READ_FILES = 16
READ_TAIL = 32 << 10
READ_ANSWER_MAX = READ_FILES * (READ_TAIL * 4 // 3 + 1024)
READ_SCRIPT = (
    'cd -- "$1" 2>/dev/null || { echo no-directory; exit 3; }\n'
    "find . -xdev -type f -printf '%T@ %p\\0' | sort -z -r -n | head -z -n \"$2\" | cut -z -d ' ' -f 2- |\n"
    '  xargs -0 -r sh -c \'n=$1; shift; for f; do '
    'printf "F %s %s\\n" "$(printf %s "$f" | base64 -w0)" "$(stat -c %s -- "$f")"; '
    'tail -c "$n" -- "$f" | base64 -w0; echo; done\' sh "$3"\n'
)
SYSLOG_UNCHECKED = (
    "que la ligne est rangée dans les fichiers du collecteur lus depuis l'extérieur du nœud (c'est le système du "
    "collecteur qui montre ses fichiers ; il ne peut y montrer le nom aléatoire que si la ligne lui est parvenue)",
    "that the line is filed in the collector's files as read from outside the node (the collector's own system "
    "shows its files; it can only show the random user name if the line reached it)")
NODE_OWN_ANSWER = "the node's own answer, read through the node's own exec (inside the candidate's system)"


def parse_read_answer(stdout: str, directory: str, needle: bytes) -> dict[str, Any]:
    """The collector's answer to READ_SCRIPT, decoded and searched on the grader's side:
    ``files`` (those whose tail holds ``needle``), ``read`` (every file read: path, size),
    ``lines`` (the lines holding ``needle``, at most 3, 300 characters each), ``malformed``
    (lines that were not the script's format). Pure."""
    out: dict[str, Any] = {"files": [], "read": [], "lines": [], "malformed": 0}
    rows = stdout.split("\n")
    i = 0
    while i < len(rows):
        head = rows[i].split(" ")
        if len(head) != 3 or head[0] != "F" or i + 1 >= len(rows):
            out["malformed"] += bool(rows[i].strip())
            i += 1
            continue
        try:
            name = base64.b64decode(head[1], validate=True).decode("utf-8", "replace")
            body = base64.b64decode(rows[i + 1].strip(), validate=True)
        except (binascii.Error, ValueError):
            out["malformed"] += 1
            i += 2
            continue
        path = f"{directory.rstrip('/')}/{name.removeprefix('./')}"
        out["read"].append({"path": path, "size": head[2], "tail_bytes": len(body)})
        if needle in body:
            out["files"].append(path)
            out["lines"] += [ln.decode("utf-8", "replace")[:300] for ln in body.splitlines() if needle in ln]
        i += 2
    out["lines"] = out["lines"][:3]
    return out


class SyslogForwarded:
    """The grader makes the emitter's sshd write a line it can predict and nobody can guess:
    an SSH login attempt, from its vantage point, as a fresh random user name (sshd logs
    "Invalid user <nonce> from ..."). That line must cross the collector's LAN from the
    emitter's address to the collector's syslog port (514, UDP or TCP), seen by the grader's
    capture on the bridge (decisive, on every provider), and land in a file under
    ``directory`` on the collector within ``within_s``.

    Where the provider reads a node's files from outside it (``node_fs``, netns), the grader's
    own code reads them (nothing runs in the node). Elsewhere (Proxmox) it asks the
    collector's own system, through the provider's exec (``node_exec``), for the tails of its
    most recently modified files under ``directory`` (``READ_SCRIPT``: the command never
    holds the nonce) and searches them itself; the evidence says it is the node's own answer.
    That answer can only hold the nonce if the line reached the collector: the nonce is
    random, sent only to the emitter's sshd, and the capture shows the line crossing to the
    collector's syslog port; a forged reader that prints canned logs cannot know it. What
    that path does not prove is that the line is really filed there (the node's own word):
    ``node_fs`` is a want, and validate says so."""

    name = "supervision.syslog_forwarded"
    needs: frozenset[Capability] = frozenset({"vantage", "capture", "node_exec"})
    wants: dict[Capability, tuple[str, str]] = {"node_fs": SYSLOG_UNCHECKED}

    def _read_fs(self, ctx: CheckContext, collector: str, directory: str, nonce: str,
                 within: float) -> Evidence:
        found: list[str] = []
        error: str | None = None
        started = utcnow()
        end = time.monotonic() + within
        while True:
            try:
                with ctx.node_fs(collector) as fs:
                    found = _find_in_tree(fs, directory, nonce.encode())
                error = None
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"  # no such directory yet: keep looking
            except Exception as exc:  # noqa: BLE001 - the node is gone: the read cannot run
                error = f"{type(exc).__name__}: {exc}"
                break
            if found or time.monotonic() > end:
                break
            time.sleep(0.5)
        return Evidence(
            id=ctx.eid(f"{collector}-files"), check=ctx.check.id, kind="exec", source="grader", target=collector,
            action=f"files under {directory} on {collector} read by the grader's own code (openat2 in the node's "
                   "root; nothing run in the node), searched for the nonce user name",
            started_at=started, ended_at=utcnow(), ok=error is None or "No such file" in error,
            raw="\n".join(found) or (error or "not found"), parsed={"files": found, "error": error},
            error=None if error is None or "No such file" in error else error,
            meta={"phase": "search", "read": "node_fs"})

    def _read_exec(self, ctx: CheckContext, collector: str, directory: str, nonce: str,
                   within: float) -> Evidence:
        argv = ["/bin/sh", "-c", READ_SCRIPT, "sh", directory, str(READ_FILES), str(READ_TAIL)]
        action = (f"the {READ_FILES} most recently modified files under {directory} on {collector}, the last "
                  f"{READ_TAIL >> 10} KiB of each, listed and read by the node's own find, tail and base64 (the "
                  "command holds no nonce), searched for the nonce user name by the grader")
        started = utcnow()
        end = time.monotonic() + within
        while True:
            left = end - time.monotonic()
            ev = ctx.node_exec(collector, argv, label="read-logs", action=action, output_max=None,
                               timeout=max(5.0, min(15.0, left + 5.0)), meta={"phase": "search"})
            p = ev.parsed or {}
            stdout = str(p.get("stdout") or "")
            result: dict[str, Any] = {"files": [], "read": [], "lines": [], "malformed": 0, "error": None}
            if not ev.ok:
                result["error"] = ev.error
            elif len(stdout) > READ_ANSWER_MAX:
                result["error"] = f"the answer is larger than {READ_ANSWER_MAX} bytes: not read"
            elif p.get("rc") == 3 and stdout.strip() == "no-directory":
                result["error"] = f"no such directory: {directory}"
            else:
                result |= parse_read_answer(stdout, directory, nonce.encode())
            if result["files"] or not ev.ok or time.monotonic() > end:
                break
            time.sleep(1.0)
        listing = "\n".join(f"{r['path']} ({r['size']} bytes, last {r['tail_bytes']} read)" for r in result["read"])
        ev.parsed = {"rc": p.get("rc"), "stderr": str(p.get("stderr") or "")[-2000:], **result}
        ev.raw = (f"$ {action}\n{listing or '(no file)'}\n"
                  + (("holding the nonce: " + "\n".join(result["lines"])) if result["lines"] else "nonce not found")
                  + (f"\n[error] {result['error']}" if result["error"] else "") + f"\n[rc={p.get('rc')}]")
        ev.started_at = started
        ev.meta.update(phase="search", read="node_exec", reported_by=NODE_OWN_ANSWER)
        return ev

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        nonce = f"lk{secrets.token_hex(6)}"
        emitter, collector, directory = args["emitter"], args["collector"], str(args["directory"])
        within = float(args.get("within_s", 10))
        stop = rendezvous.new_name("stop")
        wire: list[Evidence] = []
        cap = _capture_call(ctx, args["segment"], within + 5, markers=[nonce], stop=stop)
        watch = threading.Thread(target=lambda: wire.append(cap()), name="syslog-wire", daemon=True)
        watch.start()
        time.sleep(0.3)  # the capture socket is open before the line is provoked
        v = args["vantage"]
        attempt = ctx.probe(v, "ssh", f"{args['emitter_address']}:22",
                            f"ssh login attempt as a nonce user on {emitter}",
                            partial(sshauth.password_login, args["emitter_address"], user=nonce,
                                    password=secrets.token_urlsafe(12), source=v, check=ctx.check.id, timeout=5.0),
                            timeout=15.0)
        attempt.meta.update(phase="emit")
        if "node_fs" in ctx.provider.capabilities:
            search = self._read_fs(ctx, collector, directory, nonce, within)
        else:
            search = self._read_exec(ctx, collector, directory, nonce, within)
        ctx.signal(args["segment"] if str(args["segment"]).startswith("link:") else f"segment:{args['segment']}", stop)
        watch.join(within + 20)
        return [attempt, search, *wire[:1]]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        by_phase = {e.meta.get("phase"): e for e in evidence}
        emit, search, wire = by_phase.get("emit"), by_phase.get("search"), by_phase.get("wire")
        if emit is None or search is None or wire is None:
            return Verdict.errored("Mesure incomplète.", "Incomplete measurement.")
        if (err := error_if_unrun([search, wire])) is not None:
            return err
        em, col = args["emitter"], args["collector"]
        if not emit.ok or not (emit.parsed or {}).get("server_version"):
            why = emit.error or "no SSH answer"
            return Verdict.failed(
                f"Le serveur SSH de {em} ne répond pas ({why}) : l'évaluateur n'a pas pu y provoquer de ligne de "
                "journal.",
                f"{em}'s SSH server does not answer ({why}): the grader could not make it log a line.")
        problems: list[tuple[str, str]] = []
        src, dst = args["emitter_address"], args["collector_address"]
        hits = {h.get("flow", "") for h in (wire.parsed or {}).get("marker_hits") or []}
        on_wire = [h for h in hits if re.fullmatch(rf"(tcp|udp) {re.escape(src)}:\d+ → {re.escape(dst)}:514", h)]
        if not on_wire:
            problems.append((f"la ligne provoquée sur {em} n'a pas traversé le LAN de {src} vers {dst}:514 (syslog)",
                             f"the line provoked on {em} did not cross the LAN from {src} to {dst}:514 (syslog)"))
        own = search.meta.get("read") == "node_exec"  # the collector's own system answered
        files = (search.parsed or {}).get("files") or []
        if not files:
            by, by_en = (f" (selon le système de {col} lui-même)", f" (as {col}'s own system shows them)") if own \
                else ("", "")
            problems.append((f"elle n'est dans aucun fichier de {args['directory']} sur {col} après "
                             f"{args.get('within_s', 10)} s{by}",
                             f"it is in no file under {args['directory']} on {col} after {args.get('within_s', 10)} "
                             f"s{by_en}"))
        if own:
            kept, kept_en = (f"le système de {col} la montre rangée ({', '.join(files)} ; lu par sa propre commande, "
                             "pas depuis l'extérieur du nœud)",
                             f"{col}'s own system shows it filed ({', '.join(files)}; read through its own command, "
                             "not from outside the node)")
        else:
            kept, kept_en = f"y est rangée ({', '.join(files)})", f"is filed there ({', '.join(files)})"
        return Verdict.from_problems(
            problems,
            f"La ligne provoquée sur {em} a traversé le LAN vers {col} ({', '.join(on_wire)}) et {kept}.",
            f"The line provoked on {em} crossed the LAN to {col} ({', '.join(on_wire)}) and {kept_en}.")


# ---------------------------------------------------------------------------------- NTP
class NtpReference:
    """Each node answers the grader's NTP request (mode 3 → mode 4, its random transmit time
    echoed as origin) with the shared clock's time (±2 s). The reference node is
    synchronised (leap ≠ 3, stratum 1..15); every other node is synchronised one stratum
    below it, names the reference's address as its refid, and updated its clock within
    ``max_age_s``. For the nodes with a ``wire`` (a LAN, or ``link:NAME``), the grader's
    capture on that grader-owned bridge must show the node (from ``wire_address``, default
    its address) polling the reference (UDP 123) and the reference answering, during
    ``wire_seconds``: a responder that makes up a refid without syncing sends none."""

    name = "supervision.ntp_reference"
    needs: frozenset[Capability] = frozenset({"vantage", "capture"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        calls = [ctx.deferred(where["vantage"], "udp", where["address"], "NTP mode 3 request",
                              partial(ntp.ntp_query, where["address"], source=where["vantage"], check=ctx.check.id,
                                      timeout=1.0, tries=2),
                              meta={"target_name": node})
                 for node, where in args["nodes"].items()]
        segments = sorted({w["wire"] for w in args["nodes"].values() if w.get("wire")})
        calls += [_capture_call(ctx, seg, float(args.get("wire_seconds", 5))) for seg in segments]
        return ctx.parallel(calls)

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        answers = [e for e in evidence if e.meta.get("phase") != "wire"]
        if not answers:
            return Verdict.errored("Aucun nœud n'a été interrogé.", "No node was queried.")
        wire = {e.meta.get("segment"): _flows(e) for e in evidence if e.meta.get("phase") == "wire"}
        ref, ref_addr = args["reference"], args["reference_address"]
        max_age = float(args.get("max_age_s", 60))
        ref_ev = next((e for e in answers if e.meta.get("target_name") == ref), None)
        ref_stratum = int((ref_ev.parsed or {}).get("stratum", 0)) if ref_ev is not None else 0
        problems: list[tuple[str, str]] = []
        for ev in answers:
            node, p = ev.meta.get("target_name", ev.target), ev.parsed or {}
            where = args["nodes"].get(node, {})
            at = ev.started_at.timestamp()
            if not p.get("answered"):
                problems.append((f"{node} ne répond pas en NTP", f"{node} does not answer NTP"))
            elif p.get("mode") != 4 or p.get("origin_matches") is False:
                problems.append((f"{node} répond en mode {p.get('mode')} sans reprendre la requête",
                                 f"{node} answers in mode {p.get('mode')} without echoing the request"))
            elif p.get("leap") == 3 or not 1 <= int(p.get("stratum", 0)) <= 15:
                problems.append((f"{node} n'est pas synchronisé (strate {p.get('stratum')})",
                                 f"{node} is not synchronised (stratum {p.get('stratum')})"))
            elif p.get("transmit_time") is None or abs(float(p["transmit_time"]) - at) > 2:
                problems.append((f"{node} donne une heure qui n'est pas celle de l'horloge partagée",
                                 f"{node} gives a time that is not the shared clock's"))
            elif node != ref and p.get("refid") != ref_addr:
                problems.append((f"{node} a pour référence {p.get('refid')} et non {ref} ({ref_addr})",
                                 f"{node} uses {p.get('refid')} as its reference, not {ref} ({ref_addr})"))
            elif node != ref and ref_stratum and int(p.get("stratum", 0)) != ref_stratum + 1:
                want = ref_stratum + 1
                problems.append((f"{node} annonce la strate {p.get('stratum')}, pas {want} (un cran sous {ref})",
                                 f"{node} announces stratum {p.get('stratum')}, not {want} (one below {ref})"))
            elif node != ref and (p.get("reference_time") is None or at - float(p["reference_time"]) > max_age):
                problems.append((f"{node} ne s'est pas mis à jour sur {ref} depuis plus de {max_age:g} s",
                                 f"{node} has not updated from {ref} for more than {max_age:g} s"))
            elif node != ref and where.get("wire"):
                flows, addr = wire.get(where["wire"], []), where.get("wire_address", where["address"])
                if not _seen(flows, "udp", addr, ref_addr, dport=123):
                    problems.append((f"{node} n'interroge pas {ref} en NTP (aucune requête vue sur le LAN en "
                                     f"{args.get('wire_seconds', 5)} s)",
                                     f"{node} does not poll {ref} over NTP (no request seen on the LAN in "
                                     f"{args.get('wire_seconds', 5)} s)"))
                elif not _seen(flows, "udp", ref_addr, addr, sport=123):
                    problems.append((f"{ref} ne répond pas aux requêtes NTP de {node} (vu sur le LAN)",
                                     f"{ref} does not answer {node}'s NTP requests (seen on the LAN)"))
        return Verdict.from_problems(
            problems,
            f"Les {len(answers)} nœuds répondent en NTP, synchronisés sur {ref}.",
            f"All {len(answers)} nodes answer NTP, synchronised on {ref}.")


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
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        end = time.time()
        step = float(args.get("step_s", 2))
        q = {"query": "up", "start": f"{end - float(args['window_s']):.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        hist = _prom_get(ctx, args["source"], args["prometheus"], "/api/v1/query_range", q, meta={"phase": "history"})
        nonce = _prom_nonce(ctx, args["source"], args["prometheus"])
        rows = availability_rows((_prom_data(hist) or {}).get("result") or [], args["devices"], step)
        table = Evidence(id=ctx.eid("availability"), check=ctx.check.id, kind="artifact", source=hist.source,
                         target=hist.target, action="availability table from Prometheus up history",
                         started_at=hist.started_at, ended_at=utcnow(), ok=hist.ok, parsed=rows,
                         meta={"artifact": "availability", "phase": "table", "window_s": args["window_s"]})
        return [hist, nonce, table]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        hist = next((e for e in evidence if e.meta.get("phase") == "history"), None)
        if hist is None or _prom_data(hist) is None:
            return Verdict.failed("Prometheus ne renvoie pas d'historique.", "Prometheus returns no history.")
        if (fake := nonce_problem(evidence)) is not None:
            return Verdict.failed(fake[0][:1].upper() + fake[0][1:] + ".", fake[1][:1].upper() + fake[1][1:] + ".")
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
