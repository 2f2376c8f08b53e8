"""SSHSIG signatures: interoperable with OpenSSH's ``ssh-keygen`` both ways, and every damage
of a signature is detected (namespace, data, truncation, swapped key, any changed byte)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from labkit.adapters.security.signing import (
    NAMESPACE_BUNDLE,
    NAMESPACE_RUN,
    CentreSigner,
    SignatureError,
    fingerprint,
    generate_private_key,
    load_private_key,
    load_public_line,
    private_key_bytes,
    public_line,
    sshsig_sign,
    sshsig_verify,
)

SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="needs ssh-keygen (openssh-client)")
DATA = b'{"manifest_sha256": "ab12", "run_id": "r1"}\n'


def _keygen(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert SSH_KEYGEN
    return subprocess.run([SSH_KEYGEN, *args], input=stdin, capture_output=True, timeout=30)


def _write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _armor(blob: bytes) -> str:
    b64 = base64.b64encode(blob).decode()
    return "\n".join(["-----BEGIN SSH SIGNATURE-----", *[b64[i:i + 70] for i in range(0, len(b64), 70)],
                      "-----END SSH SIGNATURE-----"]) + "\n"


def _blob(armored: str) -> bytes:
    return base64.b64decode("".join(armored.strip().splitlines()[1:-1]))


@needs_ssh_keygen
def test_labkit_signature_verifies_with_ssh_keygen(tmp_path: Path) -> None:
    key = generate_private_key()
    signer = CentreSigner(key, "CFA Test")
    (tmp_path / "allowed_signers").write_text(f"centre {signer.public_line}\n")
    (tmp_path / "seal.json").write_bytes(DATA)
    (tmp_path / "seal.json.sig").write_text(signer.sign(DATA, NAMESPACE_RUN))
    args = ["-Y", "verify", "-f", str(tmp_path / "allowed_signers"), "-I", "centre", "-n", NAMESPACE_RUN,
            "-s", str(tmp_path / "seal.json.sig")]
    ok = _keygen(*args, stdin=DATA)
    assert ok.returncode == 0, ok.stderr
    assert b"Good \"labkit-run\" signature for centre" in ok.stdout + ok.stderr
    changed = _keygen(*args, stdin=DATA.replace(b"ab12", b"ab13"))
    assert changed.returncode != 0
    other_ns = _keygen(*[a if a != NAMESPACE_RUN else NAMESPACE_BUNDLE for a in args], stdin=DATA)
    assert other_ns.returncode != 0


@needs_ssh_keygen
def test_ssh_keygen_signature_verifies_with_labkit(tmp_path: Path) -> None:
    """ssh-keygen signs with a private key file labkit wrote (so it reads labkit's format)."""
    key = generate_private_key()
    priv = _write_private(tmp_path / "centre", private_key_bytes(key))
    (tmp_path / "data").write_bytes(DATA)
    proc = _keygen("-Y", "sign", "-f", str(priv), "-n", NAMESPACE_RUN, str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    armored = (tmp_path / "data.sig").read_text()
    signed = sshsig_verify(armored, DATA, NAMESPACE_RUN)
    assert signed.fingerprint == fingerprint(key.public_key())
    with pytest.raises(SignatureError, match="does not match the data"):
        sshsig_verify(armored, DATA + b" ", NAMESPACE_RUN)
    with pytest.raises(SignatureError, match="was made for 'labkit-run', not for 'labkit-bundle'"):
        sshsig_verify(armored, DATA, NAMESPACE_BUNDLE)


@needs_ssh_keygen
def test_fingerprints_and_key_files_match_ssh_keygen(tmp_path: Path) -> None:
    # a key labkit made: ssh-keygen derives the same public line and prints the same fingerprint
    key = generate_private_key()
    priv = _write_private(tmp_path / "labkit_key", private_key_bytes(key))
    derived = _keygen("-y", "-f", str(priv))
    assert derived.returncode == 0, derived.stderr
    assert derived.stdout.decode().split()[:2] == public_line(key.public_key()).split()[:2]
    (tmp_path / "labkit_key.pub").write_text(public_line(key.public_key(), "labkit centre key: X") + "\n")
    listed = _keygen("-lf", str(tmp_path / "labkit_key.pub"))
    assert listed.stdout.decode().split()[1] == fingerprint(key.public_key())
    # a key ssh-keygen made: labkit reads it and agrees on the fingerprint
    made = _keygen("-q", "-t", "ed25519", "-N", "", "-C", "made by ssh-keygen", "-f", str(tmp_path / "ssh_key"))
    assert made.returncode == 0, made.stderr
    theirs = load_private_key((tmp_path / "ssh_key").read_bytes())
    pub, comment = load_public_line((tmp_path / "ssh_key.pub").read_text())
    assert comment == "made by ssh-keygen"
    expected = _keygen("-lf", str(tmp_path / "ssh_key.pub")).stdout.decode().split()[1]
    assert fingerprint(theirs.public_key()) == fingerprint(pub) == expected


def test_each_damage_is_detected() -> None:
    key, other = generate_private_key(), generate_private_key()
    armored = sshsig_sign(key, DATA, NAMESPACE_RUN)
    assert sshsig_verify(armored, DATA, NAMESPACE_RUN).fingerprint == fingerprint(key.public_key())
    with pytest.raises(SignatureError, match="not for 'labkit-bundle'"):
        sshsig_verify(armored, DATA, NAMESPACE_BUNDLE)
    with pytest.raises(SignatureError, match="does not match the data"):
        sshsig_verify(armored, DATA[:-1], NAMESPACE_RUN)
    blob = _blob(armored)
    for cut in (1, 10, 64, len(blob) // 2, len(blob) - 1):
        with pytest.raises(SignatureError, match="truncated"):
            sshsig_verify(_armor(blob[:-cut]), DATA, NAMESPACE_RUN)
    # the public key inside the signature swapped for another key's: the signature no longer matches
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raw_other = other.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert blob.count(raw) == 1
    with pytest.raises(SignatureError, match="does not match the data"):
        sshsig_verify(_armor(blob.replace(raw, raw_other)), DATA, NAMESPACE_RUN)
    # another key's valid signature is valid, but names the other key: the caller compares fingerprints
    assert sshsig_verify(sshsig_sign(other, DATA, NAMESPACE_RUN), DATA, NAMESPACE_RUN).fingerprint \
        == fingerprint(other.public_key()) != fingerprint(key.public_key())
    # armor damage
    for bad in ("", "garbage", armored.replace("BEGIN", "BEGAN"), armored.replace("A", "!", 1),
                armored.replace("\n-----END", "XYZ\n-----END")):
        with pytest.raises(SignatureError):
            sshsig_verify(bad, DATA, NAMESPACE_RUN)
    with pytest.raises(SignatureError, match="trailing bytes"):
        sshsig_verify(_armor(blob + b"\0"), DATA, NAMESPACE_RUN)


def test_every_changed_byte_of_a_signature_is_detected() -> None:
    key = generate_private_key()
    blob = _blob(sshsig_sign(key, DATA, NAMESPACE_RUN))
    for i in range(len(blob)):
        for mask in (0x01, 0x80):
            damaged = blob[:i] + bytes([blob[i] ^ mask]) + blob[i + 1:]
            with pytest.raises(SignatureError):
                sshsig_verify(_armor(damaged), DATA, NAMESPACE_RUN)


def test_key_files_and_public_lines() -> None:
    key = generate_private_key()
    pem = private_key_bytes(key)
    assert pem.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert fingerprint(load_private_key(pem).public_key()) == fingerprint(key.public_key())
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    assert fingerprint(load_private_key(pkcs8).public_key()) == fingerprint(key.public_key())
    for bad in (b"", b"not a key", pem[:100], pem.replace(b"b3BlbnNzaC1rZXktdjE", b"b3BlbnNzaC1rZXktdjF")):
        with pytest.raises(ValueError):
            load_private_key(bad)
    line = public_line(key.public_key(), "labkit centre key:\n CFA  Lyon")
    assert "\n" not in line and line.endswith("labkit centre key: CFA Lyon")
    pub, comment = load_public_line(f'# a comment\ncentre namespaces="labkit-run" {line}\n')
    assert fingerprint(pub) == fingerprint(key.public_key()) and comment == "labkit centre key: CFA Lyon"
    for bad_text in ("", "ssh-rsa AAAAB3 x", "ssh-ed25519 !!!notbase64"):
        with pytest.raises(ValueError):
            load_public_line(bad_text)


def test_signer_repr_never_shows_the_key() -> None:
    key = generate_private_key()
    signer = CentreSigner(key, "CFA")
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    for text in (repr(signer), str(signer), f"{signer}"):
        assert signer.fingerprint in text
        assert seed.hex() not in text and base64.b64encode(seed).decode() not in text
