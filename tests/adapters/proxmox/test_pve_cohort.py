"""A 30-candidate cohort on Proxmox (fakepve, its own process) through labkit's cohort use
cases, with one seat's clone failing mid-cohort: that seat fails and is rolled back, the
others come up; cohort down leaves nothing in fakepve."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from labkit.usecases import cohort as cohorts
from labkit.usecases import lifecycle
from tests.adapters.proxmox.conftest import LAB_ID, FakePveServer

SEATS = 30
FAILING = 17


def test_cohort_of_30_with_a_failed_clone(fakepve: FakePveServer, pv_ctx: Any, tmp_path: Path) -> None:
    # 40 VMID blocks for 30 seats: several seats hash to the same first block, and claim it at
    # once (a seat keeps it only if no other pool claims it after its own claim is written)
    # bounds, not expectations: a loaded CI machine must not turn a slow answer into a failed seat
    fakepve.write_config(pv_ctx.settings.home, sdn_timeout=60.0, ready_timeout=60.0, task_timeout=60.0,
                         api_timeout=30.0, mgmt_cidr="127.88.0.0/16", vmid_blocks=40)
    roster = tmp_path / "roster.txt"
    roster.write_text("".join(f"Candidate {i:02d}\n" for i in range(1, SEATS + 1)), encoding="utf-8")
    bad = f"pvc-{FAILING:02d}"
    fakepve.control("fail_clone", name_part=f"lk-{bad}-r2", message="clone failed: got lock timeout")
    fakepve.control("requests", clear=True)
    t0 = time.monotonic()
    result = cohorts.cohort_up(pv_ctx, LAB_ID, roster, name="pvc", seed=42, parallel=6, provider="proxmox")
    elapsed = time.monotonic() - t0
    assert elapsed < 300
    by_instance = {s.instance: s for s in result.seats}
    assert len(by_instance) == SEATS
    failed = [s for s in result.seats if s.status != "up"]
    assert [s.instance for s in failed] == [bad], [s.detail for s in failed][:3]
    assert "clone failed: got lock timeout" in failed[0].detail and "\n" not in failed[0].detail
    assert fakepve.leftovers(bad) == []  # rolled back
    assert not pv_ctx.store.exists(bad)

    st = fakepve.state()
    vms = [v for v in st["vms"] if v["name"].startswith("lk-pvc-")]
    assert len(vms) == (SEATS - 1) * 5 and all(v["status"] == "running" for v in vms)
    ids = [v["vmid"] for v in vms]
    assert len(set(ids)) == len(ids)  # no VMID clash between the parallel seats
    blocks = {v["vmid"] // 100 for v in vms}
    assert len(blocks) == SEATS - 1  # one VMID block per instance
    assert {v["node"] for v in vms} == {"pve1", "pve2", "pve3"}  # spread by free memory
    # the VNets of every seat (4 segment members + 2 link halves), applied; no SDN lock left behind
    applied = [c for c in st["vnets"].values() if c["alias"].startswith("lk-pvc-")]
    assert len(applied) == (SEATS - 1) * 6 and all(c["state"] == "applied" for c in applied)
    assert st["sdn_lock"] is None
    for s in result.seats:
        if s.status == "up":
            assert lifecycle.status(pv_ctx, s.instance).healthy

    down = cohorts.cohort_down(pv_ctx, "pvc")
    assert all(s.status == "removed" for s in down.seats)
    for s in result.seats:
        assert fakepve.leftovers(s.instance) == []
    st = fakepve.state()
    assert not [v for v in st["vms"] if v["name"].startswith("lk-pvc-")]
    assert not [c for c in st["vnets"].values() if c["alias"].startswith("lk-pvc-")]
    assert not [p for p in st["pools"] if p.startswith("lk-pvc-")]


def test_cohort_clones_bounded_by_parallel(fakepve: FakePveServer, pv_ctx: Any, tmp_path: Path) -> None:
    """6 seats brought up 6 at once, each with 5 VMs to clone, and ``parallel = 2`` in
    proxmox.toml: fakepve holds every clone request 0.2 s and counts those in flight; never
    more than 2 at once (the bound holds across the instances of the cohort, not per instance),
    at least 2 (they did overlap), and every seat comes up."""
    seats, parallel = 6, 2
    fakepve.write_config(pv_ctx.settings.home, sdn_timeout=60.0, mgmt_cidr="127.88.0.0/16", parallel=parallel)
    roster = tmp_path / "roster.txt"
    roster.write_text("".join(f"Candidate {i}\n" for i in range(1, seats + 1)), encoding="utf-8")
    fakepve.control("clone_hold", secs=0.2)
    fakepve.control("clone_stats", reset=True)
    try:
        result = cohorts.cohort_up(pv_ctx, LAB_ID, roster, name="pvp", seed=5, parallel=seats, provider="proxmox")
        stats = fakepve.control("clone_stats")
    finally:
        fakepve.control("clone_hold", secs=0)
    assert [s.status for s in result.seats] == ["up"] * seats, [s.detail for s in result.seats]
    assert stats["seen"] == seats * 5 and stats["now"] == 0
    assert stats["max"] == parallel, stats
    down = cohorts.cohort_down(pv_ctx, "pvp")
    assert all(s.status == "removed" for s in down.seats)
    assert not [v for v in fakepve.state()["vms"] if v["name"].startswith("lk-pvp-")]
