"""``labkit verify``: one line per problem naming the file, a verdict, exit 0 only when all is
good with a trusted key; bad input: one sentence, exit 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.interfaces.cli import main
from tests.adapters.bundle import bundle_fixture as bf


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(zip, unzipped folder, centre.pub) of a bundle signed by a key that is not in LABKIT_HOME."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    signer = bf.make_signer()
    tree, zpath = bf.make_bundle(tmp_path / "b", signer)
    pub = tmp_path / "centre.pub"
    pub.write_text(signer.public_line + "\n")
    return zpath, tree, pub


def test_ok(signed: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    zpath, tree, pub = signed
    for target in (zpath, tree, tree / "runs" / bf.RUN_ID):
        assert main(["verify", str(target), "--key", str(pub)]) == 0
        out = capsys.readouterr().out
        assert out.startswith("OK: ") and "SHA256:" in out and len(out.splitlines()) == 1


def test_changed_byte_names_the_file(signed: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    zpath, tree, pub = signed
    (tree / "index.html").write_text("<p>forged</p>\n")
    assert main(["verify", str(tree), "--key", str(pub)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["error: index.html: changed (against SHA256SUMS)",
                     f"FAILED: bundle folder {tree} does not verify (1 problem)"]

    data = bytearray(zpath.read_bytes())
    data[65] ^= 0x01  # inside the first entry's data (its local header is 30 + 29 bytes)
    zpath.write_bytes(bytes(data))
    assert main(["verify", str(zpath), "--key", str(pub)]) == 1
    out = capsys.readouterr().out
    assert "dupont-portfolio/LISEZMOI.txt: changed in the zip" in out.splitlines()[0]
    assert out.splitlines()[-1].startswith("FAILED: bundle")


def test_json(signed: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    zpath, _tree, pub = signed
    assert main(["verify", str(zpath), "--key", str(pub), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["kind"] == "bundle-zip" and report["problems"] == []
    assert report["signer"]["status"] == "valid" and report["runs_checked"] == [bf.RUN_ID]
    assert main(["verify", str(zpath), "--json"]) == 1  # the local key store is empty
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["signer"]["status"] == "untrusted"
    assert any("--key" in p["what"] for p in report["problems"])


def test_untrusted_key_says_how_to_trust_it(signed: tuple[Path, Path, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(signed[0])]) == 1
    out = capsys.readouterr().out
    assert "pass the centre's public key with --key (the centre prints it with `labkit keys show --pub`)" in out


def test_bad_input_is_one_sentence(signed: tuple[Path, Path, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "pass a run id" in err and len(err.strip().splitlines()) == 1
    assert main(["verify", str(signed[0]), "--key", str(tmp_path / "missing.pub")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "missing.pub" in err
    notzip = tmp_path / "x.zip"
    notzip.write_text("hello")
    assert main(["verify", str(notzip), "--key", str(signed[2])]) == 2
    assert "is not a zip" in capsys.readouterr().err
