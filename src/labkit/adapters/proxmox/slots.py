"""At most ``count`` clones in flight on one cluster, across every labkit process of a home.

A cohort brings several instances up at once, each with its own provider object, and the
portal, the CLI and a cohort may run side by side: the cluster's storage must still see at
most ``parallel`` clones at a time. A process-wide semaphore bounds one process only, so the
slots are ``count`` lock files, ``<home>/locks/pve-clone-<cluster>-<i>.lock``, each held with
``flock`` while one clone runs. The kernel releases a lock when its holder ends, even by
``kill -9``, so a crashed process never keeps a slot; the files themselves are a handful of
empty files per cluster, kept next to the other locks of the home.

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

from labkit.errors import ProviderError

POLL_S = 0.05  # between two rounds over the slots when all are taken


def slot_paths(directory: Path, cluster: str, count: int) -> list[Path]:
    """The lock files of ``cluster`` (its API url): one per slot."""
    tag = hashlib.sha256(cluster.encode()).hexdigest()[:12]
    return [directory / f"pve-clone-{tag}-{i}.lock" for i in range(count)]


@contextlib.contextmanager
def clone_slot(directory: Path, cluster: str, count: int, *, timeout: float, what: str = "a clone") -> Iterator[int]:
    """Hold one of ``count`` slots of ``cluster`` for the ``with`` block; yields its index.

    Waits up to ``timeout`` s for a free slot; past it, a ProviderError that says the slots
    were all busy and what to do."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = slot_paths(directory, cluster, count)
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
            raise ProviderError(
                f"{what} waited {timeout:g} s for one of the {count} clone slots of {cluster}, all held by other "
                "labkit processes; wait for them to finish and retry, or raise 'parallel' in proxmox.toml.")
        time.sleep(POLL_S)
