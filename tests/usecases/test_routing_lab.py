"""The routing-multisite lab end to end on the netns provider: the reference solution gets
full marks, and every faulty variant fails exactly the checks it declares."""

from __future__ import annotations

import pytest

from labkit.domain.report import render_html
from tests.conftest import LabEnv, down_leaves_nothing, full_marks, lab_variants, variant_fails_what_it_declares

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "routing-multisite"


def test_reference_solution_gets_full_marks_and_a_report(lab_env: LabEnv) -> None:
    solved, _, run = full_marks(lab_env, LAB, "ref", seed=11, wait=60, candidate="Alice Martin")
    assert solved.converged_after is not None
    assert {e.kind for e in run.evidence.values()} >= {"icmp", "ssh", "netlink", "snmp", "fault"}
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
