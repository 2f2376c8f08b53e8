"""Benchmark of the supervision-snmp lab on the netns provider. Prints one JSON object.

Measures, in one run on this machine: `up`; the reference solution (Ansible); grading (per
check, with the three alerts the grader provokes and their measured detection delays);
memory (PSS) of the instance before and after solving, and of the monitoring stack
(Prometheus, snmp_exporter, Alertmanager); `down`. Uses its own LABKIT_HOME and run dir and
instance name `supbench`, and only ever brings that instance down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LABKIT_HOME", "/var/tmp/labkit-bench-sup")
os.environ.setdefault("LABKIT_RUN_DIR", "/run/labkit-bench-sup")
os.environ.setdefault("LABKIT_PROJECT", str(PROJECT))

from labkit.adapters.storage.runs import open_run  # noqa: E402 - after the environment defaults above
from labkit.settings import load_settings  # noqa: E402 - after the environment defaults above
from labkit.usecases import lifecycle  # noqa: E402 - after the environment defaults above
from labkit.usecases.grade import grade  # noqa: E402 - after the environment defaults above
from labkit.usecases.solve import solve  # noqa: E402 - after the environment defaults above

LAB = "supervision-snmp"
NAME = "supbench"
MONITORING_COMMS = {"prometheus", "prometheus-snmp", "prometheus-aler"}  # comm is cut at 15 characters


def pss_kib(inodes: set[int], comms: set[str] | None = None) -> tuple[int, int]:
    """Sum of PSS (KiB) and count of the processes living in these namespaces (optionally
    only those whose command name is in ``comms``)."""
    total, count = 0, 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino not in inodes:
                continue
            if comms is not None and Path(f"/proc/{pid}/comm").read_text().strip() not in comms:
                continue
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    count += 1
        except OSError:
            continue
    return total, count


def ns_inodes(name: str) -> set[int]:
    return {os.stat(p).st_ino for p in Path("/run/netns").glob(f"lk-{name}.*")}


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(PROJECT / "out" / "bench-supervision.json"))
    a = ap.parse_args()
    ctx = lifecycle.Context(load_settings())
    if NAME in ctx.store.names():
        lifecycle.down(ctx, NAME)
    res: dict[str, Any] = {"lab": LAB, "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                                   "python": sys.version.split()[0]}}
    try:
        _, res["up_s"] = timed(lambda: lifecycle.up(ctx, LAB, instance=NAME, seed=1))
        pss, procs = pss_kib(ns_inodes(NAME))
        res["instance_base"] = {"pss_mib": round(pss / 1024, 1), "processes": procs}
        out, _ = timed(lambda: solve(ctx, NAME, wait=10))
        res["solve_playbook_s"] = round(out.duration, 3)
        pss, procs = pss_kib(ns_inodes(NAME))
        res["instance_solved"] = {"pss_mib": round(pss / 1024, 1), "processes": procs}
        pss, procs = pss_kib(ns_inodes(NAME), MONITORING_COMMS)
        res["monitoring_stack"] = {"pss_mib": round(pss / 1024, 1), "processes": procs}
        summary, res["grade_s"] = timed(lambda: grade(ctx, NAME))
        res["grade_score"] = f"{summary.score}/{summary.max_score}"
        res["grade_per_check_s"] = {c.id: c.duration_s for c in summary.checks}
        run = open_run(ctx.settings.runs, summary.run_id)
        res["alert_delays_s"] = {
            r["alert"]: {k: r[k] for k in ("detection_delay_s", "notified_delay_s", "resolution_notified_delay_s")}
            for r in run.artifacts.get("alert-timeline", [])}
    finally:
        _, res["down_s"] = timed(lambda: lifecycle.down(ctx, NAME))
    leaks = [p.name for p in Path("/run/netns").glob(f"lk-{NAME}.*")]
    res["leftover_namespaces"] = leaks
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0 if not leaks else 1


if __name__ == "__main__":
    raise SystemExit(main())
