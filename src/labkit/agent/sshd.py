"""``python -I -m labkit.agent.sshd``: labkit's own SSH server for the grader agent (asyncssh).

It replaces a per-instance OpenSSH sshd (which needs its compiled-in ``/run/sshd`` outside
labkit's directories). One client key is accepted (the authorized-keys file's keys; options
in it are ignored: this server decides what a session does); no password, no
keyboard-interactive, no host-based login; no pty, no agent or X11 forwarding, no remote
forwarding, no SFTP/SCP. What a client may do:

- a session channel (exec, shell or subsystem alike): the grader agent's JSON-lines protocol,
  served by ``python -I -m labkit.agent --instance NAME`` (:mod:`labkit.agent.server`) with its
  stdin/stdout joined to the channel; it ends when the channel or the connection ends;
- a ``direct-tcpip`` channel (the relay, ``labkit agent-proxy``): to an address of the
  instance's plan and an allowed port only (``--relay FILE``: ``{"ports": [22], "targets":
  {"10.1.2.3": "lk-NAME.v.lan"}}``), opened by this server from that address's place (a
  vantage point's namespace on the address's LAN). Anything else is refused.

Host mode (``--host-mode``, a GNS3 host; no ``--instance``): one server for every instance
whose grader places live on this host. The SSH user name of a connection names its instance
(refused unless it is an instance name); its sessions run ``python -I -m labkit.agent
--instance USER --host-ops`` (which also makes and removes that instance's places,
:mod:`labkit.agent.host`), and its relay targets are those the instance's ``host_setup``
wrote (:func:`labkit.agent.host.relay_file`).

Bounded: at most ``--max-connections`` connections, ``--max-sessions`` agent sessions,
``--max-relays`` open relays, each relay at most ``--relay-lifetime`` seconds, a login within
15 s. Logs go to stderr and ``--log``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.forward import SSHForwarder

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.agent.server import Places

log = logging.getLogger("labkit.agent.sshd")

MAX_CONNECTIONS = 8
MAX_RELAYS = 16
MAX_SESSIONS = 16  # agent processes at once (a session channel each)
RELAY_LIFETIME = 3600.0
CONNECT_TIMEOUT = 10.0
LOGIN_TIMEOUT = 15.0
AGENT_EXIT_GRACE = 5.0


class ConfigError(Exception):
    """A bad argument or file; one sentence."""


@dataclass
class Relay:
    """Where the relay may go: ``targets`` address -> the place it is reached from."""

    ports: frozenset[int] = frozenset()
    targets: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None, places: Places) -> Relay:
        if path is None:
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ports = frozenset(int(p) for p in data.get("ports", []))
            targets = {str(ipaddress.ip_address(a)): places.check(ns) for a, ns in data.get("targets", {}).items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"cannot read the relay file {path} ({exc}); write "
                              '{"ports": [22], "targets": {"ADDRESS": "NAMESPACE"}}.') from None
        except Exception as exc:  # noqa: BLE001 - Places.check's RequestError: a foreign place
            raise ConfigError(f"relay file {path}: {exc}") from None
        if any(not 0 < p < 65536 for p in ports):
            raise ConfigError(f"relay file {path}: ports must be between 1 and 65535.")
        return cls(ports, targets)

    def place_of(self, host: str, port: int) -> str:
        """The place to open ``host:port`` from; raises ChannelOpenError when refused."""
        try:
            addr = str(ipaddress.ip_address(host))
        except ValueError:
            addr = ""
        if port not in self.ports:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                            f"labkit relay: port {port} is not allowed "
                                            f"(only {', '.join(map(str, sorted(self.ports))) or 'none'})")
        if addr not in self.targets:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                            f"labkit relay: {host} is not an address of this lab's nodes")
        return self.targets[addr]


class _RelayEnd(SSHForwarder):
    """The channel's side of one relay: counted, and closed after its lifetime."""

    def __init__(self, peer: SSHForwarder, server: AgentSSHServer, lifetime: float):
        super().__init__(peer)
        self._server = server
        self._timer = asyncio.get_running_loop().call_later(lifetime, self.close)
        self._counted = True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self._server.relays -= 1
            self._timer.cancel()
        super().connection_lost(exc)


@dataclass
class AgentSSHServer:
    instance: str | None  # None: host mode (the connection's user name is its instance)
    places: Places | None
    relay: Relay
    authorized: asyncssh.SSHAuthorizedKeys
    max_connections: int = MAX_CONNECTIONS
    max_relays: int = MAX_RELAYS
    relay_lifetime: float = RELAY_LIFETIME
    max_sessions: int = MAX_SESSIONS
    connections: int = 0
    relays: int = 0
    sessions: int = 0

    @property
    def host_mode(self) -> bool:
        return self.instance is None

    def relay_of(self, instance: str) -> Relay:
        """The relay of a host-mode connection: what the instance's host_setup wrote."""
        from labkit.agent.host import relay_file

        path = relay_file(instance)
        return Relay.load(path, Places(instance)) if path.is_file() else Relay()

    def factory(self) -> asyncssh.SSHServer:
        return _Conn(self)

    async def open_relay(self, host: str, port: int, place: str) -> _RelayEnd:
        loop = asyncio.get_running_loop()

        def connect() -> socket.socket:  # the socket belongs to the place's namespace
            return socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)

        try:
            sock = await loop.run_in_executor(
                None, lambda: run_in_netns(place, connect, timeout=CONNECT_TIMEOUT + 2))
            sock.setblocking(False)
            _, peer = await loop.create_connection(SSHForwarder, sock=sock)
        except (OSError, TimeoutError) as exc:
            self.relays -= 1
            log.info("relay to %s:%d from %s failed: %s", host, port, place, exc)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED,
                                            f"labkit relay: cannot reach {host}:{port} ({exc})") from None
        except BaseException:
            self.relays -= 1
            raise
        log.info("relay to %s:%d from %s opened (%d open)", host, port, place, self.relays)
        return _RelayEnd(peer, self, self.relay_lifetime)

    async def serve_agent(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """The agent's protocol on this session channel: a child agent joined to it."""
        if self.sessions >= self.max_sessions:
            log.warning("session refused: %d agents running already", self.sessions)
            process.stderr.write(f"labkit agent sshd: {self.sessions} agent sessions open already; "
                                 "close one and retry.\n".encode())
            process.exit(1)
            return
        if self.host_mode:
            instance = str(process.get_extra_info("username") or "")
            try:
                Places(instance)
            except ValueError:
                process.stderr.write(b"labkit agent sshd: the user name must be the instance's name.\n")
                process.exit(1)
                return
            argv = ["--instance", instance, "--host-ops"]
        else:
            assert self.instance is not None
            argv = ["--instance", self.instance]
        self.sessions += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-m", "labkit.agent", *argv,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None)
        except BaseException:
            self.sessions -= 1
            raise
        log.info("session: agent %d started", proc.pid)
        try:
            await process.redirect(stdin=proc.stdin, stdout=proc.stdout)
            ended = asyncio.ensure_future(proc.wait())
            closed = asyncio.ensure_future(process.wait_closed())
            await asyncio.wait({ended, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not ended.done():  # the client went away: its answers have nowhere to go
                proc.terminate()
                try:
                    await asyncio.wait_for(asyncio.shield(ended), AGENT_EXIT_GRACE)
                except TimeoutError:
                    proc.kill()
                    await ended
            if not closed.done():
                closed.cancel()
                process.exit(ended.result() if ended.result() >= 0 else 1)
        finally:
            self.sessions -= 1
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            log.info("session: agent %d ended (%s)", proc.pid, proc.returncode)


class _Conn(asyncssh.SSHServer):
    def __init__(self, server: AgentSSHServer):
        self.server = server
        self.conn: asyncssh.SSHServerConnection | None = None
        self.counted = False
        self.instance: str | None = None  # host mode: the user name of the login

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        if self.server.connections >= self.server.max_connections:
            log.warning("connection from %s refused: %d open already", peer, self.server.connections)
            conn.close()
            return
        self.server.connections += 1
        self.counted = True
        log.info("connection from %s (%d open)", peer, self.server.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self.server.connections -= 1

    def begin_auth(self, username: str) -> bool:
        assert self.conn is not None
        if self.server.host_mode:
            try:
                Places(username)
            except ValueError:
                log.warning("login as %r refused: not an instance name", username)
                return True  # no keys set: every key is refused
            self.instance = username
        self.conn.set_authorized_keys(self.server.authorized)
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        if self.server.host_mode:
            if self.instance is None:
                raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "labkit relay: no instance")
            try:
                relay = self.server.relay_of(self.instance)
            except ConfigError as exc:
                raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, str(exc)) from None
        else:
            relay = self.server.relay
        place = relay.place_of(dest_host, dest_port)
        if self.server.relays >= self.server.max_relays:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_RESOURCE_SHORTAGE,
                                            f"labkit relay: {self.server.relays} relays open already; "
                                            "close some and retry")
        self.server.relays += 1
        return self.server.open_relay(dest_host, dest_port, place)

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False


def read_client_keys(path: Path) -> asyncssh.SSHAuthorizedKeys:
    """The keys of an OpenSSH authorized-keys file, without their options (``restrict``,
    ``command=`` ...: this server allows nothing those would have to take away)."""
    lines = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the authorized keys {path} ({exc.strerror}).") from None
    for raw in text.splitlines():
        words = raw.split()
        for i, w in enumerate(words[:-1]):
            if w.startswith(("ssh-", "ecdsa-sha2-", "sk-")) and not w.endswith(","):
                lines.append(f"{w} {words[i + 1]}")
                break
    if not lines:
        raise ConfigError(f"the authorized keys file {path} has no key.")
    try:
        return asyncssh.import_authorized_keys("\n".join(lines) + "\n")
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ConfigError(f"the authorized keys file {path} has a bad key ({exc}).") from None


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen {value!r} is not ADDRESS:PORT.")
    return host.strip("[]"), int(port)


async def run(args: argparse.Namespace) -> None:
    if args.host_mode == bool(args.instance):
        raise ConfigError("give either --instance NAME or --host-mode (a GNS3 host), not both or neither.")
    places = Places(args.instance) if args.instance else None
    if args.relay and places is None:
        raise ConfigError("--relay is for one instance; in host mode each instance's setup writes its own.")
    relay = Relay.load(args.relay, places) if places is not None else Relay()
    server = AgentSSHServer(args.instance, places, relay,
                            read_client_keys(args.authorized_keys), args.max_connections, args.max_relays,
                            args.relay_lifetime, args.max_sessions)
    try:
        host_key = asyncssh.read_private_key(args.host_key)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(f"cannot read the host key {args.host_key} ({exc}).") from None
    host, port = _listen(args.listen)
    acceptor = await asyncssh.create_server(
        server.factory, host, port, server_host_keys=[host_key], process_factory=server.serve_agent,
        encoding=None, allow_pty=False, agent_forwarding=False, x11_forwarding=False, allow_scp=False,
        sftp_factory=None, login_timeout=LOGIN_TIMEOUT, keepalive_interval=30, keepalive_count_max=4,
        reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    if args.pid_file:
        fd = os.open(args.pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    log.info("labkit agent sshd for %s listening on %s:%d", args.instance or "every instance (host mode)", host, port)
    await stop.wait()
    acceptor.close()
    log.info("stopping")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.agent.sshd", description="labkit's grader agent SSH server")
    parser.add_argument("--instance")
    parser.add_argument("--host-mode", action="store_true",
                        help="a GNS3 host: serve every instance (the SSH user name names it)")
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT")
    parser.add_argument("--host-key", required=True, type=Path)
    parser.add_argument("--authorized-keys", required=True, type=Path)
    parser.add_argument("--relay", type=Path, help="JSON: allowed ports and targets (address -> place)")
    parser.add_argument("--log", type=Path)
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    parser.add_argument("--max-relays", type=int, default=MAX_RELAYS)
    parser.add_argument("--relay-lifetime", type=float, default=RELAY_LIFETIME)
    parser.add_argument("--max-sessions", type=int, default=MAX_SESSIONS)
    args = parser.parse_args(argv)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if args.log:
        handlers.append(logging.FileHandler(args.log))
    logging.basicConfig(level=logging.INFO, handlers=handlers, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        asyncio.run(run(args))
    except (ConfigError, ValueError) as exc:
        print(f"labkit agent sshd: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"labkit agent sshd: cannot listen on {args.listen} ({exc.strerror or exc}).", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
