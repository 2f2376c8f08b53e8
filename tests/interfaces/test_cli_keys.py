"""``labkit keys ...`` through :func:`labkit.interfaces.cli.main`: each command, and bad input
ending in one error line, a non-zero exit and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.adapters.security.keyring import Keyring, Trust
from labkit.interfaces.cli import main
from tests.adapters.security.test_keyring import secret_forms


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, out: str, err: str, *words: str) -> None:
    assert code != 0
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labkit: error: "), err
    for w in words:
        assert w in lines[0], lines[0]


def test_keys_commands(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "keys", "init", "--centre", "CFA Lyon")
    assert code == 0, err
    kr = Keyring(home / "keys")
    first = kr.keys()[0]
    assert f"centre key made: {first.fingerprint} (CFA Lyon)" in out and first.public_line.split()[1] in out
    leaks = secret_forms(kr.private_path(first.fingerprint))

    code, out, err = run(capsys, "keys", "show")
    assert code == 0 and out.startswith(f"active   {first.fingerprint}  CFA Lyon  (created ")
    assert first.public_line.split()[1] in out

    code, out, _ = run(capsys, "keys", "rotate")
    second = kr.keys()[1]
    assert code == 0 and f"new centre key: {second.fingerprint}" in out and second.status == "active"
    leaks += secret_forms(kr.private_path(second.fingerprint))

    code, out, err = run(capsys, "keys", "revoke", first.fingerprint.removeprefix("SHA256:")[:10],
                         "--reason", "laptop stolen")
    assert code == 0, err
    assert f"revoked {first.fingerprint} on " in out and "laptop stolen" in out

    code, out, _ = run(capsys, "keys", "show", "--json")
    rows = json.loads(out)
    assert code == 0 and [(r["fingerprint"], r["status"]) for r in rows] == [
        (first.fingerprint, "revoked"), (second.fingerprint, "active")]
    assert rows[0]["reason"] == "laptop stolen" and rows[0]["retired_at"] and rows[1]["centre"] == "CFA Lyon"

    code, pub, _ = run(capsys, "keys", "show", "--pub")
    assert code == 0 and pub.count("\n") == 1 and second.public_line.split()[1] in pub  # the revoked key is not
    (tmp_path / "from-show.pub").write_text(pub)
    assert Trust.from_files([tmp_path / "from-show.pub"]).status(second.fingerprint) is not None

    code, out, _ = run(capsys, "keys", "export", str(tmp_path / "jury"))
    assert code == 0 and sorted(p.name for p in (tmp_path / "jury").iterdir()) == [
        "allowed_signers", "centre.pub", "revocations.json"]
    assert out.count("wrote ") == 3

    shown = "".join(run(capsys, "keys", "show", *a)[1] for a in ([], ["--json"], ["--pub"], ["--pub", "--json"]))
    exported = b"".join(p.read_bytes() for p in (tmp_path / "jury").iterdir())
    for secret in leaks:
        assert secret.decode("latin-1") not in shown and secret not in exported


@pytest.mark.parametrize("args,words", [
    (["keys", "show"], ["no centre key: run `labkit keys init --centre NAME`"]),
    (["keys", "rotate"], ["no centre key"]),
    (["keys", "export", "out"], ["no centre key"]),
    (["keys", "revoke", "SHA256:abcdef", "--reason", "x"], ["no centre key"]),
    (["keys", "init", "--centre", "  "], ["centre name must be one line"]),
    (["keys", "init", "--centre", "a\x1bb"], ["centre name must be one line"]),
])
def test_bad_input_without_a_key(home: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                 words: list[str]) -> None:
    assert_one_line_error(*run(capsys, *args), *words)
    assert not (home / "keys" / "keyring.json").exists()  # nothing half-made


def test_bad_input_with_a_key(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "keys", "init", "--centre", "CFA")[0] == 0
    kr = Keyring(home / "keys")
    active = kr.keys()[0].fingerprint
    assert_one_line_error(*run(capsys, "keys", "init", "--centre", "CFA"), "already has a key",
                          "`labkit keys rotate`")
    assert_one_line_error(*run(capsys, "keys", "revoke", active, "--reason", "x"), "is the active key",
                          "run `labkit keys rotate` first")
    assert_one_line_error(*run(capsys, "keys", "revoke", "SHA256:nothere", "--reason", "x"),
                          "no centre key has the fingerprint 'SHA256:nothere'")
    assert_one_line_error(*run(capsys, "keys", "revoke", "ab", "--reason", "x"), "too short")
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(*run(capsys, "keys", "export", str(tmp_path / "afile")), "is a file, not a folder")
    kr.rotate()
    kr.private_path(kr.keys()[1].fingerprint).chmod(0o644)  # the key that signs the revocation
    assert_one_line_error(*run(capsys, "keys", "revoke", active, "--reason", "x"), "chmod 600")
    kr.private_path(kr.keys()[1].fingerprint).chmod(0o600)
    assert run(capsys, "keys", "revoke", active, "--reason", "x")[0] == 0
    kr.meta_path.write_text("[]")
    assert_one_line_error(*run(capsys, "keys", "show"), "is damaged", "restore")
    code, _, err = run(capsys, "keys", "revoke")
    assert code == 2 and "Missing argument" in err and "Traceback" not in err


def test_grade_warns_once_when_the_run_is_unsigned(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`labkit grade` / `check` with grade() replaced by a tiny real run, signed when a key exists."""
    import labkit.usecases.grade as grade_uc
    from labkit.adapters.storage.runs import open_run
    from labkit.interfaces import cli
    from labkit.settings import Settings
    from labkit.usecases.lifecycle import Context
    from tests.adapters.security.signed_runs import make_run

    ctx = Context(Settings(home=home, run_dir=tmp_path / "run", project=tmp_path))
    runs: list[str] = []

    def fake_grade(c: Context, name: str, mode: str, only: list[str] | None, vantage: str | None = None) -> object:
        run_id = f"tiny-{len(runs)}"
        make_run(c.settings.runs, run_id, Keyring(c.settings.home / "keys").signer())
        runs.append(run_id)
        return open_run(c.settings.runs, run_id).summary

    monkeypatch.setattr(cli, "_ctx", lambda: ctx)
    monkeypatch.setattr(grade_uc, "grade", fake_grade)
    code, out, err = run(capsys, "grade", "tiny", "--json")
    assert code == 0 and json.loads(out)["run_id"] == "tiny-0"  # stdout stays JSON
    assert err.strip().splitlines() == [
        "warning: run tiny-0 is not signed because the centre has no key; run `labkit keys init --centre NAME` "
        "once so that later runs are signed."]
    assert run(capsys, "keys", "init", "--centre", "CFA")[0] == 0
    code, out, err = run(capsys, "grade", "tiny")
    assert code == 0 and "run: tiny-1" in out and err == ""
    assert open_run(ctx.settings.runs, "tiny-1").signature
