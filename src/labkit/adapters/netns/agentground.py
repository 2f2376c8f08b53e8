"""``vantage: agent`` on the netns provider: the grader agent behind its own sshd.

At ``up`` (only when ``state.vantage == "agent"``) the provider makes a management
namespace pair for the instance: ``lk-<name>.g``, the agent's side, and ``lk-<name>.c``,
labkit's side, joined by a veth pair created directly inside them (link-local
``169.254.77.1/30`` and ``.2/30``; nothing in the host's root namespace). A per-instance sshd
runs in ``.g`` only, listening on its link-local address, with its own config, host key and
authorized key in the instance's private run directory (0600): key only, no password, no
forwarding, no tty, ForceCommand ``python -I -m labkit.agent --instance NAME``. It stays in
the host's mount namespace, so the agent sees ``/run/netns``; its privilege-separation
directory is OpenSSH's compiled-in ``/run/sshd`` (the openssh-server package's own, empty,
root-owned; created 0755 when missing, as Debian's init script does, and left in place: any
sshd of the host uses it).

Grading opens a socket inside ``.c`` (:func:`run_in_netns`: never in the root namespace),
runs SSH over it with paramiko (host key pinned at ``up``) and talks to the agent
(:mod:`labkit.adapters.agent.client`). ``down`` finds everything from the name: sshd and the
agents are processes of ``.g`` (ended like every node process, and first by the pid file),
the two namespaces carry the instance prefix, the files live in the run directory.
"""

from __future__ import annotations

import os
import signal
import socket
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
SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")
AGENT_DIR = "agent"  # in the instance's private run directory


def agent_ns(instance: str) -> str:
    return f"lk-{instance}.g"


def client_ns(instance: str) -> str:
    return f"lk-{instance}.c"


def agent_command(instance: str) -> str:
    return f"{sys.executable} -I -m labkit.agent --instance {instance}"


def sshd_config(d: Path, instance: str) -> str:
    return "\n".join([
        "# labkit: the grader agent's sshd for instance " + instance,
        f"ListenAddress {AGENT_ADDR}:{SSH_PORT}",
        f"HostKey {d / 'host_key'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}",
        f"PidFile {d / 'sshd.pid'}",
        "AllowUsers root",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "AuthenticationMethods publickey",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "GSSAPIAuthentication no",
        "UsePAM no",
        # the run directory may sit below a world-writable /tmp in tests; the files are 0600
        # in 0700 directories made by labkit
        "StrictModes no",
        "PermitEmptyPasswords no",
        "PermitTTY no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "AllowStreamLocalForwarding no",
        "AllowAgentForwarding no",
        "PermitTunnel no",
        "GatewayPorts no",
        "PermitUserEnvironment no",
        "PermitUserRC no",
        "DisableForwarding yes",
        "UseDNS no",
        "MaxAuthTries 2",
        "MaxSessions 1",
        "LoginGraceTime 15",
        "ClientAliveInterval 30",
        "LogLevel INFO",
        f"ForceCommand {agent_command(instance)}",
        "",
    ])


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
        (d / "authorized_keys").write_text(f'restrict,command="{agent_command(name)}" {pub}\n')
        (d / "sshd_config").write_text(sshd_config(d, name))
    finally:
        os.umask(old)
    for f in d.iterdir():
        f.chmod(0o600)
    if not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755)
    _run(["nsenter", f"--net=/run/netns/{g}", SSHD, "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")])
    pid = _wait_listening(provider, name, d)
    host_fp = fingerprint(paramiko.Ed25519Key.from_private_key_file(str(d / "host_key")))
    return {"dir": str(d), "client_key": str(d / "client_key"), "host_key_fingerprint": host_fp,
            "pid": pid, "address": AGENT_ADDR, "port": SSH_PORT}


def _wait_listening(provider: NetnsProvider, name: str, d: Path, wait: float = 10.0) -> int:
    deadline = time.monotonic() + wait
    while True:
        try:
            pid = int((d / "sshd.pid").read_text().strip())
            sock = connect_socket(name, timeout=2.0)
            sock.close()
            return pid
        except (OSError, ValueError, TimeoutError):
            if time.monotonic() > deadline:
                log = (d / "sshd.log").read_text()[-300:] if (d / "sshd.log").exists() else ""
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
