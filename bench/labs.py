"""Benchmark of the competency labs on the netns provider; `make bench-labs` runs them all.

For each lab, in one run on this machine: time of `up` (nodes and the lab's set-up playbook);
time to apply the reference solution (Ansible) and for the lab to be ready; memory (PSS) of
the instance before and after the solution, and of the lab's main daemons; grading, in total
and per check, with what the lab's own evidence measured (restore time, alert delays...);
time of `down`, and the namespaces left after it (must be none). Prints one JSON object per
lab and writes it to out/bench-<lab>.json. Nothing here asserts a timing: these machines are
noisy, compare figures taken side by side in one run.

Uses its own LABKIT_HOME and run dir, and only ever brings down its own instances
(``bench-<lab>``).

    python bench/labs.py                      # every lab below
    python bench/labs.py vpn-site-to-site     # one lab
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LABKIT_HOME", "/var/tmp/labkit-bench-labs")
os.environ.setdefault("LABKIT_RUN_DIR", "/run/labkit-bench-labs")
os.environ.setdefault("LABKIT_PROJECT", str(PROJECT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ns_inodes, pss_by_comm, pss_kib, timed, upper_kib  # noqa: E402
from labkit.adapters.storage.runs import StoredRun, open_run  # noqa: E402
from labkit.settings import load_settings  # noqa: E402
from labkit.usecases import lifecycle  # noqa: E402
from labkit.usecases.grade import grade  # noqa: E402
from labkit.usecases.solve import solve  # noqa: E402


# -- what each lab's own evidence measured --------------------------------------------------
def _backup_extras(run: StoredRun) -> dict[str, Any]:
    out: dict[str, Any] = {}
    verify = next((e for e in run.evidence.values() if e.meta.get("phase") == "verify"), None)
    if verify is not None:
        out["restore_test"] = {k: verify.meta.get(k) for k in ("files_checked", "mismatched", "missing", "rto_s")}
    cap = next((e for e in run.evidence.values() if e.kind == "capture"), None)
    if cap is not None and isinstance(cap.parsed, dict):
        out["capture"] = {k: cap.parsed.get(k) for k in ("frames", "bytes", "stopped_by")}
        out["capture"]["duration_s"] = round(cap.duration, 3)
    return out


def _supervision_extras(run: StoredRun) -> dict[str, Any]:
    keys = ("detection_delay_s", "notified_delay_s", "resolution_notified_delay_s")
    return {"alert_delays_s": {r["alert"]: {k: r[k] for k in keys} for r in run.artifacts.get("alert-timeline", [])}}


@dataclass(frozen=True)
class LabBench:
    lab: str
    daemons: frozenset[str]  # process names (comm, cut at 15 characters) of the lab's main daemons
    wait: float = 10  # how long solve waits for the lab to be ready
    extras: Callable[[StoredRun], dict[str, Any]] = field(default=lambda run: {})
    targets: dict[str, float] = field(default_factory=dict)  # printed next to the figures, never asserted


LABS = {
    b.lab: b for b in (
        LabBench("ad-gpo", frozenset({"samba", "smbd", "winbindd"}), targets={"up_plus_solve_s": 30.0}),
        LabBench("backup-restore", frozenset({"sshd", "cron"}), wait=0, extras=_backup_extras),
        LabBench("vpn-site-to-site", frozenset({"wireguard-go", "openvpn"}), wait=30),
        LabBench("supervision-snmp", frozenset({"prometheus", "prometheus-snmp", "prometheus-aler"}),
                 extras=_supervision_extras),
    )
}


def bench_lab(ctx: lifecycle.Context, b: LabBench, seed: int) -> dict[str, Any]:
    name = f"bench-{b.lab}"[:31]
    if name in ctx.store.names():
        lifecycle.down(ctx, name)
    res: dict[str, Any] = {"lab": b.lab, "seed": seed, "targets": b.targets,
                           "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                       "python": sys.version.split()[0], "loadavg_before": os.getloadavg()}}
    try:
        _, res["up_s"] = timed(lambda: lifecycle.up(ctx, b.lab, instance=name, seed=seed))
        inodes = ns_inodes(name)
        pss, procs = pss_kib(inodes)
        res["instance_base"] = {"pss_mib": round(pss / 1024, 1), "processes": procs,
                                "overlay_upper_kib": upper_kib(ctx.settings, name)}
        out, res["solve_total_s"] = timed(lambda: solve(ctx, name, wait=b.wait))
        res["solve_playbook_s"] = round(out.duration, 3)
        res["ready_after_solve_s"] = out.converged_after
        res["up_plus_solve_s"] = round(res["up_s"] + out.duration, 3)
        pss, procs = pss_kib(inodes)
        res["instance_solved"] = {"pss_mib": round(pss / 1024, 1), "processes": procs,
                                  "overlay_upper_kib": upper_kib(ctx.settings, name),
                                  "pss_mib_by_process": pss_by_comm(inodes)}
        pss, procs = pss_kib(inodes, set(b.daemons))
        res["lab_daemons"] = {"names": sorted(b.daemons), "pss_mib": round(pss / 1024, 1), "processes": procs}
        summary, res["grade_s"] = timed(lambda: grade(ctx, name))
        res["grade_score"] = f"{summary.score}/{summary.max_score}"
        res["grade_per_check_s"] = {c.id: c.duration_s for c in summary.checks}
        res.update(b.extras(open_run(ctx.settings.runs, summary.run_id)))
    finally:
        _, res["down_s"] = timed(lambda: lifecycle.down(ctx, name))
    res["leftover_namespaces"] = [p.name for p in Path("/run/netns").glob(f"lk-{name}.*")]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description="Benchmark the competency labs on the netns provider.")
    ap.add_argument("labs", nargs="*", metavar="LAB", help=f"labs to run (default: all of {', '.join(LABS)})")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", default=str(PROJECT / "out"))
    a = ap.parse_args()
    unknown = [lab for lab in a.labs if lab not in LABS]
    if unknown:
        print(f"bench/labs.py: no bench for {', '.join(unknown)}; choose among {', '.join(LABS)}.", file=sys.stderr)
        return 2
    ctx = lifecycle.Context(load_settings())
    ok = True
    for lab in a.labs or LABS:
        res = bench_lab(ctx, LABS[lab], a.seed)
        Path(a.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(a.out_dir) / f"bench-{lab}.json").write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2), flush=True)
        ok = ok and not res["leftover_namespaces"] and res.get("grade_score", "").split("/") == ["100", "100"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
