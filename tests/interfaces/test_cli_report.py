"""`labkit report RUN --format pdf`: a PDF file with -o, never raw PDF bytes on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.interfaces.cli import main
from labkit.settings import load_settings
from tests.domain.test_report import RUN_ID, SIGNER, build_run


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    build_run(load_settings().runs, signer=SIGNER)
    return tmp_path / "home"


def test_report_pdf_to_a_file(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out" / "report.pdf"
    assert main(["report", RUN_ID, "--format", "pdf", "--lang", "en", "-o", str(target)]) == 0
    assert f"report written to {target}" in capsys.readouterr().out
    data = target.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    info = subprocess.run(["pdfinfo", str(target)], capture_output=True, text=True, check=True).stdout
    assert "A4" in info and "GRETA Lorraine Nord" in info
    text = subprocess.run(["pdftotext", str(target), "-"], capture_output=True, text=True, check=True).stdout
    assert "Summary of checks" in text and SIGNER.fingerprint in text
    assert [p.name for p in target.parent.iterdir()] == ["report.pdf"]  # no temporary file left


def test_report_pdf_piped_to_stdout(home: Path) -> None:
    env = {**os.environ, "LABKIT_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "labkit", "report", RUN_ID, "--format", "pdf"],
                          env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"%PDF-")


def test_report_pdf_refuses_a_terminal(home: Path) -> None:
    env = {**os.environ, "LABKIT_HOME": str(home)}
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "labkit", "report", RUN_ID, "--format", "pdf"],
                              env=env, stdout=follower, stderr=subprocess.PIPE, text=True, timeout=120)
        os.set_blocking(leader, False)
        try:
            shown = os.read(leader, 65536)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 2
    assert "-o FILE.pdf" in proc.stderr and "Traceback" not in proc.stderr
    assert b"%PDF" not in shown


def test_report_pdf_of_an_unknown_run(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "nope.pdf"
    assert main(["report", "no-such-run", "--format", "pdf", "-o", str(target)]) != 0
    assert "Traceback" not in capsys.readouterr().err
    assert not target.exists()
