"""Shared helpers of the probes: timestamps, target checks and Evidence assembly."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from labkit.models.evidence import Evidence, EvidenceKind


def utcnow() -> datetime:
    return datetime.now(UTC)


def ip_literal(target: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse ``target`` as an IP address literal.

    Probes take addresses, never names: resolving a name would use the host's resolver,
    which points outside the machine.
    """
    try:
        return ipaddress.ip_address(target)
    except ValueError:
        raise ValueError(
            f"{target!r} is not an IP address; probes take addresses only (no name resolution)"
        ) from None


def evidence(
    *,
    ev_id: str,
    check: str | None,
    kind: EvidenceKind,
    source: str,
    target: str,
    action: str,
    started_at: datetime,
    ok: bool,
    raw: str = "",
    parsed: Any = None,
    error: str | None = None,
    meta: dict[str, Any] | None = None,
    ended_at: datetime | None = None,
) -> Evidence:
    return Evidence(
        id=ev_id,
        check=check,
        kind=kind,
        source=source,
        target=target,
        action=action,
        started_at=started_at,
        ended_at=ended_at or utcnow(),
        ok=ok,
        error=error,
        raw=raw,
        parsed=parsed,
        meta=meta or {},
    )


def describe_exc(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
