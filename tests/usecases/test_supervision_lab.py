"""The supervision-snmp lab end to end on the netns provider: the reference solution gets
full marks with alerts that really fire and resolve, every faulty variant fails exactly the
checks it declares, and nothing is left on the machine after ``down``."""

from __future__ import annotations

import pytest

from labkit.adapters.storage.runs import open_run
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context, down, load_lab_checked, up
from labkit.usecases.solve import solve
from tests.conftest import LabEnv, leftovers, namespace_inodes

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "supervision-snmp"


def _variants() -> list[tuple[str, frozenset[str]]]:
    from labkit.settings import load_settings

    lab = load_lab_checked(Context(load_settings()), LAB)
    return [(v.id, frozenset(v.fails)) for v in lab.spec.variants]


def test_reference_solution_gets_full_marks_and_leaves_nothing(lab_env: LabEnv) -> None:
    ctx = Context(lab_env.settings)
    up(ctx, LAB, instance="supref", seed=31, candidate="Alice Martin")
    solve(ctx, "supref", wait=10)
    summary = grade(ctx, "supref")
    bad = {c.id: c.message.en for c in summary.checks if c.status != "pass"}
    assert bad == {}
    assert summary.score == summary.max_score == 100
    run = open_run(lab_env.settings.runs, summary.run_id)
    # three faults, each applied and undone, and recorded
    faults = [e for e in run.evidence.values() if e.kind == "fault"]
    assert sorted(e.meta["phase"] for e in faults) == ["fault", "fault", "fault", "restore", "restore", "restore"]
    assert all(e.ok for e in faults)
    # the portfolio tables, from the monitoring server's own data
    timeline = run.artifacts["alert-timeline"]
    assert {r["check"] for r in timeline} == {"alert-device-down", "alert-interface-down", "alert-disk-full"}
    within = int(run.info.params["notify_within_s"])
    for row in timeline:  # Prometheus's own firing time (1 s grid) and the helpdesk's, both measured
        assert 0 <= row["detection_delay_s"] <= within and 0 <= row["notified_delay_s"] <= within
        assert 0 <= row["resolution_notified_delay_s"] <= within
    availability = {r["device"]: r for r in run.artifacts["availability"]}
    assert set(availability) == {"r1", "r2", "logs", "srv1", "srv2", "srv3"}
    assert availability["srv2"]["down_periods"], "the grader stopped srv2's agent: a down period is recorded"
    assert availability["srv2"]["availability_pct"] < 100 <= availability["srv3"]["availability_pct"]
    inodes = namespace_inodes("supref")
    down(ctx, "supref")
    assert leftovers(lab_env.settings, "supref", inodes) == []


@pytest.mark.parametrize("variant,declared", _variants(), ids=[v for v, _ in _variants()])
def test_faulty_variant_fails_exactly_what_it_declares(lab_env: LabEnv, variant: str,
                                                       declared: frozenset[str]) -> None:
    ctx = Context(lab_env.settings)
    name = f"sup-{variant}"[:31]
    up(ctx, LAB, instance=name, seed=32)
    solve(ctx, name, variant=variant, wait=10)
    summary = grade(ctx, name)
    failed = {c.id for c in summary.checks if c.status == "fail"}
    errors = {c.id: c.message.en for c in summary.checks if c.status == "error"}
    assert errors == {}
    assert failed == declared, {c.id: c.message.en for c in summary.checks}
    inodes = namespace_inodes(name)
    down(ctx, name)
    assert leftovers(lab_env.settings, name, inodes) == []
