"""The agent SSH server's relay (``direct-tcpip``), for real on the mini instance: opened from
the place the relay file names, refused elsewhere, and bounded (open relays, their lifetime,
connections, agent sessions). A second server is started in ``lk-<name>.g`` on another port with its own
relay file and small bounds; the "node" is a TCP echo listener in vantage point ``vb``'s
namespace (10.77.0.2:22)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from labkit.adapters.agent.client import AgentSession
from labkit.adapters.netns.agentground import AGENT_ADDR, agent_ns, client_ns
from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.netns.provider import vantage_ns
from labkit.errors import AgentError

from tests.adapters.agent.conftest import Mini

pytestmark = [pytest.mark.root]

PORT = 2200


@contextlib.contextmanager
def echo_listener(ns: str, addr: str, port: int) -> Iterator[None]:
    """A TCP echo server whose socket lives in ``ns``; answers ``<peer address>:`` + the data."""
    srv = run_in_netns(ns, lambda: socket.create_server((addr, port)), timeout=5)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve(c: socket.socket) -> None:
        peer = c.getpeername()[0].encode()
        with c:
            c.settimeout(30)
            with contextlib.suppress(OSError):
                while data := c.recv(4096):
                    c.sendall(peer + b":" + data)

    def accept() -> None:
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(5)
        srv.close()


@contextlib.contextmanager
def relay_server(mini: Mini, **bounds: str) -> Iterator[Path]:
    d = Path(mini.state.provider_data["agent"]["dir"])
    relay = d / "relay-test.json"
    relay.write_text(json.dumps({"ports": [22], "targets": {"10.77.0.2": vantage_ns(mini.state.name, "va")}}))
    extra = [a for k, v in bounds.items() for a in (f"--{k.replace('_', '-')}", v)]
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{agent_ns(mini.state.name)}", sys.executable, "-I", "-m", "labkit.agent.sshd",
         "--instance", mini.state.name, "--listen", f"{AGENT_ADDR}:{PORT}", "--host-key", str(d / "host_key"),
         "--authorized-keys", str(d / "authorized_keys"), "--relay", str(relay), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                _connect(mini).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
                assert time.monotonic() < deadline, "the test server did not listen"
                time.sleep(0.1)
        yield d
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        relay.unlink(missing_ok=True)


def _connect(mini: Mini) -> socket.socket:
    return run_in_netns(client_ns(mini.state.name), lambda: socket.create_connection((AGENT_ADDR, PORT), timeout=5),
                        timeout=7)


def _session(mini: Mini) -> AgentSession:
    info = mini.state.provider_data["agent"]
    key = paramiko.Ed25519Key.from_private_key_file(info["client_key"])
    return AgentSession(_connect(mini), host_key_fingerprint=info["host_key_fingerprint"], client_key=key)


def _roundtrip(chan: paramiko.Channel, data: bytes) -> bytes:
    chan.settimeout(10)
    chan.sendall(data)
    return chan.recv(4096)


def test_relay_opens_from_the_named_place_and_refuses_the_rest(mini: Mini) -> None:
    with echo_listener(vantage_ns(mini.state.name, "vb"), "10.77.0.2", 22), relay_server(mini):
        s = _session(mini)
        try:
            chan = s.open_relay("10.77.0.2", 22)
            # the listener is in vb's namespace; the relay file names va: the connection comes
            # from va's address on the LAN (not from the server's own namespace, which has no route)
            assert _roundtrip(chan, b"hello") == b"10.77.0.1:hello"
            chan.close()
            for host, port, why in (("10.77.0.2", 80, "port 80 is not allowed"),
                                    ("10.77.0.9", 22, "not an address of this lab's nodes"),
                                    (AGENT_ADDR, 22, "not an address of this lab's nodes"),
                                    ("127.0.0.1", 22, "not an address of this lab's nodes")):
                with pytest.raises(AgentError, match=why):
                    s.open_relay(host, port)
            # the session's agent still answers after refusals
            assert s.request({"op": "hello"}, 10)["instance"] == mini.state.name
        finally:
            s.close()


def test_relays_are_bounded_in_number_and_time(mini: Mini) -> None:
    with echo_listener(vantage_ns(mini.state.name, "vb"), "10.77.0.2", 22), \
            relay_server(mini, max_relays="2", relay_lifetime="2"):
        s = _session(mini)
        try:
            a, b = s.open_relay("10.77.0.2", 22), s.open_relay("10.77.0.2", 22)
            assert _roundtrip(a, b"a").endswith(b":a") and _roundtrip(b, b"b").endswith(b":b")
            with pytest.raises(AgentError, match="2 relays open already"):
                s.open_relay("10.77.0.2", 22)
            # after their lifetime the server closes them, and new ones may open
            t0 = time.monotonic()
            a.settimeout(10)
            assert a.recv(10) == b"" and time.monotonic() - t0 < 5
            b.settimeout(10)
            assert b.recv(10) == b""
            time.sleep(0.3)
            c = s.open_relay("10.77.0.2", 22)
            assert _roundtrip(c, b"c").endswith(b":c")
            c.close()
        finally:
            s.close()


def test_connections_are_bounded(mini: Mini) -> None:
    with relay_server(mini, max_connections="2"):
        first, second = _session(mini), _session(mini)
        try:
            with pytest.raises(AgentError, match="cannot open a session"):
                _session(mini)
        finally:
            first.close()
            second.close()
        time.sleep(0.3)
        again = _session(mini)  # slots free again once those are closed
        again.close()


def test_agent_sessions_are_bounded(mini: Mini) -> None:
    with relay_server(mini, max_sessions="1"):
        s = _session(mini)  # its channel holds the one agent allowed
        try:
            extra = s.transport.open_session(timeout=10)
            extra.exec_command("labkit-agent")
            assert extra.recv_exit_status() == 1
            assert b"1 agent sessions open already" in extra.makefile_stderr("rb").read()
            assert s.request({"op": "hello"}, 10)["instance"] == mini.state.name
        finally:
            s.close()
        time.sleep(0.5)
        again = _session(mini)  # the slot is free once that session ended
        again.close()
