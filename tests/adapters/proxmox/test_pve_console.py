"""The serial-console bridge (termproxy + vncwebsocket) against fakepve's console routes: a real
websocket, fakepve's terminal echoes what it receives after the login line."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import pytest

from labkit.adapters.proxmox import console
from labkit.adapters.proxmox.client import PveClient
from labkit.adapters.proxmox.naming import vm_name
from labkit.adapters.proxmox.settings import load_proxmox_settings
from labkit.models.instance import InstancePlan, InstanceState
from tests.adapters.proxmox.pvx import pvx, pvx_home  # noqa: F401


def _clone(pvx, home: Path, instance: str, node: str) -> int:  # noqa: F811
    api = PveClient(load_proxmox_settings(home))
    st = pvx.state()
    if any(v["name"] == vm_name(instance, node) for v in st["vms"]):
        return next(v["vmid"] for v in st["vms"] if v["name"] == vm_name(instance, node))
    tpl = next(v for v in st["vms"] if v["template"] and v["name"] != "lk-tpl-grader")
    newid = max(v["vmid"] for v in st["vms"]) + 1
    upid = api.call("POST", f"/nodes/{tpl['node']}/qemu/{tpl['vmid']}/clone", newid=newid,
                    name=vm_name(instance, node))
    api.wait_task(tpl["node"], upid)
    return newid


def _run(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "labkit.adapters.proxmox.console", *args], input=stdin,
                          capture_output=True, timeout=120, env=dict(os.environ))


def test_bridge_round_trip(pvx, pvx_home: Path) -> None:  # noqa: F811
    vmid = _clone(pvx, pvx_home, "con1", "r1")
    res = _run(["--instance", "con1", "--node", "r1"], "hello é\n".encode())
    assert res.returncode == 0, res.stderr
    assert b"starting serial terminal on interface serial0" in res.stdout
    assert res.stdout.endswith("hello é\n".encode())
    posted = [(p, urllib.parse.parse_qs(b)) for m, p, b in pvx.control("bodies") if m == "POST"
              and p.endswith(f"/qemu/{vmid}/termproxy")]
    assert posted == [(f"/api2/json/nodes/pve1/qemu/{vmid}/termproxy", {"serial": ["serial0"]})]


def test_unknown_node_one_line(pvx, pvx_home: Path) -> None:  # noqa: F811
    res = _run(["--instance", "con1", "--node", "nope"], b"")
    assert res.returncode == 1
    assert res.stderr.decode().strip() == ("labkit: error: instance con1 has no VM for node nope on Proxmox "
                                           "(lk-con1-nope); check the names with 'labkit status con1'.")


def test_revoked_token_one_line(pvx, pvx_home: Path) -> None:  # noqa: F811
    _clone(pvx, pvx_home, "con1", "r1")
    pvx.control("revoke_token")
    res = _run(["--instance", "con1", "--node", "r1"], b"")
    assert res.returncode == 1 and b"Traceback" not in res.stderr
    assert b"was refused" in res.stderr


def test_frames() -> None:
    assert console.frame_input("ls\r") == "0:3:ls\r"
    assert console.frame_input("é") == "0:2:é"  # length in bytes, as termproxy reads it
    assert console.frame_resize(120, 40) == "1:120:40:"


@pytest.mark.parametrize("node", ["r1"])
def test_console_argv(node: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = InstancePlan(name="con1", lab_id="x", lab_dir="", topology_id="t", seed=0, params={}, nodes=[],
                        segments={}, links={})
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    state = InstanceState(name="con1", provider="proxmox", phase="up", created_at=now, updated_at=now,
                          plan=plan, ssh_key="")
    monkeypatch.delenv("LABKIT_PROXMOX_CONFIG", raising=False)
    provider = SimpleNamespace(settings=SimpleNamespace(home=tmp_path))
    # the argv names the configuration file: the bastion starts it with PATH alone
    assert console.console_argv(provider, state, node) == [
        sys.executable, "-m", "labkit.adapters.proxmox.console", "--instance", "con1", "--node", node,
        "--config", str(tmp_path / "proxmox.toml")]


def test_bridge_in_a_pseudo_terminal(pvx, pvx_home: Path) -> None:  # noqa: F811
    """As the bastion runs it: in a pty (raw mode, the window size sent first)."""
    import pty
    import select
    import time

    _clone(pvx, pvx_home, "con1", "r1")
    pvx.control("bodies", clear=True)
    pid, fd = pty.fork()
    if pid == 0:  # child: the console bridge on the pty
        os.execve(sys.executable, [sys.executable, "-m", "labkit.adapters.proxmox.console", "--instance", "con1",
                                   "--node", "r1"], dict(os.environ))
    out = b""
    try:
        deadline = time.monotonic() + 30
        sent, settle = False, deadline
        while time.monotonic() < deadline and not (sent and time.monotonic() > settle):
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
            if b"serial0" in out and not sent:
                os.write(fd, b"ping!\r")
                sent, settle = True, time.monotonic() + 2.0
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    assert b"starting serial terminal on interface serial0" in out
    # raw mode: no local echo, no CR->NL: only the console's own echo, byte for byte
    assert out.count(b"ping!") == 1 and out.endswith(b"ping!\r")
