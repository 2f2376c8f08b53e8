"""A candidate's per-criterion table (acquired / not acquired / not assessed): what a jury reads first.

One place for "which runs are this candidate's recorded grades" and "the table from those
runs", used by ``labkit summary``, ``labkit bundle --candidate`` and the portal:

- :func:`recorded_run_ids`: the candidate's sealed runs (mode ``grade``, and ``selfcheck`` on
  request), matched by the candidate's name as recorded in the runs, else by instance name;
- :func:`summarize`: opens each run folder with :func:`open_run` (hash chain checked); a
  folder that fails verification is listed in ``unverifiable`` with the reason and left out
  of the table (it is no longer proof), never crashed on; then
  :func:`labkit.domain.criteria_summary.criterion_summary` over the verified runs (only the
  latest grade per lab counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from labkit.adapters.storage.runs import StoredRun, list_runs, open_run
from labkit.domain.criteria import load_catalog
from labkit.domain.criteria_summary import CriterionRow, CriterionStatus, counts, criterion_summary, latest_grades
from labkit.errors import EvidenceIntegrityError, UnknownRunError, UserError
from labkit.usecases.lifecycle import Context

__all__ = ["CandidateSummary", "Unverifiable", "candidate_summary", "check_certifications", "recorded_run_ids",
           "seat_ref", "summarize"]


@dataclass(frozen=True)
class Unverifiable:
    """A recorded run whose folder failed verification (or is gone)."""

    ref: str
    message: str


@dataclass
class CandidateSummary:
    candidate: str
    rows: list[CriterionRow]
    runs: dict[str, StoredRun]  # ref given -> the verified run
    counted: list[str]  # run ids the table counts (the latest grade per lab)
    unverifiable: list[Unverifiable] = field(default_factory=list)
    cited: list[str] = field(default_factory=list)  # certification ids the runs cite (for a selector)
    certifications: dict[str, str] = field(default_factory=dict)  # catalog id -> title
    shown: tuple[str, ...] | None = None  # the certifications asked for (None: every cited one)

    @property
    def counts(self) -> dict[CriterionStatus, int]:
        return counts(self.rows)


def check_certifications(certifications: Sequence[str] | None) -> tuple[str, ...] | None:
    """The certification ids to show (None: every one the runs cite); UserError for an id
    the catalog does not know."""
    if not certifications:
        return None
    known = [c.id for c in load_catalog().certifications]
    unknown = [c for c in dict.fromkeys(certifications) if c not in known]
    if unknown:
        names = ", ".join(repr(c) for c in unknown)
        raise UserError(f"unknown certification {names}; pass --certification with one of {', '.join(known)}")
    return tuple(dict.fromkeys(certifications))


def recorded_run_ids(ctx: Context, candidate: str, *, with_selfchecks: bool = False) -> list[str]:
    """Run ids of the candidate's recorded grades (and self-checks), oldest first: those whose
    recorded candidate name is ``candidate``, else those of the instance ``candidate``."""
    modes = ("grade", "selfcheck") if with_selfchecks else ("grade",)
    rows = [r for r in list_runs(ctx.settings.runs) if r["mode"] in modes]
    chosen = [r for r in rows if r["candidate"] == candidate] or [r for r in rows if r["instance"] == candidate]
    return [r["id"] for r in reversed(chosen)]


def seat_ref(ctx: Context, name: str, instance: str) -> str | None:
    """What to pass as ``candidate`` to :func:`recorded_run_ids` (and ``labkit bundle
    --candidate``) for a seat of a cohort: the name when every graded run of that name is this
    seat's instance (a bundle then shows the name), else the instance, which is the seat's alone;
    None when the instance has no recorded grade."""
    graded = [r for r in list_runs(ctx.settings.runs) if r["mode"] == "grade"]
    if not any(r["instance"] == instance for r in graded):
        return None
    named = [r for r in graded if r["candidate"] == name]
    return name if named and all(r["instance"] == instance for r in named) else instance


def summarize(ctx: Context, refs: Sequence[str], candidate: str,
              certifications: Sequence[str] | None = None) -> CandidateSummary:
    """The table from the runs ``refs`` (run ids or folders); see the module docstring."""
    certs = check_certifications(certifications)
    catalog = load_catalog()
    opened: dict[str, StoredRun] = {}
    bad: list[Unverifiable] = []
    for ref in dict.fromkeys(refs):
        try:
            opened[ref] = open_run(ctx.settings.runs, ref)
        except (EvidenceIntegrityError, UnknownRunError) as exc:
            bad.append(Unverifiable(ref, str(exc)))
    runs = list(opened.values())
    every = criterion_summary(runs, catalog)
    cited = list(dict.fromkeys(r.criterion.certification for r in every))
    rows = every if certs is None else criterion_summary(runs, catalog, certs)
    return CandidateSummary(candidate=candidate, rows=rows, runs=opened,
                            counted=[r.run_id for r in latest_grades(runs)], unverifiable=bad, cited=cited,
                            certifications={c.id: c.title for c in catalog.certifications}, shown=certs)


def candidate_summary(ctx: Context, candidate: str, certifications: Sequence[str] | None = None) -> CandidateSummary:
    """The table of a candidate's recorded grades (name as recorded in the runs, or instance);
    UserError when there is none."""
    check_certifications(certifications)
    ids = recorded_run_ids(ctx, candidate)
    if not ids:
        raise UserError(f"no recorded grade for candidate or instance {candidate!r}; grade it first "
                        "(`labkit grade NAME`) or see `labkit runs` for the names recorded")
    return summarize(ctx, ids, candidate, certifications)
