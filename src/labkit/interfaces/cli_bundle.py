"""``labkit bundle``: a candidate's signed portfolio bundle (zip)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labkit.errors import UserError
from labkit.interfaces.cli import _ctx, _print_json, cli, err, out, plain


def _summary(r: Any) -> dict[str, Any]:
    return {"path": str(r.path), "candidate": r.candidate, "runs": r.runs, "recordings": r.recordings,
            "warnings": r.warnings, "timings_s": r.timings}


def _say(r: Any) -> None:
    for w in r.warnings:
        err.print(plain(f"labkit: warning: {w}"))
    out.print(plain(f"bundle of {r.candidate} written to {r.path} ({len(r.runs)} run(s), "
                    f"{r.recordings} recording(s), {r.timings.get('total', 0):.1f} s)"))


@cli.command()
@click.argument("run", required=False)
@click.option("--candidate", help="A candidate's name as recorded in the runs, or an instance name.")
@click.option("--cohort", "cohort_name", help="Every candidate of a cohort: one zip each into the folder -o.")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="FILE.zip (a run or a candidate) or a FOLDER (--cohort).")
@click.option("--with-selfchecks", is_flag=True, help="Add the candidate's self-checks to the recorded grades.")
@click.option("--lang", type=click.Choice(["fr", "en"]), default="fr", show_default=True,
              help="Language of index.pdf and of the artifacts' legends (the HTML index exists in both).")
@click.option("--certification", "certifications", multiple=True, metavar="ID",
              help="Show only this certification in the summary, the criteria and summary.json (repeatable; "
                   "catalog ids such as tssr). Default: every certification the runs cite.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def bundle(run: str | None, candidate: str | None, cohort_name: str | None, output: Path, with_selfchecks: bool,
           lang: str, certifications: tuple[str, ...], as_json: bool) -> None:
    """Make a signed portfolio bundle: one RUN, a --candidate's recorded grades, or a --cohort."""
    from labkit.usecases.bundle import bundle_candidate, bundle_cohort, bundle_run

    chosen = [x for x in (run, candidate, cohort_name) if x]
    if len(chosen) != 1:
        raise UserError("name exactly one of RUN, --candidate ID or --cohort C; "
                        "for example `labkit bundle --candidate \"Alice Martin\" -o alice.zip`")
    if with_selfchecks and run:
        raise UserError("--with-selfchecks goes with --candidate or --cohort; a RUN is bundled whatever its mode")
    ctx = _ctx()
    if run:
        results = [bundle_run(ctx, run, output, lang=lang, certifications=certifications)]
        skipped: list[str] = []
    elif candidate:
        results = [bundle_candidate(ctx, candidate, output, with_selfchecks=with_selfchecks, lang=lang,
                                    certifications=certifications)]
        skipped = []
    else:
        assert cohort_name is not None
        results, skipped = bundle_cohort(ctx, cohort_name, output, with_selfchecks=with_selfchecks, lang=lang,
                                         certifications=certifications)
    if as_json:
        _print_json({"bundles": [_summary(r) for r in results], "skipped": skipped})
        return
    for r in results:
        _say(r)
    for name in skipped:
        err.print(plain(f"labkit: warning: {name} has no recorded grade; no bundle for them"))
