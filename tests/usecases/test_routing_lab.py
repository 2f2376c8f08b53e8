"""The routing-multisite lab end to end on the netns provider: the reference solution gets
full marks, every faulty variant and every cheat fails exactly the checks it declares."""

from __future__ import annotations

import pytest

from labkit.domain.report import render_html
from tests.agent.lab_agent import full_marks_both_ways
from tests.conftest import (
    LabEnv,
    down_leaves_nothing,
    lab_cheats,
    lab_variants,
    variant_fails_what_it_declares,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "routing-multisite"


def test_reference_solution_gets_full_marks_and_a_report(lab_env: LabEnv) -> None:
    # the instance runs the grader agent too: graded in-process, then through the agent (same verdicts)
    solved, _, run = full_marks_both_ways(lab_env, LAB, "ref", seed=11, wait=60, candidate="Alice Martin")
    assert solved.converged_after is not None
    assert {e.kind for e in run.evidence.values()} >= {"udp", "icmp", "capture", "netlink", "snmp", "fault"}
    # OSPF was seen on the wire: hellos with the brief's timers, and every LAN in a router-LSA
    caps = [e for e in run.evidence.values() if e.kind == "capture" and e.check == "ospf-adjacency"]
    assert len(caps) == 3 and all(h["hello"] == 1 and h["dead"] == 4 for e in caps for h in e.parsed["hellos"])
    # both faults were made on the grader's bridge and undone, and recovery was timed
    faults = [e for e in run.evidence.values() if e.kind == "fault" and e.check == "wan-resilience"]
    assert {e.meta.get("fault") for e in faults} == {"silent-cut", "cable-pull"}
    assert all(e.source == "link:wan-a" for e in faults)
    # probe addresses are drawn per instance (100-249), and the brief announces none
    probes = {e.target for e in run.evidence.values() if e.kind == "udp"}
    assert len(probes) == 3 and all(100 <= int(ip.rsplit(".", 1)[1]) <= 249 for ip in probes), probes
    brief = lab_env.labkit("brief", "ref", "--lang", "en").stdout
    assert ".250" not in brief and "probe" not in brief.lower() and "do not filter traffic" in brief.lower()
    assert "routes-r-hq" in run.artifacts and run.artifacts["addressing"]
    down_leaves_nothing(lab_env, "ref")
    # the report renders from the stored run alone, after the lab is gone
    html = render_html(run, "fr")
    assert "Alice Martin" in html and "100" in html and "<svg" in html


@pytest.mark.parametrize("variant,declared", lab_variants(LAB))
def test_faulty_variant_fails_exactly_what_it_declares(lab_env: LabEnv, variant: str,
                                                       declared: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"var-{variant}"[:31], variant, declared,
                                   seed=12, wait=60)


@pytest.mark.parametrize("cheat,targeted", lab_cheats(LAB))
def test_cheat_fails_what_it_targets(lab_env: LabEnv, cheat: str, targeted: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"ch-{cheat}"[:31], cheat, targeted, seed=13, wait=60)
