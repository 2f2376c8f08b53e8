"""The cohort commands' options, retry and progress display, without a lab (grading is
stood in for; the real parallel launch and grading are in tests/usecases/test_cohort.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.interfaces.cli import main
from labkit.usecases import cohort as cohort_mod
from labkit.usecases.cohort import Cohort, Seat
from labkit.usecases.lifecycle import Context


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path / "run"))
    ctx = Context.default()
    seats = [Seat("Alice", "fkc-01", 1, "up"), Seat("Bob [bold]", "fkc-02", 2, "up"),
             Seat("Chloé", "fkc-03", 3, "failed", "boom")]
    cohort_mod._save(ctx, Cohort("fkc", "routing-multisite", 1, seats))
    return ctx


def test_parallel_out_of_range_is_one_sentence(fake_home: Context, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["cohort", "grade", "fkc", "--parallel", "0"], ["cohort", "retry", "fkc", "--parallel", "61"],
                 ["cohort", "up", "routing-multisite", "roster.txt", "--name", "x", "--parallel", "-1"]):
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert "--parallel" in err and "from 1 to 60" in err and "Traceback" not in err
    assert main(["cohort", "grade", "fkc", "--parallel", "two"]) == 2
    assert not (fake_home.settings.home / "cohorts" / "x.json").exists()


def test_grade_shows_progress_and_a_line_per_failure(fake_home: Context, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    class Summary:
        score, max_score, run_id = 5, 10, "run-1"

    def fake_grade(ctx: Context, instance: str, *, mode: str = "grade") -> Summary:
        if instance == "fkc-02":
            raise cohort_mod.UserError("instance 'fkc-02' is creating, not up; bring it up before grading.")
        return Summary()

    monkeypatch.setattr(cohort_mod, "grade", fake_grade)
    assert main(["cohort", "grade", "fkc", "--parallel", "2"]) == 0
    captured = capsys.readouterr()
    assert "cohort fkc: grading" in captured.err
    assert "1 ok, 1 failed, 2/2" in captured.err  # the failed seat (fkc-03) is not graded
    assert "Bob [bold] (fkc-02): grade-failed: instance 'fkc-02' is creating" in captured.err
    assert "5/10" in captured.out


def test_retry_names_what_is_wrong(fake_home: Context, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cohort", "retry", "fkc", "Nobody"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labkit: error: cohort 'fkc' has no candidate 'Nobody'; its candidates are: Alice,")
    assert "Traceback" not in err
    assert main(["cohort", "retry", "fkc", "Alice"]) == 2
    assert "is up, not failed" in capsys.readouterr().err
