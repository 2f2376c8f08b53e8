"""PX's fakepve fixtures (doctor, templates, access, console tests): PV's harness (same
FakePveServer, same venv script) served by ``pvx_server.py``, which adds grants, request bodies,
storage/bridge/version settings. Import the fixtures into a test module:
``from tests.adapters.proxmox.pvx import pvx, pvx_home  # noqa: F401``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.proxmox.conftest import FakePveServer, _venv_python, serving_fakepve

LAUNCHER = Path(__file__).resolve().parent / "pvx_server.py"
TOKEN_USER = "labkit@pve"


@pytest.fixture(scope="module")
def pvx() -> Iterator[FakePveServer]:
    python = _venv_python()
    assert python
    with serving_fakepve(python, LAUNCHER, ("--nodes", "pve1")) as server:
        yield server


def write_config(server: FakePveServer, home: Path, **override: Any) -> Path:
    path = server.write_config(home)
    text = path.read_text()
    for key, value in override.items():
        line = f"{key} = {json.dumps(value)}"
        text, n = re.subn(rf"(?m)^{key} = .*$", line, text)
        if not n:
            text += line + "\n"
    path.write_text(text)
    return path


@pytest.fixture
def pvx_home(pvx: FakePveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    write_config(pvx, home, mgmt_bridge="vmbr0", nodes=["pve1"])
    monkeypatch.setenv("LABKIT_HOME", str(home))
    monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("LABKIT_PVE_TOKEN_SECRET", pvx.token_secret)
    monkeypatch.delenv("LABKIT_PROXMOX_CONFIG", raising=False)
    for op in ("clear_failures", "restore_token", "acl_off"):
        pvx.control(op)
    pvx.control("bodies", clear=True)
    yield home
    for op in ("clear_failures", "restore_token", "acl_off"):
        pvx.control(op)


_WHEEL_DIR: list[str] = []


def fake_wheel() -> str:
    """A stand-in for labkit's wheel (the build guest that would install it is a recorder in
    these tests): a file with a wheel's name, in a temporary folder removed at exit."""
    import atexit

    if not _WHEEL_DIR:
        _WHEEL_DIR.append(tempfile.mkdtemp(prefix="lk-wheel-"))
        atexit.register(shutil.rmtree, _WHEEL_DIR[0], True)
        Path(_WHEEL_DIR[0], "labkit-0.1.0-py3-none-any.whl").write_bytes(b"not a real wheel")
    return str(Path(_WHEEL_DIR[0], "labkit-0.1.0-py3-none-any.whl"))


CT_ARCHIVE = "vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


def single_node_site(server: FakePveServer, home: Path, prefix: str) -> Path:
    """A one-node cluster (bridge vmbr0) whose templates are ``lk-tpl-<prefix>-…``, with a file
    storage ``local`` that takes ``import`` content and holds Debian's system container archive
    (named as ``ct_ostemplate``): what templates build and doctor need."""
    write_config(server, home, mgmt_bridge="vmbr0", nodes=["pve1"], grader_template=f"lk-tpl-{prefix}-grader",
                 template_prefix=f"lk-tpl-{prefix}-", ct_ostemplate=f"local:{CT_ARCHIVE}")
    server.control("storage", name="local", options={
        "content": "iso,vztmpl,backup,import",
        "volumes": {CT_ARCHIVE: {"content": "vztmpl", "format": "tzst", "size": 130 << 20, "ctime": 0}}})
    return home
