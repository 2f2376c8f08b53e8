"""VPN checks, observed from the grader's side: a marker sent between the LANs' vantage
points while the grader captures on the Internet; TCP scans from a vantage point on the
Internet; the tunnel daemon killed by the grader itself (``fault``) and the recovery it
measures with grader-to-grader nonce echoes; the grader's own OpenVPN clients: one with the
laptop's identity in a vantage point in the laptop's place (its tunnel carries the scope
probes), one with the same identity from the Internet (the positive control), and an
impostor with a fresh key.

Node state the grader reads, each lab check's ``doc`` says so: the CA published on gw-a and
the laptop's certificate and key, read with the grader's own code (``ctx.node_fs``, nothing
runs in the node); the interface a gateway routes the far LAN through (the kernel, over
netlink); the processes holding that TUN device (the host's ``/proc``). The candidate's own
start command is run only to restore a tunnel that did not come back, never to judge.

These readings are needs, not wants (a provider without them refuses the checks): the CA,
certificate and key (``node_fs``) are what the grader's own clients authenticate with, so
without them the decisive probes cannot be made at all; the routed TUN interface
(``node_kernel``) and its holders (``node_fs``: the host's ``/proc``) choose the daemon the
grader kills, the fault itself. Asking the node instead (``node_exec``) would let the
candidate's system pick what the grader tests; a node's own answer may only take points away.
"""

from __future__ import annotations

import hashlib
import secrets
from functools import partial
from typing import Any

from labkit.adapters.probes import capture, rendezvous, tcp, vpn
from labkit.domain.grading import CheckContext, error_if_unrun, utcnow
from labkit.errors import ProviderError
from labkit.models.capabilities import Capability
from labkit.models.evidence import Evidence
from labkit.models.instance import InstancePlan
from labkit.models.results import Verdict

READY_WAIT_S = 5.0
MAX_PEM = 64 << 10  # bytes read of a certificate or key file


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
    needs: frozenset[Capability] = frozenset({"vantage", "capture"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        marker = f"LABKIT-MARK-{secrets.token_hex(8)}"
        port = 40000 + secrets.randbelow(9000)
        count = int(args.get("count", 5))
        taps: list[str] = args["taps"]
        stop = rendezvous.new_name("stop")
        cap_ready = [rendezvous.new_name("cap") for _ in taps]
        rx_ready = rendezvous.new_name("rx")
        duration = float(args.get("capture_s", 12))
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
        send = partial(vpn.udp_send_when_ready, args["receiver_ip"], port, marker=marker, source=args["sender"],
                       check=ctx.check.id, count=count, wait_for=[*cap_ready, rx_ready], stop=stop,
                       ready_wait_s=READY_WAIT_S)
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
    """TCP connections from vantage points on the Internet to a bounded list of each
    gateway's ports: none may open except ``allowed_tcp``. ``sources`` maps each vantage
    point to the gateways it scans (default: ``source`` scans every gateway), so that a
    filter exempting one scanner's network is seen from another."""

    name = "vpn.exposed_ports"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        calls = []
        sources: dict[str, list[str]] = args.get("sources") or {args["source"]: list(args["gateways"])}
        for src, gateways in sources.items():
            for gw in gateways:
                ip = args["gateways"][gw]
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
        open_ = [f"{e.meta.get('target_name')} {e.target}/tcp ({e.source})" for e in evidence
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


# ------------------------------------------------------------------- node files
def _read_node_files(ctx: CheckContext, node: str, paths: dict[str, str], role: str) -> tuple[Evidence, dict[str, str]]:
    """Read ``paths`` ({name: path}) in ``node`` with the grader's own code (``ctx.node_fs``:
    nothing runs in the node). The evidence keeps each file's presence, size and sha256,
    never its content (a private key is among them); the contents are returned apart."""
    started = utcnow()
    ev_id = ctx.eid(f"{node}-{role}")
    action = "read with the grader's own code (openat2 in the node's root): " + ", ".join(paths.values())
    contents: dict[str, str] = {}
    files: dict[str, dict[str, Any]] = {}
    try:
        with ctx.node_fs(node) as fs:
            for name, path in paths.items():
                try:
                    data = fs.read_bytes(path, limit=MAX_PEM)
                except OSError as exc:
                    files[name] = {"path": path, "present": False, "error": exc.strerror or str(exc)}
                    continue
                text = data.decode("utf-8", "replace")
                contents[name] = text
                files[name] = {"path": path, "present": True, "size": len(data),
                               "sha256": hashlib.sha256(data).hexdigest(), "pem": "-----BEGIN " in text}
    except Exception as exc:  # noqa: BLE001 - a node that cannot be read is a result
        return Evidence(id=ev_id, check=ctx.check.id, kind="artifact", source="grader", target=node, action=action,
                        started_at=started, ended_at=utcnow(), ok=False, error=f"{type(exc).__name__}: {exc}",
                        meta={"role": role, "node": node}), {}
    raw = "\n".join(f"{f['path']}: " + (f"{f['size']} bytes, sha256 {f['sha256'][:16]}…" if f["present"]
                                         else f"absent ({f['error']})") for f in files.values())
    return Evidence(id=ev_id, check=ctx.check.id, kind="artifact", source="grader", target=node, action=action,
                    started_at=started, ended_at=utcnow(), ok=True, raw=raw, parsed={"files": files},
                    meta={"role": role, "node": node}), contents


def _missing_files(evidence: list[Evidence]) -> list[tuple[str, str]]:
    out = []
    for e in evidence:
        if e.kind != "artifact":
            continue
        for f in ((e.parsed or {}).get("files") or {}).values():
            if not f.get("present") or not f.get("pem"):
                what = "absent" if not f.get("present") else "not PEM"
                out.append((f"{e.target}:{f['path']} {'absent' if what == 'absent' else 'pas au format PEM'}",
                            f"{e.target}:{f['path']} {what}"))
    return out


# ---------------------------------------------------------- the legitimate client
def _stop_client(ctx: CheckContext, where: str, handle: str) -> None:
    """End the grader's OpenVPN client (kept by the probes' process under ``handle``)."""
    ev = ctx.probe(where, "exec", handle, "stop the openvpn client",
                   partial(vpn.client_stop, handle, source=where, check=ctx.check.id), timeout=15.0)
    if not ev.ok:
        raise ProviderError(f"the grader's OpenVPN client could not be stopped: {ev.error}")


def _legit_client(ctx: CheckContext, args: dict[str, Any]) -> tuple[list[Evidence], str | None]:
    """The positive control: the grader's own OpenVPN client, from its Internet vantage
    point, with the laptop's certificate and key, trusting only the CA published on the
    server's gateway. Returns the evidence and the published CA (None if unreadable)."""
    ca_ev, ca = _read_node_files(ctx, args["ca_node"], {"ca": args["ca_path"]}, "published-ca")
    cl_ev, cl = _read_node_files(ctx, args["client_node"],
                                 {"cert": args["client_cert"], "key": args["client_key"]}, "client-identity")
    evidence = [ca_ev, cl_ev]
    if "ca" not in ca or not {"cert", "key"} <= set(cl):
        return evidence, None
    issued, line = vpn.cert_issued_by(cl["cert"], ca["ca"])
    cl_ev.parsed = {**(cl_ev.parsed or {}), "issued_by_published_ca": issued, "openssl_verify": line}
    src, server, port = args["source"], args["server"], int(args["port"])
    wait = float(args.get("wait", 8))
    handle = rendezvous.new_name("openvpn")
    start = partial(vpn.client_start, server, port, handle=handle, ca_pem=ca["ca"], cert_pem=cl["cert"],
                    key_pem=cl["key"], source=src, check=ctx.check.id, wait_s=wait, label="control")
    try:
        evidence.append(ctx.deferred(src, "exec", f"{server}:{port}", "openvpn legitimate client", start,
                                     timeout=wait + 30, meta={"role": "control"})())
    finally:
        _stop_client(ctx, src, handle)
    return evidence, ca["ca"]


def _legit_problems(evidence: list[Evidence], args: dict[str, Any]) -> list[tuple[str, str]]:
    """Why the legitimate client's session does not stand (empty: it does)."""
    target = f"{args['server']}:{args['port']}/udp"
    if missing := _missing_files(evidence):
        return [(f"fichier attendu {fr}", f"expected file {en}") for fr, en in missing]
    ident = next((e for e in evidence if e.meta.get("role") == "client-identity"), None)
    control = next((e for e in evidence if e.meta.get("role") == "control"), None)
    if ident is None or control is None:
        return [("le client légitime de l'évaluateur n'a pas été lancé", "the grader's legitimate client was not run")]
    p = control.parsed or {}
    problems: list[tuple[str, str]] = []
    if not (ident.parsed or {}).get("issued_by_published_ca"):
        line = (ident.parsed or {}).get("openssl_verify", "")
        problems.append((f"le certificat du laptop n'est pas signé par l'AC publiée ({line})",
                         f"the laptop's certificate is not signed by the published CA ({line})"))
    if not p.get("server_answered"):
        problems.append((f"aucun serveur OpenVPN TLS ne répond sur {target} au client légitime de l'évaluateur",
                         f"no OpenVPN TLS server answers the grader's legitimate client on {target}"))
    elif p.get("client_refused_server") or not p.get("server_verified"):
        problems.append(("le certificat du serveur n'est pas signé par l'AC publiée (le client légitime le refuse)",
                         "the server's certificate is not signed by the published CA (the legitimate client "
                         "refuses it)"))
    elif not p.get("accepted"):
        problems.append(("le serveur n'ouvre pas de session au client légitime (certificat du laptop)",
                         "the server opens no session for the legitimate client (the laptop's certificate)"))
    return problems


# ------------------------------------------------------------------------ remote access
class OpenvpnTls:
    """The grader sends an OpenVPN client hard reset (a TLS-mode server answers, a
    static-key one stays silent), then its own client with the laptop's certificate, trusting
    the published CA, must get a session."""

    name = "vpn.openvpn_tls"
    needs: frozenset[Capability] = frozenset({"vantage", "node_fs"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        src, server, port = args["source"], args["server"], int(args["port"])
        reset = ctx.deferred(src, "udp", f"{server}:{port}", "openvpn hard reset",
                             partial(vpn.openvpn_hard_reset, server, port, source=src, check=ctx.check.id),
                             meta={"role": "hard-reset"})()
        legit, _ = _legit_client(ctx, args)
        return [reset, *legit]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        reset = next((e for e in evidence if e.meta.get("role") == "hard-reset"), None)
        if reset is None:
            return Verdict.errored("Aucune mesure n'a été faite.", "No measurement was made.")
        p = reset.parsed or {}
        target = f"{args['server']}:{args['port']}/udp"
        if p.get("port_unreachable"):
            return Verdict.failed(f"Rien n'écoute sur {target}.", f"Nothing listens on {target}.")
        if not p.get("answered"):
            return Verdict.failed(
                f"{target} ne répond pas à une ouverture de session OpenVPN TLS (clé statique, tls-auth/tls-crypt, "
                "ou port filtré).",
                f"{target} does not answer an OpenVPN TLS session opening (static key, tls-auth/tls-crypt, "
                "or a filtered port).")
        return Verdict.from_problems(
            _legit_problems(evidence, args),
            f"{target} ouvre une session OpenVPN en mode TLS ; le client de l'évaluateur, avec le certificat du "
            "laptop et l'AC publiée, obtient une session.",
            f"{target} opens an OpenVPN session in TLS mode; the grader's client, with the laptop's certificate "
            "and the published CA, gets a session.")


class ImpostorRefused:
    """Positive control first: the grader's client with the laptop's certificate, trusting
    the published CA, must get a session (so the server answers and its certificate is the
    published CA's). Then a grader client with a fresh self-signed key must be answered by
    that same server, authenticate it, and get no session."""

    name = "vpn.impostor_refused"
    needs: frozenset[Capability] = frozenset({"vantage", "node_fs"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        evidence, ca = _legit_client(ctx, args)
        control = next((e for e in evidence if e.meta.get("role") == "control"), None)
        if ca is None or control is None or not (control.parsed or {}).get("accepted"):
            return evidence  # no positive control: the judge says why, the impostor proves nothing
        src, server, port = args["source"], args["server"], int(args["port"])
        wait = float(args.get("wait", 8))
        evidence.append(ctx.deferred(src, "exec", f"{server}:{port}", "openvpn impostor",
                                     partial(vpn.openvpn_impostor, server, port, ca_pem=ca, source=src,
                                             check=ctx.check.id, wait_s=wait),
                                     timeout=wait + 30, meta={"role": "impostor"})())
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not evidence:
            return Verdict.errored("Aucune mesure n'a été faite.", "No measurement was made.")
        if problems := _legit_problems(evidence, args):
            fr = "; ".join(p[0] for p in problems)
            en = "; ".join(p[1] for p in problems)
            return Verdict.failed(f"Témoin positif en échec, le refus de l'imposteur ne prouve rien : {fr}.",
                                  f"The positive control fails, so refusing the impostor proves nothing: {en}.")
        imp = next((e for e in evidence if e.meta.get("role") == "impostor"), None)
        if imp is None:
            return Verdict.errored("Le client imposteur n'a pas été lancé.", "The impostor client was not started.")
        p = imp.parsed or {}
        if p.get("accepted"):
            return Verdict.failed(
                "Le serveur a ouvert une session au client imposteur de l'évaluateur (clé neuve et certificat "
                "auto-signé, identifiants inventés).",
                "The server opened a session for the grader's impostor client (fresh key and self-signed "
                "certificate, made-up credentials).")
        if not p.get("server_answered"):
            return Verdict.failed("Le serveur, qui a répondu au client légitime, ne répond pas à l'imposteur : "
                                  "un refus doit venir du serveur lui-même.",
                                  "The server, which answered the legitimate client, does not answer the impostor: "
                                  "a refusal must come from the server itself.")
        if p.get("client_refused_server") or not p.get("server_verified"):
            return Verdict.failed("L'imposteur n'a pas pu authentifier le serveur avec l'AC publiée : ce n'est pas "
                                  "le serveur qui l'a refusé.",
                                  "The impostor could not authenticate the server with the published CA: the "
                                  "server is not what refused it.")
        how = "erreur TLS" if p.get("tls_failed") else "aucune session"
        how_en = "TLS error" if p.get("tls_failed") else "no session"
        return Verdict.passed(
            f"Le client légitime (certificat du laptop) obtient une session, puis le client imposteur (clé neuve) "
            f"est refusé par ce même serveur ({how}, {p.get('exit')}).",
            f"The legitimate client (the laptop's certificate) gets a session, then the impostor client (fresh key) "
            f"is refused by the same server ({how_en}, {p.get('exit')}).")


# --------------------------------------------------------------------------- recovery
def _init_pid(ctx: CheckContext, node: str) -> int:
    """The host pid of the node's init, as the provider hands it with ``node_fs``."""
    with ctx.node_fs(node) as fs:
        init = fs.init_pid
    if init is None:
        raise ProviderError(f"this provider does not show node {node!r}'s processes to the grader")
    return init


def _holders_evidence(ctx: CheckContext, node: str, phase: str) -> Evidence:
    """The node's processes that hold a TUN device, read by the grader from the host's /proc."""
    ev_id, started = ctx.eid(f"{node}-tun-holders"), utcnow()
    action = "read the host's /proc: processes of the node's PID namespace holding a TUN device (fdinfo iff)"
    try:
        holders = vpn.tun_holders(_init_pid(ctx, node))
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run is a result
        return Evidence(id=ev_id, check=ctx.check.id, kind="artifact", source="grader", target=node, action=action,
                        started_at=started, ended_at=utcnow(), ok=False, error=f"{type(exc).__name__}: {exc}",
                        meta={"phase": phase})
    raw = "\n".join(f"pid {h['pid']} (in node {h['nspid']}) {h['comm']}: {', '.join(h['iff'])}"  # type: ignore[arg-type]
                    for h in holders) or "no process holds a TUN device"
    return Evidence(id=ev_id, check=ctx.check.id, kind="artifact", source="grader", target=node, action=action,
                    started_at=started, ended_at=utcnow(), ok=True, raw=raw, parsed={"holders": holders},
                    meta={"phase": phase})


class RestartRecovery:
    """The grader itself ends the tunnel daemon on ``node`` with SIGKILL: the processes of
    that node that hold the TUN interface the node forwards the near probe's traffic to the
    far probe through (the kernel's route over netlink, policy routing included; the holders
    from the host's /proc), by pid. The
    tunnel must come back by itself (a supervisor the candidate configured) within
    ``within`` s, measured with grader-to-grader nonce echoes between the two LAN probes."""

    name = "vpn.restart_recovery"
    needs: frozenset[Capability] = frozenset({"vantage", "grader_echo", "node_exec", "node_fs", "node_kernel"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        within = float(args.get("within", 15))
        node, near, far = args["node"], args["near"], args["far"]
        paths = [(far, near), (near, far)]
        evidence = ctx.parallel([
            partial(ctx.echo, s, d, count=3, meta={"phase": "before"}) for s, d in paths])
        if any(not e.ok or not (e.parsed or {}).get("reachable") for e in evidence):
            return evidence  # nothing to recover from: the judge says why
        far_vp, near_vp = ctx.plan.vantage_point(far), ctx.plan.vantage_point(near)
        far_ip = far_vp.ip if far_vp else far
        # the route the node forwards the near LAN's traffic to the far probe by
        route = ctx.deferred(node, "netlink", far_ip, f"route get {far_ip}",
                             partial(vpn.route_oif, far_ip, source=node, check=ctx.check.id,
                                     from_addr=near_vp.ip if near_vp else None),
                             meta={"phase": "route"})()
        holders = _holders_evidence(ctx, node, "daemons")
        evidence += [route, holders]
        oif = (route.parsed or {}).get("oif")
        pids = [int(h["pid"]) for h in (holders.parsed or {}).get("holders") or [] if oif in h["iff"]]
        if not route.ok or not holders.ok or not pids:
            return evidence  # no tunnel daemon carries the route: the judge says so
        started = utcnow()
        res = vpn.kill_pids(pids)
        evidence.append(Evidence(
            id=ctx.eid(f"{node}-sigkill"), check=ctx.check.id, kind="fault", source="grader", target=node,
            action=f"SIGKILL (pidfd) to the processes of {node} holding {oif}: host pids {pids}",
            started_at=started, ended_at=utcnow(), ok=not res["errors"],
            error="; ".join(res["errors"]) or None,  # type: ignore[arg-type]
            raw=f"killed {res['killed']}, all ended: {res['gone']}", parsed=res,
            meta={"phase": "fault", "what": f"tunnel daemon of {node} killed by the grader", "oif": oif}))
        evidence += ctx.parallel([
            partial(ctx.wait_echo, s, d, within, meta={"phase": "after"}) for s, d in paths])
        evidence.append(_holders_evidence(ctx, node, "restarted"))
        late = [e for e in evidence if e.meta.get("phase") == "after" and not (e.parsed or {}).get("reachable")]
        if late and args.get("restore"):
            # leave the lab as it was for the next checks (the candidate's own start command:
            # used to restore, never to judge)
            evidence.append(ctx.node_exec(node, [str(a) for a in args["restore"]], source="grader", kind="fault",
                                          label="restore", timeout=30, meta={"phase": "restore"}))
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        within = float(args.get("within", 15))
        node = args["node"]
        before = [e for e in evidence if e.meta.get("phase") == "before"]
        if not before:
            return Verdict.errored("Aucune mesure n'a été faite.", "No measurement was made.")
        if (err := error_if_unrun(before)) is not None:
            return err
        down = [f"{e.source} → {e.meta.get('target_name', e.target)}" for e in before
                if not (e.parsed or {}).get("reachable")]
        if down:
            return Verdict.failed("Avant la panne, les sondes des deux LAN ne se joignent déjà pas : "
                                  + "; ".join(down) + ".",
                                  "Before the fault, the two LANs' probes already do not reach each other: "
                                  + "; ".join(down) + ".")
        route = next((e for e in evidence if e.meta.get("phase") == "route"), None)
        holders = next((e for e in evidence if e.meta.get("phase") == "daemons"), None)
        if route is None or holders is None:
            return Verdict.errored("Le démon du tunnel n'a pas été cherché.", "The tunnel daemon was not looked for.")
        if (err := error_if_unrun([route, holders])) is not None:
            return err
        oif = (route.parsed or {}).get("oif")
        carrying = [h for h in (holders.parsed or {}).get("holders") or [] if oif in h["iff"]]
        if not carrying:
            return Verdict.failed(
                f"Sur {node}, la route vers l'autre LAN passe par {oif or 'aucune interface'}, qu'aucun démon de "
                "tunnel (périphérique TUN : wireguard-go, OpenVPN) ne tient.",
                f"On {node}, the route to the other LAN goes through {oif or 'no interface'}, which no tunnel "
                "daemon (TUN device: wireguard-go, OpenVPN) holds.")
        fault = next((e for e in evidence if e.meta.get("phase") == "fault"), None)
        if fault is None or not fault.ok or not (fault.parsed or {}).get("gone"):
            why = (fault.error if fault else None) or "the daemon did not end"
            return Verdict.errored(f"L'évaluateur n'a pas pu arrêter le démon du tunnel : {why}.",
                                   f"The grader could not end the tunnel daemon: {why}.")
        after = [e for e in evidence if e.meta.get("phase") == "after"]
        if not after:
            return Verdict.errored("Le retour du tunnel n'a pas été mesuré.", "The tunnel's return was not measured.")
        if (err := error_if_unrun(after)) is not None:
            return err
        comms = ", ".join(sorted({str(h["comm"]) for h in carrying}))
        times = [(e, (e.parsed or {}).get("first_reply_after_s")) for e in after]
        late = [f"{e.source} → {e.meta.get('target_name', e.target)}" for e, t in times
                if t is None or float(t) > within]
        if late:
            return Verdict.failed(
                f"Après l'arrêt brutal du démon du tunnel de {node} ({comms}, {oif}), pas de retour en {within:g} s : "
                + "; ".join(late) + ".",
                f"After the tunnel daemon of {node} ({comms}, {oif}) was killed, no recovery within {within:g} s: "
                + "; ".join(late) + ".")
        worst = max(float(t or 0) for _, t in times)
        return Verdict.passed(
            f"Démon du tunnel de {node} ({comms}, {oif}) tué par l'évaluateur ; les sondes des deux LAN se joignent "
            f"de nouveau après {worst:.2f} s (exigé : {within:g} s).",
            f"The tunnel daemon of {node} ({comms}, {oif}) killed by the grader; the two LANs' probes reach each "
            f"other again after {worst:.2f} s (required: {within:g} s).")


# ----------------------------------------------------------------------------- laptop
class LaptopScope:
    """The laptop's remote access, measured with the grader's own packets: an OpenVPN client
    of the grader's in its ``client_vantage`` namespace, with the laptop's certificate, key
    and CA (read from the laptop with the grader's own code), whose tunnel the grader
    routes both LANs into itself. Nonce echoes from there must reach every ``allowed`` probe
    and none of the ``denied`` ones; and from ``internet_vantage`` (the Internet, outside any
    tunnel) none of the ``denied`` ones either."""

    name = "vpn.laptop_scope"
    needs: frozenset[Capability] = frozenset({"vantage", "grader_echo", "node_fs"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        node, vp = args["node"], args["client_vantage"]
        files, cl = _read_node_files(ctx, node, {"ca": args["ca_path"], "cert": args["cert_path"],
                                                 "key": args["key_path"]}, "client-identity")
        evidence = [files]
        # outside any tunnel, from the Internet
        evidence += [ctx.echo(args["internet_vantage"], d, count=3, meta={"expect": "denied", "path": "internet"})
                     for d in args["denied"]]
        if not {"ca", "cert", "key"} <= set(cl):
            return evidence
        server, port = args["server"], int(args["port"])
        wait = float(args.get("wait", 8))
        handle = rendezvous.new_name("openvpn")
        start = partial(vpn.client_start, server, port, handle=handle, ca_pem=cl["ca"], cert_pem=cl["cert"],
                        key_pem=cl["key"],
                        source=vp, check=ctx.check.id, wait_s=wait, dev="tun",
                        routes=[str(r) for r in args["tunnel_routes"]], label="session")
        try:
            session = ctx.deferred(vp, "exec", f"{server}:{port}", "openvpn client with the laptop's identity",
                                   start, timeout=wait + 30, meta={"role": "session"})()
            evidence.append(session)
            if session.ok and (session.parsed or {}).get("accepted"):
                for verdict in ("allowed", "denied"):
                    evidence += [ctx.echo(vp, d, count=3, meta={"expect": verdict, "path": "tunnel"})
                                 for d in args[verdict]]
        finally:
            _stop_client(ctx, vp, handle)
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not evidence:
            return Verdict.errored("Aucune mesure n'a été faite.", "No measurement was made.")
        problems: list[tuple[str, str]] = []
        for fr, en in _missing_files(evidence):
            problems.append((f"identité du laptop : {fr}", f"the laptop's identity: {en}"))
        session = next((e for e in evidence if e.meta.get("role") == "session"), None)
        echoes = [e for e in evidence if e.kind == "udp" and e.meta.get("expect")]
        if session is not None:
            p = session.parsed or {}
            if not p.get("accepted"):
                how = p.get("exit")
                problems.append((f"le client de l'évaluateur, avec le certificat du laptop, n'obtient pas de session "
                                 f"({how})",
                                 f"the grader's client, with the laptop's certificate, gets no session ({how})"))
            elif set(p.get("routes_set") or []) != {str(r) for r in args["tunnel_routes"]}:
                return Verdict.errored("L'évaluateur n'a pas pu router les LAN dans son tunnel.",
                                       "The grader could not route the LANs into its tunnel.")
        elif not problems:
            return Verdict.errored("Le client de l'évaluateur n'a pas été lancé.", "The grader's client was not run.")
        for e in echoes:
            reached = bool((e.parsed or {}).get("reachable"))
            who = f"{e.meta.get('target_name')} ({e.target})"
            via_fr = "par le tunnel" if e.meta.get("path") == "tunnel" else "depuis Internet, hors tunnel"
            via_en = "through the tunnel" if e.meta.get("path") == "tunnel" else "from the Internet, outside the tunnel"
            if e.meta.get("expect") == "allowed" and not reached:
                problems.append((f"{who} injoignable {via_fr}", f"{who} unreachable {via_en}"))
            if e.meta.get("expect") == "denied" and reached:
                problems.append((f"{who} joignable {via_fr}", f"{who} reachable {via_en}"))
        return Verdict.from_problems(
            problems,
            f"Client de l'évaluateur avec l'identité du laptop : site A joignable, site B non, même routé dans le "
            f"tunnel ; site B injoignable hors tunnel ({len(echoes)} échanges vérifiés).",
            f"The grader's client with the laptop's identity: site A reachable, site B not, even routed into the "
            f"tunnel; site B unreachable outside the tunnel ({len(echoes)} verified exchanges).")


GRADERS = [WireConfidentiality(), ExposedPorts(), RestartRecovery(), LaptopScope(), OpenvpnTls(), ImpostorRefused()]

__all__ = ["GRADERS", "ExposedPorts", "ImpostorRefused", "LaptopScope", "OpenvpnTls", "RestartRecovery",
           "WireConfidentiality"]
