"""adapters/hostlocks.py: flock'd slots shared by threads and processes of a home (the Proxmox
clone slots and the GNS3 port lock are built on it; their own tests run it across processes
and after kill -9: tests/adapters/proxmox/test_pve_slots.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from labkit.adapters import hostlocks


def test_one_slot_is_a_mutex_across_threads(tmp_path: Path) -> None:
    """Threads opening the lock file each conflict like processes: never two holders at once,
    each waiter gets its turn."""
    inside, most, done = [0], [0], []
    lock = threading.Lock()

    def worker(k: int) -> None:
        with hostlocks.held_slot(tmp_path, "gns3-ports", "http://s:3080", 1, timeout=30):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1
            done.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(done) == list(range(6)) and most[0] == 1


def test_timeout_and_separate_resources(tmp_path: Path) -> None:
    """A held slot makes a second taker wait, then raise SlotTimeout; another kind or another
    resource has files of its own and is not held up; the slot is free again afterwards."""
    with hostlocks.held_slot(tmp_path, "gns3-ports", "http://a:3080", 1, timeout=1):
        with pytest.raises(hostlocks.SlotTimeout, match="stayed held for 0.2 s"):
            with hostlocks.held_slot(tmp_path, "gns3-ports", "http://a:3080", 1, timeout=0.2):
                pass
        with hostlocks.held_slot(tmp_path, "gns3-ports", "http://b:3080", 1, timeout=0.2) as i:
            assert i == 0
        with hostlocks.held_slot(tmp_path, "pve-clone", "http://a:3080", 1, timeout=0.2) as i:
            assert i == 0
    with hostlocks.held_slot(tmp_path, "gns3-ports", "http://a:3080", 1, timeout=0.2) as i:
        assert i == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3 and all(n.endswith("-0.lock") for n in names)
    assert hostlocks.slot_paths(tmp_path, "gns3-ports", "http://a:3080", 1)[0].name in names
