"""Read a network device's state through its CLI (netmiko), from the grader's place.

Supporting evidence only: what a device's CLI prints is what its software says (a candidate
who controls the device controls the answer); a check that reads it says so in its ``doc`` and
takes its verdict from the wire. The TCP socket is opened by the probe in the calling thread,
so in the vantage namespace it runs in (in labkit's process or in the grader agent), and handed
to netmiko: nothing connects from the host's root namespace.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from labkit.adapters.devices.netmiko_driver import connect
from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.adapters.probes.registry import probe
from labkit.errors import LabkitError
from labkit.models.device import DeviceEndpoint
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from .tcp import open_tcp_socket

__all__ = ["show"]

_OUTPUT_MAX = 256 * 1024


@probe("device.show")
def show(
    host: str,
    commands: list[str],
    *,
    node: str,
    platform: str,
    user: str,
    key_file: str,
    ev_id: str,
    source: str,
    check: str | None = None,
    port: int = 22,
    timeout: float = 10.0,
) -> Evidence:
    """Log in to the device's CLI over SSH and run each (exec-mode) command.

    parsed: one ``{"cmd", "output"}`` per command. A connection, login or CLI failure: ok=False
    and ``error`` says why; the commands run before it stay in ``parsed``."""
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    if isinstance(commands, str):
        commands = [commands]
    action = f"netmiko {platform} {user}@{host}:{port} " + " ; ".join(repr(c) for c in commands)
    base = partial(evidence, ev_id=ev_id, check=check, kind="ssh", source=source, target=f"{node} {host}:{port}",
                   action=action)
    meta: dict[str, Any] = {"netns": netns, "user": user, "via": "netmiko", "platform": platform,
                            "supporting_only": True}
    results: list[dict[str, str]] = []
    try:
        ip_literal(host)
        sock = open_tcp_socket(host, port, timeout)
    except (ValueError, OSError) as exc:
        return base(started_at=started, ok=False, meta=meta, error=f"cannot connect to {host}:{port}: "
                    f"{describe_exc(exc)}")
    ep = DeviceEndpoint(node=node, platform=platform, transport="ssh", host=host, port=port, username=user,
                        key_file=key_file)
    try:
        conn = connect(ep, sock, timeout=timeout)
    except LabkitError as exc:
        sock.close()
        return base(started_at=started, ok=False, meta=meta, error=str(exc))
    try:
        for cmd in commands:
            out = str(conn.send_command(cmd, read_timeout=timeout))[:_OUTPUT_MAX]
            results.append({"cmd": cmd, "output": out})
    except Exception as exc:  # noqa: BLE001 - any CLI failure is recorded, never raised into grading
        return base(started_at=started, ok=False, meta=meta, parsed=results or None,
                    raw="\n".join(r["output"] for r in results), error=f"the CLI failed: {describe_exc(exc)}")
    finally:
        conn.disconnect()
    return base(started_at=started, ok=True, meta=meta, parsed=results,
                raw="\n".join(f"{r['cmd']}\n{r['output']}" for r in results))
