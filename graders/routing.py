"""Routing checks: reachability between LANs, OSPF adjacencies, OSPF-learned routes, and
resilience to the loss of a WAN link. Observation is from the grader's side (ICMP it sends
itself, kernel routing tables it reads over netlink) except ``ospf_adjacency``, which reads
the routers' own OSPF state over SSH and says so in the lab's check documentation."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable
from functools import partial
from typing import Any

from labkit.adapters.probes import icmp, netlink, ssh
from labkit.domain.grading import CheckContext, error_if_unrun
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


OSPF_CMDS = ["vtysh -c 'show ip ospf neighbor json'", "vtysh -c 'show ip ospf interface json'"]


class OspfAdjacency:
    name = "routing.ospf_adjacency"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        calls = []
        for router, vantage in args["routers"].items():
            seg = ctx.plan.vantage_point(vantage).segment  # type: ignore[union-attr]
            addr = ctx.address(router, seg)
            probe = partial(ssh.ssh_run, addr, OSPF_CMDS, key_file=ctx.ssh_key, source=vantage,
                            check=ctx.check.id, timeout=5.0)
            calls.append(ctx.deferred(vantage, "ssh", addr, "; ".join(OSPF_CMDS), probe,
                                      meta={"target_name": router}))
        return ctx.parallel(calls)

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        by_router = {e.meta.get("target_name"): e for e in evidence}
        problems: list[tuple[str, str]] = []
        for link, ends in args["links"].items():
            for router, iface in ends.items():
                ev = by_router.get(router)
                if ev is None:
                    problems.append((f"{router} : état OSPF non collecté", f"{router}: OSPF state not collected"))
                    continue
                neigh, ifaces = (c.get("json") for c in ev.parsed)
                if not isinstance(ifaces, dict) or not isinstance(neigh, dict):
                    problems.append((f"{router} : OSPF ne répond pas", f"{router}: OSPF does not answer"))
                    continue
                info = (ifaces.get("interfaces") or {}).get(iface)
                if info is None:
                    problems.append((f"{router} {iface} ({link}) : interface absente d'OSPF",
                                     f"{router} {iface} ({link}): interface not in OSPF"))
                    continue
                if info.get("networkType") != "POINTOPOINT":
                    problems.append((
                        f"{router} {iface} ({link}) : type de réseau {info.get('networkType')}, point-à-point attendu",
                        f"{router} {iface} ({link}): network type {info.get('networkType')}, point-to-point expected"))
                full = [n for lst in (neigh.get("neighbors") or {}).values() for n in lst
                        if str(n.get("ifaceName", "")).split(":")[0] == iface
                        and str(n.get("state", n.get("nbrState", ""))).startswith("Full")]
                if not full:
                    problems.append((f"{router} {iface} ({link}) : aucun voisin OSPF en état Full",
                                     f"{router} {iface} ({link}): no OSPF neighbour in Full state"))
        if problems:
            problems = list(dict.fromkeys(problems))
            return Verdict.failed("; ".join(p[0] for p in problems) + ".", "; ".join(p[1] for p in problems) + ".")
        n = sum(len(e) for e in args["links"].values())
        return Verdict.passed(f"Les {n} extrémités WAN ont un voisin OSPF Full en point-à-point.",
                              f"All {n} WAN ends have a Full point-to-point OSPF neighbour.")


def _route_net(route: dict[str, Any]) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The destination of a netlink route row ("10.1.2.0/24", or "10.1.2.0" + prefixlen)."""
    dst = str(route.get("dst") or "0.0.0.0")
    if "/" not in dst:
        dst = f"{dst}/{route.get('prefixlen', 0)}"
    try:
        return ipaddress.ip_network(dst, strict=False)
    except ValueError:
        return None


def _routes(ev_id: str, *, source: str, check: str) -> Evidence:
    return netlink.routes(ev_id=ev_id, source=source, check=check)


def _set_link(ev_id: str, *, iface: str, up: bool, check: str) -> Evidence:
    return netlink.set_link_state(iface, up, ev_id=ev_id, source="grader", check=check)


def _wait(ev_id: str, *, ip: str, source: str, check: str, deadline_s: float) -> Evidence:
    return icmp.wait_reachable(ip, deadline_s=deadline_s, ev_id=ev_id, source=source, check=check, interval=0.2)


class OspfRoutes:
    name = "routing.ospf_routes"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        calls = [
            ctx.deferred(r, "netlink", r, "ip route show (netlink)",
                         partial(_routes, source=r, check=ctx.check.id), meta={"target_name": r})
            for r in args["routers"]
        ]
        return ctx.parallel(calls)

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        prefixes: dict[str, str] = args["prefixes"]
        problems: list[tuple[str, str]] = []
        for ev in evidence:
            router = ev.meta.get("target_name", ev.target)
            routes = ev.parsed or []
            for owner, prefix in prefixes.items():
                if owner == router:
                    continue
                net = ipaddress.ip_network(prefix)
                matching = [r for r in routes if _route_net(r) == net]
                protos = sorted({str(r.get("protocol")) for r in matching})
                if not matching:
                    problems.append((f"{router} n'a pas de route vers {prefix}", f"{router} has no route to {prefix}"))
                elif "ospf" not in protos:
                    problems.append((f"{router} joint {prefix} par une route {'/'.join(protos)}, pas par OSPF",
                                     f"{router} reaches {prefix} through a {'/'.join(protos)} route, not OSPF"))
                elif any(p in ("static", "boot") for p in protos):
                    problems.append((f"{router} a aussi une route statique vers {prefix}",
                                     f"{router} also has a static route to {prefix}"))
        if problems:
            return Verdict.failed("; ".join(p[0] for p in problems) + ".", "; ".join(p[1] for p in problems) + ".")
        return Verdict.passed("Chaque routeur apprend les LAN des autres sites par OSPF.",
                              "Every router learns the other sites' LANs through OSPF.")


class WanResilience:
    """Cut a WAN link (both ends down), measure the time until every site reaches every
    other again, restore the link. The fault is recorded as evidence of kind ``fault``."""

    name = "routing.wan_resilience"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        vantage: list[str] = args["vantage"]
        within = float(args.get("within", 10))
        ends: dict[str, str] = args["cut"]["ends"]
        link = args["cut"]["link"]
        evidence = _ping_matrix(ctx, vantage, phase="before")
        if _unreachable(evidence) or any(not e.ok for e in evidence):
            return evidence  # nothing to measure: the judge says why
        cut: list[tuple[str, str]] = []
        try:
            for router, iface in ends.items():
                ev = ctx.probe(router, "fault", f"{router}:{iface}", f"ip link set {iface} down ({link})",
                               partial(_set_link, iface=iface, up=False, check=ctx.check.id))
                evidence.append(ev)
                if ev.ok:
                    cut.append((router, iface))
            calls = []
            for src, dst in itertools.permutations(vantage, 2):
                ip = _vantage_ip(ctx, dst)
                calls.append(ctx.deferred(
                    src, "icmp", ip, f"wait for {ip}",
                    partial(_wait, ip=ip, source=src, check=ctx.check.id, deadline_s=within),
                    timeout=within + 5, meta={"target_name": dst, "phase": "after-cut"}))
            evidence += ctx.parallel(calls)
        finally:
            for router, iface in cut:
                evidence.append(ctx.probe(router, "fault", f"{router}:{iface}", f"ip link set {iface} up ({link})",
                                          partial(_set_link, iface=iface, up=True, check=ctx.check.id)))
        evidence += _ping_matrix(ctx, vantage, phase="restored")
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        within = float(args.get("within", 10))
        before = [e for e in evidence if e.meta.get("phase") == "before"]
        if (err := error_if_unrun(before)) is not None:
            return err
        if _unreachable(before):
            return Verdict.failed(
                "Avant la coupure, les sites ne se joignent déjà pas tous : " + "; ".join(_unreachable(before)) + ".",
                "Before the cut, the sites already do not all reach each other: "
                + "; ".join(_unreachable(before)) + ".",
            )
        faults = [e for e in evidence if e.kind == "fault"]
        if not faults or any(not e.ok for e in faults):
            bad = next((e for e in faults if not e.ok), None)
            reason = bad.error if bad else "no fault recorded"
            return Verdict.errored(f"La coupure du lien n'a pas pu être faite : {reason}.",
                                   f"The link could not be cut: {reason}.")
        after = [e for e in evidence if e.meta.get("phase") == "after-cut"]
        if (err := error_if_unrun(after)) is not None:
            return err
        late = [f"{e.source} → {e.meta.get('target_name')}" for e in after
                if (e.parsed or {}).get("first_reply_after_s") is None
                or float(e.parsed["first_reply_after_s"]) > within]
        worst = max((float((e.parsed or {}).get("first_reply_after_s") or 0) for e in after), default=0.0)
        link = args["cut"]["link"]
        if late:
            return Verdict.failed(
                f"Lien {link} coupé : {len(late)} chemin(s) sans réponse après {within:g} s : " + "; ".join(late) + ".",
                f"Link {link} cut: {len(late)} path(s) without an answer after {within:g} s: " + "; ".join(late) + ".",
            )
        return Verdict.passed(
            f"Lien {link} coupé : tous les sites se joignent de nouveau après {worst:.2f} s au plus "
            f"(exigé : {within:g} s).",
            f"Link {link} cut: every site reaches the others again after at most {worst:.2f} s "
            f"(required: {within:g} s).",
        )


GRADERS = [LanReachability(), OspfAdjacency(), OspfRoutes(), WanResilience()]

__all__ = ["GRADERS", "LanReachability", "OspfAdjacency", "OspfRoutes", "WanResilience"]
