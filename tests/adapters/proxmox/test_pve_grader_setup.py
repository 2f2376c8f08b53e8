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


def _guest(tmp_path: Path, places: list[dict[str, str]], nics: dict[str, str],
           nodes: list[str] | None = None, mtu: int | None = None) -> tuple[Path, Path, Path]:
    root = tmp_path / "guest"
    (root / "etc/labkit-agent").mkdir(parents=True)
    data: dict[str, object] = {"instance": "g1", "places": places}
    if nodes is not None:
        data["nodes"] = nodes
    if mtu is not None:
        data["mtu"] = mtu
    (root / "etc/labkit-agent/places.json").write_text(json.dumps(data))
    for name in ("ssh_host_ed25519_key", "authorized_keys"):
        (root / "etc/labkit-agent" / name).write_text("x\n")
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True)
    (root / "etc/ssh/sshd_config.d/10-labkit-agent.conf").write_text("old\n")
    for dev, mac in nics.items():
        (root / "sys/class/net" / dev).mkdir(parents=True)
        (root / "sys/class/net" / dev / "address").write_text(mac + "\n")
    log = tmp_path / "ip.log"
    ip = tmp_path / "ip"
    ip.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n")
    ip.chmod(0o755)
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(f"#!/bin/sh\necho \"systemctl $*\" >> {log}\n")
    systemctl.chmod(0o755)
    return root, ip, log


def _run(root: Path, ip: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LABKIT_AGENT_ROOT": str(root), "LABKIT_AGENT_IP": str(ip),
           "LABKIT_AGENT_SYSTEMCTL": str(ip.parent / "systemctl")}
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def test_places_and_the_agent_ssh_server(tmp_path: Path) -> None:
    places = [
        {"place": "lk-g1.s-lan-a", "ports": [
            {"name": "p1", "mac": "bc:24:11:00:00:01", "vnet": "a1", "member": "r1:eth0"},
            {"name": "p2", "mac": "BC:24:11:00:00:02", "vnet": "a2", "member": "pc:eth0"}]},
        {"place": "lk-g1.l-wan-a", "mac": "BC:24:11:00:00:03", "vnet": "w1"},
        {"place": "lk-g1.l-wan-b", "mac": "bc:24:11:00:00:04", "vnet": "w2"},
        {"place": "lk-g1.v-pc", "segment": "lk-g1.s-lan-a", "address": "10.0.1.50/24", "gateway": "10.0.1.1"},
        {"place": "lk-g1.v-pc2", "segment": "lk-g1.s-lan-a", "address": "10.0.1.51/24", "gateway": None},
    ]
    nics = {"eth0": "bc:24:11:00:00:00", "eth1": "bc:24:11:00:00:01", "eth2": "bc:24:11:00:00:02",
            "eth3": "bc:24:11:00:00:03", "eth4": "bc:24:11:00:00:04"}
    root, ip, log = _guest(tmp_path, places, nics, nodes=["10.0.1.10", "10.0.9.9"])
    res = _run(root, ip)
    assert res.returncode == 0, res.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "netns list"
    # the segment: a bridge in its own namespace, the members' grader NICs its ports p1, p2 in
    # the plan's order (every frame between the segment's VMs crosses it)
    seg = [c for c in calls if "lk-g1.s-lan-a" in c and "lk-g1.v-" not in c]
    assert seg[:6] == ["netns add lk-g1.s-lan-a", "-n lk-g1.s-lan-a link set lo up",
                       "-n lk-g1.s-lan-a link add br0 type bridge stp_state 0 forward_delay 0",
                       "-n lk-g1.s-lan-a link set br0 up",
                       "link set eth1 netns lk-g1.s-lan-a", "-n lk-g1.s-lan-a link set eth1 name p1"]
    assert "-n lk-g1.s-lan-a link set p1 master br0 up" in calls
    assert "link set eth2 netns lk-g1.s-lan-a" in calls and "-n lk-g1.s-lan-a link set eth2 name p2" in calls
    assert "-n lk-g1.s-lan-a link set p2 master br0 up" in calls
    # vantage points: no NIC of their own, a veth whose peer is the next port of the segment's bridge
    assert "link add name eth0 netns lk-g1.v-pc type veth peer name p3 netns lk-g1.s-lan-a" in calls
    assert "-n lk-g1.s-lan-a link set p3 master br0 up" in calls
    assert "link add name eth0 netns lk-g1.v-pc2 type veth peer name p4 netns lk-g1.s-lan-a" in calls
    assert calls.index("netns add lk-g1.v-pc") > calls.index("-n lk-g1.s-lan-a link set br0 up")
    assert "-n lk-g1.v-pc addr add 10.0.1.50/24 dev eth0" in calls and "-n lk-g1.v-pc link set eth0 up" in calls
    assert "-n lk-g1.v-pc route add default via 10.0.1.1" in calls
    assert not any(c.startswith("-n lk-g1.v-pc2 route") for c in calls)
    assert not any(c.startswith("link set") and "netns lk-g1.v-" in c for c in calls)  # no guest NIC moved there
    # both link halves in ONE namespace, bridged: the WAN link passes through the grader
    assert calls.count("netns add lk-g1.l-wan") == 1
    assert "-n lk-g1.l-wan link add br0 type bridge stp_state 0 forward_delay 0" in calls
    # ... its ports named as on netns (p1 facing endpoint a, p2 facing b): the graders' cable pull names them
    assert "-n lk-g1.l-wan link set eth3 name p1" in calls and "-n lk-g1.l-wan link set eth4 name p2" in calls
    assert "-n lk-g1.l-wan link set p1 master br0 up" in calls and "-n lk-g1.l-wan link set p2 master br0 up" in calls
    assert not any(c.startswith("link set eth0 ") for c in calls)  # the management NIC stays
    # the agent's own SSH server replaces OpenSSH's sshd (its old drop-in removed)
    assert not (root / "etc/ssh/sshd_config.d/10-labkit-agent.conf").exists()
    assert calls[-3:] == ["systemctl disable --now ssh.service ssh.socket",
                          "systemctl enable labkit-agent-sshd.service", "systemctl restart labkit-agent-sshd.service"]
    assert not any(c.startswith("systemctl") for c in calls[:-3])  # after the places exist
    d = root / "etc/labkit-agent"
    assert (d / "sshd.env").read_text() == "LABKIT_INSTANCE=g1\nLABKIT_LISTEN=0.0.0.0:22\n"
    # relay: node addresses on a vantage point's LAN, from that vantage point (10.0.9.9: no LAN)
    assert json.loads((d / "relay.json").read_text()) == {"ports": [22], "targets": {"10.0.1.10": "lk-g1.v-pc"}}
    for name in ("ssh_host_ed25519_key", "authorized_keys", "relay.json", "sshd.env"):
        assert (d / name).stat().st_mode & 0o777 == 0o600, name


def test_existing_places_are_left_and_a_missing_nic_makes_nothing(tmp_path: Path) -> None:
    seg = {"place": "lk-g1.s-lan", "ports": [{"name": "p1", "mac": "bc:24:11:00:00:01", "vnet": "a1",
                                              "member": "r1:eth0"}]}
    vp = {"place": "lk-g1.v-a", "segment": "lk-g1.s-lan", "address": "10.0.1.50/24"}
    root, ip, log = _guest(tmp_path, [seg, vp], {"eth1": "bc:24:11:00:00:01"})
    ip.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n[ \"$*\" = \"netns list\" ] && echo lk-g1.s-lan\nexit 0\n")
    assert _run(root, ip).returncode == 0
    calls = log.read_text().splitlines()
    assert not any("lk-g1.s-lan link add br0" in c for c in calls)  # the existing segment is left
    assert "netns add lk-g1.s-lan" not in calls and "link set eth1 netns lk-g1.s-lan" not in calls
    # the vantage point still gets its port, numbered after the segment's members
    assert "link add name eth0 netns lk-g1.v-a type veth peer name p2 netns lk-g1.s-lan" in calls
    # a NIC that is not there: refused before any namespace is made
    seg2 = {"place": "lk-g1.s-other", "ports": [{"name": "p1", "mac": "bc:24:11:00:00:01", "vnet": "a1",
                                                 "member": "r1:eth0"},
                                                {"name": "p2", "mac": "bc:24:11:00:00:07", "vnet": "a2",
                                                 "member": "r2:eth0"}]}
    root2, ip2, log2 = _guest(tmp_path / "two", [seg2], {"eth1": "bc:24:11:00:00:01"})
    res = _run(root2, ip2)
    assert res.returncode == 1 and "no NIC with MAC bc:24:11:00:00:07" in res.stderr
    assert log2.read_text().splitlines() == ["netns list"]


def test_relay_targets_from_the_places_nodes(tmp_path: Path) -> None:
    places = [{"place": "lk-g1.s-a", "ports": []}, {"place": "lk-g1.s-b", "ports": []},
              {"place": "lk-g1.v-a", "segment": "lk-g1.s-a", "address": "10.0.1.50/24"},
              {"place": "lk-g1.v-b", "segment": "lk-g1.s-b", "address": "10.0.2.50/24"}]
    root, ip, _log = _guest(tmp_path, places, {"eth1": "bc:24:11:00:00:01", "eth2": "bc:24:11:00:00:02"},
                            nodes=["10.0.2.7", "10.0.1.3/24", "172.16.0.1"])
    assert _run(root, ip).returncode == 0
    assert json.loads((root / "etc/labkit-agent/relay.json").read_text())["targets"] == {
        "10.0.2.7": "lk-g1.v-b", "10.0.1.3": "lk-g1.v-a"}


def test_unknown_mac_fails(tmp_path: Path) -> None:
    root, ip, _log = _guest(tmp_path, [{"place": "lk-g1.l-x-a", "mac": "bc:24:11:00:00:09", "vnet": "a"}],
                            {"eth0": "bc:24:11:00:00:00"})
    res = _run(root, ip)
    assert res.returncode == 1 and "no NIC with MAC bc:24:11:00:00:09" in res.stderr


def test_a_nic_entry_that_is_no_link_half_is_refused(tmp_path: Path) -> None:
    root, ip, log = _guest(tmp_path, [{"place": "lk-g1.s-x", "mac": "bc:24:11:00:00:01", "vnet": "a"}],
                           {"eth1": "bc:24:11:00:00:01"})
    res = _run(root, ip)
    assert res.returncode == 1 and "lk-g1.s-x in places.json is no link half" in res.stderr
    assert log.read_text().splitlines() == ["netns list"]


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


def test_the_unit_runs_the_agent_server_with_the_files_setup_wrote(tmp_path: Path) -> None:
    """The template's systemd unit, its ExecStart run here (the venv's python for
    /opt/labkit/bin/python, the fake root's files, 127.0.0.1 on a free port): key-only SSH,
    a session is the grader agent."""
    import shlex
    import signal
    import socket
    import time

    import paramiko

    from labkit.adapters.agent.client import AgentSession, fingerprint
    from labkit.adapters.proxmox.templates import AGENT_SSHD_UNIT, grader_files

    places = [{"place": "lk-g1.s-a", "ports": []},
              {"place": "lk-g1.v-a", "segment": "lk-g1.s-a", "address": "10.0.1.50/24"}]
    root, ip, _log = _guest(tmp_path, places, {"eth1": "bc:24:11:00:00:01"}, nodes=["10.0.1.3"])
    d = root / "etc/labkit-agent"
    load = paramiko.Ed25519Key.from_private_key_file
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    (d / "ssh_host_ed25519_key").write_text((tmp_path / "host").read_text())
    pub = (tmp_path / "client.pub").read_text().strip()
    (d / "authorized_keys").write_text(f'restrict,command="labkit-agent --instance g1" {pub}\n')  # options ignored
    assert _run(root, ip).returncode == 0
    env = dict(line.split("=", 1) for line in (d / "sshd.env").read_text().splitlines())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env["LABKIT_LISTEN"] = f"127.0.0.1:{port}"
    unit = AGENT_SSHD_UNIT.replace("\\\n", " ")
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))[len("ExecStart="):]
    for k, v in env.items():
        exec_start = exec_start.replace("${" + k + "}", v)
    argv = [a.replace("/etc/labkit-agent", str(d)).replace("/var/log", str(tmp_path))
            for a in shlex.split(exec_start)]
    assert argv[0] == "/opt/labkit/bin/python"
    unit_file = grader_files(str(tmp_path / "client.pub"))["labkit-agent-sshd.service"]  # any file as "wheel"
    assert unit_file == (AGENT_SSHD_UNIT.encode(), 0o644)
    proc = subprocess.Popen([sys.executable, *argv[1:]], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
        session = AgentSession(sock, host_key_fingerprint=fingerprint(load(str(tmp_path / "host"))),
                               client_key=load(str(tmp_path / "client")))
        try:
            assert session.hello["instance"] == "g1"
        finally:
            session.close()
        assert "labkit agent sshd for g1 listening" in (tmp_path / "labkit-agent-sshd.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_vxlan_mtu_on_bridges_nics_and_vantage_veths(tmp_path: Path) -> None:
    """places.json's mtu (a VXLAN zone: 1450) goes on every bridge, grader NIC and vantage veth
    made in the guest; without it (a simple zone) no mtu word is given (the other test)."""
    places = [
        {"place": "lk-g1.s-lan-a", "ports": [{"name": "p1", "mac": "bc:24:11:00:00:01", "vnet": "a1",
                                              "member": "r1:eth0"}]},
        {"place": "lk-g1.l-wan-a", "mac": "BC:24:11:00:00:03", "vnet": "w1"},
        {"place": "lk-g1.v-pc", "segment": "lk-g1.s-lan-a", "address": "10.0.1.50/24", "gateway": None},
    ]
    nics = {"eth1": "bc:24:11:00:00:01", "eth3": "bc:24:11:00:00:03"}
    root, ip, log = _guest(tmp_path, places, nics, mtu=1450)
    res = _run(root, ip)
    assert res.returncode == 0, res.stderr
    calls = log.read_text().splitlines()
    assert "-n lk-g1.s-lan-a link add br0 mtu 1450 type bridge stp_state 0 forward_delay 0" in calls
    assert "-n lk-g1.l-wan link add br0 mtu 1450 type bridge stp_state 0 forward_delay 0" in calls
    assert "-n lk-g1.s-lan-a link set p1 mtu 1450 master br0 up" in calls
    assert "-n lk-g1.l-wan link set p1 mtu 1450 master br0 up" in calls
    assert ("link add name eth0 netns lk-g1.v-pc mtu 1450 type veth peer name p2 netns lk-g1.s-lan-a mtu 1450"
            in calls)
    # every link made or plugged carries it (the veth's peer p2 got it when the pair was made)
    assert [c for c in calls if ("link add" in c or "master br0" in c) and "mtu 1450" not in c] == [
        "-n lk-g1.s-lan-a link set p2 master br0 up"]
