"""CLI behaviour that needs no lab: usage errors, validate, criteria, schema."""

from __future__ import annotations

import json

from labkit.interfaces.cli import main


def test_down_needs_a_name_or_all(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["down"]) == 2
    err = capsys.readouterr().err
    assert "give an instance name or --all" in err and "Traceback" not in err


def test_validate_good_lab(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["validate", "routing-multisite"]) == 0
    assert "routing-multisite" in capsys.readouterr().out


def test_validate_broken_lab_exit_1_no_traceback(capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import PROJECT

    broken = sorted((PROJECT / "tests" / "fixtures" / "broken").glob("*/lab.yaml"))[0]
    assert main(["validate", str(broken)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "lab.yaml" in captured.err


def test_criteria_json_lists_the_catalog(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["criteria", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ids = {r["id"] for r in rows}
    assert {"igs-b1-interconnexions", "tssr-2.3-liens", "afip-c3.4-supervision"} <= ids


def test_unknown_command_is_a_usage_error(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err
