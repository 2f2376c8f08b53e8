"""The per-criterion summary: acquired / not acquired / not assessed from recorded grades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from labkit.adapters.storage.runs import RunWriter, StoredRun, open_run
from labkit.domain.criteria import load_catalog
from labkit.domain.criteria_summary import CriterionRow, counts, criterion_summary, latest_grades
from labkit.models.common import I18n
from labkit.models.criteria import Catalog, Certification, Criterion
from labkit.models.results import CheckResult, GradeSummary, RunInfo

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def _crit(cid: str, cert: str, text: str) -> Criterion:
    return Criterion(id=cid, certification=cert, block="Bloc", code=cid.split("-")[1].upper(), text=text)


CATALOG = Catalog(
    certifications=[
        Certification(id="aaa", seed="a.txt", title="Référentiel A"),
        Certification(id="bbb", seed="b.txt", title="Référentiel B"),
        Certification(id="ccc", seed="c.txt", title="Référentiel C (jamais cité)"),
    ],
    criteria=[
        _crit("aaa-c1-route", "aaa", "Configurer le routage entre les sites."),
        _crit("aaa-c2-dhcp", "aaa", "Déployer un service DHCP sur le réseau."),
        _crit("aaa-c3-backup", "aaa", "Sauvegarder et restaurer les données."),
        _crit("bbb-c1-supervision", "bbb", "Superviser les équipements du réseau."),
        _crit("bbb-c2-alertes", "bbb", "Traiter les alertes de supervision."),
        _crit("ccc-c1-autre", "ccc", "Une compétence qu'aucun lab ne cite."),
    ],
)


def _check(cid: str, status: str, criteria: list[str]) -> CheckResult:
    return CheckResult(
        id=cid,
        title=I18n(fr=f"Contrôle {cid}", en=f"Check {cid}"),
        grader=f"test.{cid}",
        status=status,  # type: ignore[arg-type]
        points=5 if status == "pass" else 0,
        max_points=5,
        message=I18n(fr=f"{cid} : {status}", en=f"{cid}: {status}"),
        criteria=criteria,
        evidence=[f"{cid}.probe"],
    )


def _run(
    runs_dir: Path,
    run_id: str,
    lab: str,
    checks: list[CheckResult],
    *,
    minutes: int = 0,
    mode: str = "grade",
    criteria: list[Criterion] | None = None,
) -> StoredRun:
    start = T0 + timedelta(minutes=minutes)
    info = RunInfo(
        run_id=run_id,
        mode=mode,  # type: ignore[arg-type]
        lab_id=lab,
        lab_title=I18n(fr=lab, en=lab),
        lab_version=1,
        instance="dupont",
        candidate="Camille Dupont",
        provider="netns",
        seed=1,
        params={},
        started_at=start,
        ended_at=start + timedelta(seconds=30),
        labkit_version="0.1.0",
        checks=[{"id": c.id} for c in checks],
    )
    summary = GradeSummary(
        run_id=run_id,
        lab_id=lab,
        instance="dupont",
        candidate="Camille Dupont",
        score=sum(c.points for c in checks),
        max_score=sum(c.max_points for c in checks),
        started_at=info.started_at,
        ended_at=info.ended_at,
        checks=checks,
    )
    if criteria is None:
        cited = {cid for c in checks for cid in c.criteria}
        criteria = [c for c in CATALOG.criteria if c.id in cited]
    w = RunWriter(runs_dir, run_id)
    w.seal(info, summary, criteria, now=info.ended_at)
    return open_run(runs_dir, run_id)


def _by_id(rows: list[CriterionRow]) -> dict[str, str]:
    return {r.criterion.id: r.status for r in rows}


def test_acquired_not_acquired_not_assessed(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        "r1",
        "lab-a",
        [
            _check("route", "pass", ["aaa-c1-route"]),
            _check("dhcp", "fail", ["aaa-c2-dhcp"]),
        ],
    )
    rows = criterion_summary([run], CATALOG)
    # only certification aaa is cited: its three criteria, in catalog order
    assert [r.criterion.id for r in rows] == ["aaa-c1-route", "aaa-c2-dhcp", "aaa-c3-backup"]
    assert _by_id(rows) == {
        "aaa-c1-route": "acquired",
        "aaa-c2-dhcp": "not_acquired",
        "aaa-c3-backup": "not_assessed",
    }
    route = rows[0]
    assert [(c.run_id, c.lab_id, c.check_id, c.status) for c in route.checks] == [
        ("r1", "lab-a", "route", "pass")
    ]
    assert route.checks[0].evidence == ["route.probe"]
    assert route.checks[0].message.fr == "route : pass"
    assert rows[2].checks == []
    assert counts(rows) == {"acquired": 1, "not_acquired": 1, "not_assessed": 1}


def test_every_citing_check_must_pass_and_error_is_not_acquired(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        "r1",
        "lab-a",
        [
            _check("route-1", "pass", ["aaa-c1-route", "aaa-c3-backup"]),
            _check("route-2", "fail", ["aaa-c1-route"]),
            _check("backup", "error", ["aaa-c3-backup"]),
            _check("dhcp", "pass", ["aaa-c2-dhcp"]),
        ],
    )
    rows = criterion_summary([run], CATALOG)
    assert _by_id(rows) == {
        "aaa-c1-route": "not_acquired",
        "aaa-c2-dhcp": "acquired",
        "aaa-c3-backup": "not_acquired",
    }
    assert [c.check_id for c in rows[2].checks] == ["route-1", "backup"]


def test_latest_grade_per_lab_wins(tmp_path: Path) -> None:
    old = _run(tmp_path, "r-old", "lab-a", [_check("route", "fail", ["aaa-c1-route"])], minutes=0)
    new = _run(tmp_path, "r-new", "lab-a", [_check("route", "pass", ["aaa-c1-route"])], minutes=10)
    other = _run(tmp_path, "r-b", "lab-b", [_check("dhcp", "fail", ["aaa-c2-dhcp"])], minutes=5)
    # order of the input does not matter
    assert [r.run_id for r in latest_grades([new, other, old])] == ["r-new", "r-b"]
    assert [r.run_id for r in latest_grades([old, other, new])] == ["r-new", "r-b"]
    rows = criterion_summary([new, old, other], CATALOG)
    assert _by_id(rows)["aaa-c1-route"] == "acquired"
    assert _by_id(rows)["aaa-c2-dhcp"] == "not_acquired"
    assert {c.run_id for r in rows for c in r.checks} == {"r-new", "r-b"}
    # and the other way round: a later failure replaces an earlier success
    later_fail = _run(tmp_path, "r-later", "lab-a", [_check("route", "fail", ["aaa-c1-route"])], minutes=20)
    assert _by_id(criterion_summary([old, new, later_fail], CATALOG))["aaa-c1-route"] == "not_acquired"


def test_selfchecks_are_ignored(tmp_path: Path) -> None:
    grade = _run(tmp_path, "r-grade", "lab-a", [_check("route", "fail", ["aaa-c1-route"])], minutes=0)
    practice = _run(
        tmp_path, "r-self", "lab-a", [_check("route", "pass", ["aaa-c1-route"])], minutes=30, mode="selfcheck"
    )
    assert latest_grades([grade, practice]) == [grade]
    assert _by_id(criterion_summary([grade, practice], CATALOG))["aaa-c1-route"] == "not_acquired"
    # self-checks only: nothing is assessed, so no certification is cited
    assert criterion_summary([practice], CATALOG) == []
    assert criterion_summary([], CATALOG) == []


def test_several_certifications_in_catalog_order(tmp_path: Path) -> None:
    run_b = _run(tmp_path, "r-b", "lab-b", [_check("snmp", "pass", ["bbb-c1-supervision", "aaa-c1-route"])])
    rows = criterion_summary([run_b], CATALOG)
    assert [(r.criterion.certification, r.criterion.id, r.status) for r in rows] == [
        ("aaa", "aaa-c1-route", "acquired"),
        ("aaa", "aaa-c2-dhcp", "not_assessed"),
        ("aaa", "aaa-c3-backup", "not_assessed"),
        ("bbb", "bbb-c1-supervision", "acquired"),
        ("bbb", "bbb-c2-alertes", "not_assessed"),
    ]  # ccc is never cited: not listed
    assert counts(rows) == {"acquired": 2, "not_acquired": 0, "not_assessed": 3}


def test_cited_text_comes_from_the_run_and_unknown_criteria_are_kept(tmp_path: Path) -> None:
    sealed = _crit("aaa-c1-route", "aaa", "Texte tel qu'il était au moment de l'évaluation.")
    gone = _crit("aaa-c9-retired", "aaa", "Un critère retiré du catalogue depuis.")
    run = _run(
        tmp_path,
        "r1",
        "lab-a",
        [_check("route", "pass", ["aaa-c1-route", "aaa-c9-retired"])],
        criteria=[sealed, gone],
    )
    rows = criterion_summary([run], CATALOG)
    assert [r.criterion.id for r in rows] == ["aaa-c1-route", "aaa-c2-dhcp", "aaa-c3-backup", "aaa-c9-retired"]
    assert rows[0].criterion.text == sealed.text
    assert rows[3].status == "acquired"


def test_packaged_catalog(tmp_path: Path) -> None:
    catalog = load_catalog()
    tssr = [c for c in catalog.criteria if c.certification == "tssr"]
    run = _run(
        tmp_path,
        "r1",
        "routing-multisite",
        [_check("lan", "pass", [tssr[0].id])],
        criteria=[tssr[0]],
    )
    rows = criterion_summary([run], catalog)
    assert [r.criterion.id for r in rows] == [c.id for c in tssr]
    assert counts(rows) == {"acquired": 1, "not_acquired": 0, "not_assessed": len(tssr) - 1}
