"""The gradebook: every candidate's latest recorded grade per lab, for Moodle and as JSON.

The cohorts are those of ``labkit cohort up`` (their seats say whose instance is whose) or
the portal's (its database's candidates). One row per candidate, joined across cohorts by the
chosen identifier (email, ID number or
username: the user fields Moodle's grade import can match, see ``docs/moodle-import.md``).
For each lab of the cohorts, the grade is the one of the latest recorded grading (a run of
mode ``"grade"``; self-checks never count) of that candidate's instance, read back from the
sealed run folder (:func:`labkit.adapters.storage.runs.open_run` checks its hashes), and a
feedback text says the score, the checks not passed, the run id and the manifest hash, so a
grade in Moodle leads back to its proof.

Moodle CSV (``moodle_csv``): comma-separated, UTF-8, one header row: the identifier column
(named as Moodle names the field), the candidate's name, then per lab a grade column
(``<lab id>``) and a feedback column (``Feedback: <lab id>``). A lab not graded has ``-``,
which Moodle's import reads as "no grade" for an existing grade item and for a new one; an
empty cell would be taken as 0 by a "new grade item" (see ``tests/usecases/moodle_fixture.py``).
Grades use a decimal point, which Moodle's ``unformat_float`` accepts in every language.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from labkit.adapters.storage.runs import StoredRun, list_runs, open_run
from labkit.domain.criteria import load_catalog
from labkit.domain.criteria_summary import CriterionRow, counts, criterion_summary
from labkit.errors import UserError
from labkit.models.common import I18n
from labkit.models.criteria import Catalog
from labkit.usecases.cohort import RosterEntry, read_roster_entries
from labkit.usecases.cohort import load as load_cohort
from labkit.usecases.lifecycle import Context

__all__ = [
    "ID_FIELDS",
    "ID_HEADER",
    "MOODLE_MAPTO",
    "SCALES",
    "Enrolment",
    "Gradebook",
    "GradebookRow",
    "IdField",
    "LabGrade",
    "MissingIdentifiers",
    "Scale",
    "build_gradebook",
    "cohort_enrolments",
    "gradebook_for_cohorts",
    "gradebook_json",
    "moodle_csv",
]

IdField = Literal["email", "idnumber", "username"]
Scale = Literal["points", "20", "100"]
ID_FIELDS: tuple[IdField, ...] = get_args(IdField)
SCALES: tuple[Scale, ...] = get_args(Scale)
# the column header, as Moodle names the user field (get_string('email'), ('idnumber'), ('username'))
ID_HEADER: dict[IdField, str] = {"email": "Email address", "idnumber": "ID number", "username": "Username"}
# what to choose in "Map to" on Moodle's import page (grade/import/csv mapping form)
MOODLE_MAPTO: dict[IdField, str] = {"email": "useremail", "idnumber": "useridnumber", "username": "username"}
NAME_HEADER = "Nom / Name"
NO_GRADE = "-"
FORMAT = "labkit-gradebook/1"


@dataclass(frozen=True)
class Enrolment:
    """One candidate in one cohort: whose instance it is, and their identifiers."""

    cohort: str
    lab: str
    candidate: str
    instance: str
    email: str | None = None
    idnumber: str | None = None
    username: str | None = None

    def identifier(self, id_field: IdField) -> str | None:
        value: str | None = getattr(self, id_field)
        return (value.strip() or None) if value else None


@dataclass(frozen=True)
class FailedCheck:
    id: str
    title: I18n
    status: str  # "fail" or "error"
    message: I18n


@dataclass(frozen=True)
class LabGrade:
    """The latest recorded grade of one candidate for one lab."""

    lab_id: str
    run_id: str
    score: int
    max_score: int
    grade: float | None  # on the gradebook's scale; None when the lab has no points at all
    manifest_sha256: str
    graded_at: datetime
    failed: list[FailedCheck]
    signed: bool

    def feedback(self, lang: str = "fr") -> str:
        """One paragraph: score, checks not passed, run id and manifest hash."""
        if lang == "en":
            text = f"Score {self.score}/{self.max_score}. "
            if self.failed:
                parts = [f"{c.title.en} ({'error' if c.status == 'error' else 'failed'})" for c in self.failed]
                text += "Checks not passed: " + "; ".join(parts) + ". "
            else:
                text += "Every check passed. "
            return text + f"Proof: labkit run {self.run_id}, manifest sha256 {self.manifest_sha256}."
        text = f"Score {self.score}/{self.max_score}. "
        if self.failed:
            parts = [f"{c.title.fr} ({'erreur' if c.status == 'error' else 'échoué'})" for c in self.failed]
            text += "Contrôles non réussis : " + " ; ".join(parts) + ". "
        else:
            text += "Tous les contrôles sont réussis. "
        return text + f"Preuve : run labkit {self.run_id}, manifeste sha256 {self.manifest_sha256}."


@dataclass(frozen=True)
class GradebookRow:
    name: str
    identifier: str
    email: str | None
    idnumber: str | None
    username: str | None
    cohorts: list[str]
    grades: dict[str, LabGrade | None]  # lab id -> grade (None: not graded)
    criteria: list[CriterionRow] = field(default_factory=list)


@dataclass(frozen=True)
class Gradebook:
    id_field: IdField
    scale: Scale
    labs: list[tuple[str, I18n]]  # (lab id, title), in the order of the cohorts
    rows: list[GradebookRow]
    generated_at: datetime


def _fold(text: str) -> str:
    """Case- and accent-insensitive form of a name or identifier, for matching."""
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(ascii_.casefold().split())


def _key(id_field: IdField, value: str) -> str:
    # Moodle keeps emails and usernames in lowercase-insensitive form on most databases; an ID
    # number is an opaque code matched exactly
    return value if id_field == "idnumber" else value.casefold()


def _scaled(score: int, max_score: int, scale: Scale) -> float | None:
    if scale == "points":
        return float(score)
    if max_score <= 0:
        return None
    return round(score * int(scale) / max_score, 2)


def _lab_grade(run: StoredRun, scale: Scale) -> LabGrade:
    s = run.summary
    failed = [FailedCheck(c.id, c.title, c.status, c.message) for c in s.checks if c.status != "pass"]
    graded_at = run.info.started_at if run.info.started_at.tzinfo else run.info.started_at.replace(tzinfo=UTC)
    return LabGrade(
        lab_id=run.info.lab_id,
        run_id=run.run_id,
        score=s.score,
        max_score=s.max_score,
        grade=_scaled(s.score, s.max_score, scale),
        manifest_sha256=run.manifest_sha256,
        graded_at=graded_at,
        failed=failed,
        signed=run.signature is not None,
    )


class MissingIdentifiers(UserError):
    """Candidates without the chosen identifier: Moodle could not tell whose grade a row is."""

    def __init__(self, missing: list[Enrolment], id_field: IdField):
        self.missing = missing
        self.id_field = id_field
        who = ", ".join(f"{e.candidate} (cohort {e.cohort})" for e in missing[:12])
        if len(missing) > 12:
            who += f" and {len(missing) - 12} more"
        others = "/".join(f for f in ID_FIELDS if f != id_field)
        super().__init__(
            f"{len(missing)} candidate(s) have no {id_field}, so Moodle could not match them: {who}; "
            f"give a roster with a name column and {'an' if id_field[0] in 'aeiou' else 'a'} {id_field} column "
            "(Moodle's participants export "
            f"does) with --roster FILE, or choose --id-field {others} if the roster had those."
        )


def build_gradebook(
    enrolments: list[Enrolment],
    runs_dir: Path,
    catalog: Catalog,
    *,
    id_field: IdField,
    scale: Scale = "100",
    now: datetime | None = None,
) -> Gradebook:
    """The gradebook of ``enrolments`` from the sealed runs under ``runs_dir``.

    Raises UserError naming every candidate without ``id_field``. A run of a candidate's
    instance counts when it is a recorded grade (mode ``"grade"``) and names the same
    candidate (or none), so a later cohort reusing an instance name never inherits grades.
    """
    if id_field not in ID_FIELDS:
        raise UserError(f"--id-field {id_field!r} is not one of {', '.join(ID_FIELDS)}; choose one of them.")
    if scale not in SCALES:
        raise UserError(f"--scale {scale!r} is not one of {', '.join(SCALES)}; choose one of them.")
    missing = [e for e in enrolments if e.identifier(id_field) is None]
    if missing:
        raise MissingIdentifiers(missing, id_field)

    labs: list[str] = list(dict.fromkeys(e.lab for e in enrolments))
    people: dict[str, list[Enrolment]] = {}
    for e in enrolments:
        ident = e.identifier(id_field)
        assert ident is not None
        people.setdefault(_key(id_field, ident), []).append(e)

    # latest recorded grade per (instance, candidate, lab), from the runs' metadata
    by_instance: dict[str, list[Enrolment]] = {}
    for e in enrolments:
        by_instance.setdefault(e.instance, []).append(e)
    latest: dict[tuple[str, str, str], tuple[str, str]] = {}  # -> (date, run id)
    for r in list_runs(runs_dir):
        if r.get("mode") != "grade":
            continue
        cand = r.get("candidate")
        for e in by_instance.get(r["instance"], []):
            if e.lab != r["lab"] or (cand is not None and _fold(cand) != _fold(e.candidate)):
                continue
            key = (e.instance, _fold(e.candidate), e.lab)
            if key not in latest or (r["date"], r["id"]) > latest[key]:
                latest[key] = (r["date"], r["id"])

    opened: dict[str, StoredRun] = {}
    titles: dict[str, I18n] = {}
    rows: list[GradebookRow] = []
    for group in people.values():
        first = group[0]
        person_runs: list[StoredRun] = []
        for e in group:
            hit = latest.get((e.instance, _fold(e.candidate), e.lab))
            if hit is None:
                continue
            run_id = hit[1]
            if run_id not in opened:
                opened[run_id] = open_run(runs_dir, run_id)
            person_runs.append(opened[run_id])
        best: dict[str, StoredRun] = {}
        for run in person_runs:  # a candidate in two cohorts of one lab: the latest grade wins
            lab = run.info.lab_id
            titles.setdefault(lab, run.info.lab_title)
            if lab not in best or (run.info.started_at, run.run_id) > (best[lab].info.started_at, best[lab].run_id):
                best[lab] = run
        grades: dict[str, LabGrade | None] = {lab: None for lab in labs}
        for lab, run in best.items():
            grades[lab] = _lab_grade(run, scale)
        ident = first.identifier(id_field)
        assert ident is not None

        def pick(attr: str, group: list[Enrolment] = group) -> str | None:
            return next((getattr(e, attr) for e in group if getattr(e, attr)), None)

        rows.append(
            GradebookRow(
                name=first.candidate,
                identifier=ident,
                email=pick("email"),
                idnumber=pick("idnumber"),
                username=pick("username"),
                cohorts=list(dict.fromkeys(e.cohort for e in group)),
                grades=grades,
                criteria=criterion_summary(list(best.values()), catalog),
            )
        )
    rows.sort(key=lambda r: (_fold(r.name), r.identifier))
    lab_list = [(lab, titles.get(lab, I18n(fr=lab, en=lab))) for lab in labs]
    return Gradebook(id_field, scale, lab_list, rows, now or datetime.now(UTC))


def _roster_index(path: Path) -> dict[str, RosterEntry]:
    return {_fold(e.name): e for e in read_roster_entries(path)}


def _portal_enrolments(ctx: Context, name: str) -> list[Enrolment] | None:
    """The candidates of the portal's cohort ``name``, or None when there is no portal database
    (LABKIT_DB_URL or ``<home>/labkit.db``; none is created here) or no such cohort in it."""
    from sqlalchemy.exc import SQLAlchemyError

    from labkit.adapters.db import repo
    from labkit.adapters.db.database import existing_database

    db = existing_database(ctx.settings)
    if db is None:
        return None
    try:
        with db.session() as s:
            cohort = repo.get_cohort(s, name)
            if cohort is None:
                return None
            return [Enrolment(cohort=cohort.name, lab=cohort.lab_id, candidate=c.name, instance=c.instance,
                              email=c.email, idnumber=c.idnumber, username=c.username)
                    for c in repo.candidates_of(s, cohort)]
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UserError(f"cannot read the portal database {db.safe_url} ({first}); check LABKIT_DB_URL and that "
                        "the database server runs, or unset LABKIT_DB_URL.") from None
    finally:
        db.dispose()


def cohort_enrolments(ctx: Context, names: list[str], roster: Path | None = None) -> list[Enrolment]:
    """The candidates of the named cohorts as enrolments: a cohort of ``labkit cohort up``, else
    one made in the portal. Identifiers missing from a seat are taken from ``roster``
    (matched by name), when one is given."""
    if not names:
        raise UserError("name at least one cohort; 'labkit cohort status' lists them.")
    extra = _roster_index(roster) if roster is not None else {}
    found: list[Enrolment] = []
    for name in dict.fromkeys(names):
        try:
            cohort = load_cohort(ctx, name)
        except UserError:
            portal = _portal_enrolments(ctx, name)
            if portal is None:
                raise
            found += portal
            continue
        found += [Enrolment(cohort=cohort.name, lab=cohort.lab, candidate=seat.candidate, instance=seat.instance,
                            email=seat.email, idnumber=seat.idnumber, username=seat.username)
                  for seat in cohort.seats]
    out: list[Enrolment] = []
    for e in found:
        more = extra.get(_fold(e.candidate))
        if more is not None:
            e = replace(e, email=e.email or more.email, idnumber=e.idnumber or more.idnumber,
                        username=e.username or more.username)
        out.append(e)
    return out


def gradebook_for_cohorts(
    ctx: Context,
    names: list[str],
    *,
    id_field: IdField,
    scale: Scale = "100",
    roster: Path | None = None,
    catalog: Catalog | None = None,
) -> Gradebook:
    enrolments = cohort_enrolments(ctx, names, roster)
    return build_gradebook(enrolments, ctx.settings.runs, catalog or load_catalog(), id_field=id_field, scale=scale)


def _number(value: float | None) -> str:
    if value is None:
        return NO_GRADE
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _not_a_formula(text: str) -> str:
    """A name a spreadsheet will not run as a formula (the column Moodle ignores; the
    identifier is left as is, Moodle must find it unchanged)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def moodle_csv(gb: Gradebook, lang: str = "fr") -> str:
    """The CSV for Moodle's grade import (see the module docstring and docs/moodle-import.md)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    header = [ID_HEADER[gb.id_field], NAME_HEADER]
    for lab, _title in gb.labs:
        header += [lab, f"Feedback: {lab}"]
    w.writerow(header)
    for row in gb.rows:
        cells = [row.identifier, _not_a_formula(row.name)]
        for lab, _title in gb.labs:
            grade = row.grades.get(lab)
            cells += [NO_GRADE, ""] if grade is None else [_number(grade.grade), grade.feedback(lang)]
        w.writerow(cells)
    return buf.getvalue()


def gradebook_json(gb: Gradebook) -> dict[str, Any]:
    """The same as the CSV, plus the per-criterion table of each candidate."""

    def grade_json(g: LabGrade | None) -> dict[str, Any] | None:
        if g is None:
            return None
        return {
            "run_id": g.run_id,
            "score": g.score,
            "max_score": g.max_score,
            "grade": g.grade,
            "graded_at": g.graded_at.isoformat(),
            "manifest_sha256": g.manifest_sha256,
            "signed": g.signed,
            "failed_checks": [
                {"id": c.id, "status": c.status, "title": c.title.model_dump(), "message": c.message.model_dump()}
                for c in g.failed
            ],
            "feedback": {"fr": g.feedback("fr"), "en": g.feedback("en")},
        }

    return {
        "format": FORMAT,
        "generated_at": gb.generated_at.isoformat(),
        "id_field": gb.id_field,
        "scale": gb.scale,
        "labs": [{"id": lab, "title": title.model_dump()} for lab, title in gb.labs],
        "candidates": [
            {
                "name": r.name,
                "identifier": r.identifier,
                "email": r.email,
                "idnumber": r.idnumber,
                "username": r.username,
                "cohorts": r.cohorts,
                "grades": {lab: grade_json(r.grades.get(lab)) for lab, _t in gb.labs},
                "criteria_counts": counts(r.criteria),
                "criteria": [
                    {
                        "id": c.criterion.id,
                        "certification": c.criterion.certification,
                        "code": c.criterion.code,
                        "text": c.criterion.text,
                        "status": c.status,
                        "checks": [
                            {"run_id": k.run_id, "lab_id": k.lab_id, "check_id": k.check_id, "status": k.status}
                            for k in c.checks
                        ],
                    }
                    for c in r.criteria
                ],
            }
            for r in gb.rows
        ],
    }
