"""Verifying bundles (zip and unzipped folder) and run folders: every file removed, added or
renamed is named; trust decides the verdict; a jury's ssh-keygen + sha256sum agree."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from tests.adapters.bundle.bundle_fixture import (
    RUN_ID,
    STEM,
    T0,
    key_info,
    make_bundle,
    make_signer,
    make_tree,
    relfiles,
    trust_of,
    writable,
)

from labkit.adapters.bundle.verify import HINT, verify_bundle_folder, verify_path, verify_zip_bytes
from labkit.adapters.security.keyring import Trust
from labkit.adapters.security.signing import CentreSigner

RUN = f"runs/{RUN_ID}"


@pytest.fixture(scope="module")
def signer() -> CentreSigner:
    return make_signer()


@pytest.fixture(scope="module")
def trust(signer: CentreSigner) -> Trust:
    return trust_of(key_info(signer))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, signer: CentreSigner) -> tuple[Path, Path]:
    return make_bundle(tmp_path_factory.mktemp("b"), signer)


FILES = [
    "LISEZMOI.txt", "SHA256SUMS", "SHA256SUMS.sig", "allowed_signers", "index.html",
    f"{RUN}/artifacts/addressing.json", f"{RUN}/criteria.json", f"{RUN}/evidence/ping.a.json",
    f"{RUN}/evidence/ping.b.json", f"{RUN}/manifest.json", f"{RUN}/results.json", f"{RUN}/run.json",
    f"{RUN}/seal.json", f"{RUN}/seal.json.sig",
]


def test_clean_bundle_verifies(bundle: tuple[Path, Path], trust: Trust, signer: CentreSigner) -> None:
    tree, zpath = bundle
    assert relfiles(tree) == FILES
    for report in (verify_path(zpath, trust), verify_path(tree, trust)):
        assert report.ok and report.problems == [], report.problems
        assert report.signer is not None and report.signer.fingerprint == signer.fingerprint
        assert report.signer.status == "valid" and report.signer.key_status == "active"
        assert report.runs_checked == [RUN_ID] and report.files_checked == len(FILES)
        assert report.verdict().startswith("OK:") and signer.fingerprint in report.verdict()
    assert {s.status for s in verify_path(zpath, trust).signatures} == {"valid"}
    assert len(verify_path(zpath, trust).signatures) == 3  # zip comment, SHA256SUMS.sig, the run's seal


def _copy(tree: Path, dest: Path) -> Path:
    shutil.copytree(tree, dest)
    writable(dest)
    return dest


def _lines(report: object) -> list[str]:
    return [p.line() for p in report.problems]  # type: ignore[attr-defined]


@pytest.mark.parametrize("rel", FILES)
def test_folder_remove_add_rename_each_file(bundle: tuple[Path, Path], trust: Trust, tmp_path: Path,
                                           rel: str) -> None:
    tree = bundle[0]
    # removed
    t = _copy(tree, tmp_path / "removed")
    (t / rel).unlink()
    report = verify_bundle_folder(t, trust)
    assert not report.ok
    assert any(p.path == rel and ("missing" in p.what or "removed" in p.what) for p in report.problems), _lines(report)
    # renamed
    t = _copy(tree, tmp_path / "renamed")
    (t / rel).rename(t / f"{rel}.old")
    report = verify_bundle_folder(t, trust)
    assert not report.ok
    if rel == "SHA256SUMS":  # without its list, a bundle cannot tell what was added
        assert any(p.path == "SHA256SUMS" and "missing" in p.what for p in report.problems), _lines(report)
    elif rel == "SHA256SUMS.sig":  # not in the list, so not known by its hash: missing + added
        assert any(p.path == rel and "missing" in p.what for p in report.problems), _lines(report)
        assert any(p.path == f"{rel}.old" and "added" in p.what for p in report.problems), _lines(report)
    else:
        assert any(p.path == rel and f"renamed to {rel}.old" in p.what for p in report.problems), _lines(report)
        assert any(p.path == f"{rel}.old" and f"{rel} renamed" in p.what for p in report.problems), _lines(report)
    # added next to it
    t = _copy(tree, tmp_path / "added")
    extra = str(Path(rel).parent / "extra.json").removeprefix("./")
    (t / extra).write_text("{}\n")
    report = verify_bundle_folder(t, trust)
    assert not report.ok
    assert any(p.path == extra and "added" in p.what for p in report.problems), _lines(report)


def test_folder_changed_file_is_named_by_sums_and_by_the_run(bundle: tuple[Path, Path], trust: Trust,
                                                             tmp_path: Path) -> None:
    t = _copy(bundle[0], tmp_path / "t")
    ev = t / RUN / "evidence/ping.a.json"
    ev.write_bytes(ev.read_bytes().replace(b'"ok": true', b'"ok": false'))
    report = verify_bundle_folder(t, trust)
    assert _lines(report) == [f"{RUN}/evidence/ping.a.json: changed (against SHA256SUMS)",
                              f"{RUN}/evidence/ping.a.json: changed (against the run's manifest)"]
    assert report.verdict().startswith("FAILED") and "2 problems" in report.verdict()


def test_folder_symlink_instead_of_file(bundle: tuple[Path, Path], trust: Trust, tmp_path: Path) -> None:
    t = _copy(bundle[0], tmp_path / "t")
    (t / "index.html").unlink()
    os.symlink("/etc/hostname", t / "index.html")
    report = verify_bundle_folder(t, trust)
    assert "index.html: replaced by a link or special file (against SHA256SUMS)" in _lines(report)


def _entries(data: bytes) -> tuple[dict[str, bytes], bytes]:
    zf = zipfile.ZipFile(io.BytesIO(data))
    return {i.filename: zf.read(i) for i in zf.infolist()}, zf.comment


def _rezip(entries: dict[str, bytes], comment: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(entries):
            zf.writestr(zipfile.ZipInfo(name, date_time=(2026, 11, 28, 3, 49, 54)), entries[name],
                        compress_type=zipfile.ZIP_DEFLATED)
        zf.comment = comment
    return buf.getvalue()


def test_zip_remove_add_rename_each_file(bundle: tuple[Path, Path], trust: Trust) -> None:
    """The zip rebuilt with one entry removed, renamed, or one added, under the original
    comment (as an attacker would try): the archive is reported changed and the file named."""
    entries, comment = _entries(bundle[1].read_bytes())
    assert _rezip(entries, comment) != bundle[1].read_bytes()
    for rel in FILES:
        name = f"{STEM}/{rel}"
        cases = {
            "removed": ({k: v for k, v in entries.items() if k != name}, [(name, "missing")]),
            "renamed": ({(f"{k}.old" if k == name else k): v for k, v in entries.items()},
                        [(name, "renamed to"), (f"{name}.old", "renamed")]),
            "added": ({**entries, f"{STEM}/{Path(rel).parent}/extra.json".replace("/./", "/"): b"{}"},
                      [(f"{STEM}/{Path(rel).parent}/extra.json".replace("/./", "/"), "added")]),
        }
        if rel == "SHA256SUMS":
            cases["renamed"] = (cases["renamed"][0], [(name, "missing")])
        elif rel == "SHA256SUMS.sig":
            cases["renamed"] = (cases["renamed"][0], [(name, "missing"), (f"{name}.old", "added")])
        for case, (changed, expected) in cases.items():
            report = verify_zip_bytes(_rezip(changed, comment), trust)
            assert not report.ok
            assert report.problems[0].path in ("zip", "zip comment"), (rel, case, _lines(report))
            for path, word in expected:
                assert any(p.path == path and word in p.what for p in report.problems), (rel, case, _lines(report))


def test_untrusted_key(bundle: tuple[Path, Path], signer: CentreSigner) -> None:
    for report in (verify_path(bundle[1], trust_of()), verify_path(bundle[0], trust_of())):
        assert not report.ok
        assert report.signer is not None and report.signer.status == "untrusted"
        assert any(HINT in p.what and signer.fingerprint in p.what for p in report.problems)
    other = make_signer("Autre centre")
    assert not verify_path(bundle[1], trust_of(key_info(other))).ok


def test_revoked_and_retired_keys(bundle: tuple[Path, Path], signer: CentreSigner) -> None:
    revoked = trust_of(key_info(signer, "revoked", "2026-11-29T10:00:00+00:00", "laptop stolen"))
    report = verify_path(bundle[1], revoked)
    assert not report.ok and report.signer is not None and report.signer.status == "revoked"
    assert f"zip comment: signed by {signer.fingerprint}, a key revoked on 2026-11-29T10:00:00+00:00: " \
           "laptop stolen" in _lines(report)
    assert any(p.path == f"{STEM}/{RUN}/seal.json.sig" and "revoked on" in p.what for p in report.problems)
    retired = trust_of(key_info(signer, "retired"))
    assert verify_path(bundle[1], retired).ok and verify_path(bundle[0], retired).ok


def test_run_signed_by_an_older_key(tmp_path: Path, signer: CentreSigner) -> None:
    """After a rotation: the bundle is signed by the new key, the run by the retired one."""
    old = make_signer()
    tree, zpath = make_bundle(tmp_path, signer, run_signer=old)
    both = trust_of(key_info(signer), key_info(old, "retired"))
    assert verify_path(zpath, both).ok and verify_path(tree, both).ok
    report = verify_path(zpath, trust_of(key_info(signer)))
    assert not report.ok
    assert [p.path for p in report.problems] == [f"{STEM}/{RUN}/seal.json.sig"]


def test_unsigned_run_inside_a_bundle_is_a_warning(tmp_path: Path, signer: CentreSigner, trust: Trust) -> None:
    tree, zpath = make_bundle(tmp_path, signer, run_signed=False)
    for report in (verify_path(zpath, trust), verify_path(tree, trust)):
        assert report.ok, _lines(report)
        assert [p.severity for p in report.problems] == ["warning"]
        assert "vouched for by the bundle signature only" in report.problems[0].what
    run = verify_path(tree / RUN, trust)
    assert not run.ok and _lines(run) == [
        "seal.json.sig: missing: the run is not signed (it was graded before the centre had a key), so nothing "
        "proves who graded it"]


def test_run_folder(bundle: tuple[Path, Path], trust: Trust, tmp_path: Path) -> None:
    run = _copy(bundle[0] / RUN, tmp_path / RUN_ID)
    assert verify_path(run, trust).ok
    (run / "evidence/ping.b.json").write_text("{}")
    (run / "evidence/new.json").write_text("{}")
    report = verify_path(run, trust)
    assert not report.ok and report.kind == "run"
    assert _lines(report) == ["evidence/new.json: added", "evidence/ping.b.json: changed"]


# ------------------------------------------------------------------ a jury with OpenSSH and coreutils


def _jury(folder: Path) -> tuple[int, int]:
    with open(folder / "SHA256SUMS", "rb") as sums:
        ssh = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", "allowed_signers", "-I", "centre", "-n",
                              "labkit-bundle", "-s", "SHA256SUMS.sig"], stdin=sums, cwd=folder,
                             capture_output=True, timeout=30)
    sha = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, timeout=30)
    return ssh.returncode, sha.returncode


@pytest.mark.skipif(not shutil.which("ssh-keygen") or not shutil.which("sha256sum"), reason="needs OpenSSH, coreutils")
def test_jury_checks_with_ssh_keygen_and_sha256sum(bundle: tuple[Path, Path], tmp_path: Path) -> None:
    with zipfile.ZipFile(bundle[1]) as zf:
        zf.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / STEM
    assert _jury(folder) == (0, 0)
    (folder / "index.html").write_text("<p>forged</p>\n")
    assert _jury(folder) == (0, 1)
    sums = folder / "SHA256SUMS"
    sums.write_bytes(sums.read_bytes().replace(b"  index.html", b"  index.htm"))
    assert _jury(folder)[0] != 0


def test_folder_without_sums_nor_signature(bundle: tuple[Path, Path], trust: Trust, tmp_path: Path) -> None:
    t = _copy(bundle[0], tmp_path / "t")
    (t / "SHA256SUMS").unlink()
    (t / "SHA256SUMS.sig").unlink()
    report = verify_path(t, trust)
    assert not report.ok and report.kind == "bundle-folder"
    assert [p.path for p in report.problems] == ["SHA256SUMS", "SHA256SUMS.sig"]


def test_zip_and_sums_signed_by_two_keys(tmp_path: Path, signer: CentreSigner) -> None:
    """Both keys trusted, but a bundle is signed by one key: the mix is reported."""
    from labkit.adapters.bundle.container import build_zip
    from labkit.adapters.storage.runs import read_tree

    other = make_signer()
    tree, _ = make_bundle(tmp_path, other)
    files = {rel: data for rel, data in read_tree(tree).items() if data is not None}
    mixed = build_zip(files, STEM, T0, signer)
    report = verify_zip_bytes(mixed, trust_of(key_info(signer), key_info(other)))
    assert not report.ok
    assert any(p.path == f"{STEM}/SHA256SUMS.sig" and "one bundle is signed by one key" in p.what
               for p in report.problems), _lines(report)


def _sign_other(tree: Path) -> None:
    from labkit.adapters.security.signing import NAMESPACE_RUN

    seal = tree / RUN / "seal.json"
    (tree / RUN / "seal.json.sig").write_text(make_signer().sign(seal.read_bytes(), NAMESPACE_RUN))


RUN_TAMPERS = {
    "evidence changed": (lambda t: (t / RUN / "evidence/ping.a.json").write_text("{}"),
                         [(f"{RUN}/evidence/ping.a.json", "changed (against the run's manifest)")]),
    "run signature removed": (lambda t: (t / RUN / "seal.json.sig").unlink(),
                              [(f"{RUN}/seal.json.sig", "missing, although seal.json says the run was signed")]),
    "run signed by another key": (_sign_other, [(f"{RUN}/seal.json", "but seal.json.sig was made with")]),
    "run signature damaged": (lambda t: (t / RUN / "seal.json.sig").write_text("garbage"),
                              [(f"{RUN}/seal.json.sig", "the signature is not an armored SSH signature")]),
}


@pytest.mark.parametrize("case", sorted(RUN_TAMPERS))
def test_run_tampered_before_bundling_zip_and_folder_agree(tmp_path: Path, signer: CentreSigner, trust: Trust,
                                                          case: str) -> None:
    """The centre bundles a run that was tampered with: the bundle signature is valid, the run's
    own chain and signature catch it, identically in the zip (checked in memory, with this
    module's reading of the seal) and in the folder (with the keyring's seal_signature)."""
    from labkit.adapters.bundle import finalize_bundle
    from labkit.adapters.bundle.sums import SUMS

    tamper, expected = RUN_TAMPERS[case]
    tree = make_tree(tmp_path, signer)
    tamper(tree)
    zpath = finalize_bundle(tree, tmp_path / f"{STEM}.zip", signer, T0)
    folder = verify_path(tree, trust)
    zipped = verify_path(zpath, trust)
    assert not folder.ok and not zipped.ok
    assert [(p.path, p.what) for p in folder.problems] == [
        (p.path.removeprefix(f"{STEM}/"), p.what) for p in zipped.problems]
    for path, words in expected:
        assert any(p.path == path and words in p.what for p in folder.problems), _lines(folder)
    assert not any(p.path in (SUMS, "SHA256SUMS.sig") for p in folder.problems)
