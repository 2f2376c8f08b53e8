"""Evidence: what a probe ran, from where, to where, when, and what came back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

EvidenceKind = Literal["icmp", "tcp", "ssh", "snmp", "netlink", "fault", "artifact", "ldap", "dns", "smb", "kerberos",
                      "exec", "capture", "udp"]


class Evidence(BaseModel):
    id: str  # unique within a run; also the file name under evidence/
    check: str | None = None  # check id this was collected for (None: shared artifact)
    kind: EvidenceKind
    source: str  # vantage point or node it was sent from / read in
    target: str  # address, node or object probed
    action: str  # human-readable: the command or request
    started_at: datetime
    ended_at: datetime
    ok: bool  # the probe itself completed (says nothing about the verdict)
    error: str | None = None  # why the probe did not complete
    raw: str = ""  # the raw answer, as text
    parsed: Any = None  # the answer parsed into JSON-able data
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def duration(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()
