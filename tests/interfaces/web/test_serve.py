"""``labkit serve``, ``labkit user add`` and ``labkit cohort sheet`` as a trainer runs them."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.interfaces.web.conftest import PROJECT, csrf_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {**os.environ, "LABKIT_HOME": str(tmp_path / "home"), "LABKIT_RUN_DIR": str(tmp_path / "run"),
         "LABKIT_PROJECT": str(PROJECT)}
    e.pop("LABKIT_DB_URL", None)
    return e


def labkit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labkit", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=PROJECT)


def test_serve_runs_the_portal_and_the_bastion(env: dict[str, str], tmp_path: Path) -> None:
    made = labkit(env, "user", "add", "formateur", "--role", "trainer", "--name", "Claire")
    assert made.returncode == 0, made.stderr
    password = re.search(r"write it down\): (\S+)", made.stdout).group(1)  # type: ignore[union-attr]
    assert labkit(env, "user", "add", "formateur", "--role", "assessor").returncode == 2
    port, ssh_port = _free_port(), _free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "serve", "--port", str(port), "--ssh-port",
                             str(ssh_port)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"{base}/login", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "the portal did not answer within 60 s"
                time.sleep(0.3)
        assert page.status_code == 200 and '<html lang="fr">' in page.text
        with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as c:
            token = csrf_of(c.get("/login").text)
            r = c.post("/login", data={"login": "formateur", "password": password, "csrf_token": token})
            assert r.status_code == 303
            assert "Sessions d'examen" in c.get("/cohorts").text.replace("&#39;", "'")
        with socket.create_connection(("127.0.0.1", ssh_port), timeout=10) as s:
            assert s.recv(64).startswith(b"SSH-2.0-labkit")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()
    with pytest.raises(OSError):  # both ports are free again
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.parametrize("args,needle", [
    (["--port", "70000"], "out of range"),
    (["--listen", "203.0.113.9"], "cannot listen on 203.0.113.9"),
    (["--listen", "no such host.invalid"], "is not an address"),
])
def test_serve_bad_input(env: dict[str, str], args: list[str], needle: str) -> None:
    r = labkit(env, "serve", *args, "--ssh-port", "0")
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_cohort_sheet_command(env: dict[str, str], tmp_path: Path) -> None:
    from labkit.adapters.db.database import Database
    from labkit.settings import Settings
    from labkit.usecases.exam import Exam
    from labkit.usecases.lifecycle import Context
    from tests.interfaces.web.conftest import FakeLabOps

    settings = Settings(home=Path(env["LABKIT_HOME"]), run_dir=Path(env["LABKIT_RUN_DIR"]), project=PROJECT)
    db = Database(f"sqlite:///{settings.home / 'labkit.db'}")
    db.upgrade()
    exam = Exam(Context(settings), db, ops=FakeLabOps(settings.runs))
    _, creds = exam.create_cohort("demo-lab", "Alice Martin\n", "bts1", created_by=None)
    exam.close()
    db.dispose()
    out = tmp_path / "print" / "sheet.html"
    r = labkit(env, "cohort", "sheet", "bts1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and creds[0].password in out.read_text()
    r = labkit(env, "cohort", "sheet", "bts2")
    assert r.returncode == 2 and "has no login sheet" in r.stderr
