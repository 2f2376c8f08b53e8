"""``vantage: agent`` on the netns provider, for real: the agent's sshd in ``lk-<name>.g``,
labkit's socket in ``lk-<name>.c``, probes and echoes through the agent give what the
in-process ground gives, other keys and passwords are refused, and ``down`` from a new
process leaves nothing."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from labkit.adapters.agent.client import AgentGround, AgentSession
from labkit.adapters.netns.agentground import AGENT_ADDR, agent_ns, client_ns, connect_socket, open_agent_ground
from labkit.adapters.netns.nsutil import netns_inode
from labkit.adapters.probes import registry
from labkit.errors import AgentError, UserError
from labkit.models.probe import EchoCall, ProbeCall

from tests.adapters.agent.conftest import Mini

pytestmark = [pytest.mark.root]

SIOCGSKNS = 0x894C  # linux/sockios.h: an fd of the socket's network namespace


def socket_netns_inode(sock: socket.socket) -> int:
    fd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


PING = ProbeCall(probe="icmp.ping", args=["10.77.0.2"], kwargs={"source": "va", "count": 2, "interval": 0.1})


def test_probes_and_echo_through_the_agent_match_in_process(mini: Mini) -> None:
    registry.load_all()
    inproc = mini.provider.ground(mini.state, "inprocess")
    ground = mini.provider.ground(mini.state)  # the instance's own: agent
    try:
        assert isinstance(ground, AgentGround) and ground.mode == "agent"
        assert "icmp.ping" in ground.session.hello["probes"]
        a = ground.run("va", PING, "ev1", 10)
        b = inproc.run("va", PING, "ev1", 10)
        assert a.ok and b.ok and a.parsed["received"] == b.parsed["received"] == 2
        assert (a.id, a.kind, a.source, a.target, a.action) == (b.id, b.kind, b.source, b.target, b.action)
        echo = EchoCall(mode="exchange", target_ip="10.77.0.2", params={"count": 3})
        ra, rb = ground.echo("va", "vb", echo, 10), inproc.echo("va", "vb", echo, 10)
        assert ra["verified"] == rb["verified"] == 3 and ra["reachable"] and rb["reachable"], (ra, rb)
        # a place outside the instance never reaches the agent: the provider's mapping refuses it
        with pytest.raises(Exception, match="no vantage point or node 'elsewhere'"):
            ground.run("elsewhere", PING, "ev2", 5)
        # and the agent refuses a name that is not registered
        with pytest.raises(AgentError, match="is not registered"):
            ground.run("va", ProbeCall(probe="os.system", args=["id"]), "ev3", 5)
    finally:
        ground.close()
        inproc.close()


def test_concurrent_requests_share_one_session(mini: Mini) -> None:
    import concurrent.futures

    ground = mini.provider.ground(mini.state, "agent")
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            evs = list(pool.map(lambda i: ground.run("va", PING, f"c{i}", 10), range(8)))
        assert sorted(e.id for e in evs) == [f"c{i}" for i in range(8)]
        assert all(e.ok and e.parsed["received"] == 2 for e in evs)
    finally:
        ground.close()


def test_the_client_socket_lives_in_the_client_namespace(mini: Mini) -> None:
    sock = connect_socket(mini.state.name)
    try:
        ino = socket_netns_inode(sock)
        assert ino == netns_inode(client_ns(mini.state.name))
        assert ino != os.stat("/proc/self/ns/net").st_ino
        assert sock.getpeername() == (AGENT_ADDR, 22)
    finally:
        sock.close()
    # sshd listens in .g, on its link-local address only
    listen = subprocess.run(["ip", "netns", "exec", agent_ns(mini.state.name), "ss", "-Hltn"], capture_output=True,
                            text=True, timeout=10).stdout.split()
    assert f"{AGENT_ADDR}:22" in listen and "0.0.0.0:22" not in listen and "[::]:22" not in listen


def _transport(mini: Mini) -> paramiko.Transport:
    t = paramiko.Transport(connect_socket(mini.state.name))
    t.start_client(timeout=10)
    return t


def test_sshd_refuses_another_key_and_passwords(mini: Mini) -> None:
    t = _transport(mini)
    try:
        with pytest.raises(paramiko.BadAuthenticationType) as bad:
            t.auth_password("root", "root")
        assert bad.value.allowed_types == ["publickey"]
    finally:
        t.close()
    t = _transport(mini)
    try:
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey("root", paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate")
                             else paramiko.RSAKey.generate(2048))
    finally:
        t.close()
    # the right key, but a pinned fingerprint that is not the server's: refused by the client
    key = paramiko.Ed25519Key.from_private_key_file(mini.state.provider_data["agent"]["client_key"])
    with pytest.raises(AgentError, match="not the pinned"):
        AgentSession(connect_socket(mini.state.name), host_key_fingerprint="SHA256:not-it", client_key=key)


def test_sshd_files_are_private_and_nothing_outside_the_run_dir(mini: Mini) -> None:
    info = mini.state.provider_data["agent"]
    d = Path(info["dir"])
    assert oct(d.stat().st_mode & 0o777) == "0o700"
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in d.iterdir() if p.name != "sshd.log"
            and p.name != "sshd.pid"} == {n: "0o600" for n in ("host_key", "host_key.pub", "client_key",
                                                               "client_key.pub", "authorized_keys", "relay.json",
                                                               "sshd.err")}
    assert json.loads((d / "relay.json").read_text()) == {"ports": [22], "targets": {}}  # mini: no node
    pid = info["pid"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:4] == [b"-I", b"-m", b"labkit.agent.sshd"], argv  # labkit's own server, not OpenSSH
    assert f"{AGENT_ADDR}:22".encode() in argv
    assert all(a.startswith(str(d).encode()) for a in argv if a.startswith(b"/") and a != argv[0])
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == netns_inode(agent_ns(mini.state.name))
    assert os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino  # sees /run/netns
    # the files it has open are in its run directory (or sockets, pipes, /dev/null)
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        assert not target.startswith("/") or target.startswith((str(d), "/dev/null")), target


def test_grading_through_the_agent_needs_an_instance_made_with_it(mini: Mini) -> None:
    plain = mini.state.model_copy(update={"vantage": "inprocess"})
    with pytest.raises(UserError, match="--vantage agent"):
        mini.provider.ground(plain, "agent")


def test_down_from_a_new_process_leaves_nothing(mini: Mini) -> None:
    name = mini.state.name
    pid = mini.state.provider_data["agent"]["pid"]
    ground = mini.provider.ground(mini.state, "agent")  # an agent process is running too
    try:
        agents = [p for p in os.listdir("/proc") if p.isdigit() and _in_ns(p, agent_ns(name))]
        assert len(agents) >= 2  # sshd and the session's agent
        code = ("import json,sys\nfrom labkit.adapters.netns.provider import NetnsProvider\n"
                f"print(json.dumps(NetnsProvider().destroy({name!r}, None)))")
        proc = subprocess.run([sys.executable, "-c", code], env=mini.env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        removed = json.loads(proc.stdout)
        assert f"agent sshd {pid}" in removed
    finally:
        ground.close()
    assert _gone([str(pid), *agents]) == []
    assert list(Path("/run/netns").glob(f"lk-{name}.*")) == []
    assert not (mini.settings.run_dir / name).exists()
    with open("/proc/self/mountinfo") as fh:
        assert not [ln for ln in fh if str(mini.settings.run_dir / name) in ln]
    assert mini.provider.leftovers(name) == []


def _gone(pids: list[str], wait: float = 5.0) -> list[str]:
    """The pids still alive after ``wait`` s (a zombie waiting for its reaper counts as gone)."""
    deadline = time.monotonic() + wait
    while True:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _in_ns(pid: str, ns: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == netns_inode(ns)
    except OSError:
        return False


def test_open_agent_ground_reports_an_unreachable_agent(mini: Mini) -> None:
    from labkit.adapters.netns.agentground import stop_agent

    assert stop_agent(mini.provider, mini.state.name)
    with pytest.raises(AgentError, match="cannot reach the grader agent"):
        open_agent_ground(mini.provider, mini.state)


def test_a_probe_over_its_timeout_is_an_error_and_the_session_goes_on(mini: Mini) -> None:
    ground = mini.provider.ground(mini.state, "agent")
    try:
        slow = ProbeCall(probe="icmp.ping", args=["10.77.0.99"],  # nobody: every echo waits its timeout
                         kwargs={"source": "va", "count": 5, "interval": 0.5, "timeout": 1.0})
        t0 = time.monotonic()
        with pytest.raises(AgentError, match="did not finish within 1"):
            ground.run("va", slow, "slow", 1.0)
        assert time.monotonic() - t0 < 5
        assert ground.run("va", PING, "after", 10).parsed["received"] == 2
    finally:
        ground.close()


def test_a_dead_agent_is_a_clear_error_not_a_hang(mini: Mini) -> None:
    ground = mini.provider.ground(mini.state, "agent")
    try:
        sshd = mini.state.provider_data["agent"]["pid"]
        g = agent_ns(mini.state.name)
        agents = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != sshd and _in_ns(p, g)
                  and "labkit.agent" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        assert agents
        for p in agents:
            os.kill(int(p), 9)
        t0 = time.monotonic()
        with pytest.raises(AgentError, match="closed the channel|channel failed"):
            ground.run("va", PING, "dead", 10)
        assert time.monotonic() - t0 < 5
    finally:
        ground.close()
