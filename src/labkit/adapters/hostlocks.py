"""Slots shared by every labkit process of a home: ``count`` lock files held with ``flock``.

Two providers need a bound that holds across processes, not only across the threads of one:
the portal, the CLI and a cohort may run side by side against one cluster or server.

- Proxmox: at most ``parallel`` clones in flight on a cluster (its storage's load).
- GNS3: one UDP-port-allocating call at a time on a server (gns3-server 3.0's compute hands
  out UDP ports from a thread pool without a lock; see ``adapters/gns3/provider.py``).

A slot is a lock file under ``directory`` (the home's ``locks``), held with ``flock`` for the
``with`` block. The kernel releases a lock when its holder ends, even by ``kill -9``, so a
crashed process never keeps a slot; the files stay, a handful of empty files per resource.
``flock`` locks belong to an open file description, so two threads of one process that open a
slot file each conflict like two processes do: one mechanism covers both.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

POLL_S = 0.05  # between two rounds over the slots when all are taken


class SlotTimeout(Exception):
    """Every slot stayed held past the timeout (the caller words the user's message)."""


def slot_paths(directory: Path, kind: str, resource: str, count: int) -> list[Path]:
    """The lock files of ``resource`` (an API url) for ``kind`` (e.g. ``pve-clone``): one per slot."""
    tag = hashlib.sha256(resource.encode()).hexdigest()[:12]
    return [directory / f"{kind}-{tag}-{i}.lock" for i in range(count)]


@contextlib.contextmanager
def held_slot(directory: Path, kind: str, resource: str, count: int, *, timeout: float) -> Iterator[int]:
    """Hold one of ``count`` slots for the ``with`` block; yields its index. Waits up to
    ``timeout`` s for a free one, then raises :class:`SlotTimeout`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = slot_paths(directory, kind, resource, count)
    deadline = time.monotonic() + timeout
    while True:
        # start at a random slot so waiting processes do not all poll slot 0 first
        start = random.randrange(count)  # noqa: S311 - load spreading, not security
        for k in range(count):
            i = (start + k) % count
            fd = os.open(paths[i], os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield i
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if time.monotonic() > deadline:
            raise SlotTimeout(f"all {count} slot(s) of {kind} {resource} stayed held for {timeout:g} s")
        time.sleep(POLL_S)
