"""The verify use case: run id or path, trust from --key files or the local key store
(with rotation and revocation done by the real Keyring)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.adapters.bundle.verify import SignatureReport, VerifyReport
from labkit.adapters.security.keyring import Keyring
from labkit.errors import UnknownRunError, UserError
from labkit.settings import load_settings
from labkit.usecases.lifecycle import Context
from labkit.usecases.verify import verify
from tests.adapters.bundle import bundle_fixture as bf


def _signer(report: VerifyReport) -> SignatureReport:
    assert report.signer is not None
    return report.signer


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    return Context(load_settings())


def test_run_id_and_path_with_the_local_key_store(ctx: Context, tmp_path: Path) -> None:
    kr = Keyring(ctx.settings.home / "keys")
    kr.init("Centre de test")
    signer = kr.signer()
    assert signer is not None
    run = bf.make_run(ctx.settings.runs, signer)
    for target in (bf.RUN_ID, str(run)):
        report = verify(ctx, target)
        assert report.ok and report.kind == "run", report.problems
        assert _signer(report).fingerprint == signer.fingerprint and _signer(report).key_status == "active"
    tree, zpath = bf.make_bundle(tmp_path / "b", signer)
    assert verify(ctx, str(zpath)).ok and verify(ctx, str(tree)).ok


def test_key_files_replace_the_key_store(ctx: Context, tmp_path: Path) -> None:
    signer = bf.make_signer()
    _, zpath = bf.make_bundle(tmp_path, signer)
    report = verify(ctx, str(zpath))  # no local key at all: the signature is valid but not trusted
    assert not report.ok and _signer(report).status == "untrusted"
    pub = tmp_path / "centre.pub"
    pub.write_text(signer.public_line + "\n")
    assert verify(ctx, str(zpath), [pub]).ok


def test_rotation_then_revocation(ctx: Context, tmp_path: Path) -> None:
    """Old bundles stay valid after a rotation; after the old key is revoked they are reported
    as signed by a revoked key, both with the key store and with a jury's exported files."""
    kr = Keyring(ctx.settings.home / "keys")
    kr.init("Centre de test")
    old = kr.signer()
    assert old is not None
    _, zpath = bf.make_bundle(tmp_path / "b", old)
    kr.rotate()
    report = verify(ctx, str(zpath))
    assert report.ok and _signer(report).key_status == "retired"
    kr.revoke(old.fingerprint, "laptop stolen")
    exported = kr.export(tmp_path / "jury")
    for keys in ([], exported):
        report = verify(ctx, str(zpath), keys)
        assert not report.ok and _signer(report).status == "revoked"
        assert any("revoked on" in p.what and "laptop stolen" in p.what for p in report.problems)


def test_unknown_target_and_bad_key_file(ctx: Context, tmp_path: Path) -> None:
    with pytest.raises(UnknownRunError, match="neither a file, a folder nor a run id"):
        verify(ctx, "nope-20260101T000000Z-0000")
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key\n")
    with pytest.raises(UserError):
        verify(ctx, str(tmp_path), [bad])
    with pytest.raises(UserError, match="neither a bundle folder"):
        verify(ctx, str(tmp_path))
