"""Bad input through the command line (issue 8): hostile lab files end in a one-sentence
error and a non-zero exit, quickly and without a traceback; names are whole-text; text
from the candidate's systems never becomes rich markup or terminal escapes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from labkit.domain.labs import MAX_FILE_BYTES, MAX_YAML_DEPTH
from labkit.interfaces import cli
from labkit.interfaces.cli import main
from labkit.models.common import I18n
from labkit.models.results import CheckResult, GradeSummary
from tests.conftest import PROJECT

BROKEN = PROJECT / "tests" / "fixtures" / "broken"
TIMEOUT = 60.0
FAST = 15.0  # well under the timeout: a hang would take the whole TIMEOUT


def run_labkit(*args: str, tmp: Path, timeout: float = TIMEOUT) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "LABKIT_HOME": str(tmp / "home"), "LABKIT_RUN_DIR": str(tmp / "run"),
           "LABKIT_PROJECT": str(PROJECT)}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "labkit", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT)
    return proc, time.monotonic() - t0


def assert_clean_failure(proc: subprocess.CompletedProcess[str], took: float, *words: str) -> None:
    assert proc.returncode in (1, 2), (proc.returncode, proc.stderr)
    assert took < FAST, took
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- validate


@pytest.mark.parametrize("case,words", [
    ("yaml-alias-bomb", ["lab.yaml:7: the lab file expands to more than 100000 values",
                         "write the repeated parts out"]),
    ("yaml-recursive", ["lab.yaml:4: the lab file has a value that contains itself through a YAML alias",
                        "replace the alias"]),
    ("template-sandbox", ["lab.yaml:12: brief.en: the template reaches for '__class__', which lab templates "
                          "may not use",
                          "lab.yaml:25: addressing.pc1.eth0: the template reaches for '__init__'",
                          "lab.yaml:44: checks[0].args.shell: the template reaches for '__globals__'",
                          "(hint: lab templates may use p.NAME"]),
])
def test_validate_refuses_hostile_fixtures(tmp_path: Path, case: str, words: list[str]) -> None:
    proc, took = run_labkit("validate", str(BROKEN / case), tmp=tmp_path)
    assert proc.returncode == 1
    assert_clean_failure(proc, took, *words)
    assert not Path("/tmp/labkit-sandbox-escaped").exists()


def _lab_dir(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "lab"
    d.mkdir()
    (d / "lab.yaml").write_text(text)
    return d


def test_validate_refuses_a_600_byte_alias_bomb_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, c in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{c}: &{c} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = "id: bomb\ntitle: {fr: x, en: x}\n" + "\n".join(lines) + "\n" + "# padding " * 20 + "\n"
    assert 500 < len(text) < 700
    proc, took = run_labkit("validate", str(_lab_dir(tmp_path, text)), tmp=tmp_path)
    assert proc.returncode == 1
    assert_clean_failure(proc, took, "values once its YAML aliases are repeated")


@pytest.mark.parametrize("text,words", [
    ("&a [*a]\n", "contains itself through a YAML alias"),
    ("id: x\nargs: &m {me: *m}\n", "contains itself through a YAML alias"),
    ("id: " + "[" * 3000 + "]" * 3000 + "\n", f"nests lists or mappings more than {MAX_YAML_DEPTH} levels deep"),
])
def test_validate_refuses_recursive_and_deep_yaml(tmp_path: Path, text: str, words: str) -> None:
    proc, took = run_labkit("validate", str(_lab_dir(tmp_path, text)), tmp=tmp_path)
    assert proc.returncode == 1
    assert_clean_failure(proc, took, words)


def test_validate_refuses_a_file_over_one_mib(tmp_path: Path) -> None:
    text = (BROKEN.parent / "labs" / "demo" / "lab.yaml").read_text() + ("#" * 1023 + "\n") * (MAX_FILE_BYTES // 1024)
    proc, took = run_labkit("validate", str(_lab_dir(tmp_path, text)), tmp=tmp_path)
    assert proc.returncode == 1
    assert_clean_failure(proc, took, "the lab file is larger than 1 MiB, which no lab needs",
                         "split out or remove the bulk data")


def test_validate_stops_a_template_that_loops_for_ever(tmp_path: Path) -> None:
    text = (BROKEN.parent / "labs" / "demo" / "lab.yaml").read_text().replace(
        "      count: 3\n",
        "      count: 3\n      spin: \"{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}"
        "{% endfor %}\"\n")
    proc, took = run_labkit("validate", str(_lab_dir(tmp_path, text)), tmp=tmp_path)
    assert proc.returncode == 1
    assert_clean_failure(proc, took, "checks[0].args.spin: the template takes more than 2 s to render")


def test_labs_lists_a_hostile_lab_as_invalid_without_running_it(tmp_path: Path) -> None:
    """'labkit labs' renders every lab's templates: a walk in one lab is refused, not run."""
    project = tmp_path / "project"
    project.mkdir()
    for sub in ("topologies", "playbooks"):
        (project / sub).symlink_to(PROJECT / "tests" / "fixtures" / sub)
    (project / "labs" / "evil").mkdir(parents=True)
    marker = tmp_path / "escaped"
    text = (PROJECT / "tests" / "fixtures" / "labs" / "demo" / "lab.yaml").read_text().replace("id: demo", "id: evil")
    text = text.replace("      count: 3\n", "      count: 3\n      x: \"{{ cycler.__init__.__globals__.os.system("
                        f"'touch {marker}') }}}}\"\n")
    (project / "labs" / "evil" / "lab.yaml").write_text(text)
    env = {**os.environ, "LABKIT_HOME": str(tmp_path / "home"), "LABKIT_RUN_DIR": str(tmp_path / "run"),
           "LABKIT_PROJECT": str(project)}
    proc = subprocess.run([sys.executable, "-m", "labkit", "labs"], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=PROJECT)
    assert proc.returncode == 0, proc.stderr
    assert "evil  invalid:" in proc.stdout and "labkit validate" in proc.stdout
    assert not marker.exists()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("args,words", [
    (["up", "demo\n"], "there is no lab 'demo\n'"),
    (["up", "routing-multisite", "--instance", "demo\n"], "'demo\\n' is not a valid instance name"),
    (["status", "demo\n"], "'demo\\n' is not a valid instance name"),
    (["down", "demo\n"], "'demo\\n' is not a valid instance name"),
    (["grade", "demo\n"], "'demo\\n' is not a valid instance name"),
])
def test_names_with_a_trailing_newline_are_refused(tmp_path: Path, args: list[str], words: str) -> None:
    proc, took = run_labkit(*args, tmp=tmp_path)
    assert proc.returncode == 2
    assert_clean_failure(proc, took, words)
    assert not (tmp_path / "home" / "instances").exists() or not any((tmp_path / "home" / "instances").iterdir())


# --------------------------------------------------------------------------- markup from the candidate

HOSTILE = [
    "[/]",
    "[link=file:///etc/passwd]x[/link]",
    "[bold red]styled[/bold red]",
    ":smile:",
]
ESC = "\x1b]8;;file:///etc/passwd\x07click\x1b]8;;\x07\x1b[2J"


def _summary() -> GradeSummary:
    t = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    checks = [
        CheckResult(id="v3-sysname", title=I18n(fr="t", en="t"), grader="snmp.v3_sysname", status="fail",
                    points=0, max_points=10, criteria=[], evidence=[],
                    message=I18n(fr=f"sysName vaut '{HOSTILE[0]}'", en=f"sysName is '{HOSTILE[0]}'")),
        CheckResult(id="alert-fires", title=I18n(fr="t", en="t"), grader="supervision.alert_fires",
                    status="error", points=0, max_points=10, criteria=[], evidence=[],
                    message=I18n(fr="x", en=f"alerts {HOSTILE[1]} {HOSTILE[2]} {HOSTILE[3]} banner {ESC}")),
        CheckResult(id="ok", title=I18n(fr="t", en="t"), grader="x.y", status="pass", points=5,
                    max_points=5, criteria=[], evidence=[], message=I18n(fr="bien", en="fine")),
    ]
    return GradeSummary(run_id="r-1", lab_id="supervision-snmp", instance="cand-[/]", candidate="[/]",
                        score=5, max_score=25, started_at=t, ended_at=t, checks=checks)


def test_grade_prints_candidate_text_literally(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import labkit.usecases.grade as grade_uc

    monkeypatch.setattr(cli, "_ctx", lambda: object())
    monkeypatch.setattr(grade_uc, "grade", lambda ctx, name, mode, only, vantage=None: _summary())
    monkeypatch.setattr(cli.out, "width", 400)
    assert main(["grade", "cand", "--lang", "en"]) == 10  # not full marks, and no crash on '[/]'
    out = capsys.readouterr().out
    for text in HOSTILE:
        assert text in out, out
    assert "cand-[/]" in out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]8;;file:///etc/passwd\\x07click" in out
    assert "pass" in out and "fail" in out and "error" in out


def test_score_table_with_hints_prints_them_literally(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(cli.out, "width", 400)
    cli.print_score_table(_summary(), "en", hints={"v3-sysname": "[/] hint [red]x", "ok": "[/]"})
    out = capsys.readouterr().out
    assert "→ [/] hint [red]x" in out and "sysName is '[/]'" in out


def test_validate_prints_hostile_key_names_literally(tmp_path: Path, capsys: Any) -> None:
    """A lab file's own text (here a key named '[/]') reaches the error message."""
    d = _lab_dir(tmp_path, 'id: x\n"[/]": 1\n"[link=file:///etc/passwd]x[/link]": 2\n')
    assert main(["validate", str(d)]) == 1
    err = capsys.readouterr().err
    assert "lab.yaml:2: [/]: unknown key" in err
    assert "lab.yaml:3: [link=file:///etc/passwd]x[/link]: unknown key" in err and "Traceback" not in err


def test_error_messages_print_literally(capsys: Any) -> None:
    assert main(["up", "[/][link=file:///etc/passwd]x"]) == 2
    err = capsys.readouterr().err
    assert "there is no lab '[/][link=file:///etc/passwd]x'" in err
