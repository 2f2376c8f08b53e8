"""Proof reports, rendered from a stored run folder and nothing else.

:func:`render_json` builds the report's content (a JSON-able dict, golden-tested);
:func:`render_html` lays the same content out as a printable A4 page with an inline SVG
topology. No live access and no catalog lookup: criteria texts come from the run's
criteria.json, so a report renders the same anywhere the folder is copied.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any, Literal

from markupsafe import Markup

from labkit.models.stored_run import StoredRun
from labkit.domain.diagram import cidr_addresses, diagram_addresses, topology_svg
from labkit.domain.templating import environment
from labkit.models.evidence import Evidence
from labkit.models.results import CheckResult

__all__ = ["FORMAT", "STRINGS", "Lang", "render_html", "cell_text", "render_json", "when_text"]

Lang = Literal["fr", "en"]
FORMAT = "labkit-report/1"
EXCERPT_LINES = 15
EXCERPT_WIDTH = 160

STRINGS: dict[str, dict[str, str]] = {
    "fr": {
        "report_kind": "Rapport de preuves",
        "candidate": "Candidat",
        "no_candidate": "non renseigné",
        "lab": "Laboratoire",
        "instance": "Instance",
        "graded_on": "Date de l'évaluation",
        "run_id": "Identifiant du run",
        "score": "Score",
        "mode": "Mode",
        "mode_grade": "Évaluation",
        "mode_selfcheck": "Auto-vérification",
        "selfcheck_note": "Rapport produit en mode auto-vérification.",
        "duration": "Durée",
        "provider": "Environnement",
        "labkit_version": "Version de labkit",
        "seed": "Graine",
        "summary": "Synthèse des contrôles",
        "check": "Contrôle",
        "verdict": "Verdict",
        "points": "Points",
        "message": "Constat",
        "criteria_ids": "Critères",
        "pass": "Réussi",
        "fail": "Échoué",
        "error": "Erreur",
        "totals": "{pass} réussi(s), {fail} échoué(s), {error} en erreur",
        "criteria": "Critères du référentiel",
        "criteria_intro": (
            "Chaque critère est cité tel qu'il figure dans le référentiel de certification, "
            "suivi des contrôles qui en apportent la preuve."
        ),
        "certification": "Certification",
        "block": "Bloc / activité",
        "code": "Code",
        "verbatim": "Texte du critère",
        "verbatim_note": "",
        "evidenced_by": "Contrôles apportant la preuve",
        "criterion_totals": "{passed} contrôle(s) réussi(s) sur {total}",
        "criterion_missing": "texte du critère non enregistré dans ce run",
        "no_check": "aucun contrôle de ce run",
        "portfolio": "Documents techniques",
        "topology": "Schéma de la topologie",
        "addressing": "Plan d'adressage",
        "node": "Équipement",
        "iface": "Interface",
        "state": "État",
        "addresses": "Adresses",
        "routes": "Tables de routage",
        "routes_of": "Table de routage de {node}",
        "dst": "Destination",
        "gateway": "Passerelle",
        "dev": "Interface",
        "protocol": "Protocole",
        "metric": "Métrique",
        "not_collected": "non collecté",
        "other_artifacts": "Autres artefacts",
        "details": "Détail des contrôles et des preuves",
        "how_observed": "Méthode d'observation",
        "evidence": "Preuves",
        "no_evidence": "aucune preuve citée",
        "evidence_missing": "preuve absente du dossier",
        "not_cited": "collectée, non citée par le verdict",
        "kind": "Type",
        "from_to": "Source → cible",
        "action": "Action",
        "time": "Heure",
        "probe": "Sonde",
        "probe_ok": "exécutée",
        "probe_error": "échec de la sonde",
        "raw": "Réponse brute",
        "parsed": "Réponse analysée (JSON)",
        "empty_answer": "réponse vide",
        "excerpt_note": "{shown} premières lignes sur {total} ; texte complet dans {file}",
        "meta": "Détails",
        "fault_break": "Panne provoquée par l'évaluateur",
        "fault_restore": "Rétablissement par l'évaluateur",
        "fault_what": "Ce qui a été fait",
        "fault_when": "Quand",
        "fault_summary": "Panne provoquée volontairement : {what}, à {at}",
        "fault_restored": "rétablie à {at}.",
        "fault_not_restored": "aucun rétablissement enregistré.",
        "fault_not_done": "Tentative de panne non aboutie : {what} ({error}).",
        "shared_evidence": "Preuves communes",
        "params": "Paramètres de l'instance",
        "param": "Paramètre",
        "value": "Valeur",
        "integrity": "Intégrité du dossier de preuves",
        "manifest_hash": "Empreinte SHA-256 du manifeste",
        "files_count": "{n} fichiers scellés",
        "verify_how": (
            "La commande « labkit report {run_id} » revérifie chaque fichier du dossier de "
            "preuves contre manifest.json avant de produire ce rapport, et refuse un dossier "
            "modifié. Comparez l'empreinte ci-dessus à celle affichée à la fin de l'évaluation."
        ),
        "sealed_at": "Scellé le",
        "centre": "Centre",
        "key": "Clé de signature",
        "signature": "Signature",
        "unsigned": "non signé",
        "no_centre": "non renseigné",
        "signed_by": "Dossier signé par le centre « {centre} » avec la clé {fingerprint}.",
        "signature_missing": (
            "seal.json nomme la clé {fingerprint} mais la signature seal.json.sig est absente : "
            "dossier non signé."
        ),
        "unsigned_note": (
            "Dossier non signé : il a été évalué avant que le centre ne crée sa clé "
            "(labkit keys init)."
        ),
        "verify_sig": (
            "La commande « labkit verify {run_id} --key centre.pub » vérifie la signature avec la "
            "clé publique du centre (affichée par « labkit keys show --pub »)."
        ),
        "page": "page",
        "seconds": "s",
        "colon": " :",
        "percent": "{n} %",
    },
    "en": {
        "report_kind": "Proof report",
        "candidate": "Candidate",
        "no_candidate": "not given",
        "lab": "Lab",
        "instance": "Instance",
        "graded_on": "Date of grading",
        "run_id": "Run id",
        "score": "Score",
        "mode": "Mode",
        "mode_grade": "Grading",
        "mode_selfcheck": "Self-check",
        "selfcheck_note": "This report was produced in self-check mode.",
        "duration": "Duration",
        "provider": "Environment",
        "labkit_version": "labkit version",
        "seed": "Seed",
        "summary": "Summary of checks",
        "check": "Check",
        "verdict": "Verdict",
        "points": "Points",
        "message": "Finding",
        "criteria_ids": "Criteria",
        "pass": "Passed",
        "fail": "Failed",
        "error": "Error",
        "totals": "{pass} passed, {fail} failed, {error} in error",
        "criteria": "Referential criteria",
        "criteria_intro": (
            "Each criterion is quoted as written in the certification referential (in French), "
            "followed by the checks that evidence it."
        ),
        "certification": "Certification",
        "block": "Block / activity",
        "code": "Code",
        "verbatim": "Criterion text",
        "verbatim_note": "verbatim, in French",
        "evidenced_by": "Checks providing evidence",
        "criterion_totals": "{passed} of {total} check(s) passed",
        "criterion_missing": "criterion text not stored in this run",
        "no_check": "no check of this run",
        "portfolio": "Technical documents",
        "topology": "Topology diagram",
        "addressing": "Addressing plan",
        "node": "Device",
        "iface": "Interface",
        "state": "State",
        "addresses": "Addresses",
        "routes": "Routing tables",
        "routes_of": "Routing table of {node}",
        "dst": "Destination",
        "gateway": "Gateway",
        "dev": "Interface",
        "protocol": "Protocol",
        "metric": "Metric",
        "not_collected": "not collected",
        "other_artifacts": "Other artifacts",
        "details": "Checks and evidence in detail",
        "how_observed": "How it is observed",
        "evidence": "Evidence",
        "no_evidence": "no evidence cited",
        "evidence_missing": "evidence missing from the folder",
        "not_cited": "collected, not cited by the verdict",
        "kind": "Kind",
        "from_to": "Source → target",
        "action": "Action",
        "time": "Time",
        "probe": "Probe",
        "probe_ok": "completed",
        "probe_error": "probe failed",
        "raw": "Raw answer",
        "parsed": "Parsed answer (JSON)",
        "empty_answer": "empty answer",
        "excerpt_note": "first {shown} lines of {total}; full text in {file}",
        "meta": "Details",
        "fault_break": "Fault caused by the grader",
        "fault_restore": "Restored by the grader",
        "fault_what": "What was done",
        "fault_when": "When",
        "fault_summary": "Fault caused on purpose: {what}, at {at}",
        "fault_restored": "restored at {at}.",
        "fault_not_restored": "no restore recorded.",
        "fault_not_done": "Attempted fault not carried out: {what} ({error}).",
        "shared_evidence": "Shared evidence",
        "params": "Instance parameters",
        "param": "Parameter",
        "value": "Value",
        "integrity": "Integrity of the evidence folder",
        "manifest_hash": "SHA-256 of the manifest",
        "files_count": "{n} sealed files",
        "verify_how": (
            "The command 'labkit report {run_id}' re-verifies every file of the evidence folder "
            "against manifest.json before producing this report, and refuses a modified folder. "
            "Compare the hash above with the one shown at the end of grading."
        ),
        "sealed_at": "Sealed at",
        "centre": "Centre",
        "key": "Signing key",
        "signature": "Signature",
        "unsigned": "unsigned",
        "no_centre": "not given",
        "signed_by": "Folder signed by the centre '{centre}' with the key {fingerprint}.",
        "signature_missing": (
            "seal.json names the key {fingerprint} but the signature seal.json.sig is missing: "
            "unsigned folder."
        ),
        "unsigned_note": (
            "Unsigned folder: it was graded before the centre made its key (labkit keys init)."
        ),
        "verify_sig": (
            "The command 'labkit verify {run_id} --key centre.pub' checks the signature with the "
            "centre's public key (printed by 'labkit keys show --pub')."
        ),
        "page": "page",
        "seconds": "s",
        "colon": ":",
        "percent": "{n}%",
    },
}


def _check_lang(lang: str) -> Lang:
    if lang not in STRINGS:
        raise ValueError(f"report language must be 'fr' or 'en', not {lang!r}")
    return lang  # type: ignore[return-value]


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _fmt_dt(dt: datetime, lang: str) -> str:
    d = _utc(dt)
    return f"{d:%d/%m/%Y %H:%M:%S} UTC" if lang == "fr" else f"{d:%Y-%m-%d %H:%M:%S} UTC"


def _fmt_iso(text: str | None, lang: str) -> str | None:
    if not text:
        return None
    try:
        return _fmt_dt(datetime.fromisoformat(text), lang)
    except ValueError:
        return text


def _fmt_dt_ms(dt: datetime, lang: str) -> str:
    d = _utc(dt)
    return f"{_fmt_dt(d, lang)[:-4]}.{d.microsecond // 1000:03d} UTC"


def _fmt_time(dt: datetime) -> str:
    d = _utc(dt)
    return f"{d:%H:%M:%S}.{d.microsecond // 1000:03d}"


def _fmt_num(value: float, lang: str, digits: int = 2) -> str:
    text = f"{value:.{digits}f}"
    return text.replace(".", ",") if lang == "fr" else text


def _fmt_seconds(value: float, lang: str) -> str:
    return f"{_fmt_num(value, lang)} {STRINGS[lang]['seconds']}"


def _excerpt(ev: Evidence) -> dict[str, Any]:
    if ev.raw.strip():
        text, source = ev.raw, "raw"
    elif ev.parsed is not None:
        text, source = json.dumps(ev.parsed, indent=2, ensure_ascii=False, default=str), "parsed"
    else:
        text, source = "", "raw"
    lines = text.splitlines()
    shown = [
        ln if len(ln) <= EXCERPT_WIDTH else ln[: EXCERPT_WIDTH - 1] + "…" for ln in lines[:EXCERPT_LINES]
    ]
    return {
        "source": source,
        "text": "\n".join(shown),
        "total_lines": len(lines),
        "shown_lines": len(shown),
        "truncated": len(lines) > EXCERPT_LINES
        or any(len(ln) > EXCERPT_WIDTH for ln in lines[:EXCERPT_LINES]),
    }


def _meta_lines(meta: dict[str, Any]) -> list[str]:
    out = []
    for key, value in meta.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        out.append(f"{key}: {text if len(text) <= 200 else text[:199] + '…'}")
    return out


def _evidence_view(ev_id: str, ev: Evidence | None, cited: bool | None, lang: str) -> dict[str, Any]:
    """One evidence file as the report shows it; ``cited`` is None for evidence of no check."""
    s = STRINGS[lang]
    if ev is None:
        return {"id": ev_id, "missing": True, "cited": cited}
    view: dict[str, Any] = {
        "id": ev.id,
        "missing": False,
        "cited": cited,
        "kind": ev.kind,
        "source": ev.source,
        "target": ev.target,
        "action": ev.action,
        "started_at": _utc(ev.started_at).isoformat(),
        "ended_at": _utc(ev.ended_at).isoformat(),
        "time": _fmt_time(ev.started_at),
        "duration": _fmt_seconds(ev.duration, lang),
        "ok": ev.ok,
        "error": ev.error,
        "excerpt": _excerpt(ev),
        "file": f"evidence/{ev.id}.json",
        "meta": _meta_lines(ev.meta),
        "fault": None,
    }
    if ev.kind == "fault":
        phase = _fault_phase(ev)
        view["fault"] = {
            "phase": phase,
            "label": s[f"fault_{phase}"],
            "what": f"{ev.action} — {ev.target}",
            "at": _fmt_dt_ms(_fault_time(ev), lang),
        }
    return view


def _fault_phase(ev: Evidence) -> str:
    """``break`` or ``restore``: from ``parsed.requested`` (up/down) when the probe gives it, else
    from ``meta.phase`` (graders record ``restore`` for the step that undoes a fault)."""
    requested = ev.parsed.get("requested") if isinstance(ev.parsed, dict) else None
    if requested in ("up", "down"):
        return "restore" if requested == "up" else "break"
    if ev.meta.get("phase") in ("restore", "restored", "repair", "undo", "unplant", "cleanup"):
        return "restore"
    return "restore" if re.search(r"\b(up|restore|restored)\b", ev.action) else "break"


def _fault_time(ev: Evidence) -> datetime:
    """When the change was made: ``parsed.changed_at`` if recorded, else the probe's start."""
    changed = ev.parsed.get("changed_at") if isinstance(ev.parsed, dict) else None
    if isinstance(changed, str):
        try:
            return datetime.fromisoformat(changed)
        except ValueError:
            pass
    return ev.started_at


def _fault_summary(evidence: list[Evidence], lang: str) -> list[str]:
    """One sentence per fault the check caused: what, when, and when (or whether) it was undone."""
    s = STRINGS[lang]
    faults = sorted((e for e in evidence if e.kind == "fault"), key=lambda e: (_utc(_fault_time(e)), e.id))
    lines = []
    for i, ev in enumerate(faults):
        if _fault_phase(ev) != "break":
            continue
        what = f"{ev.action} — {ev.target}"
        if not ev.ok:
            lines.append(s["fault_not_done"].format(what=what, error=ev.error or "?"))
            continue
        restore = next(
            (r for r in faults[i + 1 :] if r.target == ev.target and r.ok and _fault_phase(r) == "restore"),
            None,
        )
        tail = (
            s["fault_restored"].format(at=_fmt_dt_ms(_fault_time(restore), lang))
            if restore
            else s["fault_not_restored"]
        )
        lines.append(s["fault_summary"].format(what=what, at=_fmt_dt_ms(_fault_time(ev), lang)) + ", " + tail)
    return lines


def _check_view(c: CheckResult, run: StoredRun, lang: str) -> dict[str, Any]:
    s = STRINGS[lang]
    cited = list(dict.fromkeys(c.evidence))
    extra = sorted(
        (e for e in run.evidence.values() if e.check == c.id and e.id not in cited),
        key=lambda e: (_utc(e.started_at), e.id),
    )
    evidence = [_evidence_view(i, run.evidence.get(i), True, lang) for i in cited]
    evidence += [_evidence_view(e.id, e, False, lang) for e in extra]
    stored = [run.evidence[i] for i in cited if i in run.evidence] + extra
    return {
        "id": c.id,
        "title": c.title.get(lang),
        "grader": c.grader,
        "status": c.status,
        "status_label": s[c.status],
        "points": c.points,
        "max_points": c.max_points,
        "message": c.message.get(lang),
        "doc": c.doc.get(lang) if c.doc else None,
        "criteria": list(c.criteria),
        "faults": _fault_summary(stored, lang),
        "evidence": evidence,
    }


def _rows(data: Any) -> list[dict[str, Any]] | None:
    """A list of dicts, or None when the artifact is missing, empty or not of that shape."""
    if not isinstance(data, list):
        return None
    rows = [r for r in data if isinstance(r, dict)]
    return rows or None


def _cell(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _artifacts_view(run: StoredRun) -> dict[str, Any]:
    arts = run.artifacts
    addressing = _rows(arts.get("addressing"))
    topology = arts.get("topology") if isinstance(arts.get("topology"), dict) else None
    if topology is not None and not (isinstance(topology.get("nodes"), list) and topology["nodes"]):
        topology = None
    node_order = [n.get("name") for n in (topology or {}).get("nodes", []) if isinstance(n, dict)]
    route_names = [n for n in arts if n.startswith("routes-")]
    route_names.sort(key=lambda n: (node_order.index(n[7:]) if n[7:] in node_order else len(node_order), n))
    routes = []
    for name in route_names:
        rows = _rows(arts[name])
        routes.append(
            {
                "node": name[len("routes-") :],
                "routes": [
                    {k: _cell(r.get(k)) for k in ("dst", "gateway", "dev", "protocol", "metric")}
                    for r in rows
                ]
                if rows
                else None,
                "error": _error_of(arts[name]),
            }
        )
    known = {"addressing", "topology", *route_names}
    day = _utc(run.info.started_at).date()
    others = [{"name": n, "excerpt": _json_excerpt(arts[n]), "table": _table(arts[n], day)}
              for n in sorted(arts) if n not in known]
    return {
        "topology": topology,
        "addressing": [
            {
                "node": _cell(r.get("node")),
                "iface": _cell(r.get("iface")),
                "state": _cell(r.get("state")) + (f" ({r['error']})" if r.get("error") else ""),
                "addresses": cidr_addresses(r.get("addresses")),
            }
            for r in addressing
        ]
        if addressing
        else None,
        "addressing_error": _error_of(arts.get("addressing")),
        "routes": routes,
        "others": others,
    }


def _error_of(data: Any) -> str | None:
    """The reason an artifact could not be read, when the grader stored ``{"error": ...}``."""
    return str(data["error"]) if isinstance(data, dict) and data.get("error") else None


_ISO_DT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


def when_text(text: str, day: date | None) -> str:
    """An ISO date-time as ``HH:MM:SS.mmm`` (UTC) on the run's day, else with its date too."""
    if not _ISO_DT.match(text):
        return text
    try:
        d = _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return text
    return _fmt_time(d) if d.date() == day else f"{d:%Y-%m-%d} {_fmt_time(d)}"


def cell_text(v: Any, day: date | None = None) -> str:
    """One value of a grader's table as text: date-times of the run's ``day`` as the time of
    day (UTC), nested records as ``key: value`` pairs rather than JSON, empty as "—"."""
    if isinstance(v, str):
        return when_text(v, day) if v else "—"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {cell_text(x, day)}" for k, x in v.items()) if v else "—"
    if isinstance(v, list) and any(isinstance(x, dict) for x in v):
        return "; ".join(cell_text(x, day) for x in v) if v else "—"
    return _cell(v)


def _table(data: Any, day: date | None = None) -> dict[str, Any] | None:
    """A list of records (e.g. a grader's availability table) as columns and rows of text
    (see :func:`cell_text`)."""
    rows = _rows(data)
    if rows is None:
        return None
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return {"columns": columns, "rows": [[cell_text(r.get(c), day) for c in columns] for r in rows]}


def _json_excerpt(data: Any) -> str:
    lines = json.dumps(data, indent=2, ensure_ascii=False, default=str).splitlines()
    return "\n".join(lines[:EXCERPT_LINES]) + ("\n…" if len(lines) > EXCERPT_LINES else "")


def _signature_view(run: StoredRun, lang: str) -> dict[str, Any]:
    """Who signed the run folder, as seal.json names it (``labkit verify`` checks the signature)."""
    s = STRINGS[lang]
    signed = run.signature is not None and run.key_fingerprint is not None
    if signed:
        note = s["signed_by"].format(centre=run.centre or s["no_centre"], fingerprint=run.key_fingerprint)
    elif run.key_fingerprint:
        note = s["signature_missing"].format(fingerprint=run.key_fingerprint)
    else:
        note = s["unsigned_note"]
    return {
        "signed": signed,
        "centre": run.centre,
        "key_fingerprint": run.key_fingerprint,
        "centre_label": run.centre or s["no_centre"],
        "key_label": run.key_fingerprint if signed else s["unsigned"],
        "note": note,
        "verify": s["verify_sig"].format(run_id=run.info.run_id) if signed else None,
    }


def render_json(run: StoredRun, lang: str = "fr") -> dict[str, Any]:
    """The report's content as JSON-able data, labels in ``lang`` (criterion texts stay French)."""
    lang = _check_lang(lang)
    s = STRINGS[lang]
    info, summary = run.info, run.summary
    checks = [_check_view(c, run, lang) for c in summary.checks]
    totals = {k: sum(1 for c in summary.checks if c.status == k) for k in ("pass", "fail", "error")}

    criteria = []
    listed = {cr.id for cr in run.criteria}
    used = [cid for c in summary.checks for cid in c.criteria]
    entries: list[dict[str, Any]] = [
        {"id": cr.id, "certification": cr.certification, "block": cr.block, "code": cr.code, "text": cr.text}
        for cr in run.criteria
    ]
    entries += [
        {"id": cid, "certification": None, "block": None, "code": None, "text": None}
        for cid in dict.fromkeys(used)
        if cid not in listed
    ]
    for entry in entries:
        related = [c for c in checks if entry["id"] in c["criteria"]]
        passed = sum(1 for c in related if c["status"] == "pass")
        criteria.append(
            {
                **entry,
                "checks": [
                    {k: c[k] for k in ("id", "title", "status", "status_label", "points", "max_points")}
                    for c in related
                ],
                "totals": s["criterion_totals"].format(passed=passed, total=len(related))
                if related
                else None,
            }
        )

    shared = sorted(
        (
            e
            for e in run.evidence.values()
            if e.check is None or e.check not in {c.id for c in summary.checks}
        ),
        key=lambda e: (_utc(e.started_at), e.id),
    )
    return {
        "format": FORMAT,
        "lang": lang,
        "run": {
            "run_id": info.run_id,
            "mode": info.mode,
            "mode_label": s[f"mode_{info.mode}"],
            "lab_id": info.lab_id,
            "lab_title": info.lab_title.get(lang),
            "lab_version": info.lab_version,
            "instance": info.instance,
            "candidate": info.candidate,
            "provider": info.provider,
            "seed": info.seed,
            "started_at": _utc(info.started_at).isoformat(),
            "ended_at": _utc(info.ended_at).isoformat(),
            "graded_on": _fmt_dt(info.started_at, lang),
            "duration": _fmt_seconds((info.ended_at - info.started_at).total_seconds(), lang),
            "labkit_version": info.labkit_version,
            "params": {k: _cell(v) for k, v in sorted(info.params.items())},
        },
        "score": {
            "points": summary.score,
            "max": summary.max_score,
            "percent": round(summary.score * 100 / summary.max_score) if summary.max_score else None,
        },
        "totals": {**totals, "text": s["totals"].format(**totals)},
        "checks": checks,
        "criteria": criteria,
        "artifacts": _artifacts_view(run),
        "shared_evidence": [_evidence_view(e.id, e, None, lang) for e in shared],
        "integrity": {
            "algorithm": "sha256",
            "manifest_sha256": run.manifest_sha256,
            "files": len(run.manifest),
            "sealed_at": run.sealed_at,
            "sealed_on": _fmt_iso(run.sealed_at, lang),
            "verify": f"labkit report {info.run_id}",
        },
        "signature": _signature_view(run, lang),
    }


def render_html(run: StoredRun, lang: str = "fr") -> str:
    """A standalone, printable HTML report (inline CSS and SVG, no script, no external asset)."""
    report = render_json(run, lang)
    topo = report["artifacts"]["topology"]
    svg = None
    if topo is not None:
        addresses = diagram_addresses(report["artifacts"]["addressing"])
        svg = Markup(topology_svg(topo, addresses, lang=report["lang"]))
    template = environment().get_template("report.html.j2")
    # the PDF's creation date is the run's (W3C format, as WeasyPrint reads it), never "now"
    created = f"{_utc(run.info.ended_at):%Y-%m-%dT%H:%M:%SZ}"
    return template.render(r=report, s=STRINGS[report["lang"]], svg=svg, created=created)
