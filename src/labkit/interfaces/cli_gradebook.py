"""``labkit gradebook``: a cohort's results for Moodle (CSV) and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from labkit.adapters.storage.files import write_atomic
from labkit.errors import UserError
from labkit.interfaces.cli import _ctx, cli, out, plain
from labkit.usecases.gradebook import ID_FIELDS, MOODLE_MAPTO, SCALES, gradebook_for_cohorts, gradebook_json, moodle_csv


def _write_atomic(path: Path, data: bytes) -> None:
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the file to write with -o FILE.")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)  # never a half-written file


@cli.command()
@click.argument("cohorts", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["moodle", "json"]), default="moodle", show_default=True,
              help="moodle: CSV for Moodle's grade import; json: the same with the per-criterion tables.")
@click.option("--id-field", type=click.Choice(ID_FIELDS), required=True,
              help="The identifier Moodle matches users on (the roster's column).")
@click.option("--scale", type=click.Choice(SCALES), default="100", show_default=True,
              help="Grades in points (the lab's maximum), out of 20 or out of 100.")
@click.option("--roster", type=click.Path(path_type=Path, dir_okay=False),
              help="A roster giving identifiers the cohort's roster lacked (matched by name), "
                   "e.g. Moodle's participants export.")
@click.option("--lang", type=click.Choice(["fr", "en"]), default="fr", show_default=True,
              help="Language of the feedback in the CSV.")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True, help="File to write.")
def gradebook(cohorts: tuple[str, ...], fmt: str, id_field: str, scale: str, roster: Path | None, lang: str,
              output: Path) -> None:
    """Export the latest recorded grade per lab of every candidate of COHORT(s): Moodle CSV or JSON.

    A COHORT is one made by `labkit cohort up`, or one made in the portal. A candidate of
    several cohorts has one row (same identifier). Import steps: docs/moodle-import.md.
    """
    gb = gradebook_for_cohorts(_ctx(), list(cohorts), id_field=id_field, scale=scale,  # type: ignore[arg-type]
                               roster=roster)
    if fmt == "moodle":
        data = moodle_csv(gb, lang).encode("utf-8")
    else:
        data = (json.dumps(gradebook_json(gb), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    _write_atomic(output, data)
    graded = sum(g is not None for r in gb.rows for g in r.grades.values())
    cells = len(gb.rows) * len(gb.labs)
    out.print(plain(f"gradebook written to {output}: {len(gb.rows)} candidate(s), {len(gb.labs)} lab(s), "
                    f"{graded} grade(s) of {cells} ({cells - graded} not graded yet)"))
    if fmt == "moodle":
        out.print(plain("in Moodle: Grades > Import > CSV file; Map from: the first column, "
                        f"Map to: {MOODLE_MAPTO[gb.id_field]} (step by step: docs/moodle-import.md)"))
