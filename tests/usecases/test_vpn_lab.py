"""The vpn-site-to-site lab end to end on the netns provider: the reference solution gets
full marks, every faulty variant fails exactly the checks it declares, and nothing is left
on the machine after ``down`` (the grader's impostor process included)."""

from __future__ import annotations

import pytest

from tests.conftest import LabEnv, down_leaves_nothing, full_marks, lab_variants, variant_fails_what_it_declares

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "vpn-site-to-site"


def test_reference_solution_gets_full_marks_and_leaves_nothing(lab_env: LabEnv) -> None:
    _, _, run = full_marks(lab_env, LAB, "vpnref", seed=21, wait=30, candidate="Alice Martin")
    kinds = {e.kind for e in run.evidence.values()}
    assert kinds >= {"icmp", "tcp", "udp", "capture", "fault", "exec"}
    faults = [e for e in run.evidence.values() if e.kind == "fault"]
    assert faults and all(e.target == "gw-b" and e.parsed["rc"] == 0 for e in faults)
    down_leaves_nothing(lab_env, "vpnref")


@pytest.mark.parametrize("variant,declared", lab_variants(LAB))
def test_faulty_variant_fails_exactly_what_it_declares(lab_env: LabEnv, variant: str,
                                                       declared: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"vpn-{variant}"[:31], variant, declared,
                                   seed=22, wait=30)
