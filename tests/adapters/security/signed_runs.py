"""A tiny sealed run (one evidence file, no criteria), signed or not: what the key tests need."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from labkit.adapters.security.signing import CentreSigner
from labkit.adapters.storage.runs import RunWriter
from labkit.models.common import I18n
from labkit.models.evidence import Evidence
from labkit.models.results import GradeSummary, RunInfo

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def make_run(runs_dir: Path, run_id: str, signer: CentreSigner | None = None) -> Path:
    info = RunInfo(run_id=run_id, mode="grade", lab_id="tiny", lab_title=I18n(fr="Petit", en="Tiny"), lab_version=1,
                   instance="tiny", candidate="Camille Dupont", provider="netns", seed=1, params={},
                   started_at=T0, ended_at=T0 + timedelta(seconds=2), labkit_version="0.1.0", checks=[])
    summary = GradeSummary(run_id=run_id, lab_id="tiny", instance="tiny", candidate="Camille Dupont", score=0,
                           max_score=0, started_at=T0, ended_at=T0 + timedelta(seconds=2), checks=[])
    w = RunWriter(runs_dir, run_id)
    w.add_evidence(Evidence(id="ping.1", kind="icmp", source="pc1", target="10.0.0.1", action="ping -c1 10.0.0.1",
                            started_at=T0, ended_at=T0 + timedelta(seconds=1), ok=True, raw="1 received"))
    w.seal(info, summary, [], now=T0 + timedelta(seconds=3), signer=signer)
    return w.path
