"""Benchmark of the vpn-site-to-site lab on the netns provider. Prints one JSON object.

Measures, in one run on this machine: `up`; the reference solution (Ansible) and the wait
for routing to settle; grading (per check); memory (PSS) of the instance before and after
solving, and of its VPN daemons; `down`. Uses its own LABKIT_HOME and run dir and instance
name `vpnbench`, and only ever brings that instance down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LABKIT_HOME", "/var/tmp/labkit-bench-vpn")
os.environ.setdefault("LABKIT_RUN_DIR", "/run/labkit-bench-vpn")
os.environ.setdefault("LABKIT_PROJECT", str(PROJECT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ns_inodes, pss_kib, timed  # noqa: E402
from labkit.settings import load_settings  # noqa: E402 - after the environment defaults above
from labkit.usecases import lifecycle  # noqa: E402 - after the environment defaults above
from labkit.usecases.grade import grade  # noqa: E402 - after the environment defaults above
from labkit.usecases.solve import solve  # noqa: E402 - after the environment defaults above

LAB = "vpn-site-to-site"
NAME = "vpnbench"
VPN_COMMS = {"wireguard-go", "openvpn"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(PROJECT / "out" / "bench-vpn.json"))
    a = ap.parse_args()
    ctx = lifecycle.Context(load_settings())
    if NAME in ctx.store.names():
        lifecycle.down(ctx, NAME)
    res: dict = {"lab": LAB, "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                         "python": sys.version.split()[0]}}
    try:
        _, res["up_s"] = timed(lambda: lifecycle.up(ctx, LAB, instance=NAME, seed=1))
        pss, procs = pss_kib(ns_inodes(NAME))
        res["instance_base"] = {"pss_mib": round(pss / 1024, 1), "processes": procs}
        out, _ = timed(lambda: solve(ctx, NAME, wait=30))
        res["solve_playbook_s"] = round(out.duration, 3)
        res["settle_after_solve_s"] = out.converged_after
        pss, procs = pss_kib(ns_inodes(NAME))
        res["instance_solved"] = {"pss_mib": round(pss / 1024, 1), "processes": procs}
        pss, procs = pss_kib(ns_inodes(NAME), VPN_COMMS)
        res["vpn_daemons"] = {"pss_mib": round(pss / 1024, 1), "processes": procs}
        summary, res["grade_s"] = timed(lambda: grade(ctx, NAME))
        res["grade_score"] = f"{summary.score}/{summary.max_score}"
        res["grade_per_check_s"] = {c.id: c.duration_s for c in summary.checks}
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
