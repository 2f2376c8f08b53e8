"""usecases/summary.py: which runs are a candidate's recorded grades, and the table from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import UserError
from labkit.settings import Settings
from labkit.usecases.lifecycle import Context
from labkit.usecases.summary import candidate_summary, recorded_run_ids, seat_ref, summarize
from tests.domain.test_report import CRITERIA
from tests.interfaces.test_cli_summary import _run

LINKS = CRITERIA[1].id


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    c = Context(Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=Path.cwd()))
    runs = c.settings.runs
    _run(runs, "ana-1", "Ana", "seat1", [("lan", "fail", [LINKS])])
    _run(runs, "ana-2", "Ana", "seat1", [("lan", "pass", [LINKS])])
    _run(runs, "ana-sc", "Ana", "seat1", [("lan", "fail", [LINKS])], mode="selfcheck")
    _run(runs, "twin-1", "Twin", "seat2", [("lan", "pass", [LINKS])])
    _run(runs, "twin-2", "Twin", "seat3", [("lan", "fail", [LINKS])])
    return c


def test_recorded_run_ids(ctx: Context) -> None:
    assert sorted(recorded_run_ids(ctx, "Ana")) == ["ana-1", "ana-2"]
    assert sorted(recorded_run_ids(ctx, "Ana", with_selfchecks=True)) == ["ana-1", "ana-2", "ana-sc"]
    assert recorded_run_ids(ctx, "seat3") == ["twin-2"]  # by instance when no run has that name
    assert recorded_run_ids(ctx, "nobody") == []


def test_seat_ref(ctx: Context) -> None:
    assert seat_ref(ctx, "Ana", "seat1") == "Ana"
    assert seat_ref(ctx, "Twin", "seat2") == "seat2"  # the name is shared with another seat
    assert seat_ref(ctx, "Ana", "seat9") is None


def test_summary_counts_the_latest_grade(ctx: Context) -> None:
    s = candidate_summary(ctx, "Ana", ["tssr"])
    row = next(r for r in s.rows if r.criterion.id == LINKS)
    assert row.status == "acquired" and [c.run_id for c in row.checks] == ["ana-2"]
    assert s.counted == ["ana-2"] and s.cited == ["tssr"]
    assert {r.criterion.certification for r in s.rows} == {"tssr"}
    with pytest.raises(UserError, match="no recorded grade"):
        candidate_summary(ctx, "nobody")
    with pytest.raises(UserError, match="unknown certification 'x'"):
        candidate_summary(ctx, "Ana", ["x"])


def test_unverifiable_and_missing_runs_are_listed(ctx: Context) -> None:
    (ctx.settings.runs / "ana-2" / "run.json").write_text("{}")
    s = summarize(ctx, ["ana-1", "ana-2", "gone"], "Ana")
    assert [u.ref for u in s.unverifiable] == ["ana-2", "gone"]
    assert all(u.message for u in s.unverifiable)
    row = next(r for r in s.rows if r.criterion.id == LINKS)
    assert row.status == "not_acquired" and list(s.runs) == ["ana-1"]
