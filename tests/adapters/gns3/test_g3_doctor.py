"""``labkit doctor --provider gns3`` against the real gns3-server (G1's harness): one line per
check, each problem says what to do, exit 0 only when all is well."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.gns3 import doctor
from tests.adapters.gns3.g2lab import LAB_ID, admin_client, ensure_templates, make_ctx


@pytest.fixture
def g3srv(gns3_server: Any) -> Any:
    return gns3_server  # G1's session server (tests/adapters/gns3/conftest.py)


def _plans(ctx: Any) -> list[Any]:
    from labkit.usecases.doctor import _plans

    return [p for _, p in _plans(ctx, [LAB_ID])]


def _checks(lines: list[Any]) -> dict[str, list[tuple[bool, str]]]:
    out: dict[str, list[tuple[bool, str]]] = {}
    for line in lines:
        out.setdefault(line.check, []).append((line.ok, line.message))
    return out


def test_doctor_lines(g3srv: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with admin_client(g3srv) as admin:
        templates = ensure_templates(admin, g3srv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    ctx = make_ctx(g3srv, tmp_path, templates, grader={"host": "127.0.0.1", "port": closed})
    monkeypatch.setenv("LABKIT_PROJECT", str(ctx.settings.project))
    got = _checks(doctor.run(ctx.settings, _plans(ctx)))
    assert got["config"][0][0] and got["server"] == [(True, f"GNS3 server 3.0.6 at {g3srv.url}, login of admin works")]
    assert got["account"] == [(True, "admin is GNS3's super admin")] and got["compute"][0][0]
    assert got["templates"] == [(True, "lab g3demo: a template for every role (router, workstation)")]
    assert got["grader"][0][0] is False and f"127.0.0.1:{closed} does not answer" in got["grader"][0][1]

    # a missing template: one line naming the role and the template
    toml = ctx.settings.home / "gns3.toml"
    good = toml.read_text()
    toml.write_text(good.replace(f'router = "{templates["router"]}"', 'router = "Cisco 7200"'))
    got = _checks(doctor.run(ctx.settings, _plans(ctx)))
    assert got["templates"] == [(False, f"the GNS3 template 'Cisco 7200' (role 'router') does not exist on "
                                        f"{g3srv.url}; create it in GNS3 or fix [templates] in gns3.toml.")]
    # a wrong password: the server line says so, nothing else is asked
    toml.write_text(good)
    (ctx.settings.home / "gns3-password").write_text("not-the-password")
    got = _checks(doctor.run(ctx.settings, _plans(ctx)))
    assert list(got) == ["config", "server"] and "refused the login of 'admin'" in got["server"][0][1]
    # no configuration at all
    toml.unlink()
    got = _checks(doctor.run(ctx.settings, _plans(ctx)))
    assert list(got) == ["config"] and "GNS3 is not configured: write" in got["config"][0][1]


def test_doctor_command_line(g3srv: Any, tmp_path: Path) -> None:
    with admin_client(g3srv) as admin:
        templates = ensure_templates(admin, g3srv)
    ctx = make_ctx(g3srv, tmp_path, templates)
    env = {**os.environ, "LABKIT_HOME": str(ctx.settings.home), "LABKIT_PROJECT": str(ctx.settings.project),
           "LABKIT_RUN_DIR": str(ctx.settings.run_dir)}
    out = subprocess.run([sys.executable, "-m", "labkit", "doctor", "--provider", "gns3", "--lab", LAB_ID],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("ok   config") and any(ln.startswith("ok   templates") for ln in lines)
    assert any(ln.startswith("FAIL grader") and "has no [grader]" in ln for ln in lines)
    assert lines[-1] == "gns3: 1 problem(s)"
