"""SNMP checks, observed from the grader's vantage points: SNMPv3 authPriv answers with the
right sysName, and no v1/v2c community is answered, even from an address nobody could know
in advance."""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from labkit.adapters.probes import netlink, snmp
from labkit.domain.grading import CheckContext, error_if_unrun
from labkit.models.capabilities import Capability
from labkit.models.evidence import Evidence
from labkit.models.instance import InstancePlan
from labkit.models.results import Verdict

SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_DESCR = "1.3.6.1.2.1.1.1.0"


def _router_targets(ctx: CheckContext, routers: dict[str, str]) -> list[tuple[str, str, str]]:
    out = []
    for router, vantage in routers.items():
        seg = ctx.plan.vantage_point(vantage).segment  # type: ignore[union-attr]
        out.append((router, vantage, ctx.address(router, seg)))
    return out


def _v3_probe(ctx: CheckContext, args: dict[str, Any], addr: str, vantage: str) -> Callable[..., Evidence]:
    return partial(snmp.snmp_get_v3, addr, [SYS_NAME], user=args["user"], auth_protocol=args["auth"]["protocol"],
                   auth_key=args["auth"]["key"], priv_protocol=args["priv"]["protocol"],
                   priv_key=args["priv"]["key"], source=vantage, check=ctx.check.id, timeout=1.0, retries=1)


class V3SysName:
    name = "snmp.v3_sysname"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        return ctx.parallel([
            ctx.deferred(vantage, "snmp", addr, f"snmpget v3 {SYS_NAME}", _v3_probe(ctx, args, addr, vantage),
                         meta={"target_name": router})
            for router, vantage, addr in _router_targets(ctx, args["routers"])
        ])

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        problems: list[tuple[str, str]] = []
        for ev in evidence:
            router = ev.meta.get("target_name", ev.target)
            p = ev.parsed or {}
            if not p.get("answered"):
                why = p.get("error_indication") or "no answer"
                problems.append((f"{router} ne répond pas en SNMPv3 authPriv ({why})",
                                 f"{router} does not answer SNMPv3 authPriv ({why})"))
                continue
            got = (p.get("values") or {}).get(SYS_NAME)
            if got != router:
                problems.append((f"{router} annonce sysName « {got} »", f"{router} reports sysName '{got}'"))
        if problems:
            return Verdict.failed("; ".join(x[0] for x in problems) + ".", "; ".join(x[1] for x in problems) + ".")
        return Verdict.passed(f"Les {len(evidence)} routeurs répondent en SNMPv3 authPriv avec le bon sysName.",
                              f"All {len(evidence)} routers answer SNMPv3 authPriv with the right sysName.")


NO_ANSWER = {"RequestTimedOut", "ProbeDeadline", None}


def _agent_listens(ev: Evidence) -> bool:
    """Any SNMPv3 answer, even a USM report (unknown user, wrong level), shows the agent
    listens on the LAN; only silence does not."""
    p = ev.parsed or {}
    return bool(p.get("answered")) or p.get("error_indication_type") not in NO_ANSWER


# ------------------------------------------------------------ requests from a fresh address
# Hand-encoded BER: the v1/v2c GET and the v3 engine discovery are a few bytes each, and a
# socket of our own can be bound to the fresh source address (the pysnmp probe cannot).

def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def _oid(dotted: str) -> bytes:
    parts = [int(x) for x in dotted.split(".")]
    out = bytes([40 * parts[0] + parts[1]])
    for n in parts[2:]:
        enc = [n & 0x7F]
        n >>= 7
        while n:
            enc.insert(0, 0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(enc)
    return _tlv(0x06, out)


def community_get_packet(community: str, version: str, request_id: int, oid: str = SYS_DESCR) -> bytes:
    """An SNMPv1 (version "1") or v2c GetRequest for ``oid``."""
    varbinds = _tlv(0x30, _tlv(0x30, _oid(oid) + b"\x05\x00"))
    pdu = _tlv(0xA0, _int(request_id) + _int(0) + _int(0) + varbinds)
    return _tlv(0x30, _int(0 if version == "1" else 1) + _tlv(0x04, community.encode()) + pdu)


def v3_discovery_packet(msg_id: int) -> bytes:
    """An SNMPv3 engine-discovery request (noAuthNoPriv, empty user, reportable): any agent
    that speaks SNMPv3 to this source answers it with a Report."""
    usm = _tlv(0x30, _tlv(0x04, b"") + _int(0) + _int(0) + _tlv(0x04, b"") + _tlv(0x04, b"") + _tlv(0x04, b""))
    header = _tlv(0x30, _int(msg_id) + _int(65507) + _tlv(0x04, b"\x04") + _int(3))
    scoped = _tlv(0x30, _tlv(0x04, b"") + _tlv(0x04, b"") + _tlv(0xA0, _int(msg_id) + _int(0) + _int(0)
                                                                     + _tlv(0x30, b"")))
    return _tlv(0x30, _int(3) + header + _tlv(0x04, usm) + scoped)


def fresh_address(prefix: str, taken: set[str], rng: random.Random) -> str:
    """A host address of ``prefix`` that is in no plan (not a node's, not a probe's)."""
    net = ipaddress.ip_network(prefix, strict=False)
    for _ in range(1000):
        cand = net.network_address + rng.randrange(2, net.num_addresses - 1)
        if str(cand) not in taken:
            return f"{cand}/{net.prefixlen}"
    raise ValueError(f"no free address left in {prefix}")


class NoCommunityAccess:
    """v1/v2c communities get no answer while the agent does answer SNMPv3 on the LAN: an
    agent that listens nowhere would refuse v2c vacuously and earns nothing.

    The v1/v2c requests leave from a fresh random address of the vantage point's LAN, added
    to the grader's vantage namespace for this run only (so no rule can exempt the probe
    in advance), together with a v3 engine discovery from that same address (the agent must
    answer it: an agent that ignores unknown sources refuses v2c vacuously too). The usual
    v3 authPriv liveness request from the vantage point's own address is kept."""

    name = "snmp.no_community_access"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        rng = random.SystemRandom()
        taken = {a.split("/")[0] for n in ctx.plan.nodes for i in n.interfaces for a in i.addresses}
        taken |= {v.ip for v in ctx.plan.vantage}
        targets = _router_targets(ctx, args["routers"])
        fresh: dict[str, str] = {}
        evidence: list[Evidence] = []
        for vantage in dict.fromkeys(v for _, v, _ in targets):
            vp = ctx.plan.vantage_point(vantage)
            fresh[vantage] = fresh_address(vp.address, taken, rng)  # type: ignore[union-attr]
            taken.add(fresh[vantage].split("/")[0])
        added: list[str] = []
        try:
            for vantage, cidr in fresh.items():
                ev = ctx.probe(vantage, "netlink", f"{vantage}/eth0", f"ip addr add {cidr}",
                               partial(netlink.source_address, cidr, True, source=vantage, check=ctx.check.id))
                evidence.append(ev)
                if ev.ok:
                    added.append(vantage)
            if len(added) == len(fresh):
                time.sleep(0.1)
                evidence += ctx.parallel(self._requests(ctx, args, targets, fresh, rng))
        finally:
            for vantage in added:
                cidr = fresh[vantage]
                evidence.append(ctx.probe(vantage, "netlink", f"{vantage}/eth0", f"ip addr del {cidr}",
                                          partial(netlink.source_address, cidr, False, source=vantage,
                                                  check=ctx.check.id)))
        return evidence

    def _requests(self, ctx: CheckContext, args: dict[str, Any], targets: list[tuple[str, str, str]],
                  fresh: dict[str, str], rng: random.Random) -> list[Callable[[], Evidence]]:
        calls = []
        for router, vantage, addr in targets:
            src = fresh[vantage].split("/")[0]
            calls.append(ctx.deferred(vantage, "snmp", addr, f"snmpget v3 {SYS_NAME}",
                                      _v3_probe(ctx, args, addr, vantage),
                                      meta={"target_name": router, "purpose": "v3-liveness"}))
            msg_id = rng.randrange(1 << 16, 1 << 30)
            calls.append(ctx.deferred(vantage, "snmp", addr, f"SNMPv3 discovery from {src}",
                                      partial(snmp.raw_exchange, addr, src, v3_discovery_packet(msg_id).hex(),
                                              _int(msg_id).hex(),
                                              kind_label="SNMPv3 engine discovery", check=ctx.check.id,
                                              source=vantage, timeout=2.0, meta={"version": "3"}),
                                      meta={"target_name": router, "purpose": "v3-fresh-source"}))
            for community in args.get("communities", ["public"]):
                for version in ("1", "2c"):
                    req = rng.randrange(1 << 16, 1 << 30)
                    probe = partial(snmp.raw_exchange, addr, src, community_get_packet(community, version, req).hex(),
                                    _int(req).hex(),
                                    kind_label=f"snmpget -v {version} -c <community> {SYS_DESCR}",
                                    check=ctx.check.id, source=vantage, timeout=1.5, meta={"version": version})
                    calls.append(ctx.deferred(vantage, "snmp", addr, f"snmpget v{version} {SYS_DESCR} from {src}",
                                              probe, meta={"target_name": router, "community_label": community}))
        return calls

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not any(e.meta.get("community_label") for e in evidence):
            return Verdict.errored("Aucune requête v1/v2c n'a été envoyée.", "No v1/v2c request was sent.")
        silent = sorted({str(e.meta.get("target_name")) for e in evidence
                         if (e.meta.get("purpose") == "v3-liveness" and not _agent_listens(e))
                         or (e.meta.get("purpose") == "v3-fresh-source" and not (e.parsed or {}).get("answered"))})
        evidence = [e for e in evidence if e.kind == "snmp" and e.meta.get("community_label")]
        open_ = sorted({f"{e.meta.get('target_name')} (v{e.meta.get('version', '?')}, "
                        f"« {e.meta.get('community_label')} »)" for e in evidence if (e.parsed or {}).get("answered")})
        if open_:
            return Verdict.failed("Accès SNMP par communauté accepté : " + "; ".join(open_) + ".",
                                  "SNMP community access accepted: "
                                  + "; ".join(open_).replace("« ", "'").replace(" »", "'") + ".")
        if silent:
            return Verdict.failed(
                "L'agent SNMP ne répond pas du tout depuis le LAN (ni v3, ou pas à une adresse neuve du LAN) sur : "
                + ", ".join(silent)
                + " ; le refus de v1/v2c ne peut pas être constaté.",
                "The SNMP agent does not answer at all from the LAN (not even v3, or not to a fresh LAN address) on: "
                + ", ".join(silent)
                + "; the refusal of v1/v2c cannot be observed.",
            )
        return Verdict.passed(f"Aucune des {len(evidence)} requêtes v1/v2c n'a reçu de réponse.",
                              f"None of the {len(evidence)} v1/v2c requests was answered.")


GRADERS = [V3SysName(), NoCommunityAccess()]
