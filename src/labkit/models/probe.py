"""A probe request that can cross a process or machine boundary.

Graders never hand closures to the grader's ground: a probe is a registered function
(:mod:`labkit.adapters.probes.registry`) named by ``probe`` plus JSON arguments. The same
call runs in labkit's own process (netns, in-process) or in the grader agent
(``python -m labkit.agent``) on the far side of an SSH channel; the evidence that comes back is
the same :class:`~labkit.models.evidence.Evidence` either way.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

MAX_CALL_BYTES = 1 << 20  # a serialised request larger than this is refused (agent and client)


class ProbeCall(BaseModel):
    """``probe(*args, ev_id=..., **kwargs)`` run at a place of the grader's ground."""

    probe: str  # registered name, e.g. "icmp.ping"
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class EchoCall(BaseModel):
    """A grader-to-grader nonce echo between two places (see ``adapters/probes/echo.py``)."""

    mode: Literal["exchange", "wait"]
    target_ip: str
    params: dict[str, Any] = Field(default_factory=dict)  # exchange: count, timeout; wait: deadline_s, interval
