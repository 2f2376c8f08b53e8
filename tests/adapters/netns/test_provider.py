"""The netns provider against the real kernel: up, exec, isolation, side by side, crash, no leak."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT, LabEnv, leftovers, namespace_inodes

pytestmark = pytest.mark.root


def test_up_exec_down_leaves_nothing(lab_env: LabEnv) -> None:
    lab_env.labkit("up", "routing-multisite", "--instance", "pv1", "--seed", "3")
    st = lab_env.labkit("status", "pv1", "--json").stdout
    assert '"present": true' in st and '"present": false' not in st
    assert lab_env.labkit("exec", "pv1", "r-hq", "--", "hostname").stdout.strip() == "r-hq"
    # daemons run inside the node, in its own PID namespace: PID 1 is the node's init (tini),
    # the node sees its own processes only, and sshd has the node's network namespace
    inside = lab_env.labkit("exec", "pv1", "r-hq", "--", "sh", "-c",
                            "readlink /proc/$(cat /run/sshd.pid)/ns/net /proc/1/ns/net; cat /proc/1/comm; "
                            "ls /proc | grep -c '^[0-9]'").stdout.split()
    assert inside[0] == inside[1] != os.readlink("/proc/self/ns/net")
    assert inside[2] == "tini" and 3 <= int(inside[3]) < 20, inside
    # a command that outlives its time limit is ended in the node, not only its nsenter
    slow = lab_env.labkit("exec", "--timeout", "1", "pv1", "r-hq", "--", "sleep", "77", check=False)
    assert slow.returncode != 0 and "did not finish within 1.0 s" in slow.stderr
    count = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done | grep -c '^sleep 77' || true"
    assert lab_env.labkit("exec", "pv1", "r-hq", "--", "sh", "-c", count).stdout.strip() == "0"
    key_node = lab_env.labkit("exec", "pv1", "r-hq", "--", "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout
    key_other = lab_env.labkit("exec", "pv1", "r-br1", "--", "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout
    assert key_node != key_other
    # every point-to-point link passes through a grader-owned bridge: node veth - br0 - node veth
    ports = subprocess.run(["ip", "-n", "lk-pv1.w.wan-a", "-o", "link", "show", "master", "br0"],
                           capture_output=True, text=True, check=True).stdout
    assert [line.split(":")[1].strip().split("@")[0] for line in ports.splitlines()] == ["p1", "p2"]
    carrier = lab_env.labkit("exec", "pv1", "r-hq", "--", "cat", "/sys/class/net/eth1/carrier").stdout
    assert carrier.strip() == "1"
    inodes = namespace_inodes("pv1")
    assert len(inodes) == 6 + 3 + 3 + 3  # nodes, switches, vantage points, WAN link bridges
    lab_env.labkit("down", "pv1")
    assert leftovers(lab_env.settings, "pv1", inodes) == []


def test_nothing_in_root_namespace(lab_env: LabEnv) -> None:
    before = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    links_before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    lab_env.labkit("up", "routing-multisite", "--instance", "pv2", "--seed", "4")
    assert subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout == before
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout == links_before
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    for net in ("10.", "172.16", "172.17", "172.18", "172.19"):
        assert all(not line.startswith(net) for line in routes.splitlines())


def test_writes_in_a_node_stay_in_the_node(lab_env: LabEnv) -> None:
    lab_env.labkit("up", "routing-multisite", "--instance", "pv3", "--seed", "5")
    ping = Path("/usr/bin/ping")
    digest = ping.read_bytes()
    marker = b"#!/bin/sh\necho faked\n"
    for path in ("/usr/bin/ping", "/etc/labkit-test", "/var/labkit-test", "/opt/labkit-test", "/root/x",
                 "/srv/x", "/home/x", "/tmp/x", "/run/x"):
        lab_env.labkit("exec", "pv3", "pc-hq", "--", "sh", "-c", f"printf 'faked' > {path}")
    assert ping.read_bytes() == digest
    for path in ("/etc/labkit-test", "/var/labkit-test", "/opt/labkit-test"):
        assert not Path(path).exists()
    # another node sees the original binary
    other = lab_env.labkit("exec", "pv3", "pc-br1", "--", "sh", "-c", "head -c 4 /usr/bin/ping | od -c | head -1")
    assert "E   L   F" in other.stdout
    assert marker  # the fake never reached the host, nor pc-br1
    # the project and the labkit home (grader keys) are hidden from candidates
    hidden = lab_env.labkit("exec", "pv3", "pc-hq", "--", "sh", "-c",
                            f"ls -A {PROJECT} {lab_env.settings.home} 2>/dev/null | wc -l")
    assert hidden.stdout.strip() == "0"
    # the node's root is its own overlay on the nodes' image: a write at / lands in the node's
    # upper layer, never on the host's root
    lab_env.labkit("exec", "pv3", "pc-hq", "--", "sh", "-c", "touch /labkit-test")
    assert not Path("/labkit-test").exists()
    assert (lab_env.settings.instances / "pv3" / "nodes" / "pc-hq" / "upper" / "labkit-test").exists()


def test_two_instances_side_by_side_same_addresses(lab_env: LabEnv) -> None:
    lab_env.labkit("up", "routing-multisite", "--instance", "pva", "--seed", "9")
    lab_env.labkit("up", "routing-multisite", "--instance", "pvb", "--seed", "9")
    a = lab_env.labkit("exec", "pva", "r-hq", "--", "ip", "-4", "-br", "addr").stdout
    b = lab_env.labkit("exec", "pvb", "r-hq", "--", "ip", "-4", "-br", "addr").stdout
    assert a == b  # same seed, same addresses, separate namespaces
    lab_env.labkit("down", "pva")
    assert lab_env.labkit("exec", "pvb", "r-hq", "--", "hostname").stdout.strip() == "r-hq"
    lab_env.labkit("down", "pvb")
    assert leftovers(lab_env.settings, "pva") == [] and leftovers(lab_env.settings, "pvb") == []


def test_crash_during_up_then_down_from_new_process(lab_env: LabEnv) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "up", "routing-multisite", "--instance", "pvc",
                             "--seed", "1"], env=lab_env.env, cwd=PROJECT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # kill it once it has started making namespaces (bounded wait)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(list(Path("/run/netns").glob("lk-pvc.*"))) < 4:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    inodes = namespace_inodes("pvc")
    assert inodes, "the crash happened before anything was made; the test proves nothing"
    assert lab_env.labkit("up", "routing-multisite", "--instance", "pvc", check=False).returncode != 0
    lab_env.labkit("down", "pvc")
    assert leftovers(lab_env.settings, "pvc", inodes) == []


def test_failed_up_rolls_back(lab_env: LabEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.adapters.netns import provider as prov
    from labkit.errors import ProviderError
    from labkit.usecases.lifecycle import Context, up

    real = prov.NetnsProvider.start

    def broken_start(self, state):  # type: ignore[no-untyped-def]
        real(self, state)
        raise ProviderError("simulated failure after the daemons started")

    monkeypatch.setattr(prov.NetnsProvider, "start", broken_start)
    with pytest.raises(ProviderError):
        up(Context(lab_env.settings), "routing-multisite", instance="pvd", seed=2)
    assert leftovers(lab_env.settings, "pvd") == []
    assert not list(Path("/run/netns").glob("lk-pvd.*"))


def test_user_errors_are_one_sentence_without_traceback(lab_env: LabEnv) -> None:
    cases = [
        (["down", "nosuch"], "no instance named 'nosuch'"),
        (["exec", "nosuch", "r-hq", "--", "true"], "no lab instance named 'nosuch'"),
        (["up", "no-such-lab"], "no-such-lab"),
        (["up", "routing-multisite", "--instance", "Bad_Name"], "not a valid instance name"),
        (["report", "no-such-run"], "no-such-run"),
    ]
    for args, needle in cases:
        res = lab_env.labkit(*args, check=False)
        assert res.returncode != 0, args
        assert "Traceback" not in res.stderr, res.stderr
        assert needle in res.stderr, (args, res.stderr)
    lab_env.labkit("up", "routing-multisite", "--instance", "pve", "--seed", "1")
    res = lab_env.labkit("up", "routing-multisite", "--instance", "pve", check=False)
    assert res.returncode != 0 and "already exists" in res.stderr and "Traceback" not in res.stderr
    res = lab_env.labkit("exec", "pve", "nosuchnode", "--", "true", check=False)
    assert res.returncode != 0 and "has no node 'nosuchnode'" in res.stderr


def test_console_and_down_all(lab_env: LabEnv) -> None:
    lab_env.labkit("up", "routing-multisite", "--instance", "pvf", "--seed", "6")
    lab_env.labkit("up", "routing-multisite", "--instance", "pvg", "--seed", "7")
    proc = subprocess.run([sys.executable, "-m", "labkit", "console", "pvf", "pc-br2"], env=lab_env.env,
                          cwd=PROJECT, input="hostname; pwd; exit 0\n", capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "pc-br2" in proc.stdout and "/root" in proc.stdout
    # the union keeps the snapshot's time (a process born later in another test's namespace
    # that reuses a freed inode number must not count as a leak)
    inodes = namespace_inodes("pvf") | namespace_inodes("pvg")
    lab_env.labkit("down", "--all")
    assert leftovers(lab_env.settings, "pvf", inodes) == [] and leftovers(lab_env.settings, "pvg") == []
