"""The gradebook: latest recorded grade per lab per candidate, Moodle CSV and JSON.

The CSV is imported into the Moodle-shaped fixture (tests/usecases/moodle_fixture.py); each
rejection the fixture copies from Moodle is shown to trigger on a bad CSV, so a pass means
something.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labkit.adapters.storage.runs import RunWriter
from labkit.errors import UserError
from labkit.interfaces.cli import main
from labkit.models.common import I18n
from labkit.models.criteria import Catalog, Certification, Criterion
from labkit.models.results import CheckResult, GradeSummary, RunInfo
from labkit.usecases import cohort as cohort_mod
from labkit.usecases.cohort import Cohort, Seat
from labkit.usecases.gradebook import gradebook_for_cohorts, gradebook_json, moodle_csv
from labkit.usecases.lifecycle import Context
from tests.usecases.moodle_fixture import Course, GradeItem, MoodleImportError, User, import_grades

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CRITS = [
    Criterion(id="aaa-c1-route", certification="aaa", block="Bloc", code="C1",
              text="Configurer le routage entre les sites."),
    Criterion(id="aaa-c2-dns", certification="aaa", block="Bloc", code="C2",
              text="Déployer un service DNS pour les sites."),
]
CATALOG = Catalog(certifications=[Certification(id="aaa", seed="a.txt", title="Référentiel A")], criteria=CRITS)


def _check(cid: str, status: str, points: int, max_points: int, crit: str) -> CheckResult:
    return CheckResult(
        id=cid, title=I18n(fr=f"Contrôle {cid}", en=f"Check {cid}"), grader=f"t.{cid}", status=status,  # type: ignore[arg-type]
        points=points, max_points=max_points, message=I18n(fr=f"{cid} : {status}", en=f"{cid}: {status}"),
        criteria=[crit], evidence=[],
    )


def _run(ctx: Context, run_id: str, lab: str, instance: str, candidate: str | None, checks: list[CheckResult],
         minutes: int, mode: str = "grade") -> str:
    start = T0 + timedelta(minutes=minutes)
    info = RunInfo(run_id=run_id, mode=mode, lab_id=lab, lab_title=I18n(fr=f"Lab {lab}", en=f"Lab {lab}"),  # type: ignore[arg-type]
                   lab_version=1, instance=instance, candidate=candidate, provider="netns", seed=1, params={},
                   started_at=start, ended_at=start + timedelta(seconds=20), labkit_version="0.1.0", checks=[])
    summary = GradeSummary(run_id=run_id, lab_id=lab, instance=instance, candidate=candidate,
                           score=sum(c.points for c in checks), max_score=sum(c.max_points for c in checks),
                           started_at=info.started_at, ended_at=info.ended_at, checks=checks)
    w = RunWriter(ctx.settings.runs, run_id)
    return w.seal(info, summary, CRITS, now=info.ended_at).manifest_sha256 or ""


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("LABKIT_DB_URL", raising=False)  # the portal database, if any, is <home>/labkit.db
    c = Context.default()
    cohort_mod._save(c, Cohort("gba", "lab-a", 1, [
        Seat("Alice Martin", "gba-01", 1, "up", email="alice@example.org", idnumber="A1", username="amartin"),
        Seat("Bob Durand", "gba-02", 2, "up", email="bob@example.org", idnumber="B2", username="bdurand"),
        Seat("Chloé Noël", "gba-03", 3, "up", email="chloe@example.org", idnumber="C3", username="cnoel"),
    ]))
    cohort_mod._save(c, Cohort("gbb", "lab-b", 2, [
        Seat("Alice Martin", "gbb-01", 4, "up", email="Alice@Example.org", idnumber="A1", username="amartin"),
    ]))
    return c


@pytest.fixture
def hashes(ctx: Context) -> dict[str, str]:
    h: dict[str, str] = {}
    # Alice, lab-a: an old grade, then the latest (30/40), then a later self-check that must not count
    h["a-old"] = _run(ctx, "gba-01-old", "lab-a", "gba-01", "Alice Martin",
                      [_check("route", "fail", 0, 30, "aaa-c1-route"), _check("dns", "pass", 10, 10, "aaa-c2-dns")], 0)
    h["a-new"] = _run(ctx, "gba-01-new", "lab-a", "gba-01", "Alice Martin",
                      [_check("route", "pass", 30, 30, "aaa-c1-route"), _check("dns", "fail", 0, 10, "aaa-c2-dns")],
                      10)
    _run(ctx, "gba-01-self", "lab-a", "gba-01", "Alice Martin",
         [_check("route", "pass", 30, 30, "aaa-c1-route"), _check("dns", "pass", 10, 10, "aaa-c2-dns")], 20,
         mode="selfcheck")
    # Bob: one grade with an error
    h["b"] = _run(ctx, "gba-02-1", "lab-a", "gba-02", "Bob Durand",
                  [_check("route", "error", 0, 30, "aaa-c1-route"), _check("dns", "pass", 10, 10, "aaa-c2-dns")], 5)
    # an older cohort that used the same instance name for someone else: not Chloé's grade
    _run(ctx, "gba-03-other", "lab-a", "gba-03", "Someone Else",
         [_check("route", "pass", 30, 30, "aaa-c1-route")], 1)
    # Alice in the second cohort, lab-b: full marks
    h["a-b"] = _run(ctx, "gbb-01-1", "lab-b", "gbb-01", "Alice Martin",
                    [_check("route", "pass", 20, 20, "aaa-c1-route")], 30)
    return h


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_moodle_csv_rows_and_feedback(ctx: Context, hashes: dict[str, str]) -> None:
    gb = gradebook_for_cohorts(ctx, ["gba", "gbb"], id_field="email", scale="100", catalog=CATALOG)
    rows = _rows(moodle_csv(gb))
    assert rows[0] == ["Email address", "Nom / Name", "lab-a", "Feedback: lab-a", "lab-b", "Feedback: lab-b"]
    by_id = {r[0]: r for r in rows[1:]}
    assert set(by_id) == {"alice@example.org", "bob@example.org", "chloe@example.org"}  # Alice joined across cohorts
    alice = by_id["alice@example.org"]
    assert alice[2] == "75" and alice[4] == "100"  # 30/40 -> 75; 20/20 -> 100
    assert "Score 30/40" in alice[3] and "Contrôle dns (échoué)" in alice[3]
    assert "gba-01-new" in alice[3] and hashes["a-new"] in alice[3]
    assert "Tous les contrôles sont réussis" in alice[5] and hashes["a-b"] in alice[5]
    bob = by_id["bob@example.org"]
    assert bob[2] == "25" and "Contrôle route (erreur)" in bob[3] and bob[4] == "-" and bob[5] == ""
    chloe = by_id["chloe@example.org"]
    assert chloe[2:] == ["-", "", "-", ""]  # the other candidate's run on gba-03 is not hers
    en = _rows(moodle_csv(gb, "en"))
    assert any("Checks not passed: Check dns (failed)" in cell for r in en for cell in r)


def test_a_name_is_never_a_spreadsheet_formula(ctx: Context, hashes: dict[str, str]) -> None:
    cohort_mod._save(ctx, Cohort("gbf", "lab-a", 3, [Seat("=HYPERLINK(\"x\")", "gbf-01", 1, "up",
                                                          email="f@example.org")]))
    rows = _rows(moodle_csv(gradebook_for_cohorts(ctx, ["gbf"], id_field="email", catalog=CATALOG)))
    assert rows[1][:2] == ["f@example.org", "'=HYPERLINK(\"x\")"]


def test_scales(ctx: Context, hashes: dict[str, str]) -> None:
    def grade(scale: str) -> str:
        gb = gradebook_for_cohorts(ctx, ["gba"], id_field="idnumber", scale=scale, catalog=CATALOG)  # type: ignore[arg-type]
        return {r[0]: r[2] for r in _rows(moodle_csv(gb))[1:]}["A1"]

    assert (grade("points"), grade("20"), grade("100")) == ("30", "15", "75")


def test_json_has_the_criteria_table(ctx: Context, hashes: dict[str, str]) -> None:
    gb = gradebook_for_cohorts(ctx, ["gba", "gbb"], id_field="username", scale="20", catalog=CATALOG)
    data = json.loads(json.dumps(gradebook_json(gb)))
    assert data["format"] == "labkit-gradebook/1" and data["id_field"] == "username"
    assert [lab["id"] for lab in data["labs"]] == ["lab-a", "lab-b"]
    alice = next(c for c in data["candidates"] if c["identifier"] == "amartin")
    assert alice["cohorts"] == ["gba", "gbb"]
    assert alice["grades"]["lab-a"]["run_id"] == "gba-01-new" and alice["grades"]["lab-a"]["grade"] == 15
    assert alice["grades"]["lab-a"]["manifest_sha256"] == hashes["a-new"]
    # route passes in both latest grades; dns failed in lab-a's latest grade
    assert {c["id"]: c["status"] for c in alice["criteria"]} == {
        "aaa-c1-route": "acquired", "aaa-c2-dns": "not_acquired"}
    assert alice["criteria_counts"] == {"acquired": 1, "not_acquired": 1, "not_assessed": 0}
    chloe = next(c for c in data["candidates"] if c["identifier"] == "cnoel")
    assert chloe["grades"] == {"lab-a": None, "lab-b": None} and chloe["criteria"] == []


def test_missing_identifier_names_them_and_roster_fills_it(ctx: Context, hashes: dict[str, str],
                                                           tmp_path: Path) -> None:
    cohort_mod._save(ctx, Cohort("gbc", "lab-a", 3, [Seat("Alice Martin", "gba-01", 1, "up"),
                                                     Seat("Denis Roy", "gbc-02", 2, "up")]))
    with pytest.raises(UserError) as exc:
        gradebook_for_cohorts(ctx, ["gbc"], id_field="email", catalog=CATALOG)
    msg = str(exc.value)
    assert "2 candidate(s) have no email" in msg and "Alice Martin (cohort gbc)" in msg and "Denis Roy" in msg
    assert "--roster" in msg
    roster = tmp_path / "participants.csv"
    roster.write_text("First name,Last name,Email address\nAlice,Martin,alice@example.org\n"
                      "Denis,Roy,denis@example.org\n", encoding="utf-8")
    gb = gradebook_for_cohorts(ctx, ["gbc"], id_field="email", roster=roster, catalog=CATALOG)
    assert [r.identifier for r in gb.rows] == ["alice@example.org", "denis@example.org"]


def test_portal_cohorts_join_the_cli_ones(ctx: Context, hashes: dict[str, str]) -> None:
    from labkit.adapters.db import repo
    from labkit.adapters.db.database import Database

    db = Database(f"sqlite:///{ctx.settings.home / 'labkit.db'}")
    try:
        db.upgrade()
        with db.session() as s:
            cohort = repo.create_cohort(s, "web1", "lab-c", 9)
            for login, name, inst, email in (("am", "Alice Martin", "web1-01", "ALICE@example.org"),
                                             ("zz", "Zoé Zed", "web1-02", None)):
                user = repo.create_user(s, login, name, "candidate")
                s.flush()
                seat = repo.add_candidate(s, cohort, user, name, inst, 1)
                seat.email = email
    finally:
        db.dispose()
    _run(ctx, "web1-01-1", "lab-c", "web1-01", "Alice Martin", [_check("route", "pass", 5, 10, "aaa-c1-route")], 40)
    with pytest.raises(UserError, match=r"1 candidate\(s\) have no email.*Zoé Zed \(cohort web1\)"):
        gradebook_for_cohorts(ctx, ["gba", "web1"], id_field="email", catalog=CATALOG)
    roster = ctx.settings.home / "zoe.csv"
    roster.write_text("nom;courriel\nZoé Zed;zoe@example.org\n", encoding="utf-8")
    gb = gradebook_for_cohorts(ctx, ["gba", "gbb", "web1"], id_field="email", roster=roster, catalog=CATALOG)
    assert [lab for lab, _t in gb.labs] == ["lab-a", "lab-b", "lab-c"]
    alice = next(r for r in gb.rows if r.name == "Alice Martin")  # one row: emails match whatever the case
    assert alice.cohorts == ["gba", "gbb", "web1"]
    assert {lab: g.run_id if g else None for lab, g in alice.grades.items()} == {
        "lab-a": "gba-01-new", "lab-b": "gbb-01-1", "lab-c": "web1-01-1"}
    zoe = next(r for r in gb.rows if r.name == "Zoé Zed")
    assert zoe.identifier == "zoe@example.org" and set(zoe.grades.values()) == {None}
    with pytest.raises(UserError, match="there is no cohort named 'nope'"):
        gradebook_for_cohorts(ctx, ["nope"], id_field="email", catalog=CATALOG)


# ------------------------------------------------------------------ the Moodle-shaped fixture
def _course(**items_max: float) -> Course:
    users = [User(1, "amartin", "alice@example.org", "A1"), User(2, "bdurand", "bob@example.org", "B2"),
             User(3, "cnoel", "chloe@example.org", "C3")]
    items = [GradeItem(10, "lab-a", grademax=items_max.get("lab_a", 100.0)),
             GradeItem(11, "lab-b", grademax=items_max.get("lab_b", 100.0))]
    return Course(users, items)


MAPPINGS = {2: "10", 3: "feedback_10", 4: "11", 5: "feedback_11"}


def test_our_csv_imports_into_the_moodle_fixture(ctx: Context, hashes: dict[str, str]) -> None:
    for scale, id_field, mapto, maxes in (
        ("100", "email", "useremail", {}),
        ("20", "idnumber", "useridnumber", {"lab_a": 20.0, "lab_b": 20.0}),
        ("points", "username", "username", {"lab_a": 40.0, "lab_b": 20.0}),
    ):
        gb = gradebook_for_cohorts(ctx, ["gba", "gbb"], id_field=id_field, scale=scale, catalog=CATALOG)  # type: ignore[arg-type]
        course = _course(**maxes)
        result = import_grades(course, moodle_csv(gb).encode("utf-8"), mapfrom=0, mapto=mapto, mappings=MAPPINGS)
        assert result.clamped == [] and result.blank_identifier_lines == [] and result.unenrolled == []
        assert result.lines == 3
        expected_a = {"100": 75.0, "20": 15.0, "points": 30.0}[scale]
        assert result.grades[(10, 1)].finalgrade == expected_a
        assert result.grades[(11, 1)].finalgrade == {"100": 100.0, "20": 20.0, "points": 20.0}[scale]
        assert result.grades[(10, 2)].finalgrade == {"100": 25.0, "20": 5.0, "points": 10.0}[scale]
        assert result.grades[(10, 3)].finalgrade is None and result.grades[(11, 2)].finalgrade is None
        feedback = result.grades[(10, 1)].feedback or ""
        assert hashes["a-new"] in feedback and "gba-01-new" in feedback


def test_a_new_grade_item_reads_our_no_grade_mark_as_no_grade(ctx: Context, hashes: dict[str, str]) -> None:
    gb = gradebook_for_cohorts(ctx, ["gba", "gbb"], id_field="email", catalog=CATALOG)
    result = import_grades(_course(), moodle_csv(gb).encode("utf-8"), mapfrom=0, mapto="useremail",
                           mappings={4: "new"})
    (item,) = result.new_items
    assert item.name == "lab-b"
    assert result.grades[(item.id, 1)].finalgrade == 100.0
    assert result.grades[(item.id, 2)].finalgrade is None  # '-', not 0


GOOD = ("Email address,Nom / Name,lab-a,Feedback: lab-a\n"
        "alice@example.org,Alice,75,Score 30/40.\n"
        "bob@example.org,Bob,-,\n")


def _import(text: str, *, course: Course | None = None, mapto: str = "useremail",
            mappings: dict[int, str] | None = None, encoding: str = "UTF-8", data: bytes | None = None):  # type: ignore[no-untyped-def]
    return import_grades(course or _course(), data if data is not None else text.encode("utf-8"), mapfrom=0,
                         mapto=mapto, mappings={2: "10", 3: "feedback_10"} if mappings is None else mappings,
                         encoding=encoding)


def test_fixture_accepts_the_good_file() -> None:
    result = _import(GOOD)
    assert result.grades[(10, 1)].finalgrade == 75.0 and result.grades[(10, 1)].feedback == "Score 30/40."


@pytest.mark.parametrize("text,kwargs,code", [
    (GOOD.replace("alice@example.org", "nobody@example.org"), {}, "usermappingerror"),  # unknown user
    (GOOD.replace("alice@example.org", "Alice@Example.org"), {}, "usermappingerror"),  # exact match
    (GOOD, {"mapto": "username"}, "usermappingerror"),  # wrong identifier field chosen
    (GOOD.replace(",75,", ",soixante,"), {}, "badgrade"),  # not a number
    (GOOD.replace(",75,", ",12,5,").replace("Feedback: lab-a", "Feedback: lab-a,x"), {}, "csvweirdcolumns"),
    (GOOD.replace(",75,", ",\"12,5\","), {}, "badgrade"),  # French decimal comma in an English Moodle
    (GOOD.replace(",75,", ",150,"), {}, "gradevaluetoobig"),  # above 100
    (GOOD, {"mappings": {2: "10", 3: "10"}}, "cannotmapfield"),  # two columns to one item
    (GOOD, {"mappings": {2: "new", 3: "new"}}, "cannotmapfield"),  # two new items (PHP 8)
    (GOOD, {"mappings": {0: "10", 2: "useremail"}}, "cannotmapfield"),  # identifier mapped twice
    (GOOD.replace("Bob,-,", "Bob,,,"), {}, "csvweirdcolumns"),
    ("", {}, "csvemptyfile"),
    ("\n\n", {}, "csvemptyfile"),
    (GOOD.replace("alice@example.org,", ",", 1), {}, "usermappingerrorusernotfound"),  # first line blank id
    (GOOD.replace(",75,", ",abc,"), {"mappings": {2: "new"}}, "dmlwriteexception"),
])
def test_fixture_rejects_what_moodle_rejects(text: str, kwargs: dict, code: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(MoodleImportError) as exc:
        _import(text, **kwargs)
    assert exc.value.code == code


def test_fixture_other_rejections_and_silent_traps() -> None:
    locked = _course()
    locked.items[0].locked = True
    with pytest.raises(MoodleImportError) as exc:
        _import(GOOD, course=locked)
    assert exc.value.code == "gradeitemlocked"
    # a file in Latin-1 imported as UTF-8
    with pytest.raises(MoodleImportError) as exc:
        _import("", data=GOOD.replace("Nom", "Prénom").encode("latin-1"))
    assert exc.value.code == "encoding"
    # above the item's maximum: Moodle clamps silently; the fixture records it
    small = _course(lab_a=20.0)
    assert _import(GOOD, course=small).clamped == ["lab-a: 75.0 -> 20.0 for user 1"]
    # a blank identifier after a valid line grades the previous user (Moodle keeps studentid)
    blank = GOOD.replace("bob@example.org,Bob,-,", ",Bob,12,")
    result = _import(blank)
    assert result.blank_identifier_lines == [3] and result.grades[(10, 1)].finalgrade == 12.0
    # '' under "New grade item" becomes 0, '-' stays no grade
    result = _import(GOOD.replace("Bob,-,", "Bob,,"), mappings={2: "new"})
    assert result.grades[(result.new_items[0].id, 2)].finalgrade == 0.0
    # French Moodle: decimal comma accepted, and a decimal point still is
    fr = _course()
    fr.decsep = ","
    assert _import(GOOD.replace(",75,", ",\"12,5\","), course=fr).grades[(10, 1)].finalgrade == 12.5
    assert _import(GOOD.replace(",75,", ",12.5,"), course=_course()).grades[(10, 1)].finalgrade == 12.5
    # a BOM and Windows line ends are fine; a semicolon file read as comma-separated has one
    # cell per line, which Moodle skips: nothing is imported, without an error
    assert _import("", data=b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode()).lines == 2
    nothing = _import(GOOD.replace(",", ";"))
    assert nothing.lines == 0 and nothing.grades == {}
    # an unenrolled user is imported, with a notice
    unenrolled = _course()
    unenrolled.users[1].enrolled = False
    assert _import(GOOD, course=unenrolled).unenrolled == ["bdurand"]


# ------------------------------------------------------------------ CLI
def test_cli_writes_csv_and_json(ctx: Context, hashes: dict[str, str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out_csv = tmp_path / "out" / "moodle.csv"
    assert main(["gradebook", "gba", "gbb", "--id-field", "email", "-o", str(out_csv)]) == 0
    text = out_csv.read_text(encoding="utf-8")
    assert text.startswith("Email address,") and hashes["a-new"] in text
    said = capsys.readouterr().out
    assert "3 candidate(s), 2 lab(s), 3 grade(s) of 6" in said and "useremail" in said
    out_json = tmp_path / "gb.json"
    assert main(["gradebook", "gba", "--format", "json", "--id-field", "idnumber", "--scale", "20",
                 "-o", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["candidates"][0]["identifier"] == "A1"


@pytest.mark.parametrize("argv,needle", [
    (["gradebook", "nosuch", "--id-field", "email"], "no cohort named 'nosuch'"),
    (["gradebook", "gba", "--id-field", "phone"], "--id-field"),
    (["gradebook", "gba", "--id-field", "email", "--scale", "10"], "--scale"),
])
def test_cli_bad_input_is_one_sentence(ctx: Context, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       argv: list[str], needle: str) -> None:
    target = tmp_path / "x.csv"
    assert main([*argv, "-o", str(target)]) != 0
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not target.exists()
