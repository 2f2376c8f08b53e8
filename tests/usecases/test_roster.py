"""Rosters with identifiers (email, ID number, username), Moodle's participants export included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.errors import UserError
from labkit.settings import Settings
from labkit.usecases import cohort as cohort_mod
from labkit.usecases.cohort import Cohort, RosterEntry, Seat, load, read_roster, read_roster_entries
from labkit.usecases.lifecycle import Context


def _write(tmp_path: Path, text: str, name: str = "roster.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_moodle_participants_export_english(tmp_path: Path) -> None:
    # the columns of Moodle's participants download (user/action_redir.php: firstname,
    # lastname and the identity fields, labelled with get_string())
    p = _write(
        tmp_path,
        "First name,Last name,Email address,ID number,Username\n"
        "Élodie,Noël,elodie.noel@example.org,E2026-01,enoel\n"
        "Bob,Durand,bob.durand@example.org,,bdurand\n",
    )
    assert read_roster_entries(p) == [
        RosterEntry("Élodie Noël", "elodie.noel@example.org", "E2026-01", "enoel"),
        RosterEntry("Bob Durand", "bob.durand@example.org", None, "bdurand"),
    ]
    assert read_roster(p) == ["Élodie Noël", "Bob Durand"]


def test_moodle_participants_export_french_surname_and_bom(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "\ufeffPrénom;Nom;Adresse de courriel;Numéro d'identification\n"
        "Alice;Martin;alice@example.org;A-1\n",
    )
    assert read_roster_entries(p) == [RosterEntry("Alice Martin", "alice@example.org", "A-1", None)]
    p2 = _write(tmp_path, "First name,Surname,Email address\nAlice,Martin,alice@example.org\n", "r2.csv")
    assert read_roster_entries(p2) == [RosterEntry("Alice Martin", "alice@example.org")]


def test_name_column_with_identifiers_in_any_order(tmp_path: Path) -> None:
    p = _write(tmp_path, "courriel\tnom\tlogin\nalice@example.org\tAlice Martin\tamartin\n")
    assert read_roster_entries(p) == [RosterEntry("Alice Martin", "alice@example.org", None, "amartin")]


@pytest.mark.parametrize("text", [
    "Alice Martin\nBob Durand\n",
    "nom;groupe\nAlice Martin;A\nBob Durand;B\n",
])
def test_names_only_rosters_have_no_identifiers(tmp_path: Path, text: str) -> None:
    entries = read_roster_entries(_write(tmp_path, text))
    assert [(e.name, e.email, e.idnumber, e.username) for e in entries] == [
        ("Alice Martin", None, None, None),
        ("Bob Durand", None, None, None),
    ]


@pytest.mark.parametrize("text,needle", [
    ("name,email\nAlice,alice@example.org\nBob,ALICE@example.org\n", "gives email 'ALICE@example.org' to both"),
    ("name,username\nAlice,al\nBob,al\n", "gives username 'al' to both Alice and Bob"),
    ("name,email\nAlice,not-an-address\n", "line 2: 'not-an-address' is not an email address"),
])
def test_bad_identifiers(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        read_roster_entries(_write(tmp_path, text))


def test_seats_keep_identifiers_and_old_cohort_files_load(tmp_path: Path) -> None:
    ctx = Context(Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=Path.cwd()))
    seat = Seat(candidate="Alice Martin", instance="idc-01", seed=1, email="alice@example.org", idnumber="A-1")
    cohort_mod._save(ctx, Cohort("idc", "routing-multisite", 7, [seat]))
    back = load(ctx, "idc")
    assert back.seats[0].email == "alice@example.org" and back.seats[0].idnumber == "A-1"
    assert back.seats[0].username is None
    # a cohort file written before the identifiers existed
    old = {"name": "old", "lab": "routing-multisite", "seed": 3,
           "seats": [{"candidate": "Bob", "instance": "old-01", "seed": 5, "status": "up", "detail": "",
                      "score": None, "run_id": None}]}
    path = ctx.settings.home / "cohorts" / "old.json"
    path.write_text(json.dumps(old))
    seat_old = load(ctx, "old").seats[0]
    assert (seat_old.candidate, seat_old.email, seat_old.idnumber, seat_old.username) == ("Bob", None, None, None)


def test_cohort_up_puts_the_identifiers_in_the_seats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    ctx = Context(Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=Path.cwd()))
    launched: list[tuple[str, str]] = []
    monkeypatch.setattr(cohort_mod, "load_lab_checked",
                        lambda c, ref: SimpleNamespace(spec=SimpleNamespace(id="routing-multisite"),
                                                       lab_file=tmp_path / "lab.yaml"))
    monkeypatch.setattr(cohort_mod, "check_provider_fits", lambda c, lab, provider, vantage: "inprocess")
    monkeypatch.setattr(cohort_mod, "up", lambda c, lab, *, instance, seed, candidate, **kw: launched.append(
        (instance, candidate)))
    roster = _write(tmp_path, "First name,Last name,ID number,Institution,Department,Email address\n"
                              "Alice,Martin,A-1,CFA,Réseaux,alice@example.org\n"
                              "Bob,Durand,,CFA,Réseaux,bob@example.org\n")  # Moodle's grade export columns
    c = cohort_mod.cohort_up(ctx, "routing-multisite", roster, name="idu", seed=5, parallel=2)
    assert sorted(launched) == [("idu-01", "Alice Martin"), ("idu-02", "Bob Durand")]
    back = load(ctx, "idu")
    assert [(s.candidate, s.email, s.idnumber, s.username) for s in back.seats] == [
        ("Alice Martin", "alice@example.org", "A-1", None),
        ("Bob Durand", "bob@example.org", None, None),
    ]
    assert [s.status for s in c.seats] == ["up", "up"]
