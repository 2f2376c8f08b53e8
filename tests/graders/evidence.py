"""Evidence factory for the judge tests: judges are pure, so each test hands them evidence
made here, as a grader's collect() would have stored it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from labkit.models.evidence import Evidence
from labkit.models.instance import InstancePlan

T = datetime(2026, 11, 28, tzinfo=UTC)
PLAN = InstancePlan(name="x", lab_id="l", lab_dir="/", topology_id="t", seed=0, params={}, nodes=[],
                    segments={}, links={})
_ids = itertools.count(1)


def make_evidence(kind: str, parsed: Any, *, ok: bool = True, error: str | None = None, source: str = "v-a",
                  target: str = "10.0.0.1", at: datetime = T, **meta: Any) -> Evidence:
    """One piece of evidence with a unique id; extra keywords become its ``meta``."""
    return Evidence(id=f"e{next(_ids)}", kind=kind, source=source, target=target,  # type: ignore[arg-type]
                    action="a", started_at=at, ended_at=at, ok=ok, error=error, parsed=parsed, meta=meta)
