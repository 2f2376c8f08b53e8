"""``vantage: agent`` on the netns provider: the grader agent behind labkit's own SSH server.

At ``up`` (only when ``state.vantage == "agent"``) the provider makes a management
namespace pair for the instance: ``lk-<name>.g``, the agent's side, and ``lk-<name>.c``,
labkit's side, joined by a veth pair created directly inside them (link-local
``169.254.77.1/30`` and ``.2/30``; nothing in the host's root namespace). labkit's own SSH
server (:mod:`labkit.agent.sshd`, asyncssh) runs in ``.g`` only, listening on its link-local
address, with its host key, authorized key and relay file in the instance's private run
directory (0600): key only, no password, no forwarding but the relay, no tty; a session runs
``python -I -m labkit.agent --instance NAME``. It stays in the host's mount namespace, so the
agent sees ``/run/netns``; it needs no directory outside the run directory (OpenSSH's sshd
needed ``/run/sshd``). Its relay (``labkit agent-proxy``) opens connections to the nodes' port
22 from the vantage point of the node address's LAN (``relay.json``).

Grading opens a socket inside ``.c`` (:func:`run_in_netns`: never in the root namespace),
runs SSH over it with paramiko (host key pinned at ``up``) and talks to the agent
(:mod:`labkit.adapters.agent.client`). ``down`` finds everything from the name: the SSH server and the
agents are processes of ``.g`` (ended like every node process, and first by the pid file),
the two namespaces carry the instance prefix, the files live in the run directory.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from labkit.adapters.agent.client import AgentGround, AgentSession, fingerprint
from labkit.adapters.netns.nsutil import run_in_netns
from labkit.errors import AgentError, ProviderError, UserError
from labkit.models.instance import InstanceState

if TYPE_CHECKING:
    from labkit.adapters.netns.provider import NetnsProvider

AGENT_ADDR = "169.254.77.1"
CLIENT_ADDR = "169.254.77.2"
PREFIX_LEN = 30
SSH_PORT = 22
RELAY_PORTS = (22,)  # the relay (labkit agent-proxy) reaches the nodes' ssh only
AGENT_DIR = "agent"  # in the instance's private run directory


def agent_ns(instance: str) -> str:
    return f"lk-{instance}.g"


def client_ns(instance: str) -> str:
    return f"lk-{instance}.c"


def sshd_argv(d: Path, instance: str) -> list[str]:
    """labkit's own SSH server (:mod:`labkit.agent.sshd`), run inside ``lk-<name>.g``."""
    return [sys.executable, "-I", "-m", "labkit.agent.sshd", "--instance", instance,
            "--listen", f"{AGENT_ADDR}:{SSH_PORT}", "--host-key", str(d / "host_key"),
            "--authorized-keys", str(d / "authorized_keys"), "--relay", str(d / "relay.json"),
            "--log", str(d / "sshd.log"), "--pid-file", str(d / "sshd.pid")]


def relay_targets(state: InstanceState) -> dict[str, str]:
    """Every node address of the plan that a vantage point's LAN holds -> that vantage
    point's namespace (the relay opens connections from there)."""
    from labkit.adapters.netns.provider import vantage_ns

    nets = [(ipaddress.ip_interface(v.address).network, vantage_ns(state.name, v.name)) for v in state.plan.vantage]
    out: dict[str, str] = {}
    for n in state.plan.nodes:
        for i in n.interfaces:
            for a in i.addresses:
                ip = ipaddress.ip_interface(a).ip
                ns = next((ns for net, ns in nets if ip in net), None)
                if ns is not None:
                    out.setdefault(str(ip), ns)
    return out


def _run(argv: list[str], timeout: float = 15.0) -> None:
    from labkit.adapters.netns.provider import _run as provider_run

    provider_run(argv, timeout=timeout)


def agent_dir(provider: NetnsProvider, instance: str) -> Path:
    return provider._inst_run_dir(instance) / AGENT_DIR


def start_agent(provider: NetnsProvider, state: InstanceState) -> dict[str, Any]:
    """Make the management pair and start the instance's agent sshd; returns what goes in
    ``state.provider_data["agent"]``. Anything half-made is removed by ``destroy``."""
    name = state.name
    g, c = agent_ns(name), client_ns(name)
    for ns in (g, c):
        _run(["ip", "netns", "add", ns])
    _run(["ip", "link", "add", "name", "m0", "netns", g, "type", "veth", "peer", "name", "m0", "netns", c])
    for ns, addr in ((g, AGENT_ADDR), (c, CLIENT_ADDR)):
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", "m0"])
        _run(["ip", "-n", ns, "link", "set", "m0", "up"])
    d = agent_dir(provider, name)
    d.mkdir(mode=0o700)
    old = os.umask(0o077)
    try:
        for key in ("host_key", "client_key"):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"labkit-agent-{name}", "-f", str(d / key)])
        pub = (d / "client_key.pub").read_text().strip()
        (d / "authorized_keys").write_text(pub + "\n")
        (d / "relay.json").write_text(json.dumps({"ports": list(RELAY_PORTS), "targets": relay_targets(state)}))
    finally:
        os.umask(old)
    for f in d.iterdir():
        f.chmod(0o600)
    # sshd.err: what the server says before its log is open
    with os.fdopen(os.open(d / "sshd.err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as err:
        proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{g}", *sshd_argv(d, name)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, close_fds=True)
    pid = _wait_listening(provider, name, d, proc)
    host_fp = fingerprint(paramiko.Ed25519Key.from_private_key_file(str(d / "host_key")))
    return {"dir": str(d), "client_key": str(d / "client_key"), "host_key_fingerprint": host_fp,
            "pid": pid, "address": AGENT_ADDR, "port": SSH_PORT}


def _wait_listening(provider: NetnsProvider, name: str, d: Path, proc: subprocess.Popen[bytes],
                    wait: float = 15.0) -> int:
    deadline = time.monotonic() + wait
    while True:
        try:
            pid = int((d / "sshd.pid").read_text().strip())
            sock = connect_socket(name, timeout=2.0)
            sock.close()
            return pid
        except (OSError, ValueError, TimeoutError):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (d / "sshd.err").read_text()[-300:] if (d / "sshd.err").exists() else ""
                raise ProviderError(f"the grader agent's sshd of {name!r} did not listen within {wait:.0f} s "
                                    f"({log.strip() or 'no log'}); run 'labkit down {name}' and retry.") from None
            time.sleep(0.05)


def connect_socket(name: str, timeout: float = 10.0) -> socket.socket:
    """A TCP socket to the agent's sshd, created inside ``lk-<name>.c``."""
    return run_in_netns(client_ns(name), lambda: socket.create_connection((AGENT_ADDR, SSH_PORT), timeout=timeout),
                        timeout=timeout + 2)


def stop_agent(provider: NetnsProvider, name: str) -> list[str]:
    """End the agent's sshd by its pid file (only if that pid lives in ``lk-<name>.g``); the
    provider's destroy then ends whatever else lives there and removes namespaces and files."""
    pidfile = agent_dir(provider, name) / "sshd.pid"
    g = Path("/run/netns") / agent_ns(name)
    try:
        pid = int(pidfile.read_text().strip())
        if os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat(g).st_ino:
            return []
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return []
    deadline = time.monotonic() + 3
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # started by this process: reap it
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    return [f"agent sshd {pid}"]


def open_agent_ground(provider: NetnsProvider, state: InstanceState) -> AgentGround:
    """The grader's ground in this instance's agent (``state.vantage == "agent"``)."""
    info = state.provider_data.get("agent") if state.vantage == "agent" else None
    if not isinstance(info, dict):
        raise UserError(f"instance {state.name!r} was brought up without the grader agent; grade it with "
                        f"'--vantage inprocess', or bring it up again with 'labkit up ... --vantage agent'.")
    try:
        sock = connect_socket(state.name)
    except (OSError, TimeoutError) as exc:
        raise AgentError(f"cannot reach the grader agent of {state.name!r} ({exc}); is the instance up "
                         f"('labkit status {state.name}')?") from None
    try:
        key = paramiko.Ed25519Key.from_private_key_file(info["client_key"])
    except (OSError, paramiko.SSHException) as exc:
        sock.close()
        raise AgentError(f"cannot read the grader agent's client key of {state.name!r} ({exc}); run "
                         f"'labkit down {state.name}' and bring it up again.") from None
    session = AgentSession(sock, host_key_fingerprint=info["host_key_fingerprint"], client_key=key,
                           label=f"the grader agent of {state.name!r}")
    return AgentGround(session, lambda where: provider.place_namespace(state, where))
