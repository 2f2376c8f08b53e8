"""A tiny signed bundle for the verify tests: one synthetic run sealed with a test key (by
RunWriter) and two small files, sealed by finalize_bundle. Imported by the tests of
adapters/bundle, usecases/test_verify.py and interfaces/test_cli_verify.py."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from labkit.adapters.bundle import finalize_bundle
from labkit.adapters.security.keyring import KeyInfo, KeyStatus, Trust
from labkit.adapters.security.signing import CentreSigner, generate_private_key
from labkit.adapters.storage.runs import RunWriter
from labkit.models.common import I18n
from labkit.models.criteria import Criterion
from labkit.models.evidence import Evidence
from labkit.models.results import CheckResult, GradeSummary, RunInfo

T0 = datetime(2026, 11, 28, 3, 44, 55, tzinfo=UTC)
RUN_ID = "dupont-20261128T034455Z-0a1b"
STEM = "dupont-portfolio"


def make_signer(centre: str = "Centre de test") -> CentreSigner:
    return CentreSigner(generate_private_key(), centre)


def key_info(signer: CentreSigner, status: KeyStatus = "active", revoked_at: str | None = None,
             reason: str | None = None) -> KeyInfo:
    return KeyInfo(fingerprint=signer.fingerprint, public_line=signer.public_line, centre=signer.centre,
                   created_at="2026-11-01T00:00:00+00:00", status=status, revoked_at=revoked_at, reason=reason)


def trust_of(*infos: KeyInfo) -> Trust:
    return Trust({k.fingerprint: k for k in infos})


def make_run(runs_dir: Path, signer: CentreSigner | None, run_id: str = RUN_ID) -> Path:
    """A sealed run: two evidence files and one artifact."""
    info = RunInfo(
        run_id=run_id, mode="grade", lab_id="routing-multisite",
        lab_title=I18n(fr="Routage multi-sites", en="Multi-site routing"), lab_version=1,
        instance="dupont", candidate="Camille Dupont", provider="netns", seed=7, params={},
        started_at=T0, ended_at=T0 + timedelta(seconds=9), labkit_version="0.1.0",
        checks=[{"id": "ping", "grader": "ping"}],
    )
    summary = GradeSummary(
        run_id=run_id, lab_id=info.lab_id, instance=info.instance, candidate=info.candidate, score=10,
        max_score=10, started_at=info.started_at, ended_at=info.ended_at,
        checks=[CheckResult(id="ping", title=I18n(fr="Ping", en="Ping"), grader="ping", status="pass",
                            points=10, max_points=10,
                            criteria=["tssr-2.3"], evidence=["ping.a", "ping.b"],
                            message=I18n(fr="ok", en="ok"))],
    )
    crit = [Criterion(id="tssr-2.3", certification="tssr", block="2.3", code="2.3",
                      text="Les liens sont opérationnels.")]
    w = RunWriter(runs_dir, run_id)
    for ev_id in ("ping.a", "ping.b"):
        w.add_evidence(Evidence.model_validate({
            "id": ev_id, "check": "ping", "kind": "icmp", "source": "v-hq", "target": "10.1.2.10",
            "action": "ping -c 1 10.1.2.10", "started_at": T0, "ended_at": T0 + timedelta(seconds=1),
            "ok": True, "raw": "1 received", "parsed": {"received": 1},
        }))
    w.add_artifact("addressing", [{"node": "r-hq", "address": "10.1.2.1/24"}])
    w.seal(info, summary, crit, now=T0 + timedelta(seconds=10), signer=signer)
    return w.path


def make_tree(root: Path, signer: CentreSigner | None, run_id: str = RUN_ID) -> Path:
    """A bundle folder: runs/<id>/ copied from a sealed run, index.html and a readme."""
    run = make_run(root / "store", signer, run_id)
    tree = root / STEM
    (tree / "runs").mkdir(parents=True)
    shutil.copytree(run, tree / "runs" / run_id)
    (tree / "index.html").write_text("<!doctype html><title>Portfolio</title><p>Camille Dupont</p>\n")
    (tree / "LISEZMOI.txt").write_text("Vérifier : ssh-keygen -Y verify …\n")
    writable(tree)
    return tree


def make_bundle(root: Path, signer: CentreSigner, run_signer: CentreSigner | None = None,
                *, run_signed: bool = True) -> tuple[Path, Path]:
    """(bundle folder, signed zip) in ``root``."""
    tree = make_tree(root, (run_signer or signer) if run_signed else None)
    out = finalize_bundle(tree, root / f"{STEM}.zip", signer, T0 + timedelta(minutes=5))
    return tree, out


def writable(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)


def relfiles(tree: Path) -> list[str]:
    return sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
