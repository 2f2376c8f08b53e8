"""Routing checks: reachability between LANs, OSPF adjacencies, OSPF-advertised LANs, and
resilience to the loss of a WAN link. Observation is from the grader's side: nonce echoes
between its own vantage points, OSPF packets captured on the grader-owned bridge every WAN
link passes through, and faults injected on that bridge. The routers' kernel tables (netlink)
are supporting evidence only: they can take points away, never give them; on a provider that
cannot read a node's kernel from outside it (``node_kernel``) they are recorded as not
observed and the check's message says so."""

from __future__ import annotations

import ipaddress
import itertools
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from labkit.adapters.probes import capture, device, icmp, netlink, ospf, rendezvous
from labkit.domain.grading import CheckContext, error_if_unrun, utcnow
from labkit.models.capabilities import Capability
from labkit.models.device import DeviceAccess
from labkit.models.evidence import Evidence
from labkit.models.instance import InstancePlan
from labkit.models.results import Verdict

PING_COUNT, PING_INTERVAL, PING_TIMEOUT = 2, 0.05, 1.0


def _vantage_ip(ctx: CheckContext, name: str) -> str:
    v = ctx.plan.vantage_point(name)
    if v is None:
        raise ValueError(f"unknown vantage point {name!r}")
    return v.ip


def _ping_matrix(ctx: CheckContext, vantage: list[str], hosts: dict[str, str] | None = None,
                 phase: str = "") -> list[Evidence]:
    """Every vantage point reaches every other one with a grader-to-grader nonce echo (only
    the far probe can answer it), and pings every host not on its LAN (ICMP: a host's own
    answer, supporting evidence that the workstations are reachable too)."""
    calls: list[Callable[[], Evidence]] = []
    extra = {"phase": phase} if phase else {}
    for src in vantage:
        src_seg = ctx.plan.vantage_point(src).segment  # type: ignore[union-attr]
        for dst in vantage:
            if dst != src:
                calls.append(partial(ctx.echo, src, dst, count=PING_COUNT, timeout=PING_TIMEOUT, meta=extra))
        for host, ip in (hosts or {}).items():
            node = ctx.plan.node(host)
            if node is None or all(i.segment != src_seg for i in node.interfaces):
                probe = partial(icmp.ping, ip, source=src, check=ctx.check.id, count=PING_COUNT,
                                interval=PING_INTERVAL, timeout=PING_TIMEOUT)
                calls.append(ctx.deferred(src, "icmp", ip, f"ping {ip}", probe,
                                          meta={"target_name": host, **extra}))
    return ctx.parallel(calls)


def _unreachable(evidence: list[Evidence]) -> list[str]:
    return [f"{e.source} → {e.meta.get('target_name', e.target)} ({e.target})"
            for e in evidence if e.kind in ("icmp", "udp") and not (e.parsed or {}).get("reachable")]


class LanReachability:
    name = "routing.lan_reachability"
    needs: frozenset[Capability] = frozenset({"vantage", "grader_echo"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        return _ping_matrix(ctx, args["vantage"], args.get("hosts"))

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not evidence:
            return Verdict.errored("Aucune mesure n'a été faite.", "No measurement was made.")
        if len(args.get("vantage") or []) > 1 and not any(e.kind == "udp" for e in evidence):
            return Verdict.errored("Aucun échange entre sondes de l'évaluateur n'a été fait.",
                                   "No exchange between the grader's probes was made.")
        missing = _unreachable(evidence)
        forged = sum(int((e.parsed or {}).get("forged") or 0) for e in evidence if e.kind == "udp")
        if missing and forged:
            missing.append(f"{forged} réponse(s) falsifiée(s) reçue(s) à la place des sondes / "
                           f"{forged} forged repl(ies) received instead of the probes'")
        if missing:
            return Verdict.failed(
                f"{len(missing)} chemin(s) sur {len(evidence)} sans réponse : " + "; ".join(missing) + ".",
                f"{len(missing)} of {len(evidence)} path(s) got no answer: " + "; ".join(missing) + ".",
            )
        return Verdict.passed(
            f"Les {len(evidence)} chemins entre les sites répondent.",
            f"All {len(evidence)} paths between the sites answer.",
        )


# --------------------------------------------------------------------------- OSPF on the wire
# Every point-to-point link passes through a grader-owned bridge (namespace ``link:NAME``,
# ports p1/p2 facing the link's two endpoints): the grader captures OSPF there and injects
# faults there, where the candidate can neither see nor undo them.

LINK_PORTS = ("p1", "p2")
BACKBONE = "0.0.0.0"


def _capture(ctx: CheckContext, link: str, duration_s: float, *, phase: str,
             ready: str | None = None, stop: str | None = None) -> Callable[[], Evidence]:
    probe = partial(ospf.capture_ospf, source=f"link:{link}", check=ctx.check.id, duration_s=duration_s,
                    max_frames=5000, ready=ready, stop=stop)
    return ctx.deferred(f"link:{link}", "capture", link, f"OSPF capture on {link} (grader bridge)", probe,
                        timeout=duration_s + 10, meta={"link": link, "phase": phase})


def _hellos_by_src(evidence: list[Evidence]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(link, source address) -> hellos seen on that link's bridge."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for ev in evidence:
        if ev.kind != "capture" or not ev.ok:
            continue
        for h in (ev.parsed or {}).get("hellos") or []:
            out.setdefault((str(ev.meta.get("link")), str(h.get("src"))), []).append(h)
    return out


def _router_ids(evidence: list[Evidence], links: dict[str, dict[str, str]]) -> dict[str, set[str]]:
    """Router name -> router ids it used in the hellos it sent from its own address on each
    WAN link (the address is the plan's, the hello is on the grader's bridge)."""
    by_src = _hellos_by_src(evidence)
    rids: dict[str, set[str]] = {}
    for link, ends in links.items():
        for router, addr in ends.items():
            for h in by_src.get((link, addr), []):
                rids.setdefault(router, set()).add(str(h.get("router_id")))
    return rids


def _lsa_router_ids(lsas: list[dict[str, Any]], links: dict[str, dict[str, str]],
                    known: dict[str, set[str]]) -> dict[str, set[str]]:
    """Router name -> router ids found in the router-LSAs on the wire, for the routers whose
    hellos the capture missed (a router with OSPF's default 10 s hello may send none while the
    grader captures): the router-LSA one of whose point-to-point links has the router's planned
    WAN address as its interface address (``data``). An id that another router uses in its own
    hellos, or whose LSA carries the planned addresses of two routers, is never taken."""
    taken: dict[str, set[str]] = {}
    for router, ids in known.items():
        for rid in ids:
            taken.setdefault(rid, set()).add(router)
    claims: dict[str, set[str]] = {}  # adv_router -> routers whose planned address it carries
    for ends in links.values():
        for router, addr in ends.items():
            for lsa in lsas:
                if any(link.get("type") == "p2p" and link.get("data") == addr for link in lsa.get("links") or []):
                    claims.setdefault(str(lsa.get("adv_router")), set()).add(router)
    out: dict[str, set[str]] = {}
    for rid, routers in claims.items():
        if len(routers) != 1:
            continue
        router = next(iter(routers))
        if known.get(router) or (taken.get(rid, set()) - {router}):
            continue
        out.setdefault(router, set()).add(rid)
    return out


def _two_way(ev: Evidence, ends: dict[str, str]) -> bool:
    """Both ends of a link sent hellos from their planned address and each listed the other's
    router id (one capture of that link)."""
    link = str(ev.meta.get("link"))
    rids = _router_ids([ev], {link: ends})
    by_src = _hellos_by_src([ev])
    if len(ends) != 2 or set(rids) != set(ends):
        return False
    for router, addr in ends.items():
        (peer,) = [p for p in ends if p != router]
        if not any(set(h.get("neighbors") or []) & rids[peer] for h in by_src.get((link, addr), [])):
            return False
    return True


def _two(problems: list[tuple[str, str]]) -> Verdict:
    problems = list(dict.fromkeys(problems))
    return Verdict.failed("; ".join(p[0] for p in problems) + ".", "; ".join(p[1] for p in problems) + ".")


class OspfAdjacency:
    """OSPF seen on the wire: each WAN link's bridge is captured for ``capture_s`` seconds
    (lab settled, no fault). On every link, both routers send hellos from their planned
    address, in the backbone area, with the brief's hello and dead intervals; each lists the
    other's router id (two-way); DR and BDR are 0.0.0.0 in every hello of the capture (a
    point-to-point interface elects none; a broadcast one has elected a DR once its wait
    timer, the dead interval, has run)."""

    name = "routing.ospf_adjacency"
    needs: frozenset[Capability] = frozenset({"capture"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        dur = float(args.get("capture_s", 3.5))
        return ctx.parallel([_capture(ctx, link, dur, phase="steady") for link in args["links"]])

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        links: dict[str, dict[str, str]] = args["links"]
        captured = {str(e.meta.get("link")) for e in evidence if e.kind == "capture"}
        if not captured >= set(links):
            return Verdict.errored("Les liens WAN n'ont pas tous été observés.", "Not every WAN link was captured.")
        want_hello, want_dead = int(args.get("hello", 1)), int(args.get("dead", 4))
        area = str(args.get("area", BACKBONE))
        by_src = _hellos_by_src(evidence)
        rids = _router_ids(evidence, links)
        problems: list[tuple[str, str]] = []
        for link, ends in links.items():
            for router, addr in ends.items():
                hellos = by_src.get((link, addr), [])
                where = f"{router} ({addr}, {link})"
                if not hellos:
                    problems.append((f"{where} : aucun hello OSPF vu sur le lien",
                                     f"{where}: no OSPF hello seen on the link"))
                    continue
                areas = sorted({str(h["area"]) for h in hellos})
                if areas != [area]:
                    problems.append((f"{where} : hellos en zone {'/'.join(areas)}, zone {area} attendue",
                                     f"{where}: hellos in area {'/'.join(areas)}, area {area} expected"))
                timers = sorted({(int(h["hello"]), int(h["dead"])) for h in hellos})
                if timers != [(want_hello, want_dead)]:
                    seen = ", ".join(f"{a}/{b} s" for a, b in timers)
                    problems.append((f"{where} : hello/dead {seen}, {want_hello}/{want_dead} s attendus",
                                     f"{where}: hello/dead {seen}, {want_hello}/{want_dead} s expected"))
                elected = sorted({f"DR {h['dr']} BDR {h['bdr']}" for h in hellos
                                  if h["dr"] != "0.0.0.0" or h["bdr"] != "0.0.0.0"})
                if elected:
                    problems.append((f"{where} : élection DR/BDR ({'; '.join(elected)}), le lien n'est pas en "
                                     "point-à-point", f"{where}: DR/BDR elected ({'; '.join(elected)}), the link "
                                     "is not point-to-point"))
                peers = [p for p in ends if p != router]
                for peer in peers:
                    peer_rids = rids.get(peer, set())
                    if not any(set(h.get("neighbors") or []) & peer_rids for h in hellos):
                        problems.append((f"{where} : ne liste pas {peer} comme voisin dans ses hellos",
                                         f"{where}: does not list {peer} as a neighbour in its hellos"))
        if problems:
            return _two(problems)
        n = sum(len(e) for e in links.values())
        return Verdict.passed(
            f"Sur chaque lien WAN, les {n} extrémités émettent des hellos OSPF (zone {area}, hello {want_hello} s, "
            f"dead {want_dead} s, sans DR/BDR) et se voient mutuellement.",
            f"On every WAN link, all {n} ends send OSPF hellos (area {area}, hello {want_hello} s, dead "
            f"{want_dead} s, no DR/BDR) and see each other.")


def _route_net(route: dict[str, Any]) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The destination of a netlink route row ("10.1.2.0/24", or "10.1.2.0" + prefixlen)."""
    dst = str(route.get("dst") or "0.0.0.0")
    if "/" not in dst:
        dst = f"{dst}/{route.get('prefixlen', 0)}"
    try:
        return ipaddress.ip_network(dst, strict=False)
    except ValueError:
        return None


def _pull(ctx: CheckContext, link: str, up: bool, meta: dict[str, Any]) -> list[Evidence]:
    """Set the grader's two ports of ``link`` down (a cable pull: both routers lose
    carrier) or up again."""
    out = []
    for port in LINK_PORTS:
        ev = ctx.probe(f"link:{link}", "fault", f"{link}/{port}",
                       f"ip link set {port} {'up' if up else 'down'} ({link}, grader bridge)",
                       partial(netlink.set_link_state, port, up, source=f"link:{link}", check=ctx.check.id))
        ev.meta.update({"link": link, **meta})
        out.append(ev)
    return out


def _lan_advertised(lsas: list[dict[str, Any]], prefix: str) -> bool:
    """A router-LSA link that carries ``prefix``: a stub network (id = network, data = mask;
    FRR encodes a passive or neighbourless LAN so), or a transit link whose own interface
    address (data) lies in the prefix."""
    net = ipaddress.ip_network(prefix)
    for lsa in lsas:
        for ln in lsa.get("links") or []:
            try:
                if ln.get("type") == "stub" and ipaddress.ip_network(f"{ln['id']}/{ln['data']}") == net:
                    return True
                if ln.get("type") == "transit" and ipaddress.ip_address(ln["data"]) in net:
                    return True
            except ValueError:
                continue
    return False


ROUTES_UNCHECKED = ("les tables de routage des routeurs (une route statique vers le LAN d'un autre site)",
                    "the routers' own routing tables (a static route to another site's LAN)")
NO_KERNEL = ("ce fournisseur ne lit pas le noyau d'un nœud depuis l'extérieur",
             "this provider cannot read a node's kernel from outside it")
NO_DEVICE_CLI = ("la CLI de cet équipement n'est pas joignable en SSH depuis un point de mesure de l'évaluateur",
                 "this device's CLI cannot be reached over SSH from a grader vantage point")
# A network device's static routes, read through its CLI (FRR, VyOS, Cisco IOS print this way)
STATIC_CMD = "show ip route static"
_STATIC_LINE = re.compile(r"^\s*S\S*\s+(\d+\.\d+\.\d+\.\d+)(/\d+)?")
_SUBNETTED = re.compile(r"^\s*\d+\.\d+\.\d+\.\d+(/\d+)\s+is\s+(?:variably\s+)?subnetted")


def static_prefixes(output: str) -> set[str]:
    """Prefixes of the static routes in a ``show ip route static`` output: FRR/VyOS lines
    (``S>* 10.2.0.0/24 [1/0] via …``) and Cisco IOS lines, whose mask may sit on the
    ``… is subnetted`` line above them."""
    out: set[str] = set()
    mask = None
    for line in output.splitlines():
        if (m := _SUBNETTED.match(line)) is not None:
            mask = m.group(1)
            continue
        if (m := _STATIC_LINE.match(line)) is not None and (m.group(2) or mask):
            try:
                out.add(str(ipaddress.ip_network(m.group(1) + (m.group(2) or mask or ""), strict=False)))
            except ValueError:
                continue
    return out


def _device_routes(ctx: CheckContext, router: str) -> Callable[[], Evidence] | Evidence:
    """The device's static routes read through its CLI (netmiko, SSH from the vantage point of
    its LAN), or the record that they could not be read that way."""
    ep = None
    if isinstance(ctx.provider, DeviceAccess):  # optional provider methods
        try:
            ep = ctx.provider.device_endpoint(ctx.state, router)
        except Exception:  # noqa: BLE001 - no device access for this node: said in the evidence
            ep = None
    if ep is None or ep.transport != "ssh" or ep.via is None:
        return _not_observed(ctx, router, f"{STATIC_CMD} (CLI)", "node_kernel", NO_DEVICE_CLI)
    return ctx.deferred(ep.via, "ssh", router, f"{STATIC_CMD} (the device's CLI, netmiko)",
                        partial(device.show, ep.host, [STATIC_CMD], node=router, platform=ep.platform,
                                user=ep.username or "", key_file=ep.key_file or "", port=ep.port,
                                source=ep.via, check=ctx.check.id),
                        meta={"target_name": router, "device_cli": True})


def _not_observed(ctx: CheckContext, node: str, action: str, capability: Capability,
                  why: tuple[str, str]) -> Evidence:
    """The record of a reading the grader did not make because the provider lacks
    ``capability``: nothing ran (``raw`` and ``meta.not_observed`` say why), so the judge
    and the report can say what was not checked."""
    now = utcnow()
    return Evidence(id=ctx.eid(f"{node}-not-observed"), check=ctx.check.id, kind="netlink", source=node,
                    target=node, action=f"{action}: not observed", started_at=now, ended_at=now, ok=True,
                    raw=f"not observed: {why[1]}", parsed=None,
                    meta={"target_name": node, "not_observed": capability, "why": why[1], "why_fr": why[0]})


class OspfRoutes:
    """Each site's LAN advertised in OSPF by its own router, seen in the LSAs on the wire.

    Routers flood router-LSAs only when something changes, so the grader makes them: while it
    captures every WAN link's bridge, it pulls the cable of the ``pulls`` links in turn (both
    grader ports down for ``down_s``, then up again): each router on a pulled link re-originates
    its router-LSA at once and floods it on its other links. A router is known by the router
    id in the hellos it sends from its planned WAN address or, when the capture holds none of
    its hellos (OSPF's default 10 s hello is longer than the capture), by the router-LSA one of
    whose point-to-point links carries that address (``_lsa_router_ids``). Then the grader waits (bounded)
    until every vantage point reaches every other one again. Each router's kernel routing table
    (netlink, read from the grader) is supporting evidence only: it can take the points away
    (a route to another site's LAN installed by a static route) but never gives them.

    The decisive evidence is the grader's own (captures and cuts on its bridges, its echoes),
    so the kernel tables are *wanted*, not needed: on a provider that cannot read a node's
    kernel from outside it, each router's table is recorded as not observed (an evidence that
    says so) and the message says that the static routes were not checked. The tables are
    never asked of the router itself (``node_exec``, inside the candidate's system) instead:
    a node's own answer may only take points away, never give them, and that is what these
    tables already are; the wire alone decides the points."""

    name = "routing.ospf_routes"
    needs: frozenset[Capability] = frozenset({"vantage", "grader_echo", "capture", "link_cut"})
    wants: dict[Capability, tuple[str, str]] = {"node_kernel": ROUTES_UNCHECKED}

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        links: dict[str, dict[str, str]] = args["links"]
        pulls: list[str] = list(args.get("pulls") or [])
        down_s = float(args.get("down_s", 1.5))
        gap_s = float(args.get("gap_s", 1.5))
        total = len(pulls) * (down_s + gap_s) + 2.5
        stop = rendezvous.new_name("stop")
        readies = {link: rendezvous.new_name("ready") for link in links}
        evidence: list[Evidence] = []
        with ThreadPoolExecutor(max_workers=len(links)) as pool:
            futures = [pool.submit(_capture(ctx, link, total + 5, phase="lsa", ready=readies[link], stop=stop))
                       for link in links]
            try:
                for link, r in readies.items():
                    ctx.wait_signal(f"link:{link}", r, 5)
                for link in pulls:
                    pulled: list[Evidence] = []
                    try:
                        pulled = _pull(ctx, link, False, {"phase": "pull"})
                        evidence += pulled
                        time.sleep(down_s)
                    finally:
                        evidence += _pull(ctx, link, True, {"phase": "restore"})
                    time.sleep(gap_s)
                time.sleep(2.5)
            finally:
                ctx.signal(f"link:{next(iter(links))}", stop)
            evidence = [f.result() for f in futures] + evidence
        vantage: list[str] = list(args.get("vantage") or [])
        settle = float(args.get("settle_s", 20))
        evidence += ctx.parallel([partial(ctx.wait_echo, s, d, settle, meta={"phase": "settle"})
                                  for s, d in itertools.permutations(vantage, 2)])
        routers: list[str] = list(args.get("routers") or [])
        # network devices (platform:) are read through their CLI, as a real router would be;
        # Linux routers through their kernel (netlink). Both only ever take points away.
        devices = [r for r in routers if (n := ctx.state.plan.node(r)) is not None and n.platform]
        reads: list[Callable[[], Evidence]] = []
        for r in devices:
            got = _device_routes(ctx, r)
            if isinstance(got, Evidence):
                evidence.append(got)
            else:
                reads.append(got)
        hosts = [r for r in routers if r not in devices]
        if "node_kernel" not in ctx.provider.capabilities:
            evidence += [_not_observed(ctx, r, "ip route show (netlink)", "node_kernel", NO_KERNEL) for r in hosts]
        else:
            reads += [ctx.deferred(r, "netlink", r, "ip route show (netlink)",
                                   partial(netlink.routes, source=r, check=ctx.check.id), meta={"target_name": r})
                      for r in hosts]
        if reads:
            evidence += ctx.parallel(reads)
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        captures = [e for e in evidence if e.kind == "capture"]
        faults = [e for e in evidence if e.kind == "fault"]
        if (err := error_if_unrun(captures + faults)) is not None:
            return err
        if not captures:
            return Verdict.errored("Aucune capture OSPF n'a été faite.", "No OSPF capture was made.")
        links: dict[str, dict[str, str]] = args["links"]
        prefixes: dict[str, str] = args["prefixes"]
        rids = _router_ids(captures, links)
        lsas = [lsa for e in captures for lsa in (e.parsed or {}).get("lsas") or [] if lsa.get("type") == 1]
        for router, ids in _lsa_router_ids(lsas, links, rids).items():
            rids.setdefault(router, set()).update(ids)
        problems: list[tuple[str, str]] = []
        for owner, prefix in prefixes.items():
            mine = rids.get(owner, set())
            if not mine:
                problems.append((f"{owner} n'émet aucun hello OSPF sur ses liens WAN et aucun router-LSA ne porte "
                                 f"son adresse WAN du plan : {prefix} n'est pas annoncé en OSPF par son routeur",
                                 f"{owner} sends no OSPF hello on its WAN links and no router-LSA carries its planned "
                                 f"WAN address: {prefix} is not advertised in OSPF by its router"))
                continue
            own = [lsa for lsa in lsas if lsa.get("adv_router") in mine]
            if not own:
                problems.append((f"aucun router-LSA de {owner} (id {', '.join(sorted(mine))}) vu sur les liens WAN",
                                 f"no router-LSA of {owner} (id {', '.join(sorted(mine))}) seen on the WAN links"))
            elif not _lan_advertised(own, prefix):
                problems.append((f"les router-LSA de {owner} n'annoncent pas son LAN {prefix}",
                                 f"{owner}'s router-LSAs do not advertise its LAN {prefix}"))
        # supporting evidence: the routers' own kernel tables (can take points away, never give them)
        for ev in evidence:
            if ev.kind != "netlink" or not ev.ok:
                continue
            router = ev.meta.get("target_name", ev.target)
            for owner, prefix in prefixes.items():
                if owner == router:
                    continue
                net = ipaddress.ip_network(prefix)
                protos = sorted({str(r.get("protocol")) for r in ev.parsed or [] if _route_net(r) == net})
                if any(p in ("static", "boot") for p in protos):
                    problems.append((f"{router} joint {prefix} par une route statique (table de routage)",
                                     f"{router} reaches {prefix} through a static route (routing table)"))
        for ev in evidence:  # supporting evidence too: a device's static routes, through its CLI
            if ev.kind != "ssh" or not ev.meta.get("device_cli") or not ev.ok:
                continue
            router = str(ev.meta.get("target_name", ev.target))
            statics = set().union(*(static_prefixes(str(r.get("output", ""))) for r in ev.parsed or []))
            for owner, prefix in prefixes.items():
                if owner != router and str(ipaddress.ip_network(prefix)) in statics:
                    problems.append((f"{router} joint {prefix} par une route statique (sa CLI : {STATIC_CMD})",
                                     f"{router} reaches {prefix} through a static route (its CLI: {STATIC_CMD})"))
        unseen: dict[tuple[str, str], set[str]] = {}  # (why fr, why en) -> routers
        for e in evidence:
            if e.kind == "netlink" and e.meta.get("not_observed"):
                why = (str(e.meta.get("why_fr") or NO_KERNEL[0]), str(e.meta.get("why") or NO_KERNEL[1]))
                unseen.setdefault(why, set()).add(str(e.meta.get("target_name", e.target)))
        note = ("", "")
        if unseen:  # said in the message, pass or fail: the check was not silently weaker
            fr = " / ".join(f"{', '.join(sorted(rs))} ; {w[0]}" for w, rs in sorted(unseen.items()))
            en = " / ".join(f"{', '.join(sorted(rs))}; {w[1]}" for w, rs in sorted(unseen.items()))
            note = (f" Non vérifié : {ROUTES_UNCHECKED[0]} ({fr}).", f" Not checked: {ROUTES_UNCHECKED[1]} ({en}).")
        if problems:
            v = _two(problems)
            return Verdict.failed(v.message.fr + note[0], v.message.en + note[1])
        return Verdict.passed(
            f"Les {len(prefixes)} LAN sont annoncés dans les router-LSA de leur propre routeur, vus sur les liens WAN."
            + note[0],
            f"All {len(prefixes)} LANs are advertised in their own router's router-LSAs, seen on the WAN links."
            + note[1])


FAULTS = {
    "silent-cut": ("coupure silencieuse (porteuse conservée)", "silent cut (carrier kept)"),
    "cable-pull": ("câble débranché (perte de porteuse)", "cable pull (carrier lost)"),
}


class WanResilience:
    """Two faults on the grader's bridge of one WAN link, one after the other: a silent cut
    (nftables drops what the bridge forwards; both routers keep carrier, only OSPF's dead
    interval can notice) and a cable pull (the grader's two ports down: both routers lose
    carrier). Before each, the grader waits (``settle_s`` at most) until the link carries a
    two-way OSPF adjacency in its hellos (``cut.ends``), so that the fault takes a link in use.
    After each, the time until every vantage point reaches every other one again
    (grader-to-grader nonce echoes) is measured against ``within``; the link is always restored
    in a ``finally``, then the lab is given ``settle_s`` (bounded) to settle again."""

    name = "routing.wan_resilience"
    needs: frozenset[Capability] = frozenset({"vantage", "grader_echo", "capture", "link_cut", "silent_cut"})

    def _recovery(self, ctx: CheckContext, vantage: list[str], deadline: float, phase: str) -> list[Evidence]:
        return ctx.parallel([partial(ctx.wait_echo, s, d, deadline, meta={"phase": phase})
                             for s, d in itertools.permutations(vantage, 2)])

    def _adjacency(self, ctx: CheckContext, link: str, ends: dict[str, str], deadline: float,
                   phase: str) -> Evidence:
        """Capture OSPF on ``link`` in slices of 2 s until both ends' hellos list each other
        (or ``deadline``); the last capture, with ``meta.two_way``."""
        stop_at = time.monotonic() + deadline
        while True:
            ev = _capture(ctx, link, 2.0, phase=phase)()
            ev.meta["two_way"] = ev.ok and _two_way(ev, ends)
            if ev.meta["two_way"] or not ev.ok or time.monotonic() >= stop_at:
                return ev

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        vantage: list[str] = args["vantage"]
        within = float(args.get("within", 10))
        settle = float(args.get("settle_s", 20))
        link = args["cut"]["link"]
        ends: dict[str, str] = args["cut"].get("ends") or {}
        evidence = _ping_matrix(ctx, vantage, phase="before")
        if _unreachable(evidence) or any(not e.ok for e in evidence):
            return evidence  # nothing to measure: the judge says why
        for fault in args.get("faults") or list(FAULTS):
            pre = self._adjacency(ctx, link, ends, settle, f"pre-{fault}")
            pre.meta["fault"] = fault
            evidence.append(pre)
            if not pre.meta["two_way"]:
                return evidence  # the fault would take a link nobody uses: the judge says so
            applied: list[Evidence] = []
            try:
                if fault == "silent-cut":
                    ev = ctx.probe(f"link:{link}", "fault", link, f"silent cut of {link} (nftables, grader bridge)",
                                   partial(capture.bridge_block, True, source=f"link:{link}", check=ctx.check.id))
                    ev.meta.update({"link": link, "fault": fault, "phase": "apply"})
                    applied = [ev]
                else:
                    applied = _pull(ctx, link, False, {"fault": fault, "phase": "apply"})
                evidence += applied
                if all(e.ok for e in applied):
                    evidence += self._recovery(ctx, vantage, within, f"after-{fault}")
            finally:
                if fault == "silent-cut":
                    ev = ctx.probe(f"link:{link}", "fault", link, f"end of the silent cut of {link}",
                                   partial(capture.bridge_block, False, source=f"link:{link}", check=ctx.check.id))
                    ev.meta.update({"link": link, "fault": fault, "phase": "restore"})
                    evidence.append(ev)
                else:
                    evidence += _pull(ctx, link, True, {"fault": fault, "phase": "restore"})
            # the restored link forms its adjacency again before the next fault
            time.sleep(float(args.get("restore_s", 3)))
            evidence += self._recovery(ctx, vantage, settle, f"restored-{fault}")
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        within = float(args.get("within", 10))
        before = [e for e in evidence if e.meta.get("phase") == "before"]
        if (err := error_if_unrun(before)) is not None:
            return err
        if not before:
            return Verdict.errored("Aucune mesure avant la coupure.", "No measurement before the cut.")
        if _unreachable(before):
            return Verdict.failed(
                "Avant la coupure, les sites ne se joignent déjà pas tous : " + "; ".join(_unreachable(before)) + ".",
                "Before the cut, the sites already do not all reach each other: "
                + "; ".join(_unreachable(before)) + ".",
            )
        pres = [e for e in evidence if str(e.meta.get("phase", "")).startswith("pre-")]
        if (err := error_if_unrun(pres)) is not None:
            return err
        link = args["cut"]["link"]
        idle = [e for e in pres if not e.meta.get("two_way")]
        if idle:
            fr, en = FAULTS.get(str(idle[0].meta.get("fault")), ("?", "?"))
            return Verdict.failed(
                f"Avant la panne ({fr}), le lien {link} ne porte pas d'adjacence OSPF (hellos sans voisin "
                "réciproque) : la panne ne mettrait rien à l'épreuve.",
                f"Before the fault ({en}), link {link} carries no OSPF adjacency (hellos without a mutual "
                "neighbour): the fault would test nothing.")
        faults = [e for e in evidence if e.kind == "fault"]
        if not faults or any(not e.ok for e in faults):
            bad = next((e for e in faults if not e.ok), None)
            reason = bad.error if bad else "no fault recorded"
            return Verdict.errored(f"La panne n'a pas pu être provoquée ou levée : {reason}.",
                                   f"The fault could not be made or undone: {reason}.")
        done = list(dict.fromkeys(str(e.meta.get("fault")) for e in faults))
        problems: list[tuple[str, str]] = []
        worst: dict[str, float] = {}
        for fault in done:
            after = [e for e in evidence if e.meta.get("phase") == f"after-{fault}"]
            if (err := error_if_unrun(after)) is not None:
                return err
            if not after:
                return Verdict.errored(f"Aucune mesure après la panne {fault}.", f"No measurement after the {fault}.")
            fr, en = FAULTS.get(fault, (fault, fault))
            late = [f"{e.source} → {e.meta.get('target_name')}" for e in after
                    if (e.parsed or {}).get("first_reply_after_s") is None
                    or float(e.parsed["first_reply_after_s"]) > within]
            worst[fault] = max(float((e.parsed or {}).get("first_reply_after_s") or 0) for e in after)
            if late:
                problems.append((f"{link}, {fr} : {len(late)} chemin(s) sans réponse après {within:g} s : "
                                 + ", ".join(late),
                                 f"{link}, {en}: {len(late)} path(s) without an answer after {within:g} s: "
                                 + ", ".join(late)))
        if problems:
            return _two(problems)
        fr = "; ".join(f"{FAULTS.get(f, (f, f))[0]} : {worst[f]:.2f} s" for f in done)
        en = "; ".join(f"{FAULTS.get(f, (f, f))[1]}: {worst[f]:.2f} s" for f in done)
        return Verdict.passed(
            f"Lien {link} : tous les sites se joignent de nouveau au plus tard après ({fr}) ; exigé : {within:g} s.",
            f"Link {link}: every site reaches the others again at worst after ({en}); required: {within:g} s.")


GRADERS = [LanReachability(), OspfAdjacency(), OspfRoutes(), WanResilience()]

__all__ = ["GRADERS", "LanReachability", "OspfAdjacency", "OspfRoutes", "WanResilience"]
