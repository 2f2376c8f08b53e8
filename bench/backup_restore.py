"""Benchmark of the backup-restore lab on the netns provider. Prints one JSON object.

Measures, in one run on this machine: time of `up` (nodes, the set-up playbook generating
the business data, and the baseline manifest); time to apply the reference solution (restic
repository, scripts, cron, first backup); time to grade, per check, with the restore test's
measured RTO and the bytes seen by the LAN capture; time to `down`; memory (PSS) of the
instance before and after the solution. Nothing here asserts a target (timings vary with load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LABKIT_HOME", "/var/tmp/labkit-bench-backup")
os.environ.setdefault("LABKIT_RUN_DIR", "/run/labkit-bench-backup")
os.environ.setdefault("LABKIT_PROJECT", str(PROJECT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ns_inodes, pss_kib, timed  # noqa: E402
from labkit.adapters.storage.runs import open_run  # noqa: E402
from labkit.settings import load_settings  # noqa: E402
from labkit.usecases import lifecycle  # noqa: E402
from labkit.usecases.grade import grade  # noqa: E402
from labkit.usecases.solve import solve  # noqa: E402

LAB = "backup-restore"
NAME = "bkbench"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(PROJECT / "out" / "bench-backup-restore.json"))
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    ctx = lifecycle.Context(load_settings())
    for left in ctx.store.names():
        lifecycle.down(ctx, left)
    res: dict[str, Any] = {"lab": LAB, "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                                   "python": sys.version.split()[0]}}
    state, res["up_s"] = timed(lambda: lifecycle.up(ctx, LAB, instance=NAME, seed=a.seed))
    manifest = ctx.store.load_baseline(NAME, "restore-test")
    files = (manifest[0].parsed or {}).get("json", {}) if manifest else {}
    res["business_data"] = {"files": len(files.get("files", {})), "bytes": files.get("bytes")}
    pss, procs = pss_kib(ns_inodes(NAME))
    res["instance_base"] = {"pss_mib": round(pss / 1024, 1), "processes": procs}
    out, _ = timed(lambda: solve(ctx, NAME, wait=0))
    res["solve_playbook_s"] = round(out.duration, 3)
    res["up_plus_solve_s"] = round(res["up_s"] + out.duration, 3)
    pss, procs = pss_kib(ns_inodes(NAME))
    res["instance_solved"] = {"pss_mib": round(pss / 1024, 1), "processes": procs}
    summary, res["grade_s"] = timed(lambda: grade(ctx, NAME))
    res["grade_score"] = f"{summary.score}/{summary.max_score}"
    res["grade_per_check_s"] = {c.id: c.duration_s for c in summary.checks}
    run = open_run(ctx.settings.runs, summary.run_id)
    verify = next((e for e in run.evidence.values() if e.meta.get("phase") == "verify"), None)
    if verify is not None:
        res["restore_test"] = {k: verify.meta.get(k) for k in ("files_checked", "mismatched", "missing", "rto_s")}
    cap = next((e for e in run.evidence.values() if e.kind == "capture"), None)
    if cap is not None and isinstance(cap.parsed, dict):
        res["capture"] = {k: cap.parsed.get(k) for k in ("frames", "bytes", "stopped_by")}
        res["capture"]["duration_s"] = round(cap.duration, 3)
    _, res["down_s"] = timed(lambda: lifecycle.down(ctx, NAME))
    leaks = [p.name for p in Path("/run/netns").glob(f"lk-{NAME}.*")]
    res["leftover_namespaces"] = leaks
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0 if not leaks and summary.score == summary.max_score else 1


if __name__ == "__main__":
    raise SystemExit(main())
