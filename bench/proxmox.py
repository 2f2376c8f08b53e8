"""Benchmark of the Proxmox provider against fakepve (a fake Proxmox VE API in its own process,
AGPL, test-only: served by tests/adapters/proxmox/fakepve_server.py from the venv of
scripts/fakepve-venv.sh): ``up`` of one lab, and a cohort of N (default 30), with wall time
and the API requests made (total, and by kind: tasks polled, guest agent, SDN, clones, VM
config), the instance's VNets and grader NICs, then ``down``/``cohort down`` (time,
requests). fakepve answers at once (tasks end before the request returns: time_scale 0), so
the figures measure labkit's own work and its request count, not a cluster's: on a real
cluster, clones, starts and boots dominate.

``--containers N`` (default 3): routing-multisite's six nodes as containers, then as VMs,
alternately N times on one fakepve: labkit's own time and requests for each kind.

With ``--netns`` (root, the nodes' image built): ``up``/``down`` of the same lab on netns,
side by side (a netns cohort is bench/cohort.py's job).

Uses private LABKIT_HOMEs in a temporary folder; everything it makes is brought down, also
on error; fakepve is stopped at the end.

    python bench/proxmox.py               # one lab + a cohort of 30
    python bench/proxmox.py -n 10 --netns
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
from labkit.settings import Settings  # noqa: E402
from labkit.usecases import cohort as cohorts  # noqa: E402
from labkit.usecases import lifecycle  # noqa: E402
from tests.adapters.proxmox.conftest import LAB_ID, make_project, serving_fakepve, venv_python  # noqa: E402


def kinds(requests: list[list[str]]) -> dict[str, int]:
    out: collections.Counter[str] = collections.Counter()
    for method, path in requests:
        if "/tasks/" in path:
            out["task polls"] += 1
        elif "/agent/" in path:
            out["guest agent"] += 1
        elif "/sdn" in path:
            out["sdn"] += 1
        elif path.endswith("/clone"):
            out["clone"] += 1
        elif path.endswith("/config"):
            out["vm config"] += 1
        elif "/status/" in path or "/snapshot" in path:
            out["power+snapshot"] += 1
        elif method == "DELETE" and ("/qemu/" in path or "/lxc/" in path):
            out["vm destroy"] += 1
        else:
            out["other"] += 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def measured(server: Any, fn: Any) -> tuple[Any, dict[str, Any]]:
    server.control("requests", clear=True)
    t0 = time.perf_counter()
    out = fn()
    wall = round(time.perf_counter() - t0, 3)
    reqs = server.control("requests")
    return out, {"wall_s": wall, "requests": len(reqs), "by_kind": kinds(reqs)}


def bench_proxmox(n: int, parallel: int, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with serving_fakepve(venv_python()) as server:
        home = tmp / "pve-home"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        server.write_config(home, mgmt_cidr="127.88.0.0/16", agent_port=closed_port, sdn_timeout=120.0,
                            poll_interval=0.05)
        server.control("add_template", name="lk-tpl-two-sites")
        os.environ["LABKIT_PVE_TOKEN_SECRET"] = server.token_secret
        os.environ["LABKIT_HOME"] = str(home)
        project = make_project(tmp / "pve")
        os.environ["LABKIT_PROJECT"] = str(project)
        ctx = lifecycle.Context(Settings(home=home, run_dir=tmp / "pve-run", project=project))
        try:
            _, result["up_one"] = measured(server, lambda: lifecycle.up(ctx, LAB_ID, instance="bp-one", seed=1,
                                                                        provider="proxmox"))
            # the instance's shape as fakepve holds it: one VNet per LAN member and per link half,
            # the grader guest's NICs (management + one per VNet)
            st = server.state()
            result["up_one"]["vnets"] = sum(1 for c in st["vnets"].values() if c["alias"].startswith("lk-bp-one:"))
            grader = next(v for v in st["vms"] if v["name"] == "lk-bp-one-grader")
            result["up_one"]["grader_nics"] = sum(1 for k in grader["config"] if k[:3] == "net" and k[3:].isdigit())
            _, result["down_one"] = measured(server, lambda: lifecycle.down(ctx, "bp-one"))
            roster = tmp / "roster.txt"
            roster.write_text("".join(f"Candidate {i:02d}\n" for i in range(1, n + 1)), encoding="utf-8")
            server.control("clone_stats", reset=True)
            made, result[f"cohort_up_{n}"] = measured(server, lambda: cohorts.cohort_up(
                ctx, LAB_ID, roster, name="bpc", seed=2, parallel=parallel, provider="proxmox"))
            result[f"cohort_up_{n}"]["seats_up"] = sum(s.status == "up" for s in made.seats)
            # clone requests in flight at once (bound: proxmox.toml parallel, per cluster; at
            # time_scale 0 fakepve ends each clone within its request, so this is usually 1)
            result[f"cohort_up_{n}"]["clones_max_in_flight"] = server.control("clone_stats")["max"]
            result[f"cohort_up_{n}"]["requests_per_seat"] = round(result[f"cohort_up_{n}"]["requests"] / n, 1)
            _, result[f"cohort_down_{n}"] = measured(server, lambda: cohorts.cohort_down(ctx, "bpc"))
        finally:
            for name in ["bp-one", *(f"bpc-{i:02d}" for i in range(1, n + 1))]:
                if ctx.store.exists(name) or server.leftovers(name):
                    try:
                        lifecycle.down(ctx, name)
                    except Exception as exc:  # noqa: BLE001 - report and go on cleaning
                        print(f"could not bring {name} down: {exc}", file=sys.stderr)
        left = [x for name in ["bp-one", *(f"bpc-{i:02d}" for i in range(1, n + 1))]
                for x in server.leftovers(name)]
        result["left_in_fakepve"] = left
    return result


def bench_containers(tmp: Path, rounds: int) -> dict[str, Any]:
    """routing-multisite (six nodes, the real lab) brought up and down on one fakepve, its
    nodes as containers (the topology's ``container: true``) then as VMs (``containers =
    false``), alternately ``rounds`` times: labkit's own time and requests for each kind."""
    out: dict[str, Any] = {"containers": [], "vms": []}
    with serving_fakepve(venv_python()) as server:
        home = tmp / "ct-home"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        server.control("add_ct_template", name="lk-tpl-ct-three-sites")
        server.control("add_template", name="lk-tpl-three-sites")
        os.environ["LABKIT_PVE_TOKEN_SECRET"] = server.token_secret
        os.environ["LABKIT_HOME"] = str(home)
        os.environ["LABKIT_PROJECT"] = str(PROJECT)
        ctx = lifecycle.Context(Settings(home=home, run_dir=tmp / "ct-run", project=PROJECT))
        names = []
        try:
            for r in range(rounds):
                for kind, on in (("containers", True), ("vms", False)):
                    server.write_config(home, mgmt_cidr="127.88.0.0/16", agent_port=closed_port,
                                        sdn_timeout=120.0, poll_interval=0.05, containers=on)
                    name = f"bk-{kind[:2]}{r}"
                    names.append(name)
                    _, up = measured(server, lambda n=name: lifecycle.up(ctx, "routing-multisite", instance=n,
                                                                         seed=7, provider="proxmox"))
                    _, down = measured(server, lambda n=name: lifecycle.down(ctx, n))
                    out[kind].append({"up": up, "down": down})
        finally:
            for name in names:
                if ctx.store.exists(name) or server.leftovers(name):
                    try:
                        lifecycle.down(ctx, name)
                    except Exception as exc:  # noqa: BLE001 - report and go on cleaning
                        print(f"could not bring {name} down: {exc}", file=sys.stderr)
            out["left_in_fakepve"] = [x for name in names for x in server.leftovers(name)]
    for kind in ("containers", "vms"):
        runs = out[kind]
        out[f"{kind}_median"] = {
            step: {"wall_s": sorted(r[step]["wall_s"] for r in runs)[len(runs) // 2],
                   "requests": runs[0][step]["requests"]} for step in ("up", "down")}
    return out


def bench_netns(tmp: Path) -> dict[str, Any]:
    home = tmp / "netns-home"
    run = Path(f"/run/labkit-bench-pv-{os.getpid()}")
    project = make_project(tmp / "netns")
    ctx = lifecycle.Context(Settings(home=home, run_dir=run, project=project))
    os.environ["LABKIT_HOME"], os.environ["LABKIT_RUN_DIR"] = str(home), str(run)
    out: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        lifecycle.up(ctx, LAB_ID, instance="bn-one", seed=1, provider="netns")
        out["up_one_wall_s"] = round(time.perf_counter() - t0, 3)
    finally:
        t0 = time.perf_counter()
        if ctx.store.exists("bn-one"):
            lifecycle.down(ctx, "bn-one")
        out["down_one_wall_s"] = round(time.perf_counter() - t0, 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=30, help="seats of the cohort (default 30)")
    ap.add_argument("--parallel", type=int, default=6, help="cohort launch bound (default 6)")
    ap.add_argument("--netns", action="store_true", help="also up/down the same lab on netns (root)")
    ap.add_argument("--containers", type=int, default=3, metavar="ROUNDS",
                    help="routing-multisite with container nodes vs VM nodes, ROUNDS each (default 3; 0: skip)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lk-bench-pv-"))
    try:
        result: dict[str, Any] = {"machine": platform.node(), "cpus": os.cpu_count(), "lab": LAB_ID,
                                  "proxmox (fakepve, time_scale 0)": bench_proxmox(args.n, args.parallel, tmp)}
        if args.containers:
            result["containers vs VMs (fakepve, routing-multisite)"] = bench_containers(tmp, args.containers)
        if args.netns:
            result["netns"] = bench_netns(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
