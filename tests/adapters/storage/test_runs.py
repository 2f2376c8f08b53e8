"""The evidence store: writing, sealing, reading back, and refusing tampered folders."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labkit.adapters.storage.runs import RunWriter, StoredRun, list_runs, new_run_id, open_run
from labkit.errors import EvidenceIntegrityError, UnknownRunError
from labkit.models.common import I18n
from labkit.models.criteria import Criterion
from labkit.models.evidence import Evidence
from labkit.models.results import CheckResult, GradeSummary, RunInfo
from labkit.settings import load_settings

T0 = datetime(2026, 11, 28, 3, 44, 55, tzinfo=UTC)


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    return load_settings().runs


def evidence(ev_id: str, check: str | None = "ping", **kw: object) -> Evidence:
    fields: dict[str, object] = {
        "id": ev_id,
        "check": check,
        "kind": "icmp",
        "source": "v-hq",
        "target": "10.1.2.10",
        "action": "ping -c 3 10.1.2.10",
        "started_at": T0,
        "ended_at": T0 + timedelta(seconds=2),
        "ok": True,
        "raw": "3 packets transmitted, 3 received",
        "parsed": {"sent": 3, "received": 3},
    }
    fields.update(kw)
    return Evidence.model_validate(fields)


def models(
    run_id: str, start: datetime = T0, score: int = 10
) -> tuple[RunInfo, GradeSummary, list[Criterion]]:
    info = RunInfo(
        run_id=run_id,
        mode="grade",
        lab_id="routing-multisite",
        lab_title=I18n(fr="Routage multi-sites", en="Multi-site routing"),
        lab_version=1,
        instance="dupont",
        candidate="Camille Dupont",
        provider="netns",
        seed=42,
        params={"lan_hq": "10.1.2.0/24"},
        started_at=start,
        ended_at=start + timedelta(seconds=30),
        labkit_version="0.1.0",
        checks=[{"id": "ping", "grader": "routing.lan_reachability", "args": {}}],
    )
    check = CheckResult(
        id="ping",
        title=I18n(fr="Joignabilité", en="Reachability"),
        grader="routing.lan_reachability",
        status="pass" if score else "fail",
        points=score,
        max_points=10,
        message=I18n(fr="Tout répond.", en="Everything answers."),
        criteria=["tssr-2.3-liens"],
        evidence=["ping.v-hq.pc-hq"],
    )
    summary = GradeSummary(
        run_id=run_id,
        lab_id=info.lab_id,
        instance=info.instance,
        candidate=info.candidate,
        score=score,
        max_score=10,
        started_at=info.started_at,
        ended_at=info.ended_at,
        checks=[check],
    )
    criteria = [
        Criterion(
            id="tssr-2.3-liens",
            certification="tssr",
            block="Activité 2.3 : Administration des réseaux multi-sites.",
            code="A2.3",
            text="Les liens réseaux sont brassés et la connectivité de l'ensemble des équipements est assurée.",
        )
    ]
    return info, summary, criteria


def make_run(runs_dir: Path, run_id: str = "dupont-20261128T034455Z-0a1b", **kw: object) -> tuple[Path, str]:
    info, summary, criteria = models(run_id, **kw)  # type: ignore[arg-type]
    w = RunWriter(runs_dir, run_id)
    w.add_evidence(evidence("ping.v-hq.pc-hq"))
    w.add_evidence(evidence("shared.addressing", check=None, kind="netlink", raw=""))
    w.add_artifact(
        "addressing", [{"node": "r-hq", "iface": "eth0", "state": "UP", "addresses": ["10.1.2.1/24"]}]
    )
    sealed = w.seal(info, summary, criteria, now=info.ended_at)
    assert sealed.manifest_sha256
    return w.path, sealed.manifest_sha256


def unlock(path: Path) -> None:
    """Undo the read-only modes of a sealed folder so a test can tamper with it."""
    for dirpath, _dirs, files in os.walk(path):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)


# --- run ids ---------------------------------------------------------------------------------


def test_new_run_id_format() -> None:
    rid = new_run_id("dupont", datetime(2026, 11, 28, 4, 44, 55, tzinfo=UTC) + timedelta(hours=0))
    assert re.fullmatch(r"dupont-20261128T044455Z-[0-9a-f]{4}", rid)


def test_new_run_id_converts_to_utc_and_takes_naive_as_utc() -> None:
    from datetime import timezone

    paris = timezone(timedelta(hours=1))
    assert new_run_id("a", datetime(2026, 11, 28, 5, 0, 0, tzinfo=paris)).startswith("a-20261128T040000Z-")
    assert new_run_id("a", datetime(2026, 11, 28, 5, 0, 0)).startswith("a-20261128T050000Z-")


def test_new_run_id_rejects_bad_instance() -> None:
    with pytest.raises(ValueError):
        new_run_id("../x", T0)


# --- writing and sealing ---------------------------------------------------------------------


def test_round_trip(runs_dir: Path) -> None:
    path, digest = make_run(runs_dir)
    run = open_run(runs_dir, "dupont-20261128T034455Z-0a1b")
    assert isinstance(run, StoredRun)
    assert run.path == path
    info, summary, criteria = models("dupont-20261128T034455Z-0a1b")
    assert run.info == info
    assert run.summary == summary.model_copy(update={"manifest_sha256": digest})
    assert run.criteria == criteria
    assert run.evidence["ping.v-hq.pc-hq"] == evidence("ping.v-hq.pc-hq")
    assert run.evidence["shared.addressing"].check is None
    assert run.artifacts["addressing"][0]["addresses"] == ["10.1.2.1/24"]
    assert run.manifest_sha256 == digest
    assert run.sealed_at == info.ended_at.isoformat()
    assert set(run.manifest) == {
        "run.json",
        "results.json",
        "criteria.json",
        "evidence/ping.v-hq.pc-hq.json",
        "evidence/shared.addressing.json",
        "artifacts/addressing.json",
    }


def test_seal_design(runs_dir: Path) -> None:
    path, digest = make_run(runs_dir)
    manifest = (path / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest).hexdigest() == digest
    m = json.loads(manifest)
    assert m["algorithm"] == "sha256"
    for rel, sha in m["files"].items():
        assert hashlib.sha256((path / rel).read_bytes()).hexdigest() == sha
    seal = json.loads((path / "seal.json").read_text())
    assert seal["manifest_sha256"] == digest and seal["run_id"] == path.name
    # results.json is covered by the manifest, so it cannot hold the manifest's hash
    assert json.loads((path / "results.json").read_text())["manifest_sha256"] is None


def test_sealed_folder_is_read_only(runs_dir: Path) -> None:
    path, _ = make_run(runs_dir)
    for dirpath, _dirs, files in os.walk(path):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o555
        for f in files:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode) == 0o444
    assert not [p for p in path.rglob("*.tmp")]


def test_writer_rejects_unsafe_and_duplicate_ids(runs_dir: Path) -> None:
    w = RunWriter(runs_dir, "r-1")
    for bad in ("../escape", "a/b", ".hidden", "", "with space", "x" * 200):
        with pytest.raises(ValueError):
            w.add_evidence(evidence(bad))
    w.add_evidence(evidence("ok-1"))
    with pytest.raises(ValueError, match="already stored"):
        w.add_evidence(evidence("ok-1"))
    with pytest.raises(ValueError):
        w.add_artifact("../topology", {})
    w.add_artifact("topology", {})
    with pytest.raises(ValueError):
        w.add_artifact("topology", {})
    assert not (runs_dir / "escape.json").exists()


def test_writer_refuses_existing_folder(runs_dir: Path) -> None:
    RunWriter(runs_dir, "r-1")
    with pytest.raises(FileExistsError):
        RunWriter(runs_dir, "r-1")
    with pytest.raises(ValueError):
        RunWriter(runs_dir, "../r-2")


def test_seal_checks_run_ids(runs_dir: Path) -> None:
    w = RunWriter(runs_dir, "r-1")
    with pytest.raises(ValueError, match="run id"):
        w.seal(*models("r-2"))


def test_abort_and_context_manager(runs_dir: Path) -> None:
    w = RunWriter(runs_dir, "r-1")
    w.add_evidence(evidence("e1"))
    w.abort()
    assert not w.path.exists()
    with pytest.raises(RuntimeError):
        w.add_evidence(evidence("e2"))

    with pytest.raises(KeyError), RunWriter(runs_dir, "r-2") as w2:
        w2.add_evidence(evidence("e1"))
        raise KeyError("grader crashed")
    assert not (runs_dir / "r-2").exists()


def test_sealed_run_cannot_be_aborted_or_extended(runs_dir: Path) -> None:
    info, summary, criteria = models("r-1")
    w = RunWriter(runs_dir, "r-1")
    w.seal(info, summary, criteria)
    with pytest.raises(RuntimeError):
        w.abort()
    with pytest.raises(RuntimeError):
        w.add_artifact("late", [])
    assert open_run(runs_dir, "r-1").evidence == {}


# --- reading back ----------------------------------------------------------------------------


def test_unknown_run(runs_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownRunError, match="no run 'nope'"):
        open_run(runs_dir, "nope")
    with pytest.raises(UnknownRunError, match="not a labkit run folder"):
        open_run(runs_dir, str(tmp_path))
    with pytest.raises(UnknownRunError):
        open_run(runs_dir, str(tmp_path / "missing" / "dir"))


def test_open_by_path_after_copy(runs_dir: Path, tmp_path: Path) -> None:
    path, digest = make_run(runs_dir)
    copy = tmp_path / "elsewhere" / "portfolio-copy"
    shutil.copytree(path, copy)
    run = open_run(tmp_path / "no-such-home", str(copy))
    assert run.path == copy and run.manifest_sha256 == digest


def test_unsealed_folder_is_not_proof(runs_dir: Path) -> None:
    w = RunWriter(runs_dir, "r-1")
    w.add_evidence(evidence("e1"))
    (w.path / "run.json").write_text("{}")
    with pytest.raises(EvidenceIntegrityError, match="sealed"):
        open_run(runs_dir, "r-1")


@pytest.mark.parametrize(
    "rel",
    ["evidence/ping.v-hq.pc-hq.json", "results.json", "artifacts/addressing.json", "criteria.json"],
)
def test_changed_file_is_named(runs_dir: Path, rel: str) -> None:
    path, _ = make_run(runs_dir)
    unlock(path)
    target = path / rel
    target.write_bytes(target.read_bytes().replace(b"2", b"3", 1))
    with pytest.raises(EvidenceIntegrityError, match=re.escape(f"{rel} changed")):
        open_run(runs_dir, path.name)


def test_added_file_is_named(runs_dir: Path) -> None:
    path, _ = make_run(runs_dir)
    unlock(path)
    (path / "evidence" / "forged.json").write_text("{}")
    with pytest.raises(EvidenceIntegrityError, match=re.escape("evidence/forged.json added")):
        open_run(runs_dir, path.name)


def test_added_symlink_is_named(runs_dir: Path) -> None:
    path, _ = make_run(runs_dir)
    unlock(path)
    (path / "artifacts" / "link").symlink_to("/etc")
    with pytest.raises(EvidenceIntegrityError, match=re.escape("artifacts/link added")):
        open_run(runs_dir, path.name)


def test_removed_file_is_named(runs_dir: Path) -> None:
    path, _ = make_run(runs_dir)
    unlock(path)
    (path / "evidence" / "ping.v-hq.pc-hq.json").unlink()
    with pytest.raises(EvidenceIntegrityError, match=re.escape("evidence/ping.v-hq.pc-hq.json removed")):
        open_run(runs_dir, path.name)


def test_several_problems_are_all_named(runs_dir: Path) -> None:
    path, _ = make_run(runs_dir)
    unlock(path)
    (path / "evidence" / "ping.v-hq.pc-hq.json").unlink()
    (path / "notes.txt").write_text("hello")
    with pytest.raises(EvidenceIntegrityError) as exc:
        open_run(runs_dir, path.name)
    assert "notes.txt added" in str(exc.value) and "ping.v-hq.pc-hq.json removed" in str(exc.value)


def test_changed_manifest_or_seal_is_named(runs_dir: Path) -> None:
    path, _ = make_run(runs_dir)
    unlock(path)
    manifest = path / "manifest.json"
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b'"sha256"', b'"sha256" ', 1))
    with pytest.raises(EvidenceIntegrityError, match="manifest.json changed"):
        open_run(runs_dir, path.name)
    manifest.write_bytes(original)
    (path / "seal.json").unlink()
    with pytest.raises(EvidenceIntegrityError, match="seal.json removed"):
        open_run(runs_dir, path.name)


def test_consistently_resealed_folder_has_another_hash(runs_dir: Path) -> None:
    """Rewriting a file and recomputing manifest and seal gives a different manifest hash."""
    path, digest = make_run(runs_dir)
    unlock(path)
    (path / "results.json").write_bytes(
        (path / "results.json").read_bytes().replace(b'"score": 10', b'"score": 9')
    )
    m = json.loads((path / "manifest.json").read_text())
    m["files"]["results.json"] = hashlib.sha256((path / "results.json").read_bytes()).hexdigest()
    data = (json.dumps(m, indent=2) + "\n").encode()
    (path / "manifest.json").write_bytes(data)
    seal = json.loads((path / "seal.json").read_text())
    seal["manifest_sha256"] = hashlib.sha256(data).hexdigest()
    (path / "seal.json").write_text(json.dumps(seal))
    assert open_run(runs_dir, path.name).manifest_sha256 != digest


# --- listing ---------------------------------------------------------------------------------


def test_list_runs_newest_first_skipping_broken(runs_dir: Path) -> None:
    make_run(runs_dir, "old-run", start=T0, score=10)
    make_run(runs_dir, "new-run", start=T0 + timedelta(days=1), score=0)
    (runs_dir / "garbage").mkdir()
    (runs_dir / "garbage" / "seal.json").write_text("{}")
    (runs_dir / "garbage" / "run.json").write_text("not json")
    RunWriter(runs_dir, "unsealed").add_evidence(evidence("e1"))
    (runs_dir / "stray-file").write_text("x")
    rows = list_runs(runs_dir)
    assert [r["id"] for r in rows] == ["new-run", "old-run"]
    assert rows[0] == {
        "id": "new-run",
        "lab": "routing-multisite",
        "instance": "dupont",
        "candidate": "Camille Dupont",
        "score": 0,
        "max": 10,
        "date": "2026-11-29T03:44:55+00:00",
        "mode": "grade",
    }


def test_list_runs_without_folder(tmp_path: Path) -> None:
    assert list_runs(tmp_path / "nothing") == []


# --- attachments (files kept byte for byte, e.g. a GNS3 project export) ----------------------


def test_an_attachment_is_sealed_in_the_manifest_and_its_change_is_seen(runs_dir: Path, tmp_path: Path) -> None:
    run_id = "dupont-20261128T034455Z-0a1c"
    info, summary, criteria = models(run_id)
    src = tmp_path / "export.zip"
    src.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 64)
    w = RunWriter(runs_dir, run_id)
    w.add_evidence(evidence("ping.v-hq.pc-hq"))
    w.add_file("project.gns3project", src)
    with pytest.raises(ValueError, match="already stored"):
        w.add_file("project.gns3project", src)
    with pytest.raises(ValueError, match="safe file name"):
        w.add_file("../escape", src)
    w.seal(info, summary, criteria, now=info.ended_at)
    run = open_run(runs_dir, run_id)
    assert "attachments/project.gns3project" in run.manifest
    assert (run.path / "attachments" / "project.gns3project").read_bytes() == src.read_bytes()
    assert not [p.name for p in (run.path / "attachments").iterdir() if p.name.startswith(".")]
    unlock(run.path)
    (run.path / "attachments" / "project.gns3project").write_bytes(b"PK\x03\x04 changed")
    with pytest.raises(EvidenceIntegrityError, match="project.gns3project"):
        open_run(runs_dir, run_id)


def test_an_attachment_that_cannot_be_read_leaves_no_partial_file(runs_dir: Path, tmp_path: Path) -> None:
    w = RunWriter(runs_dir, "dupont-20261128T034455Z-0a1d")
    with pytest.raises(FileNotFoundError):
        w.add_file("project.gns3project", tmp_path / "missing.zip")
    assert list((w.path / "attachments").iterdir()) == []
