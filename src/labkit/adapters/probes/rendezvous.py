"""Named signals and handles shared by the probes of one grading, in the process that runs them.

Probes cross a process boundary as data (:mod:`registry`), so a grader cannot hand a
``threading.Event`` or a live client object to a probe. Instead it picks a random name
(:func:`new_name`) and passes it: every probe of the ground that runs in the same process (labkit's
own, in-process, or the grader agent) finds the same :class:`threading.Event` or object under
that name. The table is bounded in size and in time: a name unused for ``MAX_AGE_S`` is dropped.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from labkit.adapters.probes._common import evidence as make_ev
from labkit.adapters.probes._common import utcnow
from labkit.adapters.probes.registry import probe
from labkit.models.evidence import Evidence

MAX_ENTRIES = 512
MAX_AGE_S = 3600.0

_lock = threading.Lock()
_table: dict[str, tuple[float, Any]] = {}


def new_name(prefix: str = "lk") -> str:
    """A fresh name for a signal or a handle (random: two gradings never share one)."""
    return f"{prefix}-{secrets.token_hex(8)}"


def _prune(now: float) -> None:
    for key in [k for k, (t, _) in _table.items() if now - t > MAX_AGE_S]:
        del _table[key]


def _get_or_make(name: str, make: Any) -> Any:
    now = time.monotonic()
    with _lock:
        _prune(now)
        if name in _table:
            t, obj = _table[name]
            _table[name] = (now, obj)
            return obj
        if len(_table) >= MAX_ENTRIES:
            raise RuntimeError(f"too many grader signals/handles at once (>{MAX_ENTRIES})")
        obj = make()
        _table[name] = (now, obj)
        return obj


def event(name: str | threading.Event | None) -> threading.Event | None:
    """The event called ``name`` (made on first use); an Event or None is returned as is."""
    if name is None or isinstance(name, threading.Event):
        return name
    ev = _get_or_make(f"event:{name}", threading.Event)
    assert isinstance(ev, threading.Event)
    return ev


def put(name: str, obj: Any) -> None:
    """Keep ``obj`` under ``name`` (a handle: a running client, a receiver)."""
    with _lock:
        _prune(time.monotonic())
        if len(_table) >= MAX_ENTRIES:
            raise RuntimeError(f"too many grader signals/handles at once (>{MAX_ENTRIES})")
        _table[f"obj:{name}"] = (time.monotonic(), obj)


def get(name: str) -> Any:
    with _lock:
        item = _table.get(f"obj:{name}")
    if item is None:
        raise KeyError(f"no grader handle {name!r} (never made, already closed or expired)")
    return item[1]


def take(name: str) -> Any:
    """Remove and return the object under ``name`` (None if there is none)."""
    with _lock:
        item = _table.pop(f"obj:{name}", None)
    return None if item is None else item[1]


def forget(name: str) -> None:
    with _lock:
        _table.pop(f"event:{name}", None)


@probe("rendezvous.set_event")
def set_event(name: str, *, ev_id: str, source: str, check: str | None = None) -> Evidence:
    """Set the signal ``name`` (e.g. stop a capture) in the process that runs the probes."""
    started = utcnow()
    ev = event(name)
    assert ev is not None
    ev.set()
    return make_ev(ev_id=ev_id, check=check, kind="exec", source=source, target=name, action=f"signal {name}",
                   started_at=started, ok=True, parsed={"set": True})


@probe("rendezvous.wait_event")
def wait_event(name: str, *, ev_id: str, source: str, timeout: float, check: str | None = None) -> Evidence:
    """Wait up to ``timeout`` seconds for the signal ``name``; parsed ``set`` says if it came."""
    started = utcnow()
    ev = event(name)
    assert ev is not None
    ok = ev.wait(timeout)
    return make_ev(ev_id=ev_id, check=check, kind="exec", source=source, target=name, action=f"wait for {name}",
                   started_at=started, ok=True, parsed={"set": ok})
