"""SSH probes against a real sshd started inside the node namespace."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from probe_testlib import root_only

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes import host_facts, ssh_run

pytestmark = [*root_only, pytest.mark.skipif(
    not os.path.exists("/usr/sbin/sshd") or shutil.which("ssh-keygen") is None, reason="needs openssh-server")]


def keygen(path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lkt-probe", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab("ssh", 14)
    t = lab.tmp
    keygen(t / "host_ed25519")
    keygen(t / "client")
    keygen(t / "stranger")
    (t / "authorized_keys").write_text((t / "client.pub").read_text())
    os.chmod(t / "authorized_keys", 0o600)
    (t / "sshd_config").write_text(
        f"ListenAddress {lab.n_ip}\n"
        "Port 22\n"
        f"HostKey {t / 'host_ed25519'}\n"
        f"PidFile {t / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {t / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "PrintMotd no\n"
    )
    # sshd needs /run/sshd (privilege separation); give it a tmpfs /run inside the private
    # mount namespace that 'ip netns exec' creates, instead of creating /run/sshd on the host.
    # 'sh -c ... exec' keeps the PID we hold as sshd's own.
    script = ("mount -t tmpfs -o size=1m,mode=0755 lkt-probe-run /run && mkdir -m 0755 /run/sshd && "
              f"exec /usr/sbin/sshd -D -e -f {t / 'sshd_config'}")
    proc = lab.spawn(lab.n, ["/bin/sh", "-c", script], log=t / "sshd.log")
    lab.wait_listening(lab.n, "tcp", lab.n_ip, 22, proc)
    lab.sshd = proc
    lab.key = str(t / "client")
    lab.stranger = str(t / "stranger")
    host_pub = (t / "host_ed25519.pub").read_text().split()[1]
    lab.host_fp = subprocess.run(["ssh-keygen", "-lf", str(t / "host_ed25519.pub")], check=True,
                                 capture_output=True, text=True).stdout.split()[1]
    assert host_pub
    return lab


def test_sshd_runs_in_its_namespace(lab):
    assert os.stat(f"/proc/{lab.sshd.pid}/ns/net").st_ino == os.stat(f"/run/netns/{lab.n}").st_ino
    assert os.path.basename(os.readlink(f"/proc/{lab.sshd.pid}/exe")) == "sshd"


def test_ssh_run_json(lab):
    cmds = ["ip -j addr show dev eth0", "echo hello; echo oops >&2; exit 3", "printf '{\"a\": [1, 2]}'"]
    ev = run_in_netns(lab.v, lambda: ssh_run(lab.n_ip, cmds, key_file=lab.key, ev_id="s1", source="v",
                                             check="c"))
    assert ev.ok, ev.error
    assert ev.kind == "ssh" and ev.target == f"{lab.n_ip}:22"
    first, second, third = ev.parsed
    assert first["rc"] == 0 and isinstance(first["json"], list)
    assert first["json"][0]["ifname"] == "eth0"
    addrs = [a["local"] for a in first["json"][0]["addr_info"]]
    assert lab.n_ip in addrs  # the command ran in the node's namespace
    assert second == {"cmd": cmds[1], "rc": 3, "stdout": "hello\n", "stderr": "oops\n", "json": None,
                      "timed_out": False}
    assert third["json"] == {"a": [1, 2]}
    assert ev.meta["host_key"]["sha256"] == lab.host_fp
    assert ev.meta["host_key"]["type"] == "ssh-ed25519"
    assert "[rc=3]" in ev.raw


def test_ssh_run_command_timeout(lab):
    ev = run_in_netns(lab.v, lambda: ssh_run(lab.n_ip, ["sleep 5"], key_file=lab.key, ev_id="s2", source="v",
                                             timeout=1.0))
    assert ev.ok
    assert ev.parsed[0]["timed_out"] is True and ev.parsed[0]["rc"] is None
    assert ev.duration < 4


def test_ssh_run_bad_key(lab):
    ev = run_in_netns(lab.v, lambda: ssh_run(lab.n_ip, ["true"], key_file=lab.stranger, ev_id="s3",
                                             source="v"))
    assert ev.ok is False
    assert "authentication" in ev.error.lower()
    assert ev.meta["failed_at"] == "auth"
    assert ev.meta["host_key"]["sha256"] == lab.host_fp  # the server was reached


def test_ssh_run_refused(lab):
    ev = run_in_netns(lab.v, lambda: ssh_run(lab.n_ip, ["true"], key_file=lab.key, ev_id="s4", source="v",
                                             port=2200))
    assert ev.ok is False and ev.meta["failed_at"] == "connect" and "refused" in ev.error


def test_host_facts(lab):
    ev = run_in_netns(lab.v, lambda: host_facts(lab.n_ip, key_file=lab.key, ev_id="h1", source="v"))
    assert ev.ok, ev.error
    facts = ev.parsed
    assert facts["hostname"]
    names = {i["ifname"] for i in facts["addresses"]}
    assert names == {"lo", "eth0"}
    assert any(r["dst"] == f"10.250.{lab.subnet}.0/24" for r in facts["routes"])
    assert ev.meta["host_key"]["sha256"] == lab.host_fp


def test_host_facts_bad_key(lab):
    ev = run_in_netns(lab.v, lambda: host_facts(lab.n_ip, key_file=lab.stranger, ev_id="h2", source="v"))
    assert ev.ok is False and ev.meta["failed_at"] == "auth"
