"""The evidence store: one sealed, read-only folder per grading run.

Layout of ``<runs_dir>/<run_id>/``::

    run.json              RunInfo
    results.json          GradeSummary (its manifest_sha256 is null, see below)
    criteria.json         list of Criterion used by the run's checks
    evidence/<id>.json    one Evidence per probe
    artifacts/<name>.json portfolio artifacts (topology, addressing, routes-<node>, ...)
    manifest.json         {"algorithm": "sha256", "files": {relpath: sha256}} for every file above
    seal.json             {"algorithm", "manifest_sha256", "run_id", "sealed_at", "centre", "key_fingerprint"}
    seal.json.sig         the centre's Ed25519 signature of seal.json's bytes (SSHSIG, namespace
                          "labkit-run"), when the run was graded with a centre key

The seal: ``manifest_sha256`` is the sha256 of manifest.json's bytes. It cannot live inside
results.json, because manifest.json hashes results.json (a file cannot contain a hash of
itself). So results.json is stored with ``manifest_sha256: null`` and covered by the
manifest; the hash is kept in ``seal.json``, the only file besides manifest.json that the
manifest does not cover, and is returned by :meth:`RunWriter.seal` and put into
``StoredRun.summary`` when a run is opened. :func:`open_run` checks the chain
seal.json -> manifest.json -> every file, and that no file was added or removed.

What this does and does not prove: any change to a file is detected. Someone who rewrites a
file, then recomputes the manifest and the seal, produces a consistent folder with another
manifest hash; without the centre's private key they cannot make a new ``seal.json.sig`` for
it. The signature is checked by ``labkit verify`` (and by ``ssh-keygen -Y verify``), which
knows the trusted keys; :func:`open_run` checks the hash chain only and reads which key the
seal names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from labkit.adapters.security.signing import NAMESPACE_RUN, CentreSigner
from labkit.adapters.storage.files import write_atomic
from labkit.errors import EvidenceIntegrityError, UnknownRunError
from labkit.models.common import is_name
from labkit.models.criteria import Criterion
from labkit.models.evidence import Evidence
from labkit.models.results import GradeSummary, RunInfo
from labkit.models.stored_run import StoredRun

__all__ = [
    "ALGORITHM",
    "MANIFEST",
    "SEAL",
    "SEAL_SIG",
    "RunWriter",
    "RunCheck",
    "StoredRun",
    "check_run_files",
    "is_safe_name",
    "list_runs",
    "new_run_id",
    "open_run",
    "read_tree",
]

ALGORITHM = "sha256"
RUN_FILE = "run.json"
RESULTS_FILE = "results.json"
CRITERIA_FILE = "criteria.json"
MANIFEST = "manifest.json"
SEAL = "seal.json"
SEAL_SIG = "seal.json.sig"
UNLISTED = (MANIFEST, SEAL, SEAL_SIG)  # the files the manifest does not (cannot) cover
EVIDENCE_DIR = "evidence"
ARTIFACTS_DIR = "artifacts"
ATTACHMENTS_DIR = "attachments"  # files kept as they are (a GNS3 project export), hashed like the rest

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CRITERIA = TypeAdapter(list[Criterion])
_MAX_LISTED = 6  # files named in one integrity message


def is_safe_name(name: str) -> bool:
    """A portable file name stem: letters, digits, ``.``, ``_``, ``-``; starts alphanumeric."""
    return isinstance(name, str) and _SAFE_NAME.fullmatch(name) is not None


def new_run_id(instance: str, now: datetime) -> str:
    """``<instance>-<UTC time as 20261128T034455Z>-<4 hex>``; a naive ``now`` is taken as UTC."""
    if not is_name(instance):
        raise ValueError(f"{instance!r} is not an instance name")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return f"{instance}-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _model_bytes(model: BaseModel) -> bytes:
    return model.model_dump_json(indent=2).encode("utf-8") + b"\n"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_writable(root: Path) -> None:
    for dirpath, _dirnames, _files in os.walk(root):
        os.chmod(dirpath, 0o755)


class RunWriter:
    """Writes one run folder: evidence and artifacts as they come, then :meth:`seal`.

    Used as a context manager, an exception before :meth:`seal` removes the partial folder.
    """

    def __init__(self, runs_dir: Path, run_id: str):
        if not is_safe_name(run_id):
            raise ValueError(f"{run_id!r} is not a valid run id")
        self.run_id = run_id
        self.path = Path(runs_dir) / run_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.mkdir()
        except FileExistsError:
            raise FileExistsError(
                f"run folder {self.path} already exists; a run id is never reused, so take a new one"
            ) from None
        (self.path / EVIDENCE_DIR).mkdir()
        (self.path / ARTIFACTS_DIR).mkdir()
        self._evidence: set[str] = set()
        self._artifacts: set[str] = set()
        self._state = "open"  # open -> sealed | aborted

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and self._state == "open":
            self.abort()

    @property
    def sealed(self) -> bool:
        return self._state == "sealed"

    def _require_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"run {self.run_id} is {self._state}; nothing more can be written to it")

    def add_evidence(self, ev: Evidence) -> None:
        """Store ``evidence/<ev.id>.json``; ids must be safe file names and unique in the run."""
        self._require_open()
        if not is_safe_name(ev.id):
            raise ValueError(
                f"evidence id {ev.id!r} is not a safe file name; use letters, digits, '.', '_' and '-'"
            )
        if ev.id in self._evidence:
            raise ValueError(f"evidence id {ev.id!r} was already stored in run {self.run_id}")
        write_atomic(self.path / EVIDENCE_DIR / f"{ev.id}.json", _model_bytes(ev))
        self._evidence.add(ev.id)

    def add_artifact(self, name: str, data: Any) -> None:
        """Store ``artifacts/<name>.json``; ``data`` is anything pydantic can turn into JSON."""
        self._require_open()
        if not is_safe_name(name):
            raise ValueError(f"artifact name {name!r} is not a safe file name")
        if name in self._artifacts:
            raise ValueError(f"artifact {name!r} was already stored in run {self.run_id}")
        write_atomic(self.path / ARTIFACTS_DIR / f"{name}.json", _json_bytes(to_jsonable_python(data)))
        self._artifacts.add(name)

    def add_file(self, name: str, source: Path) -> None:
        """Store a copy of the file ``source`` as ``attachments/<name>`` (kept byte for byte,
        e.g. a GNS3 project export); the seal's manifest hashes it like every other file."""
        self._require_open()
        if not is_safe_name(name):
            raise ValueError(f"attachment name {name!r} is not a safe file name")
        folder = self.path / ATTACHMENTS_DIR
        folder.mkdir(exist_ok=True)
        target = folder / name
        if target.exists():
            raise ValueError(f"attachment {name!r} was already stored in run {self.run_id}")
        tmp = folder / f".{name}.tmp"
        try:
            with open(source, "rb") as src, open(tmp, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def seal(
        self,
        info: RunInfo,
        summary: GradeSummary,
        criteria: list[Criterion],
        *,
        now: datetime | None = None,
        signer: CentreSigner | None = None,
    ) -> GradeSummary:
        """Write run/results/criteria, the manifest and the seal; make the folder read-only.

        Returns ``summary`` with ``manifest_sha256`` filled (results.json keeps it null).
        ``now`` (default: the current time) is recorded as ``sealed_at`` in seal.json. With a
        ``signer``, seal.json names the centre and key, and ``seal.json.sig`` signs it.
        """
        self._require_open()
        if info.run_id != self.run_id or summary.run_id != self.run_id:
            raise ValueError(
                f"run.json ({info.run_id}) and results.json ({summary.run_id}) "
                f"must both carry run id {self.run_id}"
            )
        stored = summary.model_copy(update={"manifest_sha256": None})
        write_atomic(self.path / RUN_FILE, _model_bytes(info))
        write_atomic(self.path / RESULTS_FILE, _model_bytes(stored))
        write_atomic(self.path / CRITERIA_FILE, _CRITERIA.dump_json(criteria, indent=2) + b"\n")

        files: dict[str, str] = {}
        for rel, abspath in _walk_files(self.path):
            if not abspath.is_file() or abspath.is_symlink():
                raise RuntimeError(f"{abspath} is not a regular file; a run folder holds only files")
            files[rel] = _sha256(abspath.read_bytes())
        manifest = _json_bytes({"algorithm": ALGORITHM, "files": dict(sorted(files.items()))})
        write_atomic(self.path / MANIFEST, manifest)
        digest = _sha256(manifest)
        seal = {
            "algorithm": ALGORITHM,
            "manifest_sha256": digest,
            "run_id": self.run_id,
            "sealed_at": (now or datetime.now(UTC)).isoformat(),
            "centre": signer.centre if signer else None,
            "key_fingerprint": signer.fingerprint if signer else None,
        }
        seal_bytes = _json_bytes(seal)
        write_atomic(self.path / SEAL, seal_bytes)
        if signer is not None:
            write_atomic(self.path / SEAL_SIG, signer.sign(seal_bytes, NAMESPACE_RUN).encode("ascii"))

        for dirpath, _dirnames, filenames in os.walk(self.path, topdown=False):
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o444)
            _fsync_dir(Path(dirpath))
            os.chmod(dirpath, 0o555)
        self._state = "sealed"
        return summary.model_copy(update={"manifest_sha256": digest})

    def abort(self) -> None:
        """Remove the unsealed folder (grading failed half-way). A sealed run is never removed."""
        if self._state == "sealed":
            raise RuntimeError(f"run {self.run_id} is sealed; a sealed run is proof and is not removed")
        if self.path.exists():
            _make_writable(self.path)
            shutil.rmtree(self.path)
        self._state = "aborted"


def _walk_files(root: Path) -> list[tuple[str, Path]]:
    """Every non-directory entry under ``root`` as (posix relpath, path), sorted; symlinks included."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        # a symlink to a directory is listed in dirnames and not followed: report it as a file
        for name in dirnames + filenames:
            p = d / name
            if name in dirnames and not p.is_symlink():
                continue
            out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)


def _resolve(runs_dir: Path, ref: str) -> Path:
    candidates: list[Path] = []
    if is_safe_name(ref):
        candidates.append(Path(runs_dir) / ref)
    candidates.append(Path(ref).expanduser())
    for c in candidates:
        if c.is_dir() and ((c / RUN_FILE).exists() or (c / MANIFEST).exists() or (c / SEAL).exists()):
            return c
    for c in candidates:
        if c.is_dir():
            raise UnknownRunError(
                f"{c} is not a labkit run folder (it has no run.json, manifest.json or seal.json); "
                "pass the folder that holds them or a run id"
            )
    raise UnknownRunError(
        f"no run {ref!r} in {runs_dir}; pass the id of a run stored there or the path of a run folder"
    )


def _integrity(path: Path, what: str) -> EvidenceIntegrityError:
    return EvidenceIntegrityError(
        f"run folder {path} was modified after grading ({what}), so it is no longer valid proof; "
        "restore the original folder from a copy or grade the instance again"
    )


def _describe(problems: list[str]) -> str:
    shown = problems[:_MAX_LISTED]
    more = len(problems) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class RunCheck:
    """What checking a run's files found: ``problems`` as (relpath, what) pairs, empty when the
    chain seal.json -> manifest.json -> every file holds. ``fatal`` is set (and ``problems``
    holds the one reason) when the chain could not even be followed (no seal or manifest)."""

    problems: list[tuple[str, str]]
    verified: dict[str, bytes] = field(default_factory=dict)  # manifest files whose hash matched
    manifest: dict[str, str] = field(default_factory=dict)
    manifest_sha256: str | None = None
    seal: dict[str, Any] = field(default_factory=dict)
    seal_bytes: bytes | None = None
    signature: str | None = None  # seal.json.sig's text, None when absent or not a regular file
    fatal: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def read_tree(root: Path) -> dict[str, bytes | None]:
    """Every file under ``root`` as relpath -> bytes; a link or special file maps to None."""
    out: dict[str, bytes | None] = {}
    for rel, p in _walk_files(root):
        out[rel] = None if p.is_symlink() or not p.is_file() else p.read_bytes()
    return out


def check_run_files(files: Mapping[str, bytes | None]) -> RunCheck:
    """Check a run's files (relpath -> bytes, None for a link or special file), wherever they
    come from (a folder, a bundle folder, a zip read in memory): seal.json -> manifest.json ->
    every file, nothing added or removed. Never raises for bad content; it reports it."""
    seal_bytes, manifest_bytes = files.get(SEAL), files.get(MANIFEST)
    if seal_bytes is None:
        if manifest_bytes is None:
            return RunCheck(problems=[(SEAL, "missing (and manifest.json too): the run was never sealed")],
                            fatal=True)
        return RunCheck(problems=[(SEAL, "removed")], fatal=True)
    if manifest_bytes is None:
        return RunCheck(problems=[(MANIFEST, "removed")], fatal=True)
    sig = files.get(SEAL_SIG)
    signature = sig.decode("ascii", "replace") if sig is not None else None
    try:
        seal = json.loads(seal_bytes)
        expected = seal["manifest_sha256"]
        if seal.get("algorithm") != ALGORITHM or not isinstance(expected, str):
            raise ValueError("unexpected seal content")
    except (ValueError, KeyError, TypeError):
        return RunCheck(problems=[(SEAL, "changed")], seal_bytes=seal_bytes, signature=signature, fatal=True)
    digest = _sha256(manifest_bytes)
    if digest != expected:
        return RunCheck(problems=[(MANIFEST, "changed")], seal=seal, seal_bytes=seal_bytes,
                        signature=signature, fatal=True)
    try:
        manifest = json.loads(manifest_bytes)
        listed = manifest["files"]
        if manifest.get("algorithm") != ALGORITHM or not isinstance(listed, dict):
            raise ValueError("unexpected manifest content")
    except (ValueError, KeyError, TypeError):
        return RunCheck(problems=[(MANIFEST, "is not a labkit manifest")], seal=seal, seal_bytes=seal_bytes,
                        signature=signature, fatal=True)
    for rel in listed:
        parts = str(rel).split("/")
        if rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or rel in UNLISTED:
            return RunCheck(problems=[(MANIFEST, f"lists an invalid path {rel!r}")], seal=seal,
                            seal_bytes=seal_bytes, signature=signature, fatal=True)

    present = {rel: data for rel, data in files.items() if rel not in UNLISTED}
    problems: list[tuple[str, str]] = []
    problems += [(rel, "added") for rel in sorted(set(present) - set(listed))]
    problems += [(rel, "removed") for rel in sorted(set(listed) - set(present))]
    verified: dict[str, bytes] = {}
    for rel in sorted(set(listed) & set(present)):
        data = present[rel]
        if data is None:
            problems.append((rel, "replaced by a link or special file"))
        elif _sha256(data) != listed[rel]:
            problems.append((rel, "changed"))
        else:
            verified[rel] = data
    return RunCheck(problems=problems, verified=verified, manifest=dict(listed), manifest_sha256=digest,
                    seal=seal, seal_bytes=seal_bytes, signature=signature)


def _verify(path: Path) -> tuple[dict[str, bytes], dict[str, str], str, dict[str, Any]]:
    """Check seal -> manifest -> files; return the verified bytes of every manifest file."""
    check = check_run_files(read_tree(path))
    if check.fatal and check.problems[0][0] == SEAL and check.problems[0][1].startswith("missing"):
        raise EvidenceIntegrityError(
            f"run folder {path} has no seal.json nor manifest.json: grading stopped before the run "
            "was sealed, or they were removed; it cannot be used as proof, grade the instance again"
        )
    if check.problems:
        raise _integrity(path, _describe([f"{rel} {what}" for rel, what in check.problems]))
    assert check.manifest_sha256 is not None
    return check.verified, check.manifest, check.manifest_sha256, check.seal


def _text(seal: dict[str, Any], key: str) -> str | None:
    value = seal.get(key)
    return value if isinstance(value, str) else None


def open_run(runs_dir: Path, ref: str) -> StoredRun:
    """Read and verify a run given its id (under ``runs_dir``) or the path of its folder.

    Raises UnknownRunError when there is no such run and EvidenceIntegrityError, naming the
    files, when anything was changed, added or removed since the run was sealed.
    """
    path = _resolve(runs_dir, ref)
    verified, files, digest, seal = _verify(path)
    sig_path = path / SEAL_SIG
    signature = None
    if sig_path.exists():
        if sig_path.is_symlink() or not sig_path.is_file():
            raise _integrity(path, f"{SEAL_SIG} replaced by a link or special file")
        signature = sig_path.read_bytes().decode("ascii", "replace")

    def load(rel: str, parse: Any) -> Any:
        if rel not in verified:
            raise _integrity(path, f"{rel} is missing from the manifest")
        try:
            return parse(verified[rel])
        except (ValidationError, ValueError) as exc:
            raise EvidenceIntegrityError(
                f"{path / rel} matches its manifest but cannot be read ({type(exc).__name__}); it was "
                "written by an incompatible labkit version, render it with the version that graded it"
            ) from exc

    info: RunInfo = load(RUN_FILE, RunInfo.model_validate_json)
    summary: GradeSummary = load(RESULTS_FILE, GradeSummary.model_validate_json)
    criteria: list[Criterion] = load(CRITERIA_FILE, _CRITERIA.validate_json)
    if summary.run_id != info.run_id:
        raise _integrity(path, f"results.json is for run {summary.run_id}, run.json for {info.run_id}")

    evidence: dict[str, Evidence] = {}
    artifacts: dict[str, Any] = {}
    for rel in sorted(verified):
        folder, _, name = rel.partition("/")
        if not name.endswith(".json") or "/" in name:
            continue
        stem = name[: -len(".json")]
        if folder == EVIDENCE_DIR:
            ev: Evidence = load(rel, Evidence.model_validate_json)
            if ev.id != stem:
                raise _integrity(path, f"{rel} holds evidence {ev.id!r}")
            evidence[stem] = ev
        elif folder == ARTIFACTS_DIR:
            artifacts[stem] = load(rel, json.loads)

    return StoredRun(
        path=path,
        info=info,
        summary=summary.model_copy(update={"manifest_sha256": digest}),
        criteria=criteria,
        evidence=evidence,
        artifacts=artifacts,
        manifest_sha256=digest,
        manifest=files,
        sealed_at=_text(seal, "sealed_at"),
        centre=_text(seal, "centre"),
        key_fingerprint=_text(seal, "key_fingerprint"),
        signature=signature,
    )


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Sealed runs under ``runs_dir``, newest first; unreadable or unsealed folders are skipped.

    This reads run.json and results.json only; it does not verify hashes (open_run does).
    """
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    rows: list[tuple[datetime, dict[str, Any]]] = []
    for d in root.iterdir():
        if not d.is_dir() or not (d / SEAL).is_file():
            continue
        try:
            info = RunInfo.model_validate_json((d / RUN_FILE).read_bytes())
            summary = GradeSummary.model_validate_json((d / RESULTS_FILE).read_bytes())
        except (OSError, ValidationError, ValueError):
            continue
        started = info.started_at if info.started_at.tzinfo else info.started_at.replace(tzinfo=UTC)
        rows.append(
            (
                started,
                {
                    "id": info.run_id,
                    "lab": info.lab_id,
                    "instance": info.instance,
                    "candidate": info.candidate,
                    "score": summary.score,
                    "max": summary.max_score,
                    "date": started.astimezone(UTC).isoformat(),
                    "mode": info.mode,
                },
            )
        )
    rows.sort(key=lambda r: (r[0], r[1]["id"]), reverse=True)
    return [r for _, r in rows]
