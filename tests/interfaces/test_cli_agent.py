"""``labkit agent-proxy`` for real: OpenSSH's client and Ansible reach a node of a real lab
(routing-multisite, up with ``--vantage agent``) through the grader agent's relay, with the
instance's grader key; destinations outside the plan, other ports and the agent's own
management address are refused with one sentence; ``down`` leaves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.adapters.netns.agentground import AGENT_ADDR
from labkit.usecases.lifecycle import Context

from tests.conftest import PROJECT, LabEnv, leftovers, namespace_inodes

pytestmark = pytest.mark.root

NAME = "apx1"


def _ssh_opts(key: str, name: str) -> list[str]:
    proxy = f"{sys.executable} -m labkit agent-proxy {name} %h %p"
    return ["-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20",
            "-o", f"ProxyCommand={proxy}"]


def test_ssh_and_ansible_through_the_agent_relay(lab_env: LabEnv, tmp_path: Path) -> None:
    lab_env.labkit("up", "routing-multisite", "--instance", NAME, "--seed", "21", "--vantage", "agent")
    state = Context(lab_env.settings).store.load(NAME)
    relay = json.loads((Path(state.provider_data["agent"]["dir"]) / "relay.json").read_text())
    hq = state.plan.node("r-hq")
    assert hq is not None
    addr = hq.first_address()
    assert addr in relay["targets"] and relay["ports"] == [22]
    inodes = namespace_inodes(NAME)

    # OpenSSH's client, the grader key, ProxyCommand=labkit agent-proxy
    ssh = subprocess.run(["ssh", *_ssh_opts(state.ssh_key, NAME), f"root@{addr}", "hostname; ip -o -4 addr"],
                         env=lab_env.env, capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert ssh.returncode == 0, ssh.stderr
    assert ssh.stdout.splitlines()[0] == "r-hq" and addr in ssh.stdout

    # Ansible ad-hoc ping and command through the same ProxyCommand
    inv = tmp_path / "inv.ini"
    common = " ".join(f'"{o}"' if " " in o else o for o in _ssh_opts(state.ssh_key, NAME)[2:])
    inv.write_text(f"[lab]\nr-hq ansible_host={addr} ansible_user=root ansible_ssh_private_key_file={state.ssh_key} "
                   f"ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='{common}'\n")
    ansible = str(Path(sys.executable).parent / "ansible")
    env = {**lab_env.env, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ans"), "ANSIBLE_REMOTE_TEMP": "/tmp/.ansible"}
    ping = subprocess.run([ansible, "all", "-i", str(inv), "-m", "ping"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert ping.returncode == 0 and '"ping": "pong"' in ping.stdout, ping.stdout + ping.stderr
    cmd = subprocess.run([ansible, "all", "-i", str(inv), "-m", "command", "-a", "cat /etc/hostname"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert cmd.returncode == 0 and "r-hq" in cmd.stdout.split("CHANGED", 1)[-1], cmd.stdout + cmd.stderr

    # refused: an address outside the plan, port 80, the agent's management address
    for host, port, why in (("192.0.2.1", "22", "192.0.2.1 is not an address of this lab's nodes"),
                            (addr, "80", "port 80 is not allowed"),
                            (AGENT_ADDR, "22", f"{AGENT_ADDR} is not an address of this lab's nodes")):
        r = lab_env.labkit("agent-proxy", NAME, host, port, check=False, timeout=60)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and why in lines[0], r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
    r = lab_env.labkit("agent-proxy", "nosuch", addr, "22", check=False)
    assert r.returncode == 1 and "no lab instance named 'nosuch'" in r.stderr and "Traceback" not in r.stderr

    lab_env.labkit("down", NAME)
    assert leftovers(lab_env.settings, NAME, inodes) == []


def test_agent_proxy_needs_an_instance_made_with_the_agent(lab_env: LabEnv) -> None:
    lab_env.labkit("up", "routing-multisite", "--instance", "apx2", "--seed", "22")
    r = lab_env.labkit("agent-proxy", "apx2", "10.0.0.1", "22", check=False)
    assert r.returncode == 1 and "--vantage agent" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    lab_env.labkit("down", "apx2")
