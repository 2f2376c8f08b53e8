"""Benchmark of the ad-gpo lab on the netns provider. Prints one JSON object.

Measures, in one run on this machine: time to `up` (nodes + the set-up playbook that writes
the CSV); time to apply the reference solution (domain provisioning, import, member join,
shares, GPO); time to grade; time to `down`; memory (PSS) of the instance before and after
the solution, with the share of the domain controller's samba. Issue 3's target (up +
reference solution under 30 s) is printed next to the figure; nothing here asserts it
(timings vary with load: the domain provisioning alone is CPU-bound, 5 to 15 s here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LABKIT_HOME", "/var/tmp/labkit-bench-ad")
os.environ.setdefault("LABKIT_RUN_DIR", "/run/labkit-bench-ad")
os.environ.setdefault("LABKIT_PROJECT", str(PROJECT))
sys.path.insert(0, str(PROJECT / "bench"))

from _common import ns_inodes, pss_kib, timed, upper_kib  # noqa: E402

from labkit.settings import load_settings  # noqa: E402
from labkit.usecases import lifecycle  # noqa: E402
from labkit.usecases.grade import grade  # noqa: E402
from labkit.usecases.solve import solve  # noqa: E402

LAB = "ad-gpo"
NAME = "benchad"
TARGETS = {"up_plus_solve_s": 30.0}


def pss_by_comm(inodes: set[int]) -> dict[str, float]:
    """PSS (MiB) per process name, for the processes living in these namespaces."""
    out: dict[str, float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino not in inodes:
                continue
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    out[comm] = round(out.get(comm, 0.0) + int(line.split()[1]) / 1024, 1)
        except OSError:
            continue
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(PROJECT / "out" / "bench-ad-gpo.json"))
    a = ap.parse_args()
    ctx = lifecycle.Context(load_settings())
    for left in ctx.store.names():
        lifecycle.down(ctx, left)
    res: dict = {"lab": LAB, "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                        "python": sys.version.split()[0], "loadavg_before": os.getloadavg()},
                 "targets": TARGETS}
    try:
        _, res["up_s"] = timed(lambda: lifecycle.up(ctx, LAB, instance=NAME, seed=a.seed))
        inodes = ns_inodes(NAME)
        pss, procs = pss_kib(inodes)
        res["instance_before_solution"] = {"pss_mib": round(pss / 1024, 1), "processes": procs,
                                           "overlay_upper_kib": upper_kib(ctx.settings, NAME)}
        out, res["solve_total_s"] = timed(lambda: solve(ctx, NAME, wait=10))
        res["solve_playbook_s"] = round(out.duration, 3)
        res["up_plus_solve_s"] = round(res["up_s"] + out.duration, 3)
        pss, procs = pss_kib(inodes)
        res["instance_solved"] = {"pss_mib": round(pss / 1024, 1), "processes": procs,
                                  "overlay_upper_kib": upper_kib(ctx.settings, NAME),
                                  "pss_mib_by_process": pss_by_comm(inodes)}
        summary, res["grade_s"] = timed(lambda: grade(ctx, NAME))
        res["grade_score"] = f"{summary.score}/{summary.max_score}"
        res["grade_per_check_s"] = {c.id: c.duration_s for c in summary.checks}
    finally:
        _, res["down_s"] = timed(lambda: lifecycle.down(ctx, NAME))
    res["leftover_namespaces"] = [p.name for p in Path("/run/netns").glob(f"lk-{NAME}.*")]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0 if not res["leftover_namespaces"] and res.get("grade_score") == "100/100" else 1


if __name__ == "__main__":
    raise SystemExit(main())
