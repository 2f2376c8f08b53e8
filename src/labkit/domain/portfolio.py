"""A candidate's portfolio bundle: its index pages, summary and per-run artifact exports.

Pure content: this module turns verified runs (and the list of recordings) into bytes and
text; :mod:`labkit.usecases.bundle` writes them into the bundle folder and signs it.

The index (``index.html`` in French, ``index.en.html``, ``index.pdf``) is what a jury reads
first: the per-criterion summary table (acquired / not acquired / not assessed, from
:func:`labkit.domain.criteria_summary.criterion_summary`), then each assessed criterion with
its quoted text and the checks that evidence it (verdict, message, run, a link to the check's
section of the report, and under it a full-width line of links to the evidence files), then
the criteria nobody assessed, one line each with their full text, then the runs with their
reports and artifacts, the console recordings, and how to verify the bundle. Links are
relative, there is no script and no external resource: the unzipped folder works offline in
any browser.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from labkit.models.stored_run import StoredRun
from labkit.domain.criteria_summary import CriterionRow, counts
from labkit.domain.diagram import cidr_addresses, diagram_addresses, topology_svg
from labkit.domain.report import cell_text
from labkit.domain.templating import environment

__all__ = [
    "FORMAT",
    "STRINGS",
    "Export",
    "Portfolio",
    "RecordingEntry",
    "RunEntry",
    "readme_text",
    "render_index",
    "report_name",
    "run_exports",
    "summary_json",
]

FORMAT = "labkit-portfolio/1"
RESTORE_GRADERS = ("restore_test",)  # grader names (after the last dot) whose evidence is a restore test
_KNOWN = ("topology", "addressing")

STRINGS: dict[str, dict[str, str]] = {
    "fr": {
        "kind": "Portefeuille de preuves",
        "candidate": "Candidat",
        "centre": "Centre",
        "key": "Clé de signature (empreinte)",
        "made_on": "Constitué le",
        "other_lang": "English version",
        "other_lang_href": "index.en.html",
        "summary": "Synthèse par critère du référentiel",
        "summary_intro": (
            "Un critère est acquis quand au moins un contrôle le cite et que tous les contrôles qui le citent "
            "ont réussi ; non acquis quand l'un d'eux a échoué ou est en erreur ; non évalué quand aucun "
            "contrôle ne le cite. Seule la dernière évaluation de chaque laboratoire compte."
        ),
        "acquired": "Acquis",
        "not_acquired": "Non acquis",
        "not_assessed": "Non évalué",
        "counts": "{acquired} acquis, {not_acquired} non acquis, {not_assessed} non évalué(s)",
        "certification": "Certification",
        "code": "Code",
        "criterion": "Critère",
        "status": "Statut",
        "checks_n": "Contrôles",
        "criteria": "Critères et preuves",
        "block": "Bloc / activité",
        "verbatim": "Texte du critère",
        "no_check": "Aucun contrôle des évaluations retenues ne cite ce critère.",
        "none_assessed": "Aucun critère n'est évalué par les évaluations retenues.",
        "unassessed": "Critères non évalués",
        "unassessed_intro": (
            "Aucun contrôle des évaluations retenues ne cite les critères ci-dessous ; ils ne sont ni acquis "
            "ni non acquis. Leur texte est cité en entier."
        ),
        "evidence_in": "fichiers runs/{run}/evidence/<preuve>.json",
        "open_report": "voir dans le rapport",
        "check": "Contrôle",
        "verdict": "Verdict",
        "message": "Constat",
        "run": "Run",
        "evidence": "Preuves",
        "report_section": "rapport",
        "pass": "Réussi",
        "fail": "Échoué",
        "error": "Erreur",
        "runs": "Évaluations et rapports",
        "lab": "Laboratoire",
        "date": "Date",
        "mode": "Mode",
        "mode_grade": "Évaluation",
        "mode_selfcheck": "Auto-vérification",
        "score": "Score",
        "signed_by": "Signé par",
        "unsigned": "non signé (garanti par la signature du portefeuille seulement)",
        "counted": "retenue dans la synthèse",
        "not_counted_selfcheck": "auto-vérification : non retenue dans la synthèse",
        "not_counted_older": "remplacée par une évaluation plus récente du même laboratoire",
        "reports": "Rapports",
        "artifacts": "Documents techniques",
        "sealed_files": "Dossier scellé",
        "manifest": "Empreinte du manifeste",
        "recordings": "Enregistrements de la console",
        "no_recordings": "Aucun enregistrement de console pour ce candidat.",
        "node": "Équipement",
        "channel": "Canal",
        "started": "Début",
        "size": "Taille",
        "transcript": "transcription",
        "cast": "enregistrement (asciicast)",
        "verify": "Vérifier ce portefeuille",
        "verify_intro": (
            "Chaque fichier de ce dossier est listé avec son empreinte SHA-256 dans SHA256SUMS, signé par la clé "
            "du centre (SHA256SUMS.sig). Chaque run est en plus scellé et signé par le centre au moment de "
            "l'évaluation (runs/<run>/seal.json.sig). Avec labkit :"
        ),
        "verify_without": "Sans labkit (OpenSSH et coreutils), dans le dossier décompressé :",
        "verify_trust": (
            "Le fichier allowed_signers est fourni par commodité et ne prouve rien à lui seul : comparez "
            "l'empreinte de la clé ci-dessus à celle que le centre publie (labkit keys show --pub)."
        ),
        "art_topology": "Schéma de la topologie",
        "art_addressing": "Plan d'adressage",
        "art_routes": "Table de routage de {node}",
        "art_restore": "Test de restauration",
        "art_availability": "Tableau de disponibilité",
        "art_alerts": "Chronologie des alertes",
        "art_other": "{name}",
        "html": "HTML",
        "pdf": "PDF",
        "fr": "français",
        "en": "anglais",
        "colon": " :",
        "back": "Retour au portefeuille",
        "times_utc": "heures UTC du {day}",
        "csv": "CSV",
        "svg": "SVG",
    },
    "en": {
        "kind": "Evidence portfolio",
        "candidate": "Candidate",
        "centre": "Centre",
        "key": "Signing key (fingerprint)",
        "made_on": "Made on",
        "other_lang": "Version française",
        "other_lang_href": "index.html",
        "summary": "Summary by referential criterion",
        "summary_intro": (
            "A criterion is acquired when at least one check cites it and every check citing it passed; not "
            "acquired when one of them failed or ended in error; not assessed when no check cites it. Only "
            "the latest grading of each lab counts."
        ),
        "acquired": "Acquired",
        "not_acquired": "Not acquired",
        "not_assessed": "Not assessed",
        "counts": "{acquired} acquired, {not_acquired} not acquired, {not_assessed} not assessed",
        "certification": "Certification",
        "code": "Code",
        "criterion": "Criterion",
        "status": "Status",
        "checks_n": "Checks",
        "criteria": "Criteria and evidence",
        "block": "Block / activity",
        "verbatim": "Criterion text (verbatim, in French)",
        "no_check": "No check of the gradings kept cites this criterion.",
        "none_assessed": "No criterion is assessed by the gradings kept.",
        "unassessed": "Criteria not assessed",
        "unassessed_intro": (
            "No check of the gradings kept cites the criteria below; they are neither acquired nor not "
            "acquired. Their text is quoted in full (in French, verbatim)."
        ),
        "evidence_in": "files runs/{run}/evidence/<evidence>.json",
        "open_report": "see in the report",
        "check": "Check",
        "verdict": "Verdict",
        "message": "Finding",
        "run": "Run",
        "evidence": "Evidence",
        "report_section": "report",
        "pass": "Passed",
        "fail": "Failed",
        "error": "Error",
        "runs": "Gradings and reports",
        "lab": "Lab",
        "date": "Date",
        "mode": "Mode",
        "mode_grade": "Grading",
        "mode_selfcheck": "Self-check",
        "score": "Score",
        "signed_by": "Signed by",
        "unsigned": "unsigned (vouched for by the portfolio signature only)",
        "counted": "counted in the summary",
        "not_counted_selfcheck": "self-check: not counted in the summary",
        "not_counted_older": "superseded by a later grading of the same lab",
        "reports": "Reports",
        "artifacts": "Technical documents",
        "sealed_files": "Sealed folder",
        "manifest": "Manifest hash",
        "recordings": "Console recordings",
        "no_recordings": "No console recording for this candidate.",
        "node": "Device",
        "channel": "Channel",
        "started": "Started",
        "size": "Size",
        "transcript": "transcript",
        "cast": "recording (asciicast)",
        "verify": "Verifying this portfolio",
        "verify_intro": (
            "Every file of this folder is listed with its SHA-256 in SHA256SUMS, signed by the centre's key "
            "(SHA256SUMS.sig). Each run is also sealed and signed by the centre when it was graded "
            "(runs/<run>/seal.json.sig). With labkit:"
        ),
        "verify_without": "Without labkit (OpenSSH and coreutils), in the unzipped folder:",
        "verify_trust": (
            "The allowed_signers file is given for convenience and proves nothing by itself: compare the key "
            "fingerprint above with the one the centre publishes (labkit keys show --pub)."
        ),
        "art_topology": "Topology diagram",
        "art_addressing": "Addressing plan",
        "art_routes": "Routing table of {node}",
        "art_restore": "Restore test",
        "art_availability": "Availability table",
        "art_alerts": "Alert timeline",
        "art_other": "{name}",
        "html": "HTML",
        "pdf": "PDF",
        "fr": "French",
        "en": "English",
        "colon": ":",
        "back": "Back to the portfolio",
        "times_utc": "times in UTC on {day}",
        "csv": "CSV",
        "svg": "SVG",
    },
}


@dataclass(frozen=True)
class Export:
    """One file under ``artifacts/<run_id>/``: its name, what it is (label key + args), its bytes."""

    name: str
    label: str  # a STRINGS key
    args: dict[str, str]
    data: bytes


@dataclass(frozen=True)
class RunEntry:
    run: StoredRun
    counted: bool  # one of the gradings the summary uses
    reports: list[str]  # paths in the bundle (reports/<run_id>.fr.html ...)
    exports: list[Export] = field(default_factory=list)


@dataclass(frozen=True)
class RecordingEntry:
    cast: str  # path in the bundle
    transcript: str  # path in the bundle
    node: str
    channel: str
    started_at: datetime | None
    size_bytes: int


@dataclass(frozen=True)
class Portfolio:
    candidate: str
    centre: str
    key_fingerprint: str
    created_at: datetime
    rows: list[CriterionRow]
    runs: list[RunEntry]
    recordings: list[RecordingEntry] = field(default_factory=list)
    certifications: dict[str, str] = field(default_factory=dict)  # id -> title, from the catalog


def report_name(run_id: str, lang: str, ext: str) -> str:
    return f"reports/{run_id}.{lang}.{ext}"


# -- artifact exports --------------------------------------------------------------------------
def _csv(columns: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if v is None else _cell(v) for v in r])
    return buf.getvalue().encode("utf-8")


_TABLE_CSS = (
    'body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; margin: 0 auto; max-width: 260mm; '
    "padding: 8mm; color: #1d1d1d; } h1 { font-size: 14pt; color: #14324f; } .note { color: #5a6570; } "
    "table { border-collapse: collapse; } th, td { border: 1px solid #c9cfd6; padding: 3px 6px; text-align: left; "
    "vertical-align: top; font-size: 9pt; } thead th { background: #e8eef4; } tr { break-inside: avoid; } "
    'td { font-family: "DejaVu Sans Mono", monospace; font-size: 8.5pt; overflow-wrap: break-word; } '
    "th { overflow-wrap: normal; } td.t { white-space: nowrap; }"
)


def _table_html(title: str, run: StoredRun, columns: list[str], rows: list[list[Any]], lang: str) -> bytes:
    """The same table as a standalone HTML page (for a browser; the CSV is for a spreadsheet)."""
    e = html.escape
    s = STRINGS[lang]
    who = run.info.candidate or run.info.instance
    day = run.info.started_at.astimezone(UTC).date()  # times of that day are shown as HH:MM:SS.mmm

    def td(v: Any) -> str:
        text = cell_text(v, day) if v is not None else ""
        timed = isinstance(v, str) and text != v  # a date-time shortened to its time of day
        return f'<td class="t">{e(text)}</td>' if timed else f"<td>{e(text)}</td>"

    head = "".join(f"<th>{e(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(td(v) for v in r) + "</tr>\n" for r in rows)
    return (f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{e(title)} — {e(who)}</title>\n<style>{_TABLE_CSS}</style>\n</head>\n<body>\n"
            f'<p><a href="../../{"index.html" if lang == "fr" else "index.en.html"}">{e(s["back"])}</a></p>\n'
            f"<h1>{e(title)}</h1>\n<p class=\"note\">{e(run.info.lab_title.get(lang))} — {e(who)} — "
            f"<code>{e(run.run_id)}</code> — {e(s['times_utc'].format(day=f'{day:%d/%m/%Y}'))}</p>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n</body>\n</html>\n"
            ).encode()


def _table(stem: str, label: str, args: dict[str, str], columns: list[str], rows: list[list[Any]],
           run: StoredRun, lang: str) -> list[Export]:
    title = STRINGS[lang][label].format(**args)
    return [Export(f"{stem}.html", label, args, _table_html(title, run, columns, rows, lang)),
            Export(f"{stem}.csv", label, args, _csv(columns, rows))]


def _cell(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str) if v else ""
    return v


def _records(data: Any) -> list[dict[str, Any]] | None:
    if not isinstance(data, list):
        return None
    rows = [r for r in data if isinstance(r, dict)]
    return rows or None


def _columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return columns, [[r.get(c) for c in columns] for r in rows]


def _restore_rows(run: StoredRun) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for check in run.summary.checks:
        if check.grader.rsplit(".", 1)[-1] not in RESTORE_GRADERS:
            continue
        evs = sorted((e for e in run.evidence.values() if e.check == check.id),
                     key=lambda e: (e.started_at, e.id))
        for e in evs:
            rows.append([check.id, check.status, e.id, e.meta.get("phase", ""), e.kind, e.source, e.target,
                         e.action, e.started_at.astimezone(UTC).isoformat(),
                         e.ended_at.astimezone(UTC).isoformat(), "ok" if e.ok else "failed", e.error or "",
                         e.meta.get("rto_s", ""), f"evidence/{e.id}.json"])
    return rows


def run_exports(run: StoredRun, lang: str = "fr") -> list[Export]:
    """The run's portfolio artifacts as files: topology.svg, addressing.csv, routes-<node>.csv,
    restore-test.csv, availability.csv, alert-timeline.csv and any other table a grader stored."""
    arts = run.artifacts
    out: list[Export] = []
    addressing = _records(arts.get("addressing")) or []
    topo = arts.get("topology")
    if isinstance(topo, dict) and isinstance(topo.get("nodes"), list) and topo["nodes"]:
        svg = topology_svg(topo, diagram_addresses(addressing), lang=lang)
        out.append(Export("topology.svg", "art_topology", {}, svg.encode("utf-8")))
    if addressing:
        out += _table("addressing", "art_addressing", {}, ["node", "iface", "state", "addresses", "error"],
                      [[r.get("node"), r.get("iface"), r.get("state"), " ".join(cidr_addresses(r.get("addresses"))),
                        r.get("error")] for r in addressing], run, lang)
    node_order = [n.get("name") for n in (topo or {}).get("nodes", []) if isinstance(n, dict)] \
        if isinstance(topo, dict) else []
    routes = sorted((n for n in arts if n.startswith("routes-")),
                    key=lambda n: (node_order.index(n[7:]) if n[7:] in node_order else len(node_order), n))
    for name in routes:
        rows = _records(arts[name])
        if rows is None:
            continue  # {"error": ...}: the report says why it was not collected
        keys = ["dst", "gateway", "dev", "protocol", "metric"]
        out += _table(name, "art_routes", {"node": name[len("routes-"):]}, keys,
                      [[_cell(r.get(k)) for k in keys] for r in rows], run, lang)
    restore = _restore_rows(run)
    if restore:
        out += _table("restore-test", "art_restore", {},
                      ["check", "verdict", "evidence", "phase", "kind", "source", "target", "action", "started_at",
                       "ended_at", "probe", "error", "rto_s", "file"], restore, run, lang)
    labels = {"availability": "art_availability", "alert-timeline": "art_alerts"}
    for name in sorted(arts):
        if name in _KNOWN or name.startswith("routes-"):
            continue
        rows = _records(arts[name])
        if rows is None:
            continue
        columns, values = _columns(rows)
        out += _table(name, labels.get(name, "art_other"), {"name": name}, columns, values, run, lang)
    return out


# -- index -------------------------------------------------------------------------------------
def _fmt_dt(dt: datetime | str | None, lang: str) -> str:
    if dt is None:
        return "—"
    if isinstance(dt, str):
        try:
            dt = datetime.fromisoformat(dt)
        except ValueError:
            return str(dt)
    d = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return f"{d:%d/%m/%Y %H:%M} UTC" if lang == "fr" else f"{d:%Y-%m-%d %H:%M} UTC"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _grouped(e: RunEntry, s: dict[str, str]) -> list[dict[str, Any]]:
    """One line per artifact, with its formats: ``Addressing plan: HTML · CSV``."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for x in e.exports:
        label = s[x.label].format(**x.args)
        fmt = x.name.rsplit(".", 1)[-1]
        entry = out.setdefault((x.label, label), {"label": label, "files": []})
        entry["files"].append({"href": f"artifacts/{e.run.run_id}/{x.name}", "fmt": s.get(fmt, fmt.upper())})
    return list(out.values())


def _css_string(text: str) -> Markup:
    """``text`` as a CSS string literal: anything but letters, digits and a few signs is
    written as a CSS escape, so a name can neither end the string nor the style sheet."""
    out = []
    for ch in text:
        out.append(ch if ch.isalnum() or ch in " .,:;-_/()@·—'" else f"\\{ord(ch):06x}")
    return Markup('"' + "".join(out) + '"')


def _view(p: Portfolio, lang: str) -> dict[str, Any]:
    s = STRINGS[lang]
    by_id = {e.run.run_id: e.run for e in p.runs}
    rows: list[dict[str, Any]] = []
    for r in p.rows:
        c = r.criterion
        checks = []
        for ref in r.checks:
            run = by_id.get(ref.run_id)
            checks.append({
                "id": ref.check_id, "lab": ref.lab_id, "run_id": ref.run_id,
                "title": ref.title.get(lang), "status": ref.status, "status_label": s[ref.status],
                "message": ref.message.get(lang),
                "report": f"{report_name(ref.run_id, lang, 'html')}#check-{ref.check_id}",
                "evidence": [{"id": ev, "href": f"runs/{ref.run_id}/evidence/{ev}.json",
                              "present": run is not None and ev in run.evidence} for ev in ref.evidence],
                "evidence_in": s["evidence_in"].format(run=ref.run_id),
            })
        rows.append({"id": c.id, "anchor": f"crit-{c.id}", "certification": c.certification, "code": c.code,
                     "block": c.block, "text": c.text, "status": r.status, "status_label": s[r.status],
                     "checks": checks, "assessed": r.status != "not_assessed"})
    certs = [{"id": c, "title": p.certifications.get(c, "")}
             for c in dict.fromkeys(r.criterion.certification for r in p.rows)]
    runs = []
    for e in p.runs:
        run = e.run
        info = run.info
        if e.counted:
            note = s["counted"]
        elif info.mode != "grade":
            note = s["not_counted_selfcheck"]
        else:
            note = s["not_counted_older"]
        reports = []
        for path in e.reports:
            _, rlang, ext = path.rsplit(".", 2)
            reports.append({"href": path, "label": f"{s[ext]} ({s[rlang]})"})
        runs.append({
            "run_id": run.run_id, "lab_id": info.lab_id, "lab_title": info.lab_title.get(lang),
            "date": _fmt_dt(info.started_at, lang), "mode": s[f"mode_{info.mode}"],
            "score": f"{run.summary.score} / {run.summary.max_score}", "counted": e.counted, "note": note,
            "signed": bool(run.signature), "centre": run.centre, "key_fingerprint": run.key_fingerprint,
            "manifest": run.manifest_sha256, "reports": reports,
            "artifacts": _grouped(e, s),
            "folder": f"runs/{run.run_id}/manifest.json",
        })
    recordings = [{"cast": r.cast, "transcript": r.transcript, "node": r.node, "channel": r.channel,
                   "started": _fmt_dt(r.started_at, lang), "size": _size(r.size_bytes)} for r in p.recordings]
    return {
        "lang": lang, "candidate": p.candidate, "centre": p.centre, "key_fingerprint": p.key_fingerprint,
        "made_on": _fmt_dt(p.created_at, lang), "rows": rows, "certs": certs,
        "assessed": [r for r in rows if r["assessed"]], "unassessed": [r for r in rows if not r["assessed"]],
        "css": {
            "top_left": _css_string(f"{s['kind']} — {p.candidate}"),
            "top_right": _css_string(f"{p.centre} · {_fmt_dt(p.created_at, lang)}"),
            "bottom_left": _css_string(f"{s['key']}{s['colon']} {p.key_fingerprint}"),
        },
        "counts": s["counts"].format(**counts(p.rows)), "runs": runs, "recordings": recordings,
    }


def render_index(p: Portfolio, lang: str = "fr", *, links: bool = True) -> str:
    """The index page in ``lang``; ``links=False`` for the PDF (paths shown as text: a PDF
    reader would resolve relative links against where the PDF was made)."""
    if lang not in STRINGS:
        raise ValueError(f"portfolio language must be 'fr' or 'en', not {lang!r}")
    template = environment().get_template("portfolio.html.j2")
    return template.render(p=_view(p, lang), s=STRINGS[lang], links=links)


def summary_json(p: Portfolio) -> dict[str, Any]:
    """The per-criterion table and the runs, machine-readable (``summary.json``)."""
    return {
        "format": FORMAT,
        "candidate": p.candidate,
        "centre": p.centre,
        "key_fingerprint": p.key_fingerprint,
        "created_at": p.created_at.astimezone(UTC).isoformat(),
        "certifications": list(dict.fromkeys(r.criterion.certification for r in p.rows)),
        "counts": counts(p.rows),
        "criteria": [
            {
                "id": r.criterion.id, "certification": r.criterion.certification, "block": r.criterion.block,
                "code": r.criterion.code, "text": r.criterion.text, "status": r.status,
                "checks": [{"run_id": c.run_id, "lab_id": c.lab_id, "check_id": c.check_id,
                            "title": c.title.model_dump(), "status": c.status,
                            "message": c.message.model_dump(), "evidence": list(c.evidence)} for c in r.checks],
            }
            for r in p.rows
        ],
        "runs": [
            {
                "run_id": e.run.run_id, "lab_id": e.run.info.lab_id, "mode": e.run.info.mode,
                "instance": e.run.info.instance, "candidate": e.run.info.candidate,
                "started_at": e.run.info.started_at.astimezone(UTC).isoformat(),
                "score": e.run.summary.score, "max_score": e.run.summary.max_score, "counted": e.counted,
                "manifest_sha256": e.run.manifest_sha256, "signed": bool(e.run.signature),
                "centre": e.run.centre, "key_fingerprint": e.run.key_fingerprint,
                "folder": f"runs/{e.run.run_id}", "reports": list(e.reports),
                "artifacts": [f"artifacts/{e.run.run_id}/{x.name}" for x in e.exports],
            }
            for e in p.runs
        ],
        "recordings": [
            {"cast": r.cast, "transcript": r.transcript, "node": r.node, "channel": r.channel,
             "started_at": r.started_at.astimezone(UTC).isoformat() if r.started_at else None,
             "size_bytes": r.size_bytes}
            for r in p.recordings
        ],
    }


def readme_text(p: Portfolio, pdf_lang: str = "fr") -> str:
    """LISEZMOI.txt: how to check the bundle without labkit, in French then in English;
    ``pdf_lang`` is the language index.pdf was made in."""
    fp = p.key_fingerprint
    pdf_fr = "" if pdf_lang == "fr" else ", en anglais"
    pdf_en = ", in French" if pdf_lang == "fr" else ""
    return f"""PORTEFEUILLE DE PREUVES — {p.candidate}
Centre : {p.centre}
Clé de signature du centre (empreinte) : {fp}

Ouvrez index.html (ou index.pdf{pdf_fr}) : la synthèse par critère du référentiel, puis les
contrôles, les preuves, les rapports (reports/), les documents techniques (artifacts/) et
les dossiers de preuves scellés (runs/).

Vérifier sans labkit (OpenSSH 8.1+ et coreutils), dans ce dossier :

  ssh-keygen -Y verify -f allowed_signers -I centre -n labkit-bundle -s SHA256SUMS.sig < SHA256SUMS
  sha256sum -c SHA256SUMS

La première commande vérifie la signature de la liste des empreintes, la seconde que chaque
fichier correspond à la liste. Le fichier allowed_signers est fourni par commodité : il ne
prouve rien à lui seul. Vérifiez que l'empreinte ci-dessus est bien celle que le centre
publie (« labkit keys show --pub » chez le centre), ou utilisez la clé publique reçue du
centre : labkit verify CE_DOSSIER --key centre.pub
Chaque run est aussi signé au moment de l'évaluation :
  ssh-keygen -Y verify -f allowed_signers -I centre -n labkit-run -s runs/RUN/seal.json.sig < runs/RUN/seal.json

----------------------------------------------------------------------------------------

EVIDENCE PORTFOLIO — {p.candidate}
Centre: {p.centre}
Centre signing key (fingerprint): {fp}

Open index.en.html (or index.pdf{pdf_en}): the summary by referential criterion, then the
checks, the evidence, the reports (reports/), the technical documents (artifacts/) and the
sealed evidence folders (runs/).

To verify without labkit (OpenSSH 8.1+ and coreutils), in this folder:

  ssh-keygen -Y verify -f allowed_signers -I centre -n labkit-bundle -s SHA256SUMS.sig < SHA256SUMS
  sha256sum -c SHA256SUMS

The first command checks the signature of the list of hashes, the second that every file
matches the list. allowed_signers is given for convenience and proves nothing by itself:
check that the fingerprint above is the one the centre publishes (`labkit keys show --pub`
at the centre), or use the public key received from the centre:
labkit verify THIS_FOLDER --key centre.pub
Each run is also signed when it was graded:
  ssh-keygen -Y verify -f allowed_signers -I centre -n labkit-run -s runs/RUN/seal.json.sig < runs/RUN/seal.json
"""
