"""The backup-restore lab end to end on the netns provider: the reference solution gets full
marks with a proven restore in its evidence, the data is left as it was, every faulty
variant fails exactly the checks it declares, and nothing is left after ``down``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from graders.backup import MANIFEST_PY
from labkit.adapters.storage.runs import open_run
from labkit.domain.report import render_html, render_json
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context, down, exec_in, load_lab_checked, up
from labkit.usecases.solve import solve
from tests.conftest import LabEnv, leftovers, namespace_inodes

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "backup-restore"


def _variants() -> list[tuple[str, frozenset[str]]]:
    from labkit.settings import load_settings

    lab = load_lab_checked(Context(load_settings()), LAB)
    return [(v.id, frozenset(v.fails)) for v in lab.spec.variants]


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def _leaks(lab_env: LabEnv, name: str, inodes: set[int], down_started: float) -> list[str]:
    """leftovers(), minus processes started after ``down`` began: namespace inode numbers are
    reused by the kernel, so a namespace made later (another test, another lab) can carry one
    of the old numbers; a process born after ``down`` started cannot be this instance's."""
    tick = os.sysconf("SC_CLK_TCK")
    found = []
    for item in leftovers(lab_env.settings, name, inodes):
        if item.startswith("process "):
            try:
                stat = Path(f"/proc/{item.split()[1]}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone
            if int(stat[19]) / tick > down_started:
                continue
        found.append(item)
    return found


def _manifest(ctx: Context, name: str, root: str) -> dict[str, str]:
    res = exec_in(ctx, name, "srv1", ["python3", "-c", MANIFEST_PY, root], timeout=60)
    assert res.rc == 0, res.stderr
    files: dict[str, str] = json.loads(res.stdout)["files"]
    return files


def test_reference_solution_gets_full_marks_and_a_proven_restore(lab_env: LabEnv) -> None:
    ctx = Context(lab_env.settings)
    state = up(ctx, LAB, instance="bkref", seed=31, candidate="Claire Dubois")
    data_dir = state.plan.params["data_dir"]
    baseline = ctx.store.load_baseline("bkref", "restore-test")
    assert len(baseline) == 1 and len(baseline[0].parsed["json"]["files"]) > 200
    assert any(f.endswith(".sql") for f in baseline[0].parsed["json"]["files"])
    solve(ctx, "bkref", wait=0)
    summary = grade(ctx, "bkref")
    bad = {c.id: c.message.en for c in summary.checks if c.status != "pass"}
    assert bad == {}
    assert summary.score == summary.max_score == 100
    # the grader undid its simulated ransomware: the data is exactly what `up` recorded
    assert _manifest(ctx, "bkref", data_dir) == baseline[0].parsed["json"]["files"]
    run = open_run(lab_env.settings.runs, summary.run_id)
    assert {e.kind for e in run.evidence.values()} >= {"exec", "capture", "fault", "ssh"}
    verify = next(e for e in run.evidence.values() if e.meta.get("phase") == "verify")
    assert verify.meta["files_checked"] == len(baseline[0].parsed["json"]["files"])
    assert verify.meta["mismatched"] == 0 and verify.meta["missing"] == 0 and verify.meta["rto_s"] > 0
    secrets = [str(state.plan.params[k]) for k in ("marker", "repo_password", "legacy_password")]
    for ev in run.evidence.values():
        text = ev.model_dump_json()
        assert not [s for s in secrets if s in text], ev.id
    inodes = namespace_inodes("bkref")
    t_down = _uptime()
    down(ctx, "bkref")
    assert _leaks(lab_env, "bkref", inodes, t_down) == []
    # the report shows the restore test from the stored run alone, after the lab is gone
    report = render_json(run, "en")
    restore = next(c for c in report["checks"] if c["id"] == "restore-test")
    assert restore["faults"] and "restored at" in restore["faults"][0]
    assert any("files checked:" in e["excerpt"]["text"] and "time to restore (RTO)" in e["excerpt"]["text"]
               for e in restore["evidence"])
    html = render_html(run, "fr")
    assert "Claire Dubois" in html and "RTO" in html


@pytest.mark.parametrize("variant,declared", _variants(), ids=[v for v, _ in _variants()])
def test_faulty_variant_fails_exactly_what_it_declares(lab_env: LabEnv, variant: str,
                                                       declared: frozenset[str]) -> None:
    ctx = Context(lab_env.settings)
    name = f"bkv-{variant}"[:31]
    up(ctx, LAB, instance=name, seed=32)
    solve(ctx, name, variant=variant, wait=0)
    summary = grade(ctx, name)
    failed = {c.id for c in summary.checks if c.status == "fail"}
    errors = {c.id: c.message.en for c in summary.checks if c.status == "error"}
    assert errors == {}
    assert failed == declared, {c.id: c.message.en for c in summary.checks}
    inodes = namespace_inodes(name)
    t_down = _uptime()
    down(ctx, name)
    assert _leaks(lab_env, name, inodes, t_down) == []
