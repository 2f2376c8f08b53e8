"""Benchmark of a cohort at exam scale: N candidates (default 30) on one lab (default
routing-multisite), launched and graded in parallel with a bound, on this machine.

Figures, in one run: launch wall time for each launch bound given (``--launch 2,4,6``: one
cohort per bound, each brought down before the next), with per-seat times; memory once the
cohort is up (PSS and RSS of every process living in the cohort's namespaces, plus labkit's
own, read from /proc; MemAvailable before, when up, and after down); time to grade all N with
each grading bound given (``--grade 10,30``, on the last launched cohort); CPU time used
(labkit and its children). The issue's targets are printed next to the figures, never
asserted: this machine is shared, compare figures taken side by side in one run.

Uses its own LABKIT_HOME and run dir, names its cohorts ``bc-*`` and always brings down
every instance it made, also on Ctrl-C or SIGTERM (and at start, those a killed run left).

    python bench/cohort.py                          # 30 seats, launch bound 4, grade bound 30
    python bench/cohort.py -n 30 --launch 2,4,6 --grade 10,30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LABKIT_HOME", "/var/tmp/labkit-bench-cohort")
os.environ.setdefault("LABKIT_RUN_DIR", "/run/labkit-bench-cohort")
os.environ.setdefault("LABKIT_PROJECT", str(PROJECT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ns_inodes  # noqa: E402
from labkit.errors import LabkitError  # noqa: E402
from labkit.usecases import lifecycle  # noqa: E402
from labkit.usecases.cohort import CohortProgress, cohort_down, cohort_grade, cohort_up  # noqa: E402

TARGETS = {"launch_s": 90.0, "grade_all_s": 60.0, "memory_gib": 3.0}
PREFIX = "bc"


def commit() -> str:
    """The labkit commit measured: git's HEAD (with "+dirty" when the tree differs), or
    BENCH_COMMIT for a copy made with 'git archive'."""
    import subprocess

    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        head = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT), "status", "--porcelain", "--untracked-files=no", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def meminfo_kib(key: str = "MemAvailable") -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/meminfo")


def _proc_mem(pid: int | str) -> tuple[int, int]:
    """(PSS, RSS) in KiB of one process."""
    pss = rss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
        elif line.startswith("Rss:"):
            rss = int(line.split()[1])
    return pss, rss


def cohort_memory(instances: list[str]) -> dict[str, Any]:
    """PSS/RSS of every process whose network or mount namespace is one of the cohort's, and
    of this process (labkit); the largest process names by PSS."""
    inodes: set[int] = set()
    for name in instances:
        inodes |= ns_inodes(name)
        run = Path(os.environ["LABKIT_RUN_DIR"]) / name
        if run.is_dir():
            for f in run.iterdir():
                try:
                    inodes.add(os.stat(f).st_ino)
                except OSError:
                    pass
    pss = rss = count = 0
    by_comm: dict[str, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if not any(os.stat(f"/proc/{pid}/ns/{k}").st_ino in inodes for k in ("net", "mnt")):
                continue
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            p, r = _proc_mem(pid)
        except OSError:
            continue
        pss, rss, count = pss + p, rss + r, count + 1
        by_comm[comm] = by_comm.get(comm, 0) + p
    own_pss, own_rss = _proc_mem(os.getpid())
    top = dict(sorted(((c, round(k / 1024, 1)) for c, k in by_comm.items()), key=lambda kv: -kv[1])[:8])
    return {
        "processes": count,
        "cohort_pss_mib": round(pss / 1024, 1), "cohort_rss_mib": round(rss / 1024, 1),
        "labkit_pss_mib": round(own_pss / 1024, 1), "labkit_rss_mib": round(own_rss / 1024, 1),
        "total_pss_gib": round((pss + own_pss) / 1024 / 1024, 3),
        "total_rss_gib": round((rss + own_rss) / 1024 / 1024, 3),
        "pss_by_process_mib": top,
    }


def cpu_s() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


class Recorder:
    """Per-seat step times from the cohort's progress events; a line per failure."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.errors: dict[str, str] = {}

    def __call__(self, ev: CohortProgress) -> None:
        if ev.finished:
            self.seconds[ev.instance] = ev.seconds or 0.0
            if not ev.ok:
                self.errors[ev.instance] = ev.error or ""
                print(f"  {ev.instance}: {ev.phase}: {ev.error}", file=sys.stderr)
            if ev.done % 10 == 0 or ev.done == ev.total:
                print(f"  {ev.done}/{ev.total} ({ev.failed} failed)", file=sys.stderr)


def cleanup(ctx: lifecycle.Context) -> list[str]:
    """Bring down every cohort of this bench (its own home only) and any instance left in it."""
    done = []
    cohorts = ctx.settings.home / "cohorts"
    for f in sorted(cohorts.glob(f"{PREFIX}*.json")) if cohorts.is_dir() else []:
        try:
            cohort_down(ctx, f.stem)
        except LabkitError as exc:
            print(f"cleanup: cohort {f.stem}: {exc}", file=sys.stderr)
        done.append(f.stem)
    for name in ctx.store.names():
        if name.startswith(PREFIX) and name[len(PREFIX):len(PREFIX) + 1].isdigit():
            try:
                lifecycle.down(ctx, name)
            except LabkitError as exc:
                print(f"cleanup: {name}: {exc}", file=sys.stderr)
            done.append(name)
    return done


def solve_some(ctx: lifecycle.Context, names: list[str]) -> dict[str, Any]:
    """Apply the lab's reference solution to these instances, 3 at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from labkit.usecases.solve import solve

    print(f"solving {len(names)} seats", file=sys.stderr)
    t0 = time.monotonic()
    errors: dict[str, str] = {}

    def one(name: str) -> None:
        try:
            solve(ctx, name, wait=60)
        except LabkitError as exc:
            errors[name] = str(exc)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(one, names))
    return {"solved": [n for n in names if n not in errors], "errors": errors,
            "wall_s": round(time.monotonic() - t0, 2)}


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=30, help="candidates (default 30)")
    ap.add_argument("--lab", default="routing-multisite")
    ap.add_argument("--launch", default="4", help="launch bounds to compare, e.g. 2,4,6 (default 4)")
    ap.add_argument("--grade", default="30", help="grading bounds to compare, e.g. 10,30 (default 30); 0: no grading")
    ap.add_argument("--solve", type=int, default=0,
                    help="apply the reference solution to the first K seats before grading (3 at a time), so the "
                         "grading has passing checks to get right under load too (default 0)")
    ap.add_argument("--out", type=Path, default=PROJECT / "out" / "bench-cohort.json")
    args = ap.parse_args()
    if not 1 <= args.n <= 60:
        ap.error("-n must be from 1 to 60")
    launch_bounds = [int(x) for x in args.launch.split(",") if x]
    grade_bounds = [int(x) for x in args.grade.split(",") if x and int(x) > 0]
    signal.signal(signal.SIGTERM, _on_sigterm)

    ctx = lifecycle.Context.default()
    left = cleanup(ctx)
    if left:
        print(f"brought down what an earlier run left: {', '.join(left)}", file=sys.stderr)
    roster = ctx.settings.home / f"roster-{args.n}.txt"
    roster.parent.mkdir(parents=True, exist_ok=True)
    roster.write_text("".join(f"Candidat {i:02d}\n" for i in range(1, args.n + 1)))
    result: dict[str, Any] = {
        "lab": args.lab, "seats": args.n, "commit": commit(), "cpus": os.cpu_count(), "machine": platform.machine(),
        "kernel": platform.release(), "targets": TARGETS, "launch": [], "grade": [],
        "mem_available_start_mib": round(meminfo_kib() / 1024, 1),
    }
    status = 0
    try:
        for i, bound in enumerate(launch_bounds):
            name = f"{PREFIX}{bound}"
            last = i == len(launch_bounds) - 1
            avail0, rec, load0 = meminfo_kib(), Recorder(), os.getloadavg()[0]
            print(f"launching {args.n} seats of {args.lab}, {bound} at a time ({name})", file=sys.stderr)
            c0, t0 = cpu_s(), time.monotonic()
            c = cohort_up(ctx, args.lab, roster, name=name, seed=2026, parallel=bound, on_event=rec)
            wall, cpu = time.monotonic() - t0, cpu_s() - c0
            up_ok = [s.instance for s in c.seats if s.status == "up"]
            time.sleep(3)  # daemons settle before memory is read
            mem = cohort_memory([s.instance for s in c.seats])
            avail1 = meminfo_kib()
            entry: dict[str, Any] = {
                "parallel": bound, "wall_s": round(wall, 2), "cpu_s": round(cpu, 1),
                "load_avg_1min_before": round(load0, 2), "up": len(up_ok), "failed": rec.errors,
                "per_seat_s": spread(list(rec.seconds.values())),
                "per_seat_all_s": {k: round(v, 2) for k, v in sorted(rec.seconds.items())},
                "memory": mem, "mem_available_before_mib": round(avail0 / 1024, 1),
                "mem_available_up_mib": round(avail1 / 1024, 1),
                "mem_available_drop_mib": round((avail0 - avail1) / 1024, 1),
                "target_met": wall < TARGETS["launch_s"] and not rec.errors,
            }
            result["launch"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "per_seat_all_s"}), file=sys.stderr)
            if last and args.solve:
                entry["solve"] = solve_some(ctx, up_ok[:args.solve])
                print(json.dumps(entry["solve"]), file=sys.stderr)
            if last:
                for gbound in grade_bounds:
                    grec = Recorder()
                    print(f"grading {len(up_ok)} seats, {gbound} at a time", file=sys.stderr)
                    c0, t0, load0 = cpu_s(), time.monotonic(), os.getloadavg()[0]
                    g = cohort_grade(ctx, name, parallel=gbound, on_event=grec)
                    gwall, gcpu = time.monotonic() - t0, cpu_s() - c0
                    scores = {s.instance: s.score or "none" for s in g.seats}
                    solved = set(entry.get("solve", {}).get("solved", []))
                    gentry = {
                        "parallel": gbound, "wall_s": round(gwall, 2), "cpu_s": round(gcpu, 1),
                        "load_avg_1min_before": round(load0, 2), "graded": len(grec.seconds) - len(grec.errors),
                        "failed": grec.errors, "per_seat_s": spread(list(grec.seconds.values())),
                        "scores_solved": sorted({v for k, v in scores.items() if k in solved}),
                        "scores_unsolved": sorted({v for k, v in scores.items() if k not in solved}),
                        "target_met": gwall < TARGETS["grade_all_s"] and not grec.errors,
                    }
                    result["grade"].append(gentry)
                    print(json.dumps(gentry), file=sys.stderr)
            t0 = time.monotonic()
            d = cohort_down(ctx, name)
            entry["down_s"] = round(time.monotonic() - t0, 2)
            entry["down_left"] = [s.instance for s in d.seats if s.status != "removed"]
            entry["mem_available_after_down_mib"] = round(meminfo_kib() / 1024, 1)
            if entry["down_left"]:
                status = 1
    except KeyboardInterrupt:
        print("interrupted: bringing everything down", file=sys.stderr)
        status = 130
    except LabkitError as exc:  # an interrupted launch ends as a UserError: same clean-up
        print(f"stopped: {exc} Bringing everything down.", file=sys.stderr)
        result["error"] = str(exc)
        status = 130 if str(exc).startswith("interrupted") else 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up itself is not interrupted
        cleanup(ctx)
        leftover = [n for n in ctx.store.names() if n.startswith(PREFIX) and n[len(PREFIX):][:1].isdigit()]
        stray = [p.name for p in Path("/run/netns").glob(f"lk-{PREFIX}[0-9]*")] if Path("/run/netns").is_dir() else []
        result["left_after_cleanup"] = leftover + stray
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for e in result["launch"]:
        mem = e["memory"]["total_pss_gib"]
        e["memory_target_met"] = mem < TARGETS["memory_gib"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if result["left_after_cleanup"]:
        print(f"LEFT BEHIND: {result['left_after_cleanup']}", file=sys.stderr)
        status = status or 1
    return status


if __name__ == "__main__":
    sys.exit(main())
