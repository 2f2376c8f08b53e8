"""The grader's ground in labkit's process against the grader agent over SSH, side by side in
one run (``vantage: inprocess`` vs ``vantage: agent`` on the netns provider):

1. N ICMP pings from a vantage point to another (one instance of this script's own: a LAN
   segment and two vantage points, no node), each ground interleaved with the other so that
   machine noise hits both alike; plus the cost of opening the agent ground (socket in
   ``lk-<name>.c``, SSH handshake, agent start, hello);
2. optionally (``--lab LAB``), one grading of one lab with the reference solution applied,
   in-process then through the agent (a few minutes: the lab is brought up and down).

Bounded: N <= 500 pings of 1 echo each, one grading per ground. Uses its own LABKIT_HOME and
run dir and only brings down its own instances. Prints a table and writes
out/bench-agent.json. Asserts nothing about time.

    python bench/agent.py [--pings N] [--lab routing-multisite]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LABKIT_HOME", "/var/tmp/labkit-bench-agent")
os.environ.setdefault("LABKIT_RUN_DIR", f"/run/labkit-bench-agent-{os.getpid()}")

from labkit.adapters.netns.provider import NetnsProvider  # noqa: E402
from labkit.adapters.probes import registry  # noqa: E402
from labkit.adapters.storage.state import utcnow  # noqa: E402
from labkit.models.instance import InstancePlan, InstanceState, VantagePlan  # noqa: E402
from labkit.models.probe import ProbeCall  # noqa: E402
from labkit.settings import load_settings  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
MAX_PINGS = 500


def stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": round(statistics.median(xs) * 1000, 2),
            "p95_ms": round(xs[max(0, int(len(xs) * 0.95) - 1)] * 1000, 2), "total_s": round(sum(xs), 3)}


def pings(n: int) -> dict[str, Any]:
    registry.load_all()
    prov = NetnsProvider(load_settings())
    name = "bag" + secrets.token_hex(3)
    now = utcnow()
    plan = InstancePlan(name=name, lab_id="bench", lab_dir="bench", topology_id="bench", seed=1, params={},
                        nodes=[], segments={"lan": []}, links={},
                        vantage=[VantagePlan(name="va", segment="lan", address="10.78.0.1/24"),
                                 VantagePlan(name="vb", segment="lan", address="10.78.0.2/24")])
    state = InstanceState(name=name, provider="netns", phase="up", created_at=now, updated_at=now, plan=plan,
                          ssh_key="/nonexistent", vantage="agent")
    call = ProbeCall(probe="icmp.ping", args=["10.78.0.2"], kwargs={"source": "va", "count": 1, "timeout": 1.0})
    times: dict[str, list[float]] = {"inprocess": [], "agent": []}
    lost = {"inprocess": 0, "agent": 0}
    try:
        t0 = time.perf_counter()
        prov.create(state)
        create_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        agent = prov.ground(state, "agent")
        open_s = time.perf_counter() - t0
        inproc = prov.ground(state, "inprocess")
        try:
            for i in range(n):
                for mode, ground in (("inprocess", inproc), ("agent", agent)):
                    t0 = time.perf_counter()
                    ev = ground.run("va", call, f"p{i}", 5.0)
                    times[mode].append(time.perf_counter() - t0)
                    lost[mode] += 0 if ev.ok and ev.parsed["received"] == 1 else 1
        finally:
            agent.close()
            inproc.close()
    finally:
        prov.destroy(name, state)
    return {"create_with_agent_s": round(create_s, 3), "open_agent_ground_s": round(open_s, 3),
            "inprocess": {**stats(times["inprocess"]), "lost": lost["inprocess"]},
            "agent": {**stats(times["agent"]), "lost": lost["agent"]}}


def grading(lab: str) -> dict[str, Any]:
    from labkit.usecases.grade import grade
    from labkit.usecases.lifecycle import Context, down, up
    from labkit.usecases.solve import solve

    ctx = Context(load_settings())
    name = "bga" + secrets.token_hex(3)
    out: dict[str, Any] = {"lab": lab}
    try:
        t0 = time.perf_counter()
        up(ctx, lab, instance=name, seed=7, vantage="agent")
        solve(ctx, name, wait=60)
        out["up_and_solve_s"] = round(time.perf_counter() - t0, 1)
        for mode in ("inprocess", "agent"):
            t0 = time.perf_counter()
            s = grade(ctx, name, vantage=mode)
            out[mode] = {"grade_s": round(time.perf_counter() - t0, 2), "score": s.score, "max": s.max_score,
                         "verdicts": {c.id: [c.status, c.points] for c in s.checks}}
        out["same_verdicts"] = out["inprocess"]["verdicts"] == out["agent"]["verdicts"]
    finally:
        if ctx.store.exists(name):
            down(ctx, name)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="In-process ground vs grader agent, side by side.")
    ap.add_argument("--pings", type=int, default=100, help=f"pings per ground (at most {MAX_PINGS})")
    ap.add_argument("--lab", help="also grade this lab once each way (brings it up and down)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/agent.py needs root (network namespaces).", file=sys.stderr)
        return 2
    if not 1 <= args.pings <= MAX_PINGS:
        print(f"--pings must be between 1 and {MAX_PINGS}.", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"pings": pings(args.pings)}
    if args.lab:
        result["grading"] = grading(args.lab)
    p = result["pings"]
    rows = [("", "in-process", "agent"),
            ("ping median (ms)", p["inprocess"]["median_ms"], p["agent"]["median_ms"]),
            ("ping p95 (ms)", p["inprocess"]["p95_ms"], p["agent"]["p95_ms"]),
            (f"{args.pings} pings total (s)", p["inprocess"]["total_s"], p["agent"]["total_s"]),
            ("pings lost", p["inprocess"]["lost"], p["agent"]["lost"]),
            ("open ground (s)", "-", p["open_agent_ground_s"])]
    if "grading" in result:
        g = result["grading"]
        rows += [(f"grade {g['lab']} (s)", g["inprocess"]["grade_s"], g["agent"]["grade_s"]),
                 ("score", f"{g['inprocess']['score']}/{g['inprocess']['max']}",
                  f"{g['agent']['score']}/{g['agent']['max']}"),
                 ("same verdict per check", "", "yes" if g["same_verdicts"] else "NO")]
    for r in rows:
        print(f"{r[0]:<28} {r[1]!s:>12} {r[2]!s:>12}")
    out = PROJECT / "out"
    out.mkdir(exist_ok=True)
    (out / "bench-agent.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
