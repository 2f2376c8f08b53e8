"""TCP connect probe (with optional banner read), run inside a lab namespace."""

from __future__ import annotations

import errno
import socket
import time
from functools import partial

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from labkit.adapters.probes.registry import probe

__all__ = ["open_tcp_socket", "tcp_connect"]

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENONET}
_BANNER_MAX = 4096


def open_tcp_socket(host: str, port: int, timeout: float) -> socket.socket:
    """Connect a TCP socket from the calling thread's namespace (IP literals only).

    Raises the socket errors as they come (ConnectionRefusedError, TimeoutError, OSError).
    Callers must have called ``assert_in_lab_netns()`` first.
    """
    addr = ip_literal(host)
    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((str(addr), port))
    except BaseException:
        sock.close()
        raise
    return sock


@probe("tcp.tcp_connect")
def tcp_connect(
    host: str,
    port: int,
    *,
    ev_id: str,
    source: str,
    check: str | None = None,
    timeout: float = 2.0,
    read_banner: bool = True,
    banner_timeout: float = 1.0,
) -> Evidence:
    """Open a TCP connection to ``host:port`` and close it again.

    parsed: ``state`` (open | refused | timeout | unreachable), ``banner`` (first bytes the
    server sent within ``banner_timeout`` s, decoded, or null), ``connect_ms``, ``errno``.
    Runs for at most ``timeout + banner_timeout`` seconds.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    action = f"tcp connect {host} port {port}" + (" and read banner" if read_banner else "")
    base = partial(evidence, ev_id=ev_id, check=check, kind="tcp", source=source,
                   target=f"{host}:{port}", action=action)
    meta: dict[str, object] = {"netns": netns}
    try:
        ip_literal(host)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        if not 0 < timeout <= 120 or not 0 <= banner_timeout <= 120:
            raise ValueError("timeout and banner_timeout must be between 0 and 120 s")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)

    t0 = time.monotonic()
    state: str
    err_no: int | None = None
    banner: str | None = None
    sock: socket.socket | None = None
    try:
        sock = open_tcp_socket(host, port, timeout)
        state = "open"
    except ConnectionRefusedError:
        state, err_no = "refused", errno.ECONNREFUSED
    except TimeoutError:
        state, err_no = "timeout", errno.ETIMEDOUT
    except OSError as exc:
        if exc.errno in _UNREACHABLE:
            state, err_no = "unreachable", exc.errno
        else:
            return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
    connect_ms = round((time.monotonic() - t0) * 1000.0, 3)

    raw = f"connect {host}:{port}: {state} after {connect_ms} ms"
    if err_no is not None:
        raw += f" ({errno.errorcode.get(err_no, err_no)})"
    if sock is not None:
        try:
            local = sock.getsockname()
            meta["local"] = f"{local[0]}:{local[1]}"
            if read_banner and banner_timeout > 0:
                sock.settimeout(banner_timeout)
                try:
                    data = sock.recv(_BANNER_MAX)
                except (TimeoutError, OSError):
                    data = b""
                if data:
                    banner = data.decode("utf-8", "replace").rstrip("\r\n")
                    raw += f"\nbanner: {banner}"
                else:
                    raw += "\nno banner"
        finally:
            sock.close()
    parsed = {"state": state, "banner": banner, "connect_ms": connect_ms,
              "errno": errno.errorcode.get(err_no) if err_no is not None else None}
    return base(started_at=started, ok=True, raw=raw, parsed=parsed, meta=meta)
