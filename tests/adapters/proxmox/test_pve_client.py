"""The Proxmox client and settings against fakepve: error mapping, tasks, nodes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from labkit.adapters.proxmox.client import PveApiError, PveClient, PveTaskError
from labkit.adapters.proxmox.settings import configured, load_proxmox_settings
from labkit.errors import UserError

from tests.adapters.proxmox.conftest import FakePveServer



def test_not_configured_says_what_to_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_PROXMOX_CONFIG", raising=False)
    assert not configured(tmp_path)
    with pytest.raises(UserError, match=r"write .*proxmox.toml"):
        load_proxmox_settings(tmp_path)


def test_secret_file_must_be_private(fakepve: FakePveServer, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_PVE_TOKEN_SECRET", raising=False)
    monkeypatch.delenv("LABKIT_PROXMOX_CONFIG", raising=False)
    secret = tmp_path / "secret"
    secret.write_text(fakepve.token_secret)
    os.chmod(secret, 0o644)
    fakepve.write_config(tmp_path, token_secret_file=str(secret))
    with pytest.raises(UserError, match="chmod 600"):
        load_proxmox_settings(tmp_path)
    os.chmod(secret, 0o600)
    assert load_proxmox_settings(tmp_path).token_secret == fakepve.token_secret


def test_clear_secret_in_file_is_refused(fakepve: FakePveServer, tmp_path: Path) -> None:
    (tmp_path / "proxmox.toml").write_text('url = "https://x:8006"\ntoken_id = "a@pve!b"\ntoken_secret = "s"\n')
    with pytest.raises(UserError, match="in clear"):
        load_proxmox_settings(tmp_path)


def test_calls_tasks_and_nodes(fakepve: FakePveServer, pve_home: Path) -> None:
    client = PveClient(load_proxmox_settings(pve_home))
    assert client.call("GET", "/version")["version"]
    nodes = client.nodes_by_free_memory()
    assert {n for n, _ in nodes} == {"pve1", "pve2", "pve3"}
    assert [f for _, f in nodes] == sorted((f for _, f in nodes), reverse=True)
    assert [n for n, _ in client.nodes_by_free_memory(["pve2"])] == ["pve2"]


def test_revoked_token_is_one_clear_sentence(fakepve: FakePveServer, pve_home: Path) -> None:
    client = PveClient(load_proxmox_settings(pve_home))
    fakepve.control("revoke_token")
    with pytest.raises(UserError) as err:
        client.call("GET", "/nodes")
    msg = str(err.value)
    assert "was refused (expired or revoked?)" in msg and "LABKIT_PVE_TOKEN_SECRET" in msg
    assert "\n" not in msg and "Traceback" not in msg


def test_server_error_is_provider_error(fakepve: FakePveServer, pve_home: Path) -> None:
    client = PveClient(load_proxmox_settings(pve_home))
    fakepve.control("fail", method="GET", suffix="/version", status=596, message="Connection timed out",
                    times=1)
    with pytest.raises(PveApiError, match="596"):
        client.call("GET", "/version")
    assert client.call("GET", "/version")


def test_task_with_error_exitstatus(fakepve: FakePveServer, pve_home: Path) -> None:
    client = PveClient(load_proxmox_settings(pve_home))
    fakepve.control("fail_clone", name_part="lk-exitstatus-", message="clone failed: disk full")
    with pytest.raises(PveTaskError, match="clone failed: disk full") as err:
        client.run_task("POST", "/nodes/pve1/qemu/9001/clone", "pve1", newid=990001,
                        name="lk-exitstatus-n1")
    assert err.value.exitstatus == "clone failed: disk full"
    assert not [v for v in fakepve.state()["vms"] if v["vmid"] == 990001]


def test_missing_privilege_names_it(fakepve: FakePveServer, pve_home: Path) -> None:
    client = PveClient(load_proxmox_settings(pve_home))
    fakepve.control("acl", entries={fakepve.token_id: [["/vms", ["VM.Audit"]]]})
    with pytest.raises(UserError) as err:
        client.call("POST", "/pools", poolid="lk-noperm")
    msg = str(err.value)
    assert "lacks privilege Pool.Allocate on /pool/lk-noperm" in msg and "labkit doctor" in msg
    assert "\n" not in msg


def test_task_that_does_not_end_in_time(fakepve: FakePveServer, pve_home: Path) -> None:
    client = PveClient(load_proxmox_settings(pve_home))
    fakepve.control("add_vm", vmid=990002, name="lk-slowstart-n1", start_secs=30)
    fakepve.control("time_scale", value=1.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(PveTaskError, match="did not finish within 1 s") as err:
            client.run_task("POST", "/nodes/pve1/qemu/990002/status/start", "pve1", timeout=1.0)
        assert time.monotonic() - t0 < 5 and err.value.exitstatus is None
    finally:
        fakepve.control("time_scale", value=0)
        fakepve.control("remove_vm", vmid=990002)
