"""Run Python code inside a named network namespace, safely.

A socket belongs to the network namespace of the thread that creates it. ``run_in_netns``
starts a short-lived worker thread, moves it into the target namespace with ``setns(2)``
(Python 3.11 has no ``os.setns``: ctypes), checks the move by inode, runs the function and
lets the thread die. The calling thread never changes namespace, so nothing can fall back
to the host's root namespace by accident.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from labkit.errors import NamespaceSafetyError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")

T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]

_local = threading.local()
def _initial_net_inode() -> int:
    """The host namespace labkit started in: pid 1's where readable, else this process's own
    (labkit always starts in the host's namespace; only its worker threads move)."""
    for path in ("/proc/1/ns/net", "/proc/self/ns/net"):
        try:
            return os.stat(path).st_ino
        except OSError:
            continue
    raise NamespaceSafetyError("cannot read /proc/self/ns/net; labkit needs Linux with /proc mounted.")


_ROOT_NET_INODE = _initial_net_inode()


def netns_path(name: str) -> Path:
    if "/" in name or name in ("", ".", ".."):
        raise NamespaceSafetyError(f"{name!r} is not a namespace name; use the name shown by 'ip netns list'.")
    return NETNS_RUN_DIR / name


def netns_inode(name: str) -> int:
    """Inode of a named namespace; never creates one (unlike pyroute2's default)."""
    try:
        return os.stat(netns_path(name)).st_ino
    except FileNotFoundError:
        raise NamespaceSafetyError(
            f"network namespace {name!r} does not exist; is the lab instance up ('labkit status')?"
        ) from None


def current_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def current_netns() -> str | None:
    """Name of the lab namespace this thread is in, or None outside one."""
    return getattr(_local, "netns", None)


def assert_in_lab_netns() -> str:
    """Refuse to go on unless this thread sits in a labkit namespace it was moved into.

    Probes call this right before they send anything.
    """
    name = current_netns()
    if name is None:
        raise NamespaceSafetyError(
            "refusing to send: this probe is not running inside a lab namespace; "
            "run probes through labkit's namespace runner."
        )
    inode = current_netns_inode()
    if inode == _ROOT_NET_INODE or inode != netns_inode(name):
        raise NamespaceSafetyError(
            f"refusing to send: this thread is not in namespace {name!r} any more; this is a labkit bug."
        )
    return name


def _enter(name: str) -> None:
    fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NamespaceSafetyError(f"cannot enter namespace {name!r}: {os.strerror(err)}; are you root?")
    finally:
        os.close(fd)
    if current_netns_inode() != netns_inode(name) or current_netns_inode() == _ROOT_NET_INODE:
        raise NamespaceSafetyError(f"entering namespace {name!r} did not take effect; refusing to probe.")
    _local.netns = name


def run_in_netns(name: str, fn: Callable[[], T], timeout: float | None = None) -> T:
    """Run ``fn`` in a fresh thread that lives in namespace ``name``; return its result.

    Exceptions raised by ``fn`` are re-raised in the caller. With ``timeout``, a
    ``TimeoutError`` is raised if ``fn`` has not returned by then (the worker thread is a
    daemon and dies with its blocking call; probes pass their own socket timeouts too).
    """
    netns_inode(name)  # fail early, and never create it
    box: dict[str, object] = {}

    def worker() -> None:
        try:
            _enter(name)
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    t = threading.Thread(target=worker, name=f"netns:{name}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"probe in namespace {name!r} did not finish within {timeout} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
