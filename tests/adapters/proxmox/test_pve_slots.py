"""The clone bound across processes (adapters/proxmox/slots.py): real processes, real flock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from labkit.adapters.proxmox.slots import clone_slot, slot_paths
from labkit.errors import ProviderError

CLUSTER = "https://pve.example.test:8006"

# One worker: takes a slot twice; inside it, counts the holders with a counter file kept under
# its own lock, and records the highest count it saw.
WORKER = textwrap.dedent("""
    import fcntl, os, sys, time
    from pathlib import Path
    from labkit.adapters.proxmox.slots import clone_slot
    d, cluster, count, hold = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    counter = d / "counter"

    def bump(delta):
        with open(counter, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            now, top = (int(x) for x in (fh.read().split() or ["0", "0"]))
            now += delta
            top = max(top, now)
            fh.seek(0); fh.truncate(); fh.write(f"{now} {top}")

    for _ in range(2):
        with clone_slot(d / "locks", cluster, count, timeout=60):
            bump(1)
            time.sleep(hold)
            bump(-1)
""")


def _run_workers(tmp_path: Path, n: int, count: int, hold: float) -> tuple[int, int]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), CLUSTER, str(count), str(hold)])
             for _ in range(n)]
    try:
        for p in procs:
            assert p.wait(timeout=120) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    now, top = (int(x) for x in (tmp_path / "counter").read_text().split())
    return now, top


def test_processes_never_hold_more_slots_than_the_bound(tmp_path: Path) -> None:
    """6 processes, 2 clones each, 2 slots: at most 2 hold a slot at once, and 2 do (the bound
    is reached, not just respected by running one at a time)."""
    now, top = _run_workers(tmp_path, n=6, count=2, hold=0.3)
    assert now == 0
    assert top == 2


def test_without_the_bound_the_same_workers_overlap_more(tmp_path: Path) -> None:
    """The control: with 6 slots the same 6 workers reach more than 2 at once, so the test
    above measures the bound, not the workers' timing."""
    _now, top = _run_workers(tmp_path, n=6, count=6, hold=0.5)
    assert top > 2


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    """A process killed with SIGKILL while holding the only slot does not keep it."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from labkit.adapters.proxmox.slots import clone_slot
        with clone_slot(Path({str(tmp_path / 'locks')!r}), {CLUSTER!r}, 1, timeout=10):
            print("held", flush=True)
            time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ProviderError, match="clone slots"):
            with clone_slot(tmp_path / "locks", CLUSTER, 1, timeout=0.3):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        t0 = time.monotonic()
        with clone_slot(tmp_path / "locks", CLUSTER, 1, timeout=10) as i:
            assert i == 0
        assert time.monotonic() - t0 < 10
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_busy_slots_give_one_sentence_with_the_way_out(tmp_path: Path) -> None:
    """Two holds in one thread conflict like two processes (flock is per open file)."""
    with clone_slot(tmp_path, CLUSTER, 1, timeout=1) as i:
        assert i == 0
        with pytest.raises(ProviderError) as exc:
            with clone_slot(tmp_path, CLUSTER, 1, timeout=0.2, what="the clone of VM 100001"):
                pass
    msg = str(exc.value)
    assert msg.startswith("the clone of VM 100001 waited 0.2 s for one of the 1 clone slots")
    assert "raise 'parallel' in proxmox.toml" in msg
    # after the block the slot is free again
    with clone_slot(tmp_path, CLUSTER, 1, timeout=0.2):
        pass


def test_clusters_have_their_own_slots(tmp_path: Path) -> None:
    a, b = slot_paths(tmp_path, CLUSTER, 2), slot_paths(tmp_path, "https://other:8006", 2)
    assert not set(a) & set(b)
    with clone_slot(tmp_path, CLUSTER, 1, timeout=1):
        with clone_slot(tmp_path, "https://other:8006", 1, timeout=0.2):
            pass
