"""Measurement helpers shared by the bench scripts (no environment side effects)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _pss_per_process(inodes: set[int]) -> list[tuple[str, int]]:
    """(command name, PSS in KiB) of each process living in these network namespaces."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino not in inodes:
                continue
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    out.append((comm, int(line.split()[1])))
        except OSError:
            continue
    return out


def pss_kib(inodes: set[int], comms: set[str] | None = None) -> tuple[int, int]:
    """Sum of PSS (KiB) and count of the processes living in these namespaces (optionally
    only those whose command name is in ``comms``)."""
    kib = [k for comm, k in _pss_per_process(inodes) if comms is None or comm in comms]
    return sum(kib), len(kib)


def ns_inodes(name: str) -> set[int]:
    return {os.stat(p).st_ino for p in Path("/run/netns").glob(f"lk-{name}.*")}


def upper_kib(settings: Any, name: str) -> int:
    root = settings.instances / name / "nodes"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) // 1024


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 3)


def pss_by_comm(inodes: set[int]) -> dict[str, float]:
    """PSS (MiB) per process name, for the processes living in these namespaces, largest first."""
    out: dict[str, float] = {}
    for comm, kib in _pss_per_process(inodes):
        out[comm] = round(out.get(comm, 0.0) + kib / 1024, 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
