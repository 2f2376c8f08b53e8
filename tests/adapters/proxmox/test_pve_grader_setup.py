"""labkit-agent-setup (installed in the grader template) run here on a fake guest: a folder as
its root (LABKIT_AGENT_ROOT) and an ``ip`` program that only records its arguments (nothing
touches this host's network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from labkit.adapters.proxmox import grader_setup
from labkit.adapters.proxmox.templates import build_wheel

SCRIPT = Path(grader_setup.__file__)


def _guest(tmp_path: Path, places: list[dict[str, str]], nics: dict[str, str]) -> tuple[Path, Path, Path]:
    root = tmp_path / "guest"
    (root / "etc/labkit-agent").mkdir(parents=True)
    (root / "etc/labkit-agent/places.json").write_text(json.dumps({"instance": "g1", "places": places}))
    for name in ("ssh_host_ed25519_key", "authorized_keys"):
        (root / "etc/labkit-agent" / name).write_text("x\n")
    for dev, mac in nics.items():
        (root / "sys/class/net" / dev).mkdir(parents=True)
        (root / "sys/class/net" / dev / "address").write_text(mac + "\n")
    log = tmp_path / "ip.log"
    ip = tmp_path / "ip"
    ip.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n")
    ip.chmod(0o755)
    return root, ip, log


def _run(root: Path, ip: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LABKIT_AGENT_ROOT": str(root), "LABKIT_AGENT_IP": str(ip)}
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def test_places_and_sshd(tmp_path: Path) -> None:
    places = [
        {"place": "lk-g1.v-pc", "mac": "bc:24:11:00:00:01", "vnet": "a1", "address": "10.0.1.50/24",
         "gateway": "10.0.1.1"},
        {"place": "lk-g1.s-lan-a", "mac": "bc:24:11:00:00:02", "vnet": "a1"},
        {"place": "lk-g1.l-wan-a", "mac": "BC:24:11:00:00:03", "vnet": "w1"},
        {"place": "lk-g1.l-wan-b", "mac": "bc:24:11:00:00:04", "vnet": "w2"},
    ]
    nics = {"eth0": "bc:24:11:00:00:00", "eth1": "bc:24:11:00:00:01", "eth2": "bc:24:11:00:00:02",
            "eth3": "bc:24:11:00:00:03", "eth4": "bc:24:11:00:00:04"}
    root, ip, log = _guest(tmp_path, places, nics)
    res = _run(root, ip)
    assert res.returncode == 0, res.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "netns list"
    assert "netns add lk-g1.v-pc" in calls and "link set eth1 netns lk-g1.v-pc" in calls
    assert "-n lk-g1.v-pc addr add 10.0.1.50/24 dev eth0" in calls
    assert "-n lk-g1.v-pc route add default via 10.0.1.1" in calls
    assert "link set eth2 netns lk-g1.s-lan-a" in calls and "-n lk-g1.s-lan-a link set eth0 up" in calls
    # both link halves in ONE namespace, bridged: the WAN link passes through the grader
    assert calls.count("netns add lk-g1.l-wan") == 1 and "-n lk-g1.l-wan link add br0 type bridge" in calls
    assert "-n lk-g1.l-wan link set eth3 name a" in calls and "-n lk-g1.l-wan link set eth4 name b" in calls
    assert "-n lk-g1.l-wan link set a master br0" in calls and "-n lk-g1.l-wan link set b master br0" in calls
    assert not any("eth0 netns" in c for c in calls)  # the management NIC stays
    conf = (root / "etc/ssh/sshd_config.d/10-labkit-agent.conf").read_text()
    assert "AuthorizedKeysFile /etc/labkit-agent/authorized_keys" in conf and "PasswordAuthentication no" in conf
    assert "DisableForwarding yes" in conf and "PermitTTY no" in conf
    assert (root / "etc/labkit-agent/ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600


def test_unknown_mac_fails(tmp_path: Path) -> None:
    root, ip, _log = _guest(tmp_path, [{"place": "lk-g1.s-x", "mac": "bc:24:11:00:00:09", "vnet": "a"}],
                            {"eth0": "bc:24:11:00:00:00"})
    res = _run(root, ip)
    assert res.returncode == 1 and "no NIC with MAC bc:24:11:00:00:09" in res.stderr


def test_labkit_wheel_holds_the_agent(tmp_path: Path) -> None:
    from labkit.errors import ProviderError
    from labkit.settings import load_settings

    import importlib.util

    import setuptools

    if importlib.util.find_spec("wheel") is None and int(setuptools.__version__.split(".")[0]) < 71:
        with pytest.raises(ProviderError, match="install the 'wheel' package in labkit's environment"):
            build_wheel(load_settings().project, tmp_path)
        pytest.skip("setuptools here has no bdist_wheel (no 'wheel' package): the wheel cannot be built")

    wheel = build_wheel(load_settings().project, tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "labkit/agent/__main__.py" in names and "labkit/adapters/probes/registry.py" in names
    assert "labkit/adapters/proxmox/grader_setup.py" in names
    assert not list(load_settings().project.glob("build/lib/labkit"))  # the checkout got no build/
