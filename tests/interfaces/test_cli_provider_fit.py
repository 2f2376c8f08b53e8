"""`labkit validate --provider`, `labkit up --vantage`, `labkit cohort up --provider/--vantage`:
a lab the provider cannot grade is one sentence (exit 1 for validate, a user error for up), no
traceback, nothing made."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import UserError
from labkit.interfaces.cli import main
from labkit.usecases import cohort as cohort_mod
from labkit.usecases.lifecycle import Context
from tests.usecases.capability_fixture import FakeProvider, LesserProvider, install, install_fake, make_project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    install(monkeypatch)
    install_fake(monkeypatch)
    settings = make_project(tmp_path)
    monkeypatch.setenv("LABKIT_HOME", str(settings.home))
    monkeypatch.setenv("LABKIT_RUN_DIR", str(settings.run_dir))
    monkeypatch.setenv("LABKIT_PROJECT", str(settings.project))
    return Context(settings)


def test_validate_with_a_provider(project: Context, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "captest", "--provider", "netns"]) == 0
    assert "captest" in capsys.readouterr().out
    assert main(["validate", "captest", "--provider", "fake"]) == 0
    assert "; graded on fake (inprocess)" in capsys.readouterr().out
    assert main(["validate", "captest", "--provider", "lesser"]) == 1
    err = capsys.readouterr().err
    assert "captest: lab captest cannot be graded on provider lesser, which does not offer node files" in \
        " ".join(err.split())
    assert "Traceback" not in err
    assert main(["validate", "captest", "--provider", "nope"]) == 1
    assert "unknown provider 'nope'" in capsys.readouterr().err
    assert main(["validate", "captest"]) == 0  # without --provider: the lab alone


def test_up_refuses_before_anything_is_made(project: Context, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "captest", "-i", "capu1", "--provider", "lesser"]) == UserError.exit_code != 0
    err = capsys.readouterr().err
    assert "needed by check 'login'" in err and "Traceback" not in err
    assert LesserProvider.made == [] and project.store.names() == []
    assert main(["up", "captest", "-i", "capu1", "--vantage", "sideways"]) == 2  # not a mode: usage error
    assert "sideways" in capsys.readouterr().err


def test_up_vantage_is_stored(project: Context, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "captest", "-i", "capu2", "--seed", "4", "--provider", "fake", "--vantage", "agent"]) == 0
    assert "instance capu2 is up" in capsys.readouterr().out
    assert project.store.load("capu2").vantage == "agent"
    assert main(["down", "capu2"]) == 0
    assert FakeProvider.left == {}


def test_cohort_up_provider_and_vantage(project: Context, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roster = tmp_path / "roster.txt"
    roster.write_text("Alice\n")
    argv = ["cohort", "up", "captest", str(roster), "--name", "capk"]
    assert main([*argv, "--provider", "lesser"]) == UserError.exit_code
    assert "cannot be graded on provider lesser" in capsys.readouterr().err
    assert not cohort_mod._cohort_file(project, "capk").exists()
    assert main(["cohort", "up", "captest", str(roster), "--name", "capk", "--provider", "fake",
                 "--vantage", "agent"]) == 0
    c = cohort_mod.load(project, "capk")
    assert (c.provider, c.vantage) == ("fake", "agent")
    assert project.store.load("capk-01").vantage == "agent"
    assert main(["cohort", "down", "capk"]) == 0
    assert FakeProvider.left == {}
