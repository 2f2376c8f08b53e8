"""The trust decision on a sealed run's signature: is ``seal.json.sig`` a valid signature of
``seal.json``'s exact bytes, by the key that seal.json names, and is that key trusted?

:func:`open_run` checks the hash chain seal.json -> manifest.json -> every file; this checks the
last link, the signature, against a :class:`~labkit.adapters.security.keyring.Trust`.
``labkit verify`` reports :attr:`SignatureCheck.describe` and fails unless ``ok``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from labkit.adapters.security.keyring import KeyInfo, Trust
from labkit.adapters.security.signing import NAMESPACE_RUN, SignatureError, sshsig_verify
from labkit.adapters.storage.runs import SEAL, SEAL_SIG, StoredRun

__all__ = ["SignatureCheck", "SignatureStatus", "run_signature", "seal_signature", "seal_signature_files"]

SignatureStatus = Literal["valid", "revoked", "untrusted", "bad", "unsigned"]
_MAX_SIG = 16384
_HINT = "pass the centre's public key with --key (the centre prints it with `labkit keys show --pub`)"


@dataclass(frozen=True)
class SignatureCheck:
    """The verdict on one run's signature.

    ``status``: ``valid`` (a trusted key, active or retired, signed exactly this seal.json),
    ``revoked`` (a valid signature by a key the centre revoked: ``key.revoked_at``,
    ``key.reason``), ``untrusted`` (a valid signature by a key the trust does not hold),
    ``bad`` (missing, malformed, or not matching: ``message`` says why), ``unsigned`` (the run
    was sealed without a key and seal.json names none).
    """

    status: SignatureStatus
    file: str  # the file the verdict is about, relative to the run folder
    message: str  # one sentence, without the file name
    fingerprint: str | None = None  # the signing key (from the signature), else the one seal.json names
    key: KeyInfo | None = None  # what the trust knows of that key

    @property
    def ok(self) -> bool:
        return self.status == "valid"

    def describe(self, prefix: str = "") -> str:
        """``<prefix><file>: <message>``; ``prefix`` is the run folder's path inside a bundle."""
        return f"{prefix}{self.file}: {self.message}"


def run_signature(run: StoredRun, trust: Trust) -> SignatureCheck:
    """The signature verdict of an opened run (seal.json and seal.json.sig read from ``run.path``)."""
    return seal_signature(run.path, trust)


def seal_signature(folder: Path, trust: Trust) -> SignatureCheck:
    """The signature verdict of the run folder ``folder``, even one whose hash chain is broken."""
    folder = Path(folder)
    files: dict[str, bytes | None] = {}
    for name in (SEAL, SEAL_SIG):
        p = folder / name
        if p.is_symlink() or (p.exists() and not p.is_file()):
            files[name] = None
        elif p.is_file():
            with open(p, "rb") as f:
                files[name] = f.read(_MAX_SIG + 1) if name == SEAL_SIG else f.read()
    return seal_signature_files(files, trust)


def seal_signature_files(files: Mapping[str, bytes | None], trust: Trust) -> SignatureCheck:
    """The same verdict from a run's files in memory (a run inside a zip): ``files`` maps
    ``seal.json`` and ``seal.json.sig`` to their bytes, None for a link or special file, and
    lacks a name for a missing file (other names are ignored)."""
    seal_bytes = files.get(SEAL)
    if seal_bytes is None:
        return SignatureCheck("bad", SEAL, "missing (or not a regular file), so nothing can be checked")
    named: str | None = None
    try:
        seal = json.loads(seal_bytes)
        value = seal.get("key_fingerprint") if isinstance(seal, dict) else None
        named = value if isinstance(value, str) and value else None
    except ValueError:
        pass  # the signature below decides; a seal.json that is not JSON cannot match a valid signature
    if SEAL_SIG not in files:
        if named:
            return SignatureCheck("bad", SEAL_SIG, f"missing, although seal.json says the run was signed by {named}: "
                                  "the signature was removed", fingerprint=named, key=trust.status(named))
        return SignatureCheck("unsigned", SEAL_SIG, "missing: the run is not signed (it was sealed before the "
                              "centre had a key)")
    raw = files[SEAL_SIG]
    if raw is None:
        return SignatureCheck("bad", SEAL_SIG, "is a link or a special file, not a signature", fingerprint=named)
    if len(raw) > _MAX_SIG:
        return SignatureCheck("bad", SEAL_SIG, "is too large to be a signature", fingerprint=named)
    try:
        signed = sshsig_verify(raw.decode("utf-8", "replace"), seal_bytes, NAMESPACE_RUN)
    except SignatureError as exc:
        return SignatureCheck("bad", SEAL_SIG, f"the signature {exc}", fingerprint=named,
                              key=trust.status(named) if named else None)
    fp = signed.fingerprint
    key = trust.status(fp)
    if named != fp:
        return SignatureCheck("bad", SEAL, f"names the key {named or '(none)'} but seal.json.sig was made with {fp}",
                              fingerprint=fp, key=key)
    if key is None or key.status == "unknown":
        return SignatureCheck("untrusted", SEAL_SIG, f"signed by {fp}, a key that is not trusted; {_HINT}",
                              fingerprint=fp, key=key)
    if key.status == "revoked":
        return SignatureCheck("revoked", SEAL_SIG, f"signed by {fp}, a key revoked on {key.revoked_at}: {key.reason}",
                              fingerprint=fp, key=key)
    centre = f" of {key.centre}" if key.centre else ""
    return SignatureCheck("valid", SEAL_SIG, f"signed by the centre key {fp}{centre} ({key.status})",
                          fingerprint=fp, key=key)
