"""The backup-restore lab end to end on the netns provider: the reference solution gets full
marks with a proven restore in its evidence, the data is left as it was, every faulty
variant and every cheat fails exactly the checks it declares, and nothing is left after
``down``."""

from __future__ import annotations

import pytest

from graders.backup import manifest
from labkit.adapters.storage.runs import open_run
from labkit.domain.report import render_html, render_json
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context, up
from labkit.usecases.solve import solve
from tests.agent.lab_agent import same_verdicts_through_the_agent
from tests.conftest import LabEnv, down_leaves_nothing, lab_cheats, lab_variants, variant_fails_what_it_declares

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "backup-restore"


def _manifest(ctx: Context, name: str, root: str) -> dict[str, str]:
    """The data's sha256 manifest, read with the grader's own code (not the node's python3)."""
    state = ctx.store.load(name)
    with ctx.provider(state.provider).node_fs(state, "srv1") as fs:
        files: dict[str, str] = manifest(fs, root)["files"]
    return files


def test_reference_solution_gets_full_marks_and_a_proven_restore(lab_env: LabEnv) -> None:
    ctx = Context(lab_env.settings)
    state = up(ctx, LAB, instance="bkref", seed=31, candidate="Claire Dubois", vantage="agent")
    data_dir = state.plan.params["data_dir"]
    baseline = ctx.store.load_baseline("bkref", "restore-test")
    assert len(baseline) == 1 and len(baseline[0].parsed["json"]["files"]) > 200
    assert any(f.endswith(".sql") for f in baseline[0].parsed["json"]["files"])
    solve(ctx, "bkref", wait=0)
    summary = grade(ctx, "bkref", vantage="inprocess")
    bad = {c.id: c.message.en for c in summary.checks if c.status != "pass"}
    assert bad == {}
    assert summary.score == summary.max_score == 100
    # the same instance graded through its grader agent: the same verdict for every check
    same_verdicts_through_the_agent(ctx, "bkref", summary)
    # the grader undid its simulated ransomware: the data is exactly what `up` recorded
    assert _manifest(ctx, "bkref", data_dir) == baseline[0].parsed["json"]["files"]
    run = open_run(lab_env.settings.runs, summary.run_id)
    assert {e.kind for e in run.evidence.values()} >= {"exec", "capture", "fault", "ssh"}
    verify = next(e for e in run.evidence.values() if e.meta.get("phase") == "verify")
    assert verify.meta["files_checked"] == len(baseline[0].parsed["json"]["files"])
    assert verify.meta["mismatched"] == 0 and verify.meta["missing"] == 0 and verify.meta["rto_s"] > 0
    assert verify.meta["proofs"] == verify.meta["proofs_restored"] == 2
    # the probe's address is drawn per instance, never the .250 the brief once announced
    vantage = state.plan.vantage_point("v-lan")
    assert vantage is not None and not vantage.ip.endswith(".250")
    assert vantage.ip.endswith(f".{state.plan.params['probe_lan']}")
    secrets = [str(state.plan.params[k]) for k in ("marker", "repo_password", "legacy_password")]
    for ev in run.evidence.values():
        text = ev.model_dump_json()
        assert not [s for s in secrets if s in text], ev.id
    down_leaves_nothing(lab_env, "bkref")
    # the report shows the restore test from the stored run alone, after the lab is gone
    report = render_json(run, "en")
    restore = next(c for c in report["checks"] if c["id"] == "restore-test")
    assert restore["faults"] and "restored at" in restore["faults"][0]
    assert any("files checked:" in e["excerpt"]["text"] and "time to restore (RTO)" in e["excerpt"]["text"]
               for e in restore["evidence"])
    html = render_html(run, "fr")
    assert "Claire Dubois" in html and "RTO" in html


@pytest.mark.parametrize("variant,declared", lab_variants(LAB))
def test_faulty_variant_fails_exactly_what_it_declares(lab_env: LabEnv, variant: str,
                                                       declared: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"bkv-{variant}"[:31], variant, declared,
                                   seed=32, wait=0)


@pytest.mark.parametrize("cheat,targeted", lab_cheats(LAB))
def test_cheat_fails_what_it_targets(lab_env: LabEnv, cheat: str, targeted: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"bkc-{cheat}"[:31], cheat, targeted, seed=33, wait=0)
