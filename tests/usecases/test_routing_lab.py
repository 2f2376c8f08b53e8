"""The routing-multisite lab end to end on the netns provider: the reference solution gets
full marks, and every faulty variant fails exactly the checks it declares."""

from __future__ import annotations

import pytest

from labkit.adapters.storage.runs import open_run
from labkit.domain.report import render_html
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context, down, load_lab_checked, up
from labkit.usecases.solve import solve
from tests.conftest import LabEnv, leftovers, namespace_inodes

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "routing-multisite"


def _variants() -> list[tuple[str, frozenset[str]]]:
    from labkit.settings import load_settings

    lab = load_lab_checked(Context(load_settings()), LAB)
    return [(v.id, frozenset(v.fails)) for v in lab.spec.variants]


def test_reference_solution_gets_full_marks_and_a_report(lab_env: LabEnv) -> None:
    ctx = Context(lab_env.settings)
    up(ctx, LAB, instance="ref", seed=11, candidate="Alice Martin")
    out = solve(ctx, "ref", wait=60)
    assert out.converged_after is not None
    summary = grade(ctx, "ref")
    bad = {c.id: c.message.en for c in summary.checks if c.status != "pass"}
    assert bad == {}
    assert summary.score == summary.max_score == 100
    run = open_run(lab_env.settings.runs, summary.run_id)
    assert {e.kind for e in run.evidence.values()} >= {"icmp", "ssh", "netlink", "snmp", "fault"}
    assert "routes-r-hq" in run.artifacts and run.artifacts["addressing"]
    inodes = namespace_inodes("ref")
    down(ctx, "ref")
    assert leftovers(lab_env.settings, "ref", inodes) == []
    # the report renders from the stored run alone, after the lab is gone
    html = render_html(run, "fr")
    assert "Alice Martin" in html and "100" in html and "<svg" in html


@pytest.mark.parametrize("variant,declared", _variants(), ids=[v for v, _ in _variants()])
def test_faulty_variant_fails_exactly_what_it_declares(lab_env: LabEnv, variant: str,
                                                       declared: frozenset[str]) -> None:
    ctx = Context(lab_env.settings)
    name = f"var-{variant}"[:31]
    up(ctx, LAB, instance=name, seed=12)
    solve(ctx, name, variant=variant, wait=60)
    summary = grade(ctx, name)
    failed = {c.id for c in summary.checks if c.status == "fail"}
    errors = {c.id: c.message.en for c in summary.checks if c.status == "error"}
    assert errors == {}
    assert failed == declared, {c.id: c.message.en for c in summary.checks}
    down(ctx, name)
