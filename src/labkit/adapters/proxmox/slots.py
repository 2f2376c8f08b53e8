"""At most ``count`` clones in flight on one cluster, across every labkit process of a home.

A cohort brings several instances up at once, each with its own provider object, and the
portal, the CLI and a cohort may run side by side: the cluster's storage must still see at
most ``parallel`` clones at a time. A process-wide semaphore bounds one process only, so the
slots are ``count`` lock files, ``<home>/locks/pve-clone-<cluster>-<i>.lock``, each held with
``flock`` while one clone runs (``adapters/hostlocks.py``: a holder killed by ``kill -9``
frees its slot; threads of one process conflict like processes do).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from labkit.adapters import hostlocks
from labkit.errors import ProviderError

KIND = "pve-clone"


def slot_paths(directory: Path, cluster: str, count: int) -> list[Path]:
    """The lock files of ``cluster`` (its API url): one per slot."""
    return hostlocks.slot_paths(directory, KIND, cluster, count)


@contextlib.contextmanager
def clone_slot(directory: Path, cluster: str, count: int, *, timeout: float, what: str = "a clone") -> Iterator[int]:
    """Hold one of ``count`` slots of ``cluster`` for the ``with`` block; yields its index.

    Waits up to ``timeout`` s for a free slot; past it, a ProviderError that says the slots
    were all busy and what to do."""
    try:
        with hostlocks.held_slot(directory, KIND, cluster, count, timeout=timeout) as i:
            yield i
    except hostlocks.SlotTimeout:
        raise ProviderError(
            f"{what} waited {timeout:g} s for one of the {count} clone slots of {cluster}, all held by other "
            "labkit processes; wait for them to finish and retry, or raise 'parallel' in proxmox.toml.") from None
