"""Cohorts: roster parsing (no root) and one instance per candidate (root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import UserError
from labkit.usecases.cohort import cohort_down, cohort_grade, cohort_up, load, read_roster
from labkit.usecases.lifecycle import Context, exec_in
from tests.conftest import LabEnv, leftovers


@pytest.mark.parametrize("text,names", [
    ("Alice Martin\nBob Durand\n", ["Alice Martin", "Bob Durand"]),
    ("nom;groupe\nAlice;A\nBob;B\n", ["Alice", "Bob"]),
    ("name,group\n\"Durand, Bob\",B\n# absent\nAlice,A\n", ["Durand, Bob", "Alice"]),
    ("\ufeffcandidat\nÉlodie Noël\n", ["Élodie Noël"]),
])
def test_read_roster(tmp_path: Path, text: str, names: list[str]) -> None:
    p = tmp_path / "roster.csv"
    p.write_text(text, encoding="utf-8")
    assert read_roster(p) == names


@pytest.mark.parametrize("text,needle", [
    ("", "names no candidate"),
    ("Alice\nAlice\n", "twice"),
    ("\n".join(f"c{i}" for i in range(61)), "at most 60"),
])
def test_bad_rosters(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "roster.txt"
    p.write_text(text)
    with pytest.raises(UserError, match=needle):
        read_roster(p)
    with pytest.raises(UserError, match="does not exist"):
        read_roster(tmp_path / "missing.csv")


@pytest.mark.root
def test_cohort_of_three_distinct_instances(lab_env: LabEnv, tmp_path: Path) -> None:
    ctx = Context(lab_env.settings)
    roster = tmp_path / "roster.txt"
    roster.write_text("Alice Martin\nBob Durand\nChloé Petit\n")
    c = cohort_up(ctx, "routing-multisite", roster, name="bts1", seed=2026)
    assert [s.status for s in c.seats] == ["up", "up", "up"]
    assert [s.instance for s in c.seats] == ["bts1-01", "bts1-02", "bts1-03"]
    plans = [ctx.store.load(s.instance).plan for s in c.seats]
    assert [p.candidate for p in plans] == ["Alice Martin", "Bob Durand", "Chloé Petit"]
    # individual parameters: no two candidates share an addressing plan or a credential
    for key in ("lan_hq", "snmp_user", "snmp_auth_pass"):
        assert len({p.params[key] for p in plans}) == 3
    assert exec_in(ctx, "bts1-02", "r-hq", ["hostname"]).stdout.strip() == "r-hq"
    with pytest.raises(UserError, match="already exists"):
        cohort_up(ctx, "routing-multisite", roster, name="bts1", seed=2026)
    # grading goes on for everyone even when one instance is broken
    ctx.store.load("bts1-03")
    from labkit.usecases.lifecycle import down

    down(ctx, "bts1-03")
    graded = cohort_grade(ctx, "bts1")
    assert [s.status for s in graded.seats[:2]] == ["graded", "graded"]
    assert graded.seats[0].score is not None and graded.seats[0].run_id
    assert graded.seats[2].status == "up" and "no lab instance" in graded.seats[2].detail
    removed = cohort_down(ctx, "bts1")
    assert all(s.status == "removed" for s in removed.seats)
    for s in removed.seats:
        assert leftovers(lab_env.settings, s.instance) == []
    with pytest.raises(UserError, match="no cohort"):
        load(ctx, "bts1")
