"""``labkit bundle``: content and layout of a candidate's signed portfolio zip, made from
synthetic sealed runs (the end-to-end test on a real lab is tests/usecases/test_bundle_e2e.py)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest

from labkit.adapters.bundle import verify_path
from labkit.adapters.security.keyring import Keyring, Trust
from labkit.adapters.storage.runs import RunWriter
from labkit.errors import EvidenceIntegrityError, UserError
from labkit.interfaces.cli import main
from labkit.models.results import GradeSummary
from labkit.settings import load_settings
from labkit.usecases.bundle import bundle_candidate, bundle_cohort, bundle_run, slug
from labkit.usecases.lifecycle import Context
from tests.domain.test_report import CHECKS, CRITERIA, EVIDENCE, ROUTES, TOPOLOGY, ADDRESSING, _t, make_info


def _run(ctx: Context, run_id: str, instance: str, candidate: str | None, *, mode: str = "grade",
         signed: bool = True, start: float = 0) -> str:
    info = make_info(run_id, instance=instance, candidate=candidate, mode=mode, started_at=_t(start),
                     ended_at=_t(start + 40))
    summary = GradeSummary(run_id=run_id, lab_id=info.lab_id, instance=instance, candidate=candidate, score=25,
                           max_score=60, started_at=info.started_at, ended_at=info.ended_at, checks=CHECKS)
    w = RunWriter(ctx.settings.runs, run_id)
    for ev in EVIDENCE:
        w.add_evidence(ev)
    w.add_artifact("topology", TOPOLOGY)
    w.add_artifact("addressing", ADDRESSING)
    for node, routes in ROUTES.items():
        w.add_artifact(f"routes-{node}", routes)
    signer = Keyring(ctx.settings.home / "keys").signer() if signed else None
    w.seal(info, summary, CRITERIA, now=_t(start + 41), signer=signer)
    return run_id


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LABKIT_DB_URL", raising=False)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # to see that the build folder is removed
    c = Context(load_settings())
    Keyring(c.settings.home / "keys").init("Centre de test")
    return c


def _names(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.namelist()


def _trust(ctx: Context) -> Trust:
    return Trust.from_keyring(Keyring(ctx.settings.home / "keys"))


def test_candidate_bundle_layout_and_verification(ctx: Context, tmp_path: Path) -> None:
    old = _run(ctx, "dupont-20261128T030000Z-0001", "dupont", "Camille Dupont", start=-3600)
    new = _run(ctx, "dupont-20261128T034455Z-0002", "dupont", "Camille Dupont")
    self_check = _run(ctx, "dupont-20261128T020000Z-0003", "dupont", "Camille Dupont", mode="selfcheck",
                      start=-7200)
    _run(ctx, "martin-20261128T034455Z-0004", "martin", "Alice Martin")
    out = tmp_path / "out" / "camille.zip"
    res = bundle_candidate(ctx, "Camille Dupont", out)
    assert res.path == out and res.runs == [old, new]  # grades only, oldest first; Alice's run is not in
    names = _names(out)
    assert all(n.startswith("camille/") for n in names)
    rel = {n[len("camille/"):] for n in names}
    assert {"index.html", "index.en.html", "index.pdf", "summary.json", "LISEZMOI.txt", "SHA256SUMS",
            "SHA256SUMS.sig", "allowed_signers"} <= rel
    for rid in (old, new):
        assert {f"runs/{rid}/seal.json", f"runs/{rid}/seal.json.sig", f"runs/{rid}/manifest.json",
                f"runs/{rid}/evidence/ospf.r-br2.json"} <= rel
        assert {f"reports/{rid}.{lg}.{ext}" for lg in ("fr", "en") for ext in ("html", "pdf")} <= rel
        assert {f"artifacts/{rid}/{n}" for n in ("topology.svg", "addressing.csv", "routes-r-hq.csv")} <= rel
    assert not any(self_check in n for n in names)
    with zipfile.ZipFile(out) as zf:
        summary = json.loads(zf.read("camille/summary.json"))
        assert zf.read("camille/index.pdf").startswith(b"%PDF-")
        assert zf.read(f"camille/reports/{new}.en.pdf").startswith(b"%PDF-")
        # the run folders are the stored ones, byte for byte
        for n in names:
            if n.startswith(f"camille/runs/{new}/"):
                assert zf.read(n) == (ctx.settings.runs / new / n.split(f"{new}/", 1)[1]).read_bytes()
    assert [r["counted"] for r in summary["runs"]] == [False, True]  # the latest grade per lab counts
    assert summary["candidate"] == "Camille Dupont" and summary["centre"] == "Centre de test"
    report = verify_path(out, _trust(ctx))
    assert report.ok, report.verdict()
    assert set(report.runs_checked) >= {old, new}
    # the build folder is gone
    assert os.listdir(tempfile.gettempdir()) == []
    # with self-checks
    res2 = bundle_candidate(ctx, "dupont", tmp_path / "all.zip", with_selfchecks=True)  # by instance name
    assert res2.runs == [self_check, old, new]


def test_run_bundle_and_unsigned_run_warning(ctx: Context, tmp_path: Path) -> None:
    rid = _run(ctx, "solo-20261128T034455Z-0005", "solo", None, signed=False)
    res = bundle_run(ctx, rid, tmp_path / "solo.zip")
    assert res.candidate == "solo" and res.runs == [rid]
    assert any("not signed" in w for w in res.warnings)
    report = verify_path(tmp_path / "solo.zip", _trust(ctx))
    assert report.ok and report.warnings, report.verdict()
    # a run folder given by path
    res = bundle_run(ctx, str(ctx.settings.runs / rid), tmp_path / "solo2.zip")
    assert res.runs == [rid]


def test_a_tampered_run_stops_the_bundle(ctx: Context, tmp_path: Path) -> None:
    rid = _run(ctx, "dupont-20261128T034455Z-0006", "dupont", "Camille Dupont")
    ev = ctx.settings.runs / rid / "evidence" / "ospf.r-br2.json"
    os.chmod(ev.parent, 0o755)
    os.chmod(ev, 0o644)
    ev.write_bytes(ev.read_bytes().replace(b"neighbors", b"neighbours"))
    out = tmp_path / "x.zip"
    with pytest.raises(EvidenceIntegrityError, match=rf"{rid}.*evidence/ospf.r-br2.json changed"):
        bundle_candidate(ctx, "Camille Dupont", out)
    assert not out.exists() and os.listdir(tempfile.gettempdir()) == []
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_a_run_signed_by_a_revoked_key_is_refused(ctx: Context, tmp_path: Path) -> None:
    kr = Keyring(ctx.settings.home / "keys")
    rid = _run(ctx, "dupont-20261128T034455Z-0007", "dupont", "Camille Dupont")
    old = kr.signer()
    assert old is not None
    kr.rotate()
    kr.revoke(old.fingerprint, "laptop stolen")
    with pytest.raises(EvidenceIntegrityError, match=rf"{rid}.*revoked.*laptop stolen"):
        bundle_candidate(ctx, "Camille Dupont", tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_bad_requests(ctx: Context, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(ctx, "dupont-20261128T034455Z-0008", "dupont", "Camille Dupont")
    with pytest.raises(UserError, match="does not end in .zip"):
        bundle_candidate(ctx, "Camille Dupont", tmp_path / "x.tar")
    with pytest.raises(UserError, match="no recorded grade for candidate or instance 'Nobody'"):
        bundle_candidate(ctx, "Nobody", tmp_path / "x.zip")
    with pytest.raises(UserError, match="not 'c.zip'|not c.zip"):
        bundle_cohort(ctx, "c1", tmp_path / "c.zip")
    with pytest.raises(UserError, match="no cohort named 'c1'"):
        bundle_cohort(ctx, "c1", tmp_path / "c")
    assert main(["bundle", "-o", str(tmp_path / "x.zip")]) == 2
    assert "exactly one of RUN, --candidate ID or --cohort C" in capsys.readouterr().err
    assert main(["bundle", "nope", "-o", str(tmp_path / "x.zip")]) == 2
    printed = capsys.readouterr().err
    assert "no run 'nope'" in printed and "Traceback" not in printed
    assert main(["bundle", "--candidate", "Camille Dupont", "-o", str(tmp_path / "x.zip"), "--with-selfchecks",
                 "--lang", "de"]) == 2
    # without a centre key
    (ctx.settings.home / "keys").rename(tmp_path / "keys-away")
    with pytest.raises(UserError, match="labkit keys init"):
        bundle_candidate(ctx, "Camille Dupont", tmp_path / "x.zip")
    assert not list(tmp_path.glob("*.zip"))


def test_certification_restricts_the_summary_criteria_and_json(ctx: Context, tmp_path: Path) -> None:
    _run(ctx, "dupont-20261128T034455Z-0010", "dupont", "Camille Dupont")
    bundle_candidate(ctx, "Camille Dupont", tmp_path / "all.zip")
    assert main(["bundle", "--candidate", "Camille Dupont", "--certification", "tssr", "-o",
                 str(tmp_path / "tssr.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "all.zip") as zf:
        every = json.loads(zf.read("all/summary.json"))
    with zipfile.ZipFile(tmp_path / "tssr.zip") as zf:
        tssr = json.loads(zf.read("tssr/summary.json"))
        index = zf.read("tssr/index.html").decode()
        index_en = zf.read("tssr/index.en.html").decode()
        runs = {n for n in zf.namelist() if n.startswith("tssr/runs/")}
    assert every["certifications"] == ["igs", "tssr"]
    assert tssr["certifications"] == ["tssr"]
    assert tssr["criteria"] == [c for c in every["criteria"] if c["certification"] == "tssr"]
    assert sum(tssr["counts"].values()) == len(tssr["criteria"]) > 0
    for page in (index, index_en):
        assert 'id="crit-tssr-2.3-liens"' in page and "crit-igs-" not in page
    assert runs  # the runs are bundled whole
    assert verify_path(tmp_path / "tssr.zip", _trust(ctx)).ok
    # two certifications, one of them cited by nobody: its criteria are all listed as not assessed
    bundle_candidate(ctx, "Camille Dupont", tmp_path / "two.zip", certifications=["tssr", "sio", "tssr"])
    with zipfile.ZipFile(tmp_path / "two.zip") as zf:
        two = json.loads(zf.read("two/summary.json"))
    assert two["certifications"] == ["tssr", "sio"]
    assert {c["status"] for c in two["criteria"] if c["certification"] == "sio"} == {"not_assessed"}


def test_unknown_certification_is_refused_before_anything_is_written(
        ctx: Context, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rid = _run(ctx, "dupont-20261128T034455Z-0011", "dupont", "Camille Dupont")
    out = tmp_path / "x.zip"
    assert main(["bundle", "--candidate", "Camille Dupont", "--certification", "tssr", "--certification", "bts",
                 "-o", str(out)]) == 2
    printed = capsys.readouterr().err
    assert "unknown certification 'bts'" in printed and "igs, tssr, sio, expert, afip" in printed
    assert "Traceback" not in printed and len(printed.strip().splitlines()) == 1
    with pytest.raises(UserError, match="unknown certification 'TSSR'"):
        bundle_run(ctx, rid, out, certifications=["TSSR"])
    with pytest.raises(UserError, match="unknown certification 'x'"):
        bundle_cohort(ctx, "c1", tmp_path / "c", certifications=["x"])
    assert not out.exists() and not (tmp_path / "c").exists()
    assert os.listdir(tempfile.gettempdir()) == []


def _portal(ctx: Context, cohort: str, seats: list[tuple[str, str]], casts: dict[str, bytes]) -> None:
    """A portal database in <home>/labkit.db with a cohort and its candidates' recordings."""
    from labkit.adapters.db import repo
    from labkit.adapters.db.database import Database, url_for

    db = Database(url_for(ctx.settings))
    try:
        db.upgrade()
        with db.session() as s:
            c = repo.create_cohort(s, cohort, "routing-multisite", 7)
            for i, (name, instance) in enumerate(seats):
                user = repo.create_user(s, f"cand{i}", name, "candidate")
                cand = repo.add_candidate(s, c, user, name, instance, 100 + i)
                if instance in casts:
                    rel = f"{cohort}/cand{i}/20261128T030000Z-r-hq-ssh.cast"
                    path = ctx.settings.home / "recordings" / rel
                    path.parent.mkdir(parents=True)
                    path.write_bytes(casts[instance])
                    rec = repo.add_recording(s, cand, "r-hq", "ssh", rel)
                    repo.finish_recording(s, rec, len(casts[instance]))
    finally:
        db.dispose()


CAST = (json.dumps({"version": 2, "width": 80, "height": 24, "timestamp": 1_796_000_000}) + "\n"
        + json.dumps([0.5, "o", "\x1b[32mroot@r-hq\x1b[0m:~# "]) + "\n"
        + json.dumps([1.25, "i", "vtysh -c 'show ip ospf neighbor'\r"]) + "\n"
        + json.dumps([1.5, "o", "Neighbor ID     Pri State\r\n10.0.0.2 1 Full/DR\r\n"]) + "\n").encode()


def test_cohort_bundles_with_recordings_from_the_portal(ctx: Context, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _portal(ctx, "c1", [("Élodie D'Arc", "c1-01"), ("Bruno Petit", "c1-02"), ("Sans Note", "c1-03")],
            {"c1-01": CAST})
    _run(ctx, "c1-01-20261128T034455Z-0009", "c1-01", "Élodie D'Arc")
    _run(ctx, "c1-02-20261128T034455Z-000a", "c1-02", "Bruno Petit")
    out = tmp_path / "cohort"
    assert main(["bundle", "--cohort", "c1", "-o", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["skipped"] == ["Sans Note"]
    assert sorted(p.name for p in out.iterdir()) == ["bruno-petit.zip", "elodie-d-arc.zip"]
    with zipfile.ZipFile(out / "elodie-d-arc.zip") as zf:
        names = zf.namelist()
        cast = [n for n in names if n.endswith(".cast")]
        assert cast == ["elodie-d-arc/recordings/c1-01-20261128T030000Z-r-hq-ssh.cast"]
        assert zf.read(cast[0]) == CAST
        page = zf.read(cast[0][: -len(".cast")] + ".html").decode()
        assert "vtysh -c &#x27;show ip ospf neighbor&#x27;⏎" in page and "\x1b" not in page
        index = zf.read("elodie-d-arc/index.html").decode()
        assert 'href="recordings/c1-01-20261128T030000Z-r-hq-ssh.html"' in index
    assert not any(n.endswith(".cast") for n in _names(out / "bruno-petit.zip"))
    assert verify_path(out / "elodie-d-arc.zip", _trust(ctx)).ok
    assert slug("Élodie D'Arc") == "elodie-d-arc" and slug("***") == "candidate"


def test_recording_outside_the_recordings_folder_is_left_out(ctx: Context, tmp_path: Path) -> None:
    _portal(ctx, "c2", [("Eve Tricheuse", "c2-01")], {"c2-01": CAST})
    # the row now points at a link to a file outside <home>/recordings
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the jury")
    path = next((ctx.settings.home / "recordings").rglob("*.cast"))
    path.unlink()
    path.symlink_to(secret)
    _run(ctx, "c2-01-20261128T034455Z-000b", "c2-01", "Eve Tricheuse")
    res = bundle_candidate(ctx, "Eve Tricheuse", tmp_path / "eve.zip")
    assert res.recordings == 0 and any("not under" in w for w in res.warnings)
    assert not any("recordings/" in n for n in _names(tmp_path / "eve.zip"))


def test_zip_and_tree_carry_no_private_key(ctx: Context, tmp_path: Path) -> None:
    _run(ctx, "dupont-20261128T034455Z-000c", "dupont", "Camille Dupont")
    bundle_candidate(ctx, "Camille Dupont", tmp_path / "k.zip")
    keys = ctx.settings.home / "keys"
    private = [p for p in keys.rglob("*") if p.is_file() and stat.S_IMODE(p.stat().st_mode) == 0o600
               and b"PRIVATE KEY" in p.read_bytes()]
    assert private
    from tests.usecases.secrets_check import private_key_forms

    forms = [f for p in private for f in private_key_forms(p.read_bytes())]
    data = (tmp_path / "k.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "k.zip") as zf:
        blobs = [data] + [zf.read(n) for n in zf.namelist()]
    assert not any(f in b for f in forms for b in blobs)


def test_no_portal_database_is_created(ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = _run(ctx, "solo-20261128T034455Z-000d", "solo", None)
    bundle_run(ctx, rid, tmp_path / "a.zip")
    assert not (ctx.settings.home / "labkit.db").exists()
    monkeypatch.setenv("LABKIT_DB_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    bundle_run(ctx, rid, tmp_path / "b.zip")
    assert not (tmp_path / "elsewhere.db").exists()


def test_cohort_from_the_cli_cohort_file(ctx: Context, tmp_path: Path) -> None:
    from labkit.usecases.cohort import Cohort, Seat

    c = Cohort("c3", "routing-multisite", 9, [Seat("Ana Lima", "c3-01", 9), Seat("Ana Lima", "c3-02", 10)])
    path = ctx.settings.home / "cohorts" / "c3.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(c.to_json()))
    _run(ctx, "c3-01-20261128T034455Z-000e", "c3-01", "Ana Lima")
    _run(ctx, "c3-02-20261128T034455Z-000f", "c3-02", "Ana Lima")
    results, skipped = bundle_cohort(ctx, "c3", tmp_path / "c3")
    assert skipped == []
    # two seats with the same name: the second zip carries its instance, each holds its own run
    assert [r.path.name for r in results] == ["ana-lima.zip", "ana-lima-c3-02.zip"]
    assert [r.runs for r in results] == [["c3-01-20261128T034455Z-000e"], ["c3-02-20261128T034455Z-000f"]]
