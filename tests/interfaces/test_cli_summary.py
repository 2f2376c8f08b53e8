"""`labkit summary --candidate ID`: the per-criterion table in the terminal, from synthetic runs
made with RunWriter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.adapters.storage.runs import RunWriter
from labkit.interfaces.cli import main
from labkit.models.common import I18n
from labkit.models.results import CheckResult, GradeSummary
from labkit.settings import load_settings
from tests.domain.test_report import CRITERIA, make_info

LINKS, REDUNDANCY, INTERCO = CRITERIA[1].id, CRITERIA[2].id, CRITERIA[0].id
NASTY = "Zoé \x1b[31mRed\x1b[0m [bold]x[/bold]"


def _block(text: str, crit_id: str) -> str:
    """The lines of the table row whose criterion is ``crit_id`` (rows are separated by rules)."""
    blocks, cur = [], []
    for ln in text.splitlines():
        if ln.startswith(("├", "└", "┡")):
            blocks.append("\n".join(cur))
            cur = []
        else:
            cur.append(ln)
    return next(b for b in blocks if f" {crit_id} " in b)


def _run(runs: Path, run_id: str, candidate: str, instance: str, checks: list[tuple[str, str, list[str]]],
         mode: str = "grade", lab_id: str = "routing-multisite") -> None:
    results = [CheckResult(id=cid, title=I18n(fr=f"Vérif {cid}", en=f"Check {cid}"), grader="demo.x", status=st,
                           points=10 if st == "pass" else 0, max_points=10, criteria=crits, evidence=[],
                           message=I18n(fr=f"message {cid}", en=f"message {cid}"))
               for cid, st, crits in checks]
    info = make_info(run_id, lab_id=lab_id, instance=instance, candidate=candidate, mode=mode,
                     checks=[{"id": c.id} for c in results])
    summary = GradeSummary(run_id=run_id, lab_id=lab_id, instance=instance, candidate=candidate,
                           score=sum(c.points for c in results), max_score=10 * len(results),
                           started_at=info.started_at, ended_at=info.ended_at, checks=results)
    RunWriter(runs, run_id).seal(info, summary, CRITERIA)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    # labkit's console was made at import, when COLUMNS was whatever it was: fix its width
    # here, or the table wraps differently with a terminal and without one (CI)
    from labkit.interfaces import cli as cli_module

    monkeypatch.setattr(cli_module.out, "_width", 160)
    monkeypatch.setattr(cli_module.out, "_height", 50)  # both set: rich uses them even when TERM=dumb
    runs = load_settings().runs
    _run(runs, "zoe-routing-1", NASTY, "zoe", [("lan", "pass", [LINKS]), ("wan", "fail", [INTERCO])])
    _run(runs, "zoe-practice-1", NASTY, "zoe", [("redundancy", "pass", [REDUNDANCY])], mode="selfcheck",
         lab_id="backup-restore")
    _run(runs, "other-routing-1", "Other One", "other", [("lan", "fail", [LINKS])])
    return tmp_path / "home"


def test_table(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--candidate", NASTY]) == 0
    text = capsys.readouterr().out
    assert "\x1b" not in text and "\\x1b[31mRed" in text  # the candidate's name cannot drive the terminal
    assert "[bold]x[/bold]" in text  # printed as is, never read as markup
    assert "tssr · A2.3" in text and LINKS in text and INTERCO in text
    row = _block(text, LINKS)
    assert "ACQUIS" in row and "NON ACQUIS" not in row
    assert "lan (zoe-routing-1): réussi" in row
    assert "NON ACQUIS" in _block(text, INTERCO) and "wan (zoe-routing-1): échoué" in _block(text, INTERCO)
    # the self-check is practice: its criterion is not assessed
    assert "redundancy" not in text and "NON ÉVALUÉ" in _block(text, REDUNDANCY)
    assert "1 acquis · 1 non acquis ·" in text
    assert main(["summary", "--candidate", "zoe", "--lang", "en", "--certification", "igs"]) == 0
    en = capsys.readouterr().out
    assert "NOT ACQUIRED" in en and INTERCO in en and LINKS not in en and "0 acquired · 1 not acquired" in en


def test_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--candidate", "zoe", "--json", "--certification", "tssr"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["candidate"] == "zoe" and data["certifications"] == ["tssr"]
    rows = {r["id"]: r for r in data["criteria"]}
    assert rows[LINKS]["status"] == "acquired" and rows[LINKS]["text"] == CRITERIA[1].text
    assert rows[LINKS]["checks"][0] == {"run_id": "zoe-routing-1", "lab_id": "routing-multisite", "check_id": "lan",
                                        "title": {"fr": "Vérif lan", "en": "Check lan"}, "status": "pass",
                                        "message": {"fr": "message lan", "en": "message lan"}, "evidence": []}
    assert rows[REDUNDANCY]["status"] == "not_assessed"
    assert data["counts"]["acquired"] == 1 and data["counts"]["not_acquired"] == 0
    assert data["counts"]["not_assessed"] == len(rows) - 1
    assert data["runs_counted"] == ["zoe-routing-1"] and data["unverifiable"] == []


def test_tampered_run_is_a_warning(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = load_settings().runs / "other-routing-1" / "results.json"
    results.write_bytes(results.read_bytes().replace(b"message lan", b"MESSAGE lan"))
    assert main(["summary", "--candidate", "Other One", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert [u["ref"] for u in data["unverifiable"]] == ["other-routing-1"] and data["runs_counted"] == []
    assert "labkit: warning: run other-routing-1 cannot be verified" not in captured.err  # French by default
    assert "run other-routing-1 non vérifiable" in captured.err


@pytest.mark.parametrize("args, words", [
    (["--candidate", "nobody"], "no recorded grade for candidate or instance 'nobody'"),
    (["--candidate", "zoe", "--certification", "nope"], "unknown certification 'nope'; pass --certification"),
])
def test_bad_input(home: Path, args: list[str], words: str) -> None:
    env = {**os.environ, "LABKIT_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "labkit", "summary", *args], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and words in proc.stderr and "Traceback" not in proc.stderr
