"""The centre's key store and the trust decisions on run signatures."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from labkit.adapters.security.keyring import KeyInfo, Keyring, Trust, _find
from labkit.adapters.security.run_signature import run_signature, seal_signature
from labkit.adapters.security.signing import NAMESPACE_REVOCATION, NAMESPACE_RUN, load_private_key, sshsig_verify
from labkit.adapters.storage.runs import open_run
from labkit.errors import UserError
from tests.adapters.security.signed_runs import make_run


@pytest.fixture
def kr(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "home" / "keys")


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _writable(folder: Path) -> None:
    for dirpath, _dirs, files in os.walk(folder):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)


def secret_forms(private_file: Path) -> list[bytes]:
    """The private key as it could leak: the file, its base64 body, the raw seed (bytes, hex, base64)."""
    pem = private_file.read_bytes()
    key = load_private_key(pem)
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    body = b"".join(pem.splitlines()[1:-1])
    return [pem, body, body[20:80], seed, seed.hex().encode(), base64.b64encode(seed),
            base64.b64encode(seed).rstrip(b"=")]


def test_init_makes_a_private_store(kr: Keyring) -> None:
    assert kr.keys() == [] and kr.signer() is None
    with pytest.raises(UserError, match=r"no centre key: run `labkit keys init --centre NAME`"):
        kr.require_signer()
    info = kr.init("  CFA   Lyon ")
    assert info.status == "active" and info.centre == "CFA Lyon" and info.fingerprint.startswith("SHA256:")
    assert _mode(kr.root) == 0o700
    priv = kr.private_path(info.fingerprint)
    assert _mode(priv) == 0o600 and priv.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert _mode(kr.meta_path) == 0o600
    assert kr.public_path(info.fingerprint).read_text().split()[:2] == info.public_line.split()[:2]
    signer = kr.require_signer()
    assert signer.fingerprint == info.fingerprint and signer.centre == "CFA Lyon"
    assert kr.keys() == [info]
    with pytest.raises(UserError, match=r"already has a key .*run `labkit keys rotate`"):
        kr.init("Other")
    for bad in ("", "   ", "a\x1b[31mb", "x" * 121):
        with pytest.raises(UserError, match="centre name must be one line"):
            Keyring(kr.root.parent / f"k{len(bad)}").init(bad)


def test_private_key_works_with_ssh_keygen(kr: Keyring) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    info = kr.init("CFA")
    proc = subprocess.run(["ssh-keygen", "-lf", str(kr.private_path(info.fingerprint))], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.split()[1] == info.fingerprint, proc.stderr


def test_rotation_keeps_old_runs_verifiable(kr: Keyring, tmp_path: Path) -> None:
    first = kr.init("CFA")
    old_run = open_run(tmp_path / "runs", str(make_run(tmp_path / "runs", "r-old", kr.require_signer())))
    second = kr.rotate()
    assert second.status == "active" and second.fingerprint != first.fingerprint
    by_fp = {k.fingerprint: k for k in kr.keys()}
    assert by_fp[first.fingerprint].status == "retired" and by_fp[first.fingerprint].retired_at
    assert not kr.private_path(first.fingerprint).exists()  # the retired private key is deleted
    assert kr.public_path(first.fingerprint).exists()  # its public key is kept
    assert kr.require_signer().fingerprint == second.fingerprint
    new_run = open_run(tmp_path / "runs", str(make_run(tmp_path / "runs", "r-new", kr.require_signer())))
    assert new_run.key_fingerprint == second.fingerprint and old_run.key_fingerprint == first.fingerprint

    local = Trust.from_keyring(kr)
    old = run_signature(old_run, local)
    assert old.ok and old.status == "valid" and old.key and old.key.status == "retired"
    assert run_signature(new_run, local).ok
    # the jury's copy: exported files only
    files = kr.export(tmp_path / "jury")
    assert [p.name for p in files] == ["centre.pub", "allowed_signers", "revocations.json"]
    jury = Trust.from_files(files)
    verdict = run_signature(old_run, jury)
    assert verdict.ok and verdict.key and verdict.key.status == "retired" and verdict.key.centre == "CFA"
    assert run_signature(new_run, jury).key.status == "active"  # type: ignore[union-attr]
    assert run_signature(old_run, Trust.from_files([tmp_path / "jury" / "centre.pub"])).ok


def test_revoked_key_is_reported_as_revoked(kr: Keyring, tmp_path: Path) -> None:
    first = kr.init("CFA")
    run = open_run(tmp_path / "runs", str(make_run(tmp_path / "runs", "r1", kr.require_signer())))
    with pytest.raises(UserError, match=r"is the active key .*run `labkit keys rotate` first"):
        kr.revoke(first.fingerprint, "stolen")
    second = kr.rotate()
    revoked = kr.revoke(first.fingerprint.removeprefix("SHA256:")[:8], "  laptop   stolen ")
    assert revoked.status == "revoked" and revoked.reason == "laptop stolen" and revoked.revoked_at
    with pytest.raises(UserError, match="already revoked"):
        kr.revoke(first.fingerprint, "again")
    for trust in (Trust.from_keyring(kr), Trust.from_files(kr.export(tmp_path / "jury"))):
        v = run_signature(run, trust)
        assert v.status == "revoked" and not v.ok
        assert v.message == f"signed by {first.fingerprint}, a key revoked on {revoked.revoked_at}: laptop stolen"
    # the statement is signed by the key active at the time, in the revocation namespace
    entry = json.loads((tmp_path / "jury" / "revocations.json").read_text())["revocations"][0]
    assert entry["signed_by"] == second.fingerprint
    assert sshsig_verify(entry["signature"], entry["statement"].encode(), NAMESPACE_REVOCATION).fingerprint \
        == second.fingerprint
    # the revoked key is not in the jury's centre.pub; the new one is
    pub = (tmp_path / "jury" / "centre.pub").read_text()
    assert first.public_line.split()[1] not in pub and second.public_line.split()[1] in pub


def test_forged_or_foreign_revocations_are_refused(kr: Keyring, tmp_path: Path) -> None:
    first = kr.init("CFA")
    kr.rotate()
    kr.revoke(first.fingerprint, "stolen")
    files = kr.export(tmp_path / "jury")
    rev = tmp_path / "jury" / "revocations.json"
    doc = json.loads(rev.read_text())
    doc["revocations"][0]["statement"] = doc["revocations"][0]["statement"].replace("stolen", "lost")
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"the signature does not match the data"):
        Trust.from_files([files[0], forged])
    other = Keyring(tmp_path / "other")
    other.init("Elsewhere")
    with pytest.raises(UserError, match=r"signed by SHA256:\S+, a key you did not pass"):
        Trust.from_files([*other.export(tmp_path / "other-jury")[:1], rev])
    for text in ("{", '{"revocations": 3}', '{"revocations": [{"statement": "{}"}]}'):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(UserError, match="is not a valid revocations.json"):
            Trust.from_files([tmp_path / "bad.json"])
    (tmp_path / "empty.pub").write_text("# nothing\n")
    with pytest.raises(UserError, match="holds no ssh-ed25519 public key"):
        Trust.from_files([tmp_path / "empty.pub"])
    (tmp_path / "broken.pub").write_text("ssh-ed25519 AAAA!!\n")
    with pytest.raises(UserError, match="line 1 of .* is not an ssh-ed25519 public key"):
        Trust.from_files([tmp_path / "broken.pub"])
    with pytest.raises(UserError, match="does not exist"):
        Trust.from_files([tmp_path / "missing.pub"])


def test_signature_verdicts(kr: Keyring, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    unsigned = open_run(runs, str(make_run(runs, "r-unsigned")))
    kr.init("CFA")
    signed_path = make_run(runs, "r-signed", kr.require_signer())
    trust = Trust.from_keyring(kr)
    v = run_signature(unsigned, trust)
    assert v.status == "unsigned" and not v.ok and v.describe("runs/r-unsigned/").startswith(
        "runs/r-unsigned/seal.json.sig: missing: the run is not signed")
    # a valid signature by a key the verifier does not trust
    v = seal_signature(signed_path, Trust({}))
    assert v.status == "untrusted" and "pass the centre's public key with --key" in v.message
    assert "`labkit keys show --pub`" in v.message
    # the signature removed while seal.json names the key: bad, not "unsigned"
    _writable(signed_path)
    sig = (signed_path / "seal.json.sig").read_bytes()
    (signed_path / "seal.json.sig").unlink()
    v = seal_signature(signed_path, trust)
    assert v.status == "bad" and "the signature was removed" in v.message
    # another run's signature
    other_run = make_run(runs, "r-other", kr.require_signer())
    (signed_path / "seal.json.sig").write_bytes((other_run / "seal.json.sig").read_bytes())
    v = seal_signature(signed_path, trust)
    assert v.status == "bad" and v.message == ("the signature does not match the data: the data or the signature "
                                               "was changed")
    (signed_path / "seal.json.sig").write_bytes(sig)
    assert seal_signature(signed_path, trust).ok
    # seal.json changed by one byte
    seal = (signed_path / "seal.json").read_bytes()
    (signed_path / "seal.json").write_bytes(seal.replace(b'"run_id"', b'"run_iD"'))
    v = seal_signature(signed_path, trust)
    assert v.status == "bad" and v.file == "seal.json.sig" and "does not match the data" in v.message
    # seal.json re-signed by the same key but naming another key
    forged = json.loads(seal)
    forged["key_fingerprint"] = "SHA256:someoneelse"
    data = (json.dumps(forged, indent=2) + "\n").encode()
    (signed_path / "seal.json").write_bytes(data)
    (signed_path / "seal.json.sig").write_text(kr.require_signer().sign(data, NAMESPACE_RUN))
    v = seal_signature(signed_path, trust)
    assert v.status == "bad" and v.file == "seal.json" and "names the key SHA256:someoneelse" in v.message
    # a signature made for a bundle, not a run
    (signed_path / "seal.json").write_bytes(seal)
    (signed_path / "seal.json.sig").write_text(kr.require_signer().sign(seal, "labkit-bundle"))
    v = seal_signature(signed_path, trust)
    assert v.status == "bad" and "made for 'labkit-bundle', not for 'labkit-run'" in v.message
    (signed_path / "seal.json.sig").unlink()
    (signed_path / "seal.json.sig").symlink_to(signed_path / "seal.json")
    assert seal_signature(signed_path, trust).status == "bad"
    (signed_path / "seal.json").unlink()
    assert seal_signature(signed_path, trust).file == "seal.json"


def test_bad_key_files_give_clear_errors(kr: Keyring) -> None:
    info = kr.init("CFA")
    priv = kr.private_path(info.fingerprint)
    good = priv.read_bytes()
    priv.chmod(0o640)
    with pytest.raises(UserError, match=rf"other users \(mode 0640\), so it is not used; run `chmod 600 {priv}`"):
        kr.signer()
    priv.chmod(0o604)
    with pytest.raises(UserError, match="chmod 600"):
        kr.require_signer()
    priv.chmod(0o600)
    priv.write_bytes(good[:60])
    with pytest.raises(UserError, match=r"private key .* is damaged .*restore it from a backup, or run "
                                        r"`labkit keys rotate`"):
        kr.signer()
    other = Keyring(kr.root.parent / "other")
    other.init("X")
    priv.write_bytes(other.private_path(other.keys()[0].fingerprint).read_bytes())
    with pytest.raises(UserError, match="is not the key"):
        kr.signer()
    priv.unlink()
    with pytest.raises(UserError, match="private key .* is missing"):
        kr.signer()
    # rotation recovers from a lost private key
    kr.rotate()
    assert kr.signer() is not None
    kr.meta_path.write_text("{not json")
    with pytest.raises(UserError, match=r"key store's index .* is damaged .*restore .* from a backup"):
        kr.keys()


def test_fingerprint_lookup(kr: Keyring) -> None:
    def key(fp: str) -> KeyInfo:
        return KeyInfo(fingerprint=fp, public_line="", centre="C", created_at="t", status="retired")

    keys = [key("SHA256:abcdEF1"), key("SHA256:abcdXY2"), key("SHA256:zzzz9")]
    assert _find(keys, "SHA256:zzzz9").fingerprint == "SHA256:zzzz9"
    assert _find(keys, "zzzz").fingerprint == "SHA256:zzzz9"
    assert _find(keys, " abcdE ").fingerprint == "SHA256:abcdEF1"
    with pytest.raises(UserError, match="names 2 keys .*give more of the fingerprint"):
        _find(keys, "abcd")
    with pytest.raises(UserError, match="no centre key has the fingerprint 'SHA256:nope'"):
        _find(keys, "SHA256:nope")
    with pytest.raises(UserError, match="too short"):
        _find(keys, "ab")
    with pytest.raises(UserError, match="no centre key"):
        kr.revoke("abcd", "x")
    kr.init("CFA")
    with pytest.raises(UserError, match="reason must be one line"):
        kr.revoke(kr.keys()[0].fingerprint, " ")


def test_concurrent_rotations_keep_one_active_key(kr: Keyring) -> None:
    kr.init("CFA")
    errors: list[BaseException] = []

    def rotate() -> None:
        try:
            kr.rotate()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    keys = kr.keys()
    assert len(keys) == 7 and [k.status for k in keys].count("active") == 1
    assert len({k.fingerprint for k in keys}) == 7
    assert sorted(p.name for p in kr.root.iterdir() if not p.name.endswith(".pub") and p.name.startswith("centre-")) \
        == [kr.private_path(keys[-1].fingerprint).name]  # only the active private key is left


def test_private_key_never_leaves_the_store(kr: Keyring, tmp_path: Path) -> None:
    first = kr.init("CFA")
    leaks = secret_forms(kr.private_path(first.fingerprint))
    run = make_run(tmp_path / "runs", "r1", kr.require_signer())
    second = kr.rotate()
    leaks += secret_forms(kr.private_path(second.fingerprint))
    kr.revoke(first.fingerprint, "test")
    files = kr.export(tmp_path / "jury")
    looked = [*files, *(p for p in run.rglob("*") if p.is_file()), kr.meta_path, kr.root / "revocations.json",
              *kr.root.glob("*.pub")]
    texts = [p.read_bytes() for p in looked]
    texts += [repr(kr.require_signer()).encode(), repr(kr.keys()).encode(), json.dumps(
        [k.to_public() for k in kr.keys()]).encode()]
    for blob in texts:
        for secret in leaks:
            assert secret not in blob


def test_signature_verdict_from_files_in_memory(kr: Keyring, tmp_path: Path) -> None:
    """seal_signature_files: the same verdicts for a run read from a zip (no folder on disk)."""
    from labkit.adapters.security.run_signature import seal_signature_files

    kr.init("CFA")
    folder = make_run(tmp_path / "runs", "r1", kr.require_signer())
    seal, sig = (folder / "seal.json").read_bytes(), (folder / "seal.json.sig").read_bytes()
    trust = Trust.from_keyring(kr)
    assert seal_signature_files({"seal.json": seal, "seal.json.sig": sig}, trust).ok
    assert seal_signature_files({"seal.json": seal, "seal.json.sig": None}, trust).message \
        == "is a link or a special file, not a signature"
    assert seal_signature_files({"seal.json": seal}, trust).status == "bad"  # removed, seal.json names the key
    assert seal_signature_files({"seal.json": None, "seal.json.sig": sig}, trust).file == "seal.json"
    assert seal_signature_files({"seal.json": seal + b" ", "seal.json.sig": sig}, trust).status == "bad"
    assert seal_signature_files({"seal.json": seal, "seal.json.sig": sig + b"x" * 20000}, trust).message \
        == "is too large to be a signature"


def test_a_failed_change_leaves_nothing_half_made(kr: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(self: Keyring, keys: list[KeyInfo]) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Keyring, "_write", disk_full)
        with pytest.raises(OSError):
            kr.init("CFA")
    assert sorted(p.name for p in kr.root.iterdir()) == [".lock"] and kr.keys() == []
    first = kr.init("CFA")
    with monkeypatch.context() as m:
        m.setattr(Keyring, "_write", disk_full)
        with pytest.raises(OSError):
            kr.rotate()
    assert kr.keys() == [first] and kr.require_signer().fingerprint == first.fingerprint
    assert sorted(p.name for p in kr.root.iterdir() if p.name.startswith("centre-")) == [
        kr.private_path(first.fingerprint).name, kr.public_path(first.fingerprint).name]


def test_an_unreadable_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"key store .* cannot be used .*set LABKIT_HOME"):
        Keyring(tmp_path / "file" / "keys").init("CFA")


def test_a_jury_checks_with_ssh_keygen_and_the_exported_files(kr: Keyring, tmp_path: Path) -> None:
    """What a jury does without labkit: exported allowed_signers + ssh-keygen -Y verify, for a run
    signed by a retired key, a run signed by the active key, and the revocation statement."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    first = kr.init("CFA Lyon")
    old = make_run(tmp_path / "runs", "r-old", kr.require_signer())
    kr.rotate()
    new = make_run(tmp_path / "runs", "r-new", kr.require_signer())
    third = kr.rotate()
    jury = tmp_path / "jury"
    kr.export(jury)

    def verify(sig: Path, data: bytes, namespace: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(jury / "allowed_signers"), "-I", "centre",
                               "-n", namespace, "-s", str(sig)], input=data, capture_output=True, timeout=30)

    for run in (old, new):
        proc = verify(run / "seal.json.sig", (run / "seal.json").read_bytes(), NAMESPACE_RUN)
        assert proc.returncode == 0, proc.stderr
    assert verify(old / "seal.json.sig", (old / "seal.json").read_bytes() + b" ", NAMESPACE_RUN).returncode != 0
    kr.revoke(first.fingerprint, "stolen")
    kr.export(jury)
    entry = json.loads((jury / "revocations.json").read_text())["revocations"][0]
    (tmp_path / "statement.sig").write_text(entry["signature"])
    proc = verify(tmp_path / "statement.sig", entry["statement"].encode(), NAMESPACE_REVOCATION)
    assert proc.returncode == 0 and entry["signed_by"] == third.fingerprint, proc.stderr
    # the revoked key left the jury's allowed_signers: ssh-keygen now refuses the old run
    assert verify(old / "seal.json.sig", (old / "seal.json").read_bytes(), NAMESPACE_RUN).returncode != 0
