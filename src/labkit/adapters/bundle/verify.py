"""Verify a run folder, a bundle zip or an unzipped bundle folder against the trusted keys.

Every problem names the exact file (its path inside the bundle or run folder; for the zip's
own structure: the entry, ``zip central directory``, ``zip end record`` or ``zip comment``)
and what is wrong. :attr:`VerifyReport.ok` is true only when every signature is valid and
made by a trusted key that is not revoked, and no file was changed, added or removed.

A zip is never unpacked to disk: its bytes are checked region by region, its central
directory is inspected and a dangerous zip is refused (nothing more is read from it), then
its entries are inflated in memory and checked like a bundle folder.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from labkit.adapters.bundle import container
from labkit.adapters.bundle.sums import ALLOWED_SIGNERS, SUMS, SUMS_SIG, check_sums, is_exact_armor
from labkit.adapters.security.keyring import KeyInfo, Trust
from labkit.adapters.security.run_signature import SignatureCheck, seal_signature, seal_signature_files
from labkit.adapters.security.signing import (
    NAMESPACE_BUNDLE,
    SignatureError,
    Signed,
    fingerprint,
    load_public_line,
    sshsig_verify,
)
from labkit.adapters.storage.runs import MANIFEST, RUN_FILE, SEAL, SEAL_SIG, check_run_files, read_tree
from labkit.errors import UserError

__all__ = [
    "MAX_ZIP_BYTES",
    "Problem",
    "SignatureReport",
    "VerifyReport",
    "verify_bundle_folder",
    "verify_path",
    "verify_run_folder",
    "verify_zip_bytes",
]

Kind = Literal["run", "bundle-zip", "bundle-folder"]
Severity = Literal["error", "warning"]
SigStatus = Literal["valid", "revoked", "untrusted", "bad", "unsigned"]
MAX_ZIP_BYTES = 2 * 1024**3
_MAX_SIG = 16384
HINT = "pass the centre's public key with --key (the centre prints it with `labkit keys show --pub`)"
RUNS = "runs"


@dataclass(frozen=True)
class Problem:
    path: str  # the file, as a path inside the bundle or run folder, or a zip region
    what: str
    severity: Severity = "error"

    def line(self) -> str:
        return f"{self.path}: {self.what}"


@dataclass(frozen=True)
class SignatureReport:
    path: str  # the signature: zip comment, SHA256SUMS.sig, runs/<id>/seal.json.sig, seal.json.sig
    status: SigStatus
    fingerprint: str | None = None
    centre: str | None = None
    key_status: str | None = None  # active | retired | revoked | unknown, from the trust
    revoked_at: str | None = None
    reason: str | None = None


@dataclass
class VerifyReport:
    target: str
    kind: Kind
    problems: list[Problem] = field(default_factory=list)
    signatures: list[SignatureReport] = field(default_factory=list)
    runs_checked: list[str] = field(default_factory=list)
    files_checked: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors and any(s.status == "valid" for s in self.signatures)

    @property
    def signer(self) -> SignatureReport | None:
        """The signature that vouches for the whole (the zip's, else SHA256SUMS', else the run's)."""
        return self.signatures[0] if self.signatures else None

    def verdict(self) -> str:
        what = {"run": "run", "bundle-zip": "bundle", "bundle-folder": "bundle folder"}[self.kind]
        s = self.signer
        if self.ok and s is not None:
            runs = f", {len(self.runs_checked)} run(s)" if self.kind != "run" else ""
            centre = f" of {s.centre}" if s.centre else ""
            return (f"OK: {what} {self.target} verified ({self.files_checked} files{runs}), signed by the "
                    f"centre key {s.fingerprint}{centre} ({s.key_status})")
        n = len(self.errors)
        return f"FAILED: {what} {self.target} does not verify ({n} problem{'s' if n != 1 else ''})"

    def to_json(self) -> dict[str, Any]:
        s = self.signer
        return {
            "target": self.target,
            "kind": self.kind,
            "ok": self.ok,
            "signer": {"fingerprint": s.fingerprint, "status": s.status, "key_status": s.key_status,
                       "centre": s.centre} if s else None,
            "problems": [{"path": p.path, "what": p.what, "severity": p.severity} for p in self.problems],
            "signatures": [vars(x) for x in self.signatures],
            "runs_checked": self.runs_checked,
            "files_checked": self.files_checked,
            "verdict": self.verdict(),
        }


# ------------------------------------------------------------------ trust


def _trusted(path: str, fp: str, trust: Trust) -> tuple[SignatureReport, Problem | None]:
    """The trust verdict on a valid signature by ``fp``."""
    key: KeyInfo | None = trust.status(fp)
    if key is None or key.status == "unknown":
        return (SignatureReport(path, "untrusted", fp, key_status="unknown"),
                Problem(path, f"signed by {fp}, a key that is not trusted; {HINT}"))
    revoked = key.status == "revoked"
    rep = SignatureReport(path, "revoked" if revoked else "valid", fp, centre=key.centre or None,
                          key_status=key.status, revoked_at=key.revoked_at, reason=key.reason)
    if revoked:
        return rep, Problem(path, f"signed by {fp}, a key revoked on {key.revoked_at}: {key.reason}")
    return rep, None


def _from_seal_check(prefix: str, check: SignatureCheck, in_bundle: bool) -> tuple[SignatureReport, Problem | None]:
    """A run's signature verdict (H1's :class:`SignatureCheck`) as report and problem."""
    key = check.key
    rep = SignatureReport(prefix + SEAL_SIG if check.file == SEAL_SIG else prefix + check.file, check.status,
                          check.fingerprint, centre=(key.centre or None) if key else None,
                          key_status=key.status if key else ("unknown" if check.status == "untrusted" else None),
                          revoked_at=key.revoked_at if key else None, reason=key.reason if key else None)
    if check.ok:
        return rep, None
    if check.status == "unsigned":
        if in_bundle:
            return rep, Problem(prefix + SEAL_SIG, "missing: the run is not signed (graded before the centre had a "
                                "key); it is vouched for by the bundle signature only", "warning")
        return rep, Problem(SEAL_SIG, "missing: the run is not signed (it was graded before the centre had a key), "
                            "so nothing proves who graded it")
    return rep, Problem(prefix + check.file, check.message)


# ------------------------------------------------------------------ run folder


def verify_run_folder(path: Path, trust: Trust) -> VerifyReport:
    """A run folder: its hash chain and its signature (an unsigned run fails)."""
    report = VerifyReport(str(path), "run")
    files = read_tree(path)
    chain = check_run_files(files)
    report.problems += [Problem(rel, what) for rel, what in chain.problems]
    rep, problem = _from_seal_check("", seal_signature(path, trust), in_bundle=False)
    report.signatures.append(rep)
    if problem:
        report.problems.append(problem)
    report.files_checked = len(files)
    report.runs_checked.append(path.name)
    return report


# ------------------------------------------------------------------ bundle content


def _check_bundle(report: VerifyReport, files: Mapping[str, bytes | None], trust: Trust,
                  seal_check: Callable[[str, Mapping[str, bytes | None]], SignatureCheck],
                  zip_signer: Signed | None) -> None:
    """SHA256SUMS and its signature, every file's hash, then each runs/<id>/ with its own chain."""
    sums = files.get(SUMS)
    sig = files.get(SUMS_SIG)
    report.files_checked = len(files)
    signed: Signed | None = None
    if sums is None:
        report.problems.append(Problem(SUMS, "missing (or not a regular file): the bundle's list of files is gone"))
    if sig is None:
        report.problems.append(Problem(SUMS_SIG, "missing (or not a regular file): the bundle is not signed"))
        report.signatures.append(SignatureReport(SUMS_SIG, "bad"))
    elif sums is not None:
        try:
            if len(sig) > _MAX_SIG:
                raise SignatureError("is too large to be a signature")
            if not is_exact_armor(sig):
                raise SignatureError("is not exactly as written (a line break, space or base64 bit was changed)")
            signed = sshsig_verify(sig.decode("utf-8", "replace"), sums, NAMESPACE_BUNDLE)
        except SignatureError as exc:
            report.problems.append(Problem(SUMS_SIG, f"the signature {exc} (SHA256SUMS or SHA256SUMS.sig changed)"))
            report.signatures.append(SignatureReport(SUMS_SIG, "bad"))
    if signed is not None:
        rep, problem = _trusted(SUMS_SIG, signed.fingerprint, trust)
        report.signatures.append(rep)
        if problem:
            report.problems.append(problem)
        if zip_signer is not None and zip_signer.fingerprint != signed.fingerprint:
            report.problems.append(Problem(SUMS_SIG, f"made with {signed.fingerprint}, but the zip is signed by "
                                           f"{zip_signer.fingerprint}: one bundle is signed by one key"))
        allowed = files.get(ALLOWED_SIGNERS)
        if allowed is not None:
            try:
                pub, _ = load_public_line(allowed.decode("utf-8", "replace"))
                if fingerprint(pub) != signed.fingerprint:
                    report.problems.append(Problem(ALLOWED_SIGNERS, "names another key than the one that signed "
                                                   "SHA256SUMS, so a jury's ssh-keygen check fails"))
            except ValueError as exc:
                report.problems.append(Problem(ALLOWED_SIGNERS, f"holds no usable key ({exc})"))
    if sums is not None:
        report.problems += [Problem(rel, f"{what} (against SHA256SUMS)")
                            for rel, what in check_sums(sums, files).problems]

    run_ids = sorted({rel.split("/")[1] for rel in files if rel.startswith(f"{RUNS}/") and rel.count("/") >= 2})
    for run_id in run_ids:
        prefix = f"{RUNS}/{run_id}/"
        sub = {rel[len(prefix):]: data for rel, data in files.items() if rel.startswith(prefix)}
        if not any(k in sub for k in (SEAL, MANIFEST, RUN_FILE)):
            report.problems.append(Problem(prefix, "is not a run folder (no seal.json, manifest.json nor run.json)"))
            continue
        chain = check_run_files(sub)
        report.problems += [Problem(prefix + rel, f"{what} (against the run's manifest)")
                            for rel, what in chain.problems]
        rep, problem = _from_seal_check(prefix, seal_check(prefix, sub), in_bundle=True)
        report.signatures.append(rep)
        if problem:
            report.problems.append(problem)
        report.runs_checked.append(run_id)


def verify_bundle_folder(path: Path, trust: Trust) -> VerifyReport:
    report = VerifyReport(str(path), "bundle-folder")
    files = read_tree(path)
    _check_bundle(report, files, trust, lambda prefix, _sub: seal_signature(path / prefix, trust), None)
    return report


def verify_zip_bytes(data: bytes, trust: Trust, name: str = "bundle.zip") -> VerifyReport:
    """A bundle zip held in memory: nothing is written anywhere."""
    report = VerifyReport(name, "bundle-zip")
    archive = container.check_archive(data)
    report.problems += [Problem(where, what) for where, what in archive.problems]
    if archive.signed is not None:
        rep, problem = _trusted(container.COMMENT, archive.signed.fingerprint, trust)
        report.signatures.append(rep)
        if problem:
            report.problems.append(problem)
    else:
        report.signatures.append(SignatureReport(container.COMMENT, "bad"))
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - hostile bytes: any failure of zipfile means unreadable
        report.problems.append(Problem(container.ARCHIVE, f"is not a readable zip ({exc}); nothing was unpacked"))
        return report
    with zf:
        entries = container.inspect_entries(zf)
        if entries.problems:
            report.problems += [Problem(where, what) for where, what in entries.problems]
            return report
        files, unreadable = container.read_entries(zf, entries)
    report.problems += [Problem(where, what) for where, what in unreadable]
    inner = VerifyReport(name, "bundle-zip")
    _check_bundle(inner, files, trust, lambda _prefix, sub: seal_signature_files(sub, trust), archive.signed)
    lost = {where.split("/", 1)[1] for where, _ in unreadable if "/" in where}
    lost_runs = {"/".join(p.split("/")[:2]) + "/" for p in lost if p.startswith(f"{RUNS}/")}

    def caused_by_unreadable(p: Problem) -> bool:
        return p.path in lost or any(p.path.startswith(r) for r in lost_runs)

    # inside a zip every path is the entry's name: <top>/<path in the bundle>
    report.problems += [Problem(f"{entries.top}/{p.path}", p.what, p.severity)
                        for p in inner.problems if not caused_by_unreadable(p)]
    report.signatures += [replace(s, path=f"{entries.top}/{s.path}") for s in inner.signatures]
    report.runs_checked = inner.runs_checked
    report.files_checked = inner.files_checked
    return report


def verify_path(path: Path, trust: Trust) -> VerifyReport:
    """A run folder, a bundle zip or an unzipped bundle folder, told apart by what it holds."""
    try:
        return _verify_path(Path(path), trust)
    except OSError as exc:
        raise UserError(f"cannot read {exc.filename or path} ({exc.strerror}); check that you may read every "
                        "file of what you verify") from None


def _verify_path(path: Path, trust: Trust) -> VerifyReport:
    if path.is_file():
        size = path.stat().st_size
        if size > MAX_ZIP_BYTES:
            raise UserError(f"{path} is {size} bytes, larger than a bundle may be ({MAX_ZIP_BYTES}); "
                            "pass a bundle made by `labkit bundle`")
        data = path.read_bytes()
        if not data.startswith(b"PK\x03\x04"):
            raise UserError(f"{path} is not a zip; pass a bundle .zip, an unzipped bundle folder or a run folder")
        return verify_zip_bytes(data, trust, str(path))
    if path.is_dir():
        if any((path / n).exists() for n in (SUMS, SUMS_SIG, ALLOWED_SIGNERS)) or (path / RUNS).is_dir():
            return verify_bundle_folder(path, trust)
        if any((path / n).exists() for n in (SEAL, MANIFEST, RUN_FILE)):
            return verify_run_folder(path, trust)
        raise UserError(f"{path} is neither a bundle folder (no SHA256SUMS) nor a run folder (no seal.json); "
                        "pass the folder a bundle was unzipped into, or a run folder")
    raise UserError(f"{path} does not exist; pass a run id, a run folder, a bundle .zip or a bundle folder")
