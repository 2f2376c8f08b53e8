"""VPN checks, observed from the grader's side: a marker sent between the LANs' vantage
points while the grader captures on the Internet; TCP scans from a vantage point on the
Internet; a VPN restart the grader makes itself (recorded as ``fault``) and the recovery it
measures; pings from inside the laptop's namespace; an OpenVPN session opening the grader
sends itself; and an impostor OpenVPN client of the grader's, with a fresh key.

Two checks use a candidate node: ``laptop_scope`` probes from the laptop's network namespace
(the grader's own raw ICMP, not the node's commands), and ``restart_recovery`` runs the
brief's restart command in the gateway through the provider. ``impostor_refused`` reads the
CA's public certificate that the brief asks the candidate to publish. Each lab check's ``doc``
says so.
"""

from __future__ import annotations

import secrets
import threading
import time
from functools import partial
from typing import Any

from labkit.adapters.probes import capture, icmp, tcp, vpn
from labkit.domain.grading import CheckContext, error_if_unrun
from labkit.models.evidence import Evidence
from labkit.models.instance import InstancePlan
from labkit.models.results import Verdict

READY_WAIT_S = 5.0


def _ports(specs: list[str]) -> set[tuple[str, int]]:
    """``["51820/udp", "1194"]`` → {("udp", 51820), ("udp", 1194)} (udp when unsaid)."""
    out = set()
    for s in specs:
        port, _, proto = str(s).partition("/")
        out.add((proto or "udp", int(port)))
    return out



# ------------------------------------------------------------------ confidentiality
class WireConfidentiality:
    """The grader captures on the Internet segments while LAN A's probe sends a unique
    marker over UDP to LAN B's probe: the marker must arrive, must not be seen in clear (in
    any IPv4 payload), every TCP/UDP flow seen must use a VPN port, and no other IP protocol
    than ICMP may cross."""

    name = "vpn.wire_confidentiality"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        marker = f"LABKIT-MARK-{secrets.token_hex(8)}"
        port = 40000 + secrets.randbelow(9000)
        count = int(args.get("count", 5))
        taps: list[str] = args["taps"]
        stop = threading.Event()
        cap_ready = [threading.Event() for _ in taps]
        rx_ready = threading.Event()
        duration = float(args.get("capture_s", 12))

        def send(ev_id: str) -> Evidence:
            try:
                if not all(e.wait(READY_WAIT_S) for e in [*cap_ready, rx_ready]):
                    raise TimeoutError(f"capture or receiver not ready within {READY_WAIT_S:g} s")
                time.sleep(0.2)
                return vpn.udp_send(args["receiver_ip"], port, marker=marker, ev_id=ev_id, source=args["sender"],
                                    check=ctx.check.id, count=count)
            finally:
                time.sleep(1.0)  # let the last datagrams cross before the capture stops
                stop.set()

        calls = [
            ctx.deferred(f"segment:{tap}", "capture", "br0", "capture",
                         partial(capture.capture, markers=[marker], source=f"segment:{tap}", check=ctx.check.id,
                                 duration_s=duration, max_bytes=8 << 20, ready=cap_ready[i], stop=stop),
                         timeout=duration + 5, meta={"role": "tap", "segment": tap})
            for i, tap in enumerate(taps)
        ]
        calls.append(ctx.deferred(args["receiver"], "udp", f"udp/{port}", "receive",
                                  partial(vpn.udp_receive, port, marker=marker, source=args["receiver"],
                                          check=ctx.check.id, duration_s=duration, expect=count, ready=rx_ready),
                                  timeout=duration + 5, meta={"role": "receiver"}))
        calls.append(ctx.deferred(args["sender"], "udp", f"{args['receiver_ip']}:{port}", "send", send,
                                  timeout=duration + 5, meta={"role": "sender", "udp_port": port}))
        return ctx.parallel(calls)

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        allowed = _ports(args["vpn_ports"])
        taps = [e for e in evidence if e.meta.get("role") == "tap"]
        rx = next((e for e in evidence if e.meta.get("role") == "receiver"), None)
        tx = next((e for e in evidence if e.meta.get("role") == "sender"), None)
        if not taps or rx is None or tx is None:
            return Verdict.errored("Mesure incomplète (capture, envoi ou réception manquant).",
                                   "Incomplete measurement (capture, sending or receiving missing).")
        if int((tx.parsed or {}).get("sent", 0)) == 0:
            return Verdict.errored("La sonde n'a pu envoyer aucun marqueur.", "The probe could not send any marker.")
        problems: list[tuple[str, str]] = []
        for cap in taps:
            seg = cap.meta.get("segment", cap.source)
            hits = (cap.parsed or {}).get("marker_hits") or []
            if hits:
                where = ", ".join(sorted({h["flow"] for h in hits}))
                problems.append((f"marqueur vu en clair sur {seg} ({where})",
                                 f"marker seen in clear on {seg} ({where})"))
            stray = sorted({f"{f['proto']} {f['src']}:{f['sport']} → {f['dst']}:{f['dport']}"
                            for f in (cap.parsed or {}).get("flows") or []
                            if (f["proto"], int(f["sport"])) not in allowed
                            and (f["proto"], int(f["dport"])) not in allowed})
            # IPv4 neither TCP nor UDP: ICMP (1) is tolerated (pings, errors from the ISP), any
            # other protocol (IP-in-IP, GRE, ESP...) is traffic outside the VPN ports
            stray += sorted(f"IP protocol {proto} ({n} frames)"
                            for proto, n in ((cap.parsed or {}).get("ip_other") or {}).items() if proto != "1")
            if stray:
                problems.append((f"trafic hors des ports VPN sur {seg} : " + "; ".join(stray[:5]),
                                 f"traffic outside the VPN ports on {seg}: " + "; ".join(stray[:5])))
        received = int((rx.parsed or {}).get("received", 0))
        if received == 0:
            problems.append(("le marqueur n'est pas arrivé sur le LAN B", "the marker did not arrive on LAN B"))
        frames = sum(int((c.parsed or {}).get("frames", 0)) for c in taps)
        return Verdict.from_problems(
            problems,
            f"{received} marqueur(s) reçu(s) sur le LAN B, jamais vus en clair ; {frames} trames capturées, "
            "tout le trafic IP vu utilise un port VPN.",
            f"{received} marker(s) received on LAN B, never seen in clear; {frames} frames captured, "
            "all IP traffic seen uses a VPN port.")


# --------------------------------------------------------------------------- exposure
class ExposedPorts:
    """TCP connections from a vantage point on the Internet to a bounded list of each
    gateway's ports: none may open except ``allowed_tcp``."""

    name = "vpn.exposed_ports"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        calls = []
        src = args["source"]
        for gw, ip in args["gateways"].items():
            for port in sorted({int(p) for p in args["tcp_ports"]}):
                probe = partial(tcp.tcp_connect, ip, port, source=src, check=ctx.check.id,
                                timeout=float(args.get("timeout", 1.0)), read_banner=False)
                calls.append(ctx.deferred(src, "tcp", f"{ip}:{port}", f"tcp connect {ip}:{port}", probe,
                                          meta={"target_name": gw, "port": port}))
        return ctx.parallel(calls)

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not evidence:
            return Verdict.errored("Aucun port n'a été essayé.", "No port was tried.")
        allowed = {int(p) for p in args.get("allowed_tcp", [])}
        open_ = [f"{e.meta.get('target_name')} {e.target}/tcp" for e in evidence
                 if (e.parsed or {}).get("state") == "open" and int(e.meta.get("port", -1)) not in allowed]
        if open_:
            return Verdict.failed("Ports ouverts côté Internet : " + ", ".join(open_) + ".",
                                  "Ports open on the Internet side: " + ", ".join(open_) + ".")
        states: dict[str, int] = {}
        for e in evidence:
            s = str((e.parsed or {}).get("state"))
            states[s] = states.get(s, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        return Verdict.passed(f"Aucun des {len(evidence)} ports TCP essayés n'est ouvert ({summary}).",
                              f"None of the {len(evidence)} TCP ports tried is open ({summary}).")


# --------------------------------------------------------------------------- recovery
class RestartRecovery:
    """The grader restarts the gateway's VPN with the brief's command (``fault``), then
    measures how long until both LANs reach each other again."""

    name = "vpn.restart_recovery"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        within = float(args.get("within", 15))
        node, argv = args["node"], [str(a) for a in args["command"]]
        paths = [(args["source"], args["target"]), (args["back_source"], args["back_target"])]
        evidence = ctx.parallel([
            ctx.deferred(src, "icmp", ip, f"ping {ip}", partial(icmp.ping, ip, source=src, check=ctx.check.id,
                                                               count=3, interval=0.2, timeout=1.0),
                         meta={"phase": "before"})
            for src, ip in paths])
        if any(not e.ok or not (e.parsed or {}).get("reachable") for e in evidence):
            return evidence  # nothing to restart from: the judge says why
        fault = ctx.node_exec(node, argv, source="grader", kind="fault", label="restart", timeout=30,
                              meta={"phase": "fault", "what": f"VPN restarted by the grader on {node}"})
        evidence.append(fault)
        evidence += ctx.parallel([
            ctx.deferred(src, "icmp", ip, f"wait for {ip}",
                         partial(icmp.wait_reachable, ip, deadline_s=within, source=src, check=ctx.check.id,
                                 interval=0.2),
                         timeout=within + 5, meta={"phase": "after"})
            for src, ip in paths])
        late = [e for e in evidence if e.meta.get("phase") == "after" and not (e.parsed or {}).get("reachable")]
        if not fault.ok or (fault.parsed or {}).get("rc") != 0 or late:
            # undo: a restart that left the tunnel down is followed by a start, recorded too
            start = [a if a != "restart" else "start" for a in argv]
            evidence.append(ctx.node_exec(node, start, source="grader", kind="fault", label="restore", timeout=30,
                                          meta={"phase": "restore"}))
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        within = float(args.get("within", 15))
        before = [e for e in evidence if e.meta.get("phase") == "before"]
        if (err := error_if_unrun(before)) is not None:
            return err
        down = [f"{e.source} → {e.target}" for e in before if not (e.parsed or {}).get("reachable")]
        if down:
            return Verdict.failed("Avant le redémarrage, les LAN ne se joignent déjà pas : " + "; ".join(down) + ".",
                                  "Before the restart, the LANs already do not reach each other: "
                                  + "; ".join(down) + ".")
        fault = next((e for e in evidence if e.meta.get("phase") == "fault"), None)
        if fault is None or not fault.ok:
            why = fault.error if fault else "no restart recorded"
            return Verdict.errored(f"Le redémarrage n'a pas pu être lancé : {why}.",
                                   f"The restart could not be run: {why}.")
        cmd = " ".join(str(a) for a in args["command"])
        rc = (fault.parsed or {}).get("rc")
        if rc != 0:
            lines = str((fault.parsed or {}).get("stderr", "")).strip().splitlines()
            tail = lines[-1] if lines else f"exit {rc}"
            return Verdict.failed(f"« {cmd} » a échoué sur {args['node']} ({tail}).",
                                  f"'{cmd}' failed on {args['node']} ({tail}).")
        after = [e for e in evidence if e.meta.get("phase") == "after"]
        if (err := error_if_unrun(after)) is not None:
            return err
        times = [(e, (e.parsed or {}).get("first_reply_after_s")) for e in after]
        late = [f"{e.source} → {e.target}" for e, t in times if t is None or float(t) > within]
        if late:
            return Verdict.failed(f"Après « {cmd} », pas de retour en {within:g} s : " + "; ".join(late) + ".",
                                  f"After '{cmd}', no recovery within {within:g} s: " + "; ".join(late) + ".")
        worst = max(float(t or 0) for _, t in times)
        return Verdict.passed(f"Après « {cmd} » sur {args['node']}, les LAN se joignent de nouveau après {worst:.2f} s "
                              f"(exigé : {within:g} s).",
                              f"After '{cmd}' on {args['node']}, the LANs reach each other again after {worst:.2f} s "
                              f"(required: {within:g} s).")


# ----------------------------------------------------------------------------- laptop
class LaptopScope:
    """From inside the laptop's network namespace (a candidate node), the grader's own ICMP
    reaches every ``allowed`` address and none of the ``denied`` ones."""

    name = "vpn.laptop_scope"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        node = args["node"]
        calls = []
        for verdict in ("allowed", "denied"):
            for name, ip in args[verdict].items():
                probe = partial(icmp.ping, ip, source=node, check=ctx.check.id, count=3, interval=0.2, timeout=1.0)
                calls.append(ctx.deferred(node, "icmp", ip, f"ping {ip}", probe,
                                          meta={"target_name": name, "expect": verdict}))
        return ctx.parallel(calls)

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not evidence:
            return Verdict.errored("Aucune mesure n'a été faite.", "No measurement was made.")
        problems: list[tuple[str, str]] = []
        for e in evidence:
            reached = bool((e.parsed or {}).get("reachable"))
            who = f"{e.meta.get('target_name')} ({e.target})"
            if e.meta.get("expect") == "allowed" and not reached:
                problems.append((f"{who} injoignable depuis {e.source}", f"{who} unreachable from {e.source}"))
            if e.meta.get("expect") == "denied" and reached:
                problems.append((f"{who} joignable depuis {e.source}", f"{who} reachable from {e.source}"))
        return Verdict.from_problems(
            problems,
            f"Depuis {args['node']} : site A joignable, site B non ({len(evidence)} mesures).",
            f"From {args['node']}: site A reachable, site B not ({len(evidence)} measurements).")


# ------------------------------------------------------------------------ remote access
class OpenvpnTls:
    """The grader sends an OpenVPN client hard reset: a TLS-mode server answers."""

    name = "vpn.openvpn_tls"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        src, server, port = args["source"], args["server"], int(args["port"])
        return [ctx.probe(src, "udp", f"{server}:{port}", "openvpn hard reset",
                          partial(vpn.openvpn_hard_reset, server, port, source=src, check=ctx.check.id))]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not evidence:
            return Verdict.errored("Aucune mesure n'a été faite.", "No measurement was made.")
        p = evidence[0].parsed or {}
        target = f"{args['server']}:{args['port']}/udp"
        if p.get("answered"):
            return Verdict.passed(f"{target} ouvre une session OpenVPN en mode TLS.",
                                  f"{target} opens an OpenVPN session in TLS mode.")
        if p.get("port_unreachable"):
            return Verdict.failed(f"Rien n'écoute sur {target}.", f"Nothing listens on {target}.")
        return Verdict.failed(
            f"{target} ne répond pas à une ouverture de session OpenVPN TLS (clé statique, tls-auth/tls-crypt, "
            "ou port filtré).",
            f"{target} does not answer an OpenVPN TLS session opening (static key, tls-auth/tls-crypt, "
            "or a filtered port).")


class ImpostorRefused:
    """A grader-made OpenVPN client with a fresh self-signed key must get no session."""

    name = "vpn.impostor_refused"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        ca = ctx.node_exec(args["ca_node"], ["cat", args["ca_path"]], source="grader", label="ca",
                           meta={"role": "ca"})
        pem = str((ca.parsed or {}).get("stdout", ""))
        if not ca.ok or "BEGIN CERTIFICATE" not in pem:
            return [ca]
        src, server, port = args["source"], args["server"], int(args["port"])
        wait = float(args.get("wait", 8))
        return [ca, ctx.probe(src, "exec", f"{server}:{port}", "openvpn impostor",
                              partial(vpn.openvpn_impostor, server, port, ca_pem=pem, source=src,
                                      check=ctx.check.id, wait_s=wait), timeout=wait + 30)]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        ca = next((e for e in evidence if e.meta.get("role") == "ca"), None)
        if ca is None or "BEGIN CERTIFICATE" not in str((ca.parsed or {}).get("stdout", "")):
            return Verdict.failed(f"Le certificat de l'AC n'est pas publié dans {args['ca_node']}:{args['ca_path']}.",
                                  f"The CA certificate is not published as {args['ca_node']}:{args['ca_path']}.")
        imp = [e for e in evidence if e.meta.get("role") != "ca"]
        if not imp:
            return Verdict.errored("Le client imposteur n'a pas été lancé.", "The impostor client was not started.")
        p = imp[0].parsed or {}
        if p.get("accepted"):
            return Verdict.failed(
                "Le serveur a ouvert une session au client imposteur de l'évaluateur (clé neuve et certificat "
                "auto-signé, identifiants inventés).",
                "The server opened a session for the grader's impostor client (fresh key and self-signed "
                "certificate, made-up credentials).")
        how = "erreur TLS" if p.get("tls_failed") else "aucune session"
        how_en = "TLS error" if p.get("tls_failed") else "no session"
        return Verdict.passed(f"Le client imposteur (clé neuve) est refusé ({how}, {p.get('exit')}).",
                              f"The impostor client (fresh key) is refused ({how_en}, {p.get('exit')}).")


GRADERS = [WireConfidentiality(), ExposedPorts(), RestartRecovery(), LaptopScope(), OpenvpnTls(), ImpostorRefused()]

__all__ = ["GRADERS", "ExposedPorts", "ImpostorRefused", "LaptopScope", "OpenvpnTls", "RestartRecovery",
           "WireConfidentiality"]
