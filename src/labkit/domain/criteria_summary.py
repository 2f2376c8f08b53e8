"""Per-criterion summary of a candidate's recorded grades: what a jury reads first.

For each criterion of the referentials the candidate's checks cite, one row:

- ``acquired``: at least one check cites it and every citing check passed;
- ``not_acquired``: a citing check failed or ended in error (an error is not proof);
- ``not_assessed``: no check of the candidate's graded runs cites it.

Only recorded grades count (runs of mode ``"grade"``), and for each lab only the latest one
(:func:`latest_grades`): a later grade of the same lab replaces the earlier one, self-checks
are practice and never count.

The certifications listed are those cited by the runs' checks (or, when the caller names
them, those certifications only, cited or not: a jury examines one title); their rows are
every criterion of the catalog for those certifications, in catalog order. The text of a cited
criterion is the one stored in the run's ``criteria.json`` (sealed with the evidence), the
catalog only supplies the criteria no check cites. A cited criterion the catalog no longer
knows is kept (after the catalog's rows of its certification) so no evidence is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from labkit.models.stored_run import StoredRun
from labkit.models.common import I18n
from labkit.models.criteria import Catalog, Criterion
from labkit.models.results import Status

__all__ = [
    "CheckRef",
    "CriterionRow",
    "CriterionStatus",
    "counts",
    "criterion_summary",
    "latest_grades",
]

CriterionStatus = Literal["acquired", "not_acquired", "not_assessed"]
STATUSES: tuple[CriterionStatus, ...] = ("acquired", "not_acquired", "not_assessed")


@dataclass(frozen=True)
class CheckRef:
    """One check of one run that cites a criterion."""

    run_id: str
    lab_id: str
    check_id: str
    title: I18n
    status: Status
    message: I18n
    evidence: list[str]


@dataclass(frozen=True)
class CriterionRow:
    criterion: Criterion
    status: CriterionStatus
    checks: list[CheckRef]


def latest_grades(runs: list[StoredRun]) -> list[StoredRun]:
    """The latest mode-"grade" run per lab (by start time, then run id), sorted by lab id."""
    latest: dict[str, StoredRun] = {}
    for run in runs:
        if run.info.mode != "grade":
            continue
        key = run.info.lab_id
        best = latest.get(key)
        if best is None or (run.info.started_at, run.run_id) > (best.info.started_at, best.run_id):
            latest[key] = run
    return [latest[lab] for lab in sorted(latest)]


def _status(checks: list[CheckRef]) -> CriterionStatus:
    if not checks:
        return "not_assessed"
    if all(c.status == "pass" for c in checks):
        return "acquired"
    return "not_acquired"


def criterion_summary(runs: list[StoredRun], catalog: Catalog,
                      certifications: Iterable[str] | None = None) -> list[CriterionRow]:
    """One row per criterion of the cited certifications (see the module docstring), or of
    ``certifications`` only when given (catalog ids; the caller checks they exist)."""
    graded = latest_grades(runs)
    citing: dict[str, list[CheckRef]] = {}
    stored: dict[str, Criterion] = {}  # texts sealed with the runs
    for run in graded:
        by_id = {c.id: c for c in run.criteria}
        for check in run.summary.checks:
            ref = CheckRef(
                run_id=run.run_id,
                lab_id=run.info.lab_id,
                check_id=check.id,
                title=check.title,
                status=check.status,
                message=check.message,
                evidence=list(check.evidence),
            )
            for crit_id in dict.fromkeys(check.criteria):
                citing.setdefault(crit_id, []).append(ref)
                if crit_id not in stored:
                    crit = by_id.get(crit_id) or catalog.get(crit_id)
                    if crit is not None:
                        stored[crit_id] = crit
    # a criterion cited but known neither to the run nor to the catalog cannot be shown
    cited = [cid for cid in citing if cid in stored]
    certs = list(dict.fromkeys(stored[cid].certification for cid in cited))
    if certifications is not None:
        wanted = list(dict.fromkeys(certifications))
        certs = [c for c in certs if c in wanted] + [c for c in wanted if c not in certs]
    cert_order = [c.id for c in catalog.certifications if c.id in certs]
    cert_order += [c for c in certs if c not in cert_order]

    rows: list[CriterionRow] = []
    for cert in cert_order:
        seen: set[str] = set()
        for crit in catalog.criteria:
            if crit.certification != cert:
                continue
            seen.add(crit.id)
            refs = citing.get(crit.id, [])
            rows.append(CriterionRow(criterion=stored.get(crit.id, crit), status=_status(refs), checks=refs))
        for cid in cited:
            if cid not in seen and stored[cid].certification == cert:
                rows.append(CriterionRow(criterion=stored[cid], status=_status(citing[cid]), checks=citing[cid]))
    return rows


def counts(rows: list[CriterionRow]) -> dict[CriterionStatus, int]:
    """How many rows have each status (every status present, 0 when none)."""
    out: dict[CriterionStatus, int] = dict.fromkeys(STATUSES, 0)
    for row in rows:
        out[row.status] += 1
    return out
