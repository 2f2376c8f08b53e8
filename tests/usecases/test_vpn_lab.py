"""The vpn-site-to-site lab end to end on the netns provider: the reference solution gets
full marks, every faulty variant and every cheat fails exactly the checks it declares, and
nothing is left on the machine after ``down`` (the grader's OpenVPN clients included)."""

from __future__ import annotations

import pytest

from tests.agent.lab_agent import full_marks_both_ways
from tests.conftest import (
    LabEnv,
    down_leaves_nothing,
    lab_cheats,
    lab_variants,
    variant_fails_what_it_declares,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "vpn-site-to-site"


def test_reference_solution_gets_full_marks_and_leaves_nothing(lab_env: LabEnv) -> None:
    # the instance runs the grader agent too: graded in-process, then through the agent (same verdicts)
    _, _, run = full_marks_both_ways(lab_env, LAB, "vpnref", seed=21, wait=30, candidate="Alice Martin")
    kinds = {e.kind for e in run.evidence.values()}
    assert kinds >= {"icmp", "tcp", "udp", "capture", "fault", "exec", "artifact", "netlink"}
    # the grader killed gw-b's tunnel daemon itself, and a new one carries the tunnel after
    faults = [e for e in run.evidence.values() if e.kind == "fault"]
    assert [e.target for e in faults] == ["gw-b"] and faults[0].parsed["gone"] is True
    holders = {e.meta["phase"]: e.parsed["holders"] for e in run.evidence.values()
               if e.check == "tunnel-recovery" and e.meta.get("phase") in ("daemons", "restarted")}
    assert {h["pid"] for h in holders["daemons"]}.isdisjoint({h["pid"] for h in holders["restarted"]})
    # no probe sits on the .250 the brief used to announce, and no private key reaches the evidence
    assert not any(str(e.target).endswith(".250") for e in run.evidence.values())
    assert not any("PRIVATE KEY" in (e.raw or "") for e in run.evidence.values())
    down_leaves_nothing(lab_env, "vpnref")


@pytest.mark.parametrize("variant,declared", lab_variants(LAB))
def test_faulty_variant_fails_exactly_what_it_declares(lab_env: LabEnv, variant: str,
                                                       declared: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"vpn-{variant}"[:31], variant, declared,
                                   seed=22, wait=30)


@pytest.mark.parametrize("cheat,targeted", lab_cheats(LAB))
def test_cheat_fails_what_it_targets(lab_env: LabEnv, cheat: str, targeted: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"vpc-{cheat}"[:31], cheat, targeted, seed=23, wait=30)
