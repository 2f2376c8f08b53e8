"""labkit benchmarks on the netns provider. Prints one JSON object; run with `make bench`.

Measures, in one run on this machine: time from `up` to ready; time to apply the reference
solution and for routing to settle; time to grade; time to `down`; memory (PSS) of one
instance; ten instances up side by side, their PSS, and down. Targets from issue 2 are
printed next to each figure; nothing here asserts them (timings vary with load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LABKIT_HOME", "/var/tmp/labkit-bench")
os.environ.setdefault("LABKIT_RUN_DIR", "/run/labkit-bench")
os.environ.setdefault("LABKIT_PROJECT", str(PROJECT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ns_inodes, pss_kib, timed, upper_kib  # noqa: E402
from labkit.settings import load_settings  # noqa: E402
from labkit.usecases import lifecycle  # noqa: E402
from labkit.usecases.grade import grade  # noqa: E402
from labkit.usecases.solve import solve  # noqa: E402

LAB = "routing-multisite"
TARGETS = {"up_s": 10.0, "up_solve_converge_s": 10.0, "grade_s": 3.0, "down_s": 1.0, "ten_instances_pss_mib": 600}


def bare_namespaces_baseline(count: int = 12) -> dict[str, float]:
    """Baseline for `up`: the same number of bare namespaces and veth pairs made with `ip`
    alone (no mount/UTS namespaces, no daemons), then deleted. Names lkb-base-*, bounded."""
    import subprocess

    names = [f"lkb-base-{i}" for i in range(count)]
    t0 = time.perf_counter()
    try:
        for n in names:
            subprocess.run(["ip", "netns", "add", n], check=True)
        for a, b in zip(names, names[1:], strict=False):
            subprocess.run(["ip", "link", "add", "name", "eth9", "netns", a, "type", "veth",
                            "peer", "name", "eth8", "netns", b], check=True)
        made = time.perf_counter() - t0
    finally:
        t1 = time.perf_counter()
        for n in names:
            subprocess.run(["ip", "netns", "del", n], check=False, capture_output=True)
    return {"create_s": round(made, 3), "delete_s": round(time.perf_counter() - t1, 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=10, help="instances side by side (bounded to 20)")
    ap.add_argument("--out", default=str(PROJECT / "out" / "bench.json"))
    a = ap.parse_args()
    n = max(1, min(a.instances, 20))
    ctx = lifecycle.Context(load_settings())
    for left in ctx.store.names():
        lifecycle.down(ctx, left)
    res: dict = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": sys.version.split()[0]},
                 "targets": TARGETS}
    res["baseline_bare_namespaces"] = bare_namespaces_baseline()
    # one instance, full cycle
    _, res["up_s"] = timed(lambda: lifecycle.up(ctx, LAB, instance="bench", seed=1))
    pss, procs = pss_kib(ns_inodes("bench"))
    res["one_instance_base"] = {"pss_mib": round(pss / 1024, 1), "processes": procs,
                                "overlay_upper_kib": upper_kib(ctx.settings, "bench")}
    out, _ = timed(lambda: solve(ctx, "bench", wait=60))
    res["solve_playbook_s"] = round(out.duration, 3)
    res["converge_after_solve_s"] = out.converged_after
    res["up_solve_converge_s"] = round(res["up_s"] + out.duration + (out.converged_after or 0), 3)
    pss, procs = pss_kib(ns_inodes("bench"))
    res["one_instance_solved"] = {"pss_mib": round(pss / 1024, 1), "processes": procs}
    summary, res["grade_s"] = timed(lambda: grade(ctx, "bench"))
    res["grade_score"] = f"{summary.score}/{summary.max_score}"
    res["grade_per_check_s"] = {c.id: c.duration_s for c in summary.checks}
    _, res["down_s"] = timed(lambda: lifecycle.down(ctx, "bench"))
    # N instances side by side
    names = [f"bench{i:02d}" for i in range(n)]
    t0 = time.perf_counter()
    for i, nm in enumerate(names):
        lifecycle.up(ctx, LAB, instance=nm, seed=100 + i)
    up_all = round(time.perf_counter() - t0, 3)
    inodes: set[int] = set()
    for nm in names:
        inodes |= ns_inodes(nm)
    pss, procs = pss_kib(inodes)
    t0 = time.perf_counter()
    for nm in names:
        lifecycle.down(ctx, nm)
    down_all = round(time.perf_counter() - t0, 3)
    res["many_instances"] = {"count": n, "up_all_s": up_all, "pss_mib": round(pss / 1024, 1), "processes": procs,
                             "down_all_s": down_all, "namespaces": len(inodes)}
    res["ten_instances_pss_mib"] = round(pss / 1024 * 10 / n, 1)
    leaks = [p.name for p in Path("/run/netns").glob("lk-bench*")]
    res["leftover_namespaces"] = leaks
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0 if not leaks else 1


if __name__ == "__main__":
    raise SystemExit(main())
