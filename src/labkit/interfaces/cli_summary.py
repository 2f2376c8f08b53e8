"""``labkit summary``: a candidate's per-criterion table (acquired / not acquired / not assessed)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from labkit.interfaces.cli import _ctx, _print_json, cli, err, out, plain

WORDS = {
    "fr": {"acquired": "ACQUIS", "not_acquired": "NON ACQUIS", "not_assessed": "NON ÉVALUÉ",
           "criterion": "critère", "status": "statut", "text": "texte", "checks": "vérifications",
           "pass": "réussi", "fail": "échoué", "error": "erreur", "none": "aucune vérification ne le cite",
           "title": "Synthèse par critère — {name}", "unverifiable": "run {ref} non vérifiable, laissé de côté : {msg}",
           "counts": "{acquired} acquis · {not_acquired} non acquis · {not_assessed} non évalués",
           "counted": "runs comptés (dernière note par lab) : {ids}", "empty": "aucun critère à afficher"},
    "en": {"acquired": "ACQUIRED", "not_acquired": "NOT ACQUIRED", "not_assessed": "NOT ASSESSED",
           "criterion": "criterion", "status": "status", "text": "text", "checks": "checks",
           "pass": "pass", "fail": "fail", "error": "error", "none": "no check cites it",
           "title": "Per-criterion summary — {name}", "unverifiable": "run {ref} cannot be verified, left out: {msg}",
           "counts": "{acquired} acquired · {not_acquired} not acquired · {not_assessed} not assessed",
           "counted": "runs counted (latest grade per lab): {ids}", "empty": "no criterion to show"},
}
STYLE = {"acquired": "green", "not_acquired": "red", "not_assessed": "yellow"}


def summary_json(s: Any) -> dict[str, Any]:
    """The table as JSON (the shape of a bundle's summary.json ``criteria``)."""
    return {
        "candidate": s.candidate,
        "certifications": list(dict.fromkeys(r.criterion.certification for r in s.rows)),
        "counts": s.counts,
        "criteria": [
            {"id": r.criterion.id, "certification": r.criterion.certification, "block": r.criterion.block,
             "code": r.criterion.code, "text": r.criterion.text, "status": r.status,
             "checks": [{"run_id": c.run_id, "lab_id": c.lab_id, "check_id": c.check_id,
                         "title": c.title.model_dump(), "status": c.status, "message": c.message.model_dump(),
                         "evidence": list(c.evidence)} for c in r.checks]}
            for r in s.rows
        ],
        "runs_counted": s.counted,
        "unverifiable": [{"ref": u.ref, "message": u.message} for u in s.unverifiable],
    }


@cli.command()
@click.option("--candidate", required=True, help="A candidate's name as recorded in the runs, or an instance name.")
@click.option("--certification", "certifications", multiple=True, metavar="ID",
              help="Show only this certification (repeatable; catalog ids such as tssr). "
                   "Default: every certification the candidate's checks cite.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--lang", type=click.Choice(["fr", "en"]), default="fr", show_default=True)
def summary(candidate: str, certifications: tuple[str, ...], as_json: bool, lang: str) -> None:
    """A candidate's per-criterion table from their recorded grades (latest grade per lab)."""
    from labkit.usecases.summary import candidate_summary

    s = candidate_summary(_ctx(), candidate, certifications)
    w = WORDS[lang]
    for u in s.unverifiable:
        err.print(plain(f"labkit: warning: {w['unverifiable'].format(ref=u.ref, msg=u.message)}"))
    if as_json:
        _print_json(summary_json(s))
        return
    t = Table(title=plain(w["title"].format(name=candidate)), show_lines=True)
    t.add_column(w["criterion"], no_wrap=True)
    t.add_column(w["status"], no_wrap=True)
    t.add_column(w["text"], ratio=3)
    t.add_column(w["checks"], ratio=2)
    for r in s.rows:
        crit = r.criterion
        checks = "\n".join(f"{c.check_id} ({c.run_id}): {w[c.status]}" for c in r.checks) or w["none"]
        t.add_row(plain(f"{crit.certification} · {crit.code}\n{crit.id}"),
                  Text(w[r.status], style=STYLE[r.status]), plain(crit.text), plain(checks))
    if s.rows:
        out.print(t)
    else:
        out.print(w["empty"])
    out.print(w["counts"].format(**s.counts))
    out.print(plain(w["counted"].format(ids=", ".join(s.counted) or "-")))
