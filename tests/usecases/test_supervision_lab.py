"""The supervision-snmp lab end to end on the netns provider: the reference solution gets
full marks with alerts that really fire and resolve, every faulty variant fails exactly the
checks it declares, every cheat (forged notifications, a canned Prometheus, forged logs, a
made-up NTP server) fails exactly the checks it targets, and nothing is left on the machine
after ``down``."""

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

LAB = "supervision-snmp"


def test_reference_solution_gets_full_marks_and_leaves_nothing(lab_env: LabEnv) -> None:
    # the instance runs the grader agent too: graded in-process, then through the agent (same verdicts)
    _, _, run = full_marks_both_ways(lab_env, LAB, "supref", seed=31, wait=10, candidate="Alice Martin")
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
    # every notification the helpdesk credited came in through mon's own bridge port
    witnesses = [e for e in run.evidence.values() if e.meta.get("phase") == "witness"]
    assert len(witnesses) == 3 and all(e.ok and e.parsed["opens"] for e in witnesses)
    # the probes' addresses are drawn per instance (not announced), the helpdesk's apart from them
    params = run.info.params
    assert 100 <= int(params["probe_a"]) <= 199 < 200 <= int(params["helpdesk_host"]) <= 249
    down_leaves_nothing(lab_env, "supref")


@pytest.mark.parametrize("variant,declared", lab_variants(LAB))
def test_faulty_variant_fails_exactly_what_it_declares(lab_env: LabEnv, variant: str,
                                                       declared: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"sup-{variant}"[:31], variant, declared,
                                   seed=32, wait=10)


@pytest.mark.parametrize("cheat,targeted", lab_cheats(LAB))
def test_cheat_fails_what_it_targets(lab_env: LabEnv, cheat: str, targeted: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"supc-{cheat}"[:31], cheat, targeted, seed=33, wait=10)
