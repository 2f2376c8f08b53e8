"""SNMP checks, observed from the grader's vantage points: SNMPv3 authPriv answers with the
right sysName, and no v1/v2c community is answered."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from labkit.adapters.probes import snmp
from labkit.domain.grading import CheckContext, error_if_unrun
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


class NoCommunityAccess:
    """v1/v2c communities get no answer while the agent does answer SNMPv3 on the LAN: an
    agent that listens nowhere would refuse v2c vacuously and earns nothing."""

    name = "snmp.no_community_access"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        calls = []
        for router, vantage, addr in _router_targets(ctx, args["routers"]):
            calls.append(ctx.deferred(vantage, "snmp", addr, f"snmpget v3 {SYS_NAME}",
                                      _v3_probe(ctx, args, addr, vantage),
                                      meta={"target_name": router, "purpose": "v3-liveness"}))
            for community in args.get("communities", ["public"]):
                for version in ("1", "2c"):
                    probe = partial(snmp.snmp_get_community, addr, [SYS_DESCR], community=community,
                                    version=version, source=vantage, check=ctx.check.id, timeout=1.0, retries=0)
                    calls.append(ctx.deferred(vantage, "snmp", addr, f"snmpget v{version} {SYS_DESCR}", probe,
                                              meta={"target_name": router, "community_label": community}))
        return ctx.parallel(calls)

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        silent = sorted({str(e.meta.get("target_name")) for e in evidence
                         if e.meta.get("purpose") == "v3-liveness" and not _agent_listens(e)})
        evidence = [e for e in evidence if e.meta.get("purpose") != "v3-liveness"]
        open_ = sorted({f"{e.meta.get('target_name')} (v{e.meta.get('version', '?')}, "
                        f"« {e.meta.get('community_label')} »)" for e in evidence if (e.parsed or {}).get("answered")})
        if open_:
            return Verdict.failed("Accès SNMP par communauté accepté : " + "; ".join(open_) + ".",
                                  "SNMP community access accepted: "
                                  + "; ".join(open_).replace("« ", "'").replace(" »", "'") + ".")
        if silent:
            return Verdict.failed(
                "L'agent SNMP ne répond pas du tout depuis le LAN (ni v3) sur : " + ", ".join(silent)
                + " ; le refus de v1/v2c ne peut pas être constaté.",
                "The SNMP agent does not answer at all from the LAN (not even v3) on: " + ", ".join(silent)
                + "; the refusal of v1/v2c cannot be observed.",
            )
        return Verdict.passed(f"Aucune des {len(evidence)} requêtes v1/v2c n'a reçu de réponse.",
                              f"None of the {len(evidence)} v1/v2c requests was answered.")


GRADERS = [V3SysName(), NoCommunityAccess()]
