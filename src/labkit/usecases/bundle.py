"""``labkit bundle``: a candidate's signed portfolio bundle (one zip), or one per candidate of a cohort.

Every run is verified before it goes in: its sealed folder is copied into the bundle and the
copy is checked again (hash chain seal -> manifest -> files, and the centre's signature when
the run carries one, against the local keyring): a run that fails stops the bundle with an
error naming it. The bundle folder is built in a private temporary folder, removed afterwards
whatever happens, and :func:`labkit.adapters.bundle.finalize_bundle` writes SHA256SUMS, its
signature and the zip (atomically: a failed bundle leaves no zip behind).

``certifications`` (catalog ids) restricts the per-criterion summary, the criteria pages and
summary.json to those certifications (a jury examines one title); by default every
certification the runs' checks cite is shown. The runs themselves are bundled whole.

Recordings of the console come from the portal database when there is one (``LABKIT_DB_URL``
or ``<home>/labkit.db``; none is created here).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labkit.adapters.recording import transcript
from labkit.adapters.security.keyring import Keyring, Trust
from labkit.adapters.security.signing import NAMESPACE_RUN, CentreSigner, SignatureError, sshsig_verify
from labkit.adapters.storage.runs import SEAL, StoredRun, is_safe_name, list_runs, open_run
from labkit.domain import portfolio
from labkit.domain.criteria import load_catalog
from labkit.domain.criteria_summary import criterion_summary, latest_grades
from labkit.domain.report import render_html
from labkit.errors import EnvironmentProblem, EvidenceIntegrityError, UserError
from labkit.usecases.lifecycle import Context
from labkit.usecases.summary import check_certifications, recorded_run_ids

__all__ = ["BundleResult", "bundle_candidate", "bundle_cohort", "bundle_run", "check_certifications", "slug"]

LANGS = ("fr", "en")
MAX_RECORDING = 256 * 1024 * 1024  # bytes of one .cast copied into a bundle


@dataclass
class BundleResult:
    path: Path
    candidate: str
    runs: list[str]
    recordings: int = 0
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: reports_html, pdf, zip_sign, total


@dataclass(frozen=True)
class _Recording:
    source: Path
    name: str  # file name in recordings/
    node: str
    channel: str
    started_at: datetime | None


@dataclass(frozen=True)
class _Seat:
    candidate: str
    instance: str


def slug(text: str) -> str:
    """A file name stem from a name: ``Élodie D'Arc`` -> ``elodie-d-arc``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    s = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60].strip("-")
    return s or "candidate"


# -- choosing runs ---------------------------------------------------------------------------------
def _modes(with_selfchecks: bool) -> tuple[str, ...]:
    return ("grade", "selfcheck") if with_selfchecks else ("grade",)


def _runs_of_instance(ctx: Context, instance: str, with_selfchecks: bool) -> list[str]:
    rows = [r for r in list_runs(ctx.settings.runs) if r["mode"] in _modes(with_selfchecks)]
    return [r["id"] for r in reversed(rows) if r["instance"] == instance]


# -- the portal database (never created here) ---------------------------------------------------
def _db_read(ctx: Context, fn: Callable[[Any], Any]) -> Any:
    """``fn(session)`` on the portal database, or None when there is none."""
    from sqlalchemy.exc import SQLAlchemyError

    from labkit.adapters.db.database import existing_database

    db = existing_database(ctx.settings)
    if db is None:
        return None
    try:
        with db.session() as s:
            return fn(s)
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise EnvironmentProblem(
            f"cannot read the portal database {db.safe_url} ({first}); check LABKIT_DB_URL and that the "
            "database server runs, or unset LABKIT_DB_URL"
        ) from None
    finally:
        db.dispose()


def _recordings(ctx: Context, instances: set[str], candidate: str | None) -> list[_Recording]:
    from sqlalchemy import or_, select

    from labkit.adapters.db import repo
    from labkit.adapters.db.models import Candidate

    root = ctx.settings.home / "recordings"

    def query(s: Any) -> list[_Recording]:
        cond: Any = Candidate.instance.in_(sorted(instances))
        if candidate:
            cond = or_(cond, Candidate.name == candidate)
        found: list[_Recording] = []
        for cand in s.scalars(select(Candidate).where(cond).order_by(Candidate.instance)).all():
            for rec in repo.recordings_of(s, cand.id):
                base = Path(rec.path).name
                found.append(_Recording(root / rec.path, f"{cand.instance}-{base}", rec.node, rec.channel,
                                        rec.started_at))
        return found

    return _db_read(ctx, query) or []


def _db_cohort(ctx: Context, name: str) -> list[_Seat] | None:
    from labkit.adapters.db import repo

    def query(s: Any) -> list[_Seat] | None:
        c = repo.get_cohort(s, name)
        if c is None:
            return None
        return [_Seat(cand.name, cand.instance) for cand in repo.candidates_of(s, c.id)]

    return _db_read(ctx, query)  # type: ignore[no-any-return]


# -- building the folder ---------------------------------------------------------------------------
def _write(tree: Path, rel: str, data: bytes) -> None:
    path = tree / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as f:  # every name is written once
        f.write(data)


def _copy_run(src: Path, dst: Path) -> None:
    """Copy the run folder's files (regular files only) byte for byte."""
    for dirpath, dirnames, filenames in os.walk(src):
        d = Path(dirpath)
        for name in dirnames + filenames:
            p = d / name
            if p.is_symlink() or not (p.is_dir() or p.is_file()):
                raise EvidenceIntegrityError(
                    f"run folder {src} holds {p.relative_to(src)}, which is not a regular file; it is no longer "
                    "valid proof and cannot go into a bundle"
                )
        out = dst / d.relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            (out / name).write_bytes((d / name).read_bytes())


def _check_signature(run: StoredRun, trust: Trust) -> str | None:
    """Refuse a run whose signature does not hold or whose key is revoked or unknown; a warning
    for an unsigned run (it is vouched for by the bundle signature only)."""
    if run.signature is None:
        return (f"run {run.run_id} is not signed (graded before the centre had a key): it is vouched for by the "
                "bundle signature only")
    try:
        signed = sshsig_verify(run.signature, (run.path / SEAL).read_bytes(), NAMESPACE_RUN)
    except SignatureError as exc:
        raise EvidenceIntegrityError(
            f"run {run.run_id} cannot go into the bundle: the signature {exc}; restore the run folder from a copy"
        ) from None
    if run.key_fingerprint and signed.fingerprint != run.key_fingerprint:
        raise EvidenceIntegrityError(
            f"run {run.run_id} cannot go into the bundle: seal.json names key {run.key_fingerprint} but was signed "
            f"by {signed.fingerprint}"
        )
    info = trust.status(signed.fingerprint)
    if info is None:
        raise EvidenceIntegrityError(
            f"run {run.run_id} cannot go into the bundle: it was signed by key {signed.fingerprint}, which is not in "
            "this centre's keyring; bundle it where it was graded"
        )
    if info.status == "revoked":
        raise EvidenceIntegrityError(
            f"run {run.run_id} cannot go into the bundle: its key {signed.fingerprint} was revoked on "
            f"{info.revoked_at}: {info.reason}; grade the candidate again"
        )
    return None


def _verified_copy(ctx: Context, ref: str, tree: Path, trust: Trust) -> tuple[StoredRun, str | None]:
    try:
        original = open_run(ctx.settings.runs, ref)
        dst = tree / "runs" / original.run_id
        _copy_run(original.path, dst)
        copy = open_run(ctx.settings.runs, str(dst))  # what goes in is what was checked
    except EvidenceIntegrityError as exc:
        raise EvidenceIntegrityError(f"the bundle was not made: {exc}") from None
    return copy, _check_signature(copy, trust)


def _html_to_pdf(html: str) -> bytes:
    from labkit.adapters.render.pdf import html_to_pdf

    return html_to_pdf(html)


def _build_tree(ctx: Context, tree: Path, run_ids: list[str], candidate: str, signer: CentreSigner,
                when: datetime, recordings: list[_Recording], pdf_lang: str,
                certifications: tuple[str, ...] | None) -> BundleResult:
    trust = Trust.from_keyring(Keyring(ctx.settings.home / "keys"))
    result = BundleResult(path=tree, candidate=candidate, runs=[])
    runs: list[StoredRun] = []
    for rid in dict.fromkeys(run_ids):
        run, warning = _verified_copy(ctx, rid, tree, trust)
        runs.append(run)
        result.runs.append(run.run_id)
        if warning:
            result.warnings.append(warning)
    counted = {r.run_id for r in latest_grades(runs)}
    catalog = load_catalog()
    rows = criterion_summary(runs, catalog, certifications)

    t0 = time.perf_counter()
    html: dict[tuple[str, str], str] = {}
    for run in runs:
        for lang in LANGS:
            html[(run.run_id, lang)] = render_html(run, lang)
            _write(tree, portfolio.report_name(run.run_id, lang, "html"), html[(run.run_id, lang)].encode("utf-8"))
    t1 = time.perf_counter()
    for (rid, lang), text in html.items():
        _write(tree, portfolio.report_name(rid, lang, "pdf"), _html_to_pdf(text))
    t2 = time.perf_counter()

    entries = []
    for run in runs:
        exports = portfolio.run_exports(run, pdf_lang)
        for x in exports:
            _write(tree, f"artifacts/{run.run_id}/{x.name}", x.data)
        reports = [portfolio.report_name(run.run_id, lang, ext) for lang in LANGS for ext in ("html", "pdf")]
        entries.append(portfolio.RunEntry(run=run, counted=run.run_id in counted, reports=reports, exports=exports))

    rec_entries = []
    for rec in recordings:
        entry = _copy_recording(ctx, tree, rec, pdf_lang, result)
        if entry is not None:
            rec_entries.append(entry)
    result.recordings = len(rec_entries)

    p = portfolio.Portfolio(candidate=candidate, centre=signer.centre, key_fingerprint=signer.fingerprint,
                            created_at=when, rows=rows, runs=entries, recordings=rec_entries,
                            certifications={c.id: c.title for c in catalog.certifications})
    _write(tree, "index.html", portfolio.render_index(p, "fr").encode("utf-8"))
    _write(tree, "index.en.html", portfolio.render_index(p, "en").encode("utf-8"))
    t3 = time.perf_counter()
    _write(tree, "index.pdf", _html_to_pdf(portfolio.render_index(p, pdf_lang, links=False)))
    t4 = time.perf_counter()
    _write(tree, "summary.json",
           (json.dumps(portfolio.summary_json(p), indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    _write(tree, "LISEZMOI.txt", portfolio.readme_text(p, pdf_lang).encode("utf-8"))
    result.timings = {"reports_html": round(t1 - t0, 3), "pdf": round(t2 - t1 + t4 - t3, 3)}
    return result


def _copy_recording(ctx: Context, tree: Path, rec: _Recording, lang: str,
                    result: BundleResult) -> portfolio.RecordingEntry | None:
    root = os.path.realpath(ctx.settings.home / "recordings")
    real = os.path.realpath(rec.source)
    name = rec.name if rec.name.endswith(".cast") else rec.name + ".cast"
    if not is_safe_name(name) or not real.startswith(root + os.sep):
        result.warnings.append(f"recording {rec.source} left out: its path is not under {root}")
        return None
    if not os.path.isfile(real):
        result.warnings.append(f"recording {rec.source} left out: the file is missing")
        return None
    size = os.path.getsize(real)
    if size > MAX_RECORDING:
        result.warnings.append(f"recording {rec.source} left out: {size} bytes, more than {MAX_RECORDING}")
        return None
    stem = name[: -len(".cast")]
    n = 2
    while (tree / "recordings" / name).exists():
        name = f"{stem}-{n}.cast"
        n += 1
    cast_rel = f"recordings/{name}"
    html_rel = f"recordings/{name[: -len('.cast')]}.html"
    _write(tree, cast_rel, Path(real).read_bytes())
    try:
        page = transcript.render_html(transcript.transcribe(tree / cast_rel), lang)
    except UserError as exc:
        page = transcript.error_html(name, str(exc), lang)
        result.warnings.append(f"recording {name}: {exc}")
    _write(tree, html_rel, page.encode("utf-8"))
    return portfolio.RecordingEntry(cast=cast_rel, transcript=html_rel, node=rec.node, channel=rec.channel,
                                    started_at=rec.started_at, size_bytes=size)


def _check_zip_path(out: Path) -> Path:
    if out.suffix.lower() != ".zip":
        raise UserError(f"{out} does not end in .zip; pass -o FILE.zip for the bundle")
    if out.is_dir():
        raise UserError(f"{out} is a folder; pass -o FILE.zip for the bundle")
    if not is_safe_name(out.stem):
        raise UserError(f"{out.name} cannot name a bundle (it becomes the folder inside the zip); use letters, "
                        "digits, '.', '_' and '-'")
    return out


def _make(ctx: Context, out: Path, run_ids: list[str], candidate: str, recordings: list[_Recording],
          signer: CentreSigner, lang: str, now: datetime | None,
          certifications: tuple[str, ...] | None = None) -> BundleResult:
    from labkit.adapters.bundle import finalize_bundle

    when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="labkit-bundle-") as tmp:
        os.chmod(tmp, 0o700)
        tree = Path(tmp) / out.stem
        tree.mkdir()
        result = _build_tree(ctx, tree, run_ids, candidate, signer, when, recordings, lang, certifications)
        t0 = time.perf_counter()
        out.parent.mkdir(parents=True, exist_ok=True)
        result.path = finalize_bundle(tree, out, signer, when)
        result.timings["zip_sign"] = round(time.perf_counter() - t0, 3)
    result.timings["total"] = round(time.perf_counter() - start, 3)
    return result


def bundle_run(ctx: Context, run_ref: str, out: Path, *, lang: str = "fr", now: datetime | None = None,
               certifications: Sequence[str] | None = None) -> BundleResult:
    """One run (id or folder) in one bundle."""
    out = _check_zip_path(out)
    certs = check_certifications(certifications)
    signer = Keyring(ctx.settings.home / "keys").require_signer()
    run = open_run(ctx.settings.runs, run_ref)
    candidate = run.info.candidate or run.info.instance
    recs = _recordings(ctx, {run.info.instance}, run.info.candidate)
    return _make(ctx, out, [str(run.path)], candidate, recs, signer, lang, now, certs)


def bundle_candidate(ctx: Context, candidate: str, out: Path, *, with_selfchecks: bool = False, lang: str = "fr",
                     now: datetime | None = None, certifications: Sequence[str] | None = None) -> BundleResult:
    """A candidate's recorded grades (and self-checks with ``with_selfchecks``) in one bundle;
    ``candidate`` is the candidate's name as recorded in the runs, or an instance name."""
    out = _check_zip_path(out)
    certs = check_certifications(certifications)
    signer = Keyring(ctx.settings.home / "keys").require_signer()
    ids = recorded_run_ids(ctx, candidate, with_selfchecks=with_selfchecks)
    if not ids:
        what = "grade or self-check" if with_selfchecks else "grade"
        raise UserError(f"no recorded {what} for candidate or instance {candidate!r}; grade it first "
                        "(`labkit grade NAME`) or see `labkit runs` for the names recorded")
    instances = {r["instance"] for r in list_runs(ctx.settings.runs) if r["id"] in ids}
    recs = _recordings(ctx, instances, candidate)
    return _make(ctx, out, ids, candidate, recs, signer, lang, now, certs)


def bundle_cohort(ctx: Context, cohort: str, out_dir: Path, *, with_selfchecks: bool = False, lang: str = "fr",
                  now: datetime | None = None, certifications: Sequence[str] | None = None,
                  ) -> tuple[list[BundleResult], list[str]]:
    """One ``<candidate-slug>.zip`` per candidate of the cohort (CLI cohort file and/or portal
    database) into ``out_dir``. Returns the bundles and the candidates skipped (no recorded grade)."""
    from labkit.usecases import cohort as cohort_uc

    if out_dir.suffix.lower() == ".zip":
        raise UserError(f"--cohort writes one zip per candidate into a folder; pass -o FOLDER, not {out_dir.name}")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder; pass -o FOLDER for the cohort's bundles")
    certs = check_certifications(certifications)
    signer = Keyring(ctx.settings.home / "keys").require_signer()
    seats: dict[str, _Seat] = {}
    from_db = _db_cohort(ctx, cohort)
    try:
        cli_cohort = cohort_uc.load(ctx, cohort)
    except UserError:
        if from_db is None:
            raise
        cli_cohort = None
    if cli_cohort is not None:
        seats.update({s.instance: _Seat(s.candidate, s.instance) for s in cli_cohort.seats})
    for seat in from_db or []:
        seats.setdefault(seat.instance, seat)
    todo: list[tuple[_Seat, list[str]]] = []
    skipped: list[str] = []
    for seat in sorted(seats.values(), key=lambda x: x.instance):
        ids = _runs_of_instance(ctx, seat.instance, with_selfchecks)
        (todo.append((seat, ids)) if ids else skipped.append(seat.candidate))
    if not todo:
        raise UserError(f"no candidate of cohort {cohort!r} has a recorded grade; grade them first "
                        f"(`labkit cohort grade {cohort}`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[BundleResult] = []
    used: set[str] = set()
    for seat, ids in todo:
        stem = slug(seat.candidate)
        if stem in used:
            stem = f"{stem}-{seat.instance}"
        used.add(stem)
        recs = _recordings(ctx, {seat.instance}, None)
        results.append(_make(ctx, out_dir / f"{stem}.zip", ids, seat.candidate, recs, signer, lang, now, certs))
    return results, skipped
