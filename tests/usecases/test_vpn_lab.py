"""The vpn-site-to-site lab end to end on the netns provider: the reference solution gets
full marks, every faulty variant fails exactly the checks it declares, and nothing is left
on the machine after ``down`` (the grader's impostor process included)."""

from __future__ import annotations

import pytest

from labkit.adapters.storage.runs import open_run
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context, down, load_lab_checked, up
from labkit.usecases.solve import solve
from tests.conftest import LabEnv, leftovers, namespace_inodes

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "vpn-site-to-site"


def _variants() -> list[tuple[str, frozenset[str]]]:
    from labkit.settings import load_settings

    lab = load_lab_checked(Context(load_settings()), LAB)
    return [(v.id, frozenset(v.fails)) for v in lab.spec.variants]


def test_reference_solution_gets_full_marks_and_leaves_nothing(lab_env: LabEnv) -> None:
    ctx = Context(lab_env.settings)
    up(ctx, LAB, instance="vpnref", seed=21, candidate="Alice Martin")
    solve(ctx, "vpnref", wait=30)
    summary = grade(ctx, "vpnref")
    bad = {c.id: c.message.en for c in summary.checks if c.status != "pass"}
    assert bad == {}
    assert summary.score == summary.max_score == 100
    run = open_run(lab_env.settings.runs, summary.run_id)
    kinds = {e.kind for e in run.evidence.values()}
    assert kinds >= {"icmp", "tcp", "udp", "capture", "fault", "exec"}
    faults = [e for e in run.evidence.values() if e.kind == "fault"]
    assert faults and all(e.target == "gw-b" and e.parsed["rc"] == 0 for e in faults)
    inodes = namespace_inodes("vpnref")
    down(ctx, "vpnref")
    assert leftovers(lab_env.settings, "vpnref", inodes) == []


@pytest.mark.parametrize("variant,declared", _variants(), ids=[v for v, _ in _variants()])
def test_faulty_variant_fails_exactly_what_it_declares(lab_env: LabEnv, variant: str,
                                                       declared: frozenset[str]) -> None:
    ctx = Context(lab_env.settings)
    name = f"vpn-{variant}"[:31]
    up(ctx, LAB, instance=name, seed=22)
    solve(ctx, name, variant=variant, wait=30)
    summary = grade(ctx, name)
    failed = {c.id for c in summary.checks if c.status == "fail"}
    errors = {c.id: c.message.en for c in summary.checks if c.status == "error"}
    assert errors == {}
    assert failed == declared, {c.id: c.message.en for c in summary.checks}
    inodes = namespace_inodes(name)
    down(ctx, name)
    assert leftovers(lab_env.settings, name, inodes) == []
