"""A sealed run folder read back and verified (by ``labkit.adapters.storage.runs.open_run``).

The model lives here, not in the store, so that the domain (reports, portfolio, criteria
summaries) reads runs without importing the storage adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.models.criteria import Criterion
from labkit.models.evidence import Evidence
from labkit.models.results import GradeSummary, RunInfo

__all__ = ["StoredRun"]


@dataclass(frozen=True)
class StoredRun:
    """A run folder read back and verified against its manifest."""

    path: Path
    info: RunInfo
    summary: GradeSummary  # manifest_sha256 filled from the verified seal
    criteria: list[Criterion]
    evidence: dict[str, Evidence]
    artifacts: dict[str, Any]
    manifest_sha256: str
    manifest: dict[str, str] = field(default_factory=dict)  # relpath -> sha256
    sealed_at: str | None = None
    centre: str | None = None  # as named in seal.json (signed when signature is set)
    key_fingerprint: str | None = None  # the key seal.json names; labkit verify checks the signature
    signature: str | None = None  # seal.json.sig, armored SSHSIG, None for an unsigned run

    @property
    def run_id(self) -> str:
        return self.info.run_id
