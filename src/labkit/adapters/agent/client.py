"""Talk to the grader agent over one SSH channel (paramiko on a socket the provider opens).

The provider hands :class:`AgentSession` a connected socket (netns: created inside the
instance's ``lk-<name>.c`` namespace; Proxmox: plain TCP to the grader guest), the host key
it pinned when it made the agent's sshd, and the client key. One channel; requests are JSON
lines with an id; a reader thread matches answers to waiting requests, so many checks may
ask at once. :class:`AgentGround` is the :class:`GraderGround` over a session: ``where`` is
mapped to the agent's place by the provider's ``place_of``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import paramiko

from labkit.errors import AgentError
from labkit.models.evidence import Evidence
from labkit.models.probe import MAX_CALL_BYTES, EchoCall, ProbeCall

MAX_ANSWER = 64 << 20  # an answer line longer than this ends the session
SLACK = 10.0  # how much longer than the probe's own timeout the client waits


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ssh-keygen prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class _OpenFailure(logging.Filter):
    """Keeps (and silences) paramiko's "channel open FAILED: <server's reason>: <code>" line."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "open FAILED: " not in msg:
            return True
        self.reason = msg.split("open FAILED: ", 1)[1].rsplit(": ", 1)[0]
        return False


class _Waiter:
    __slots__ = ("event", "answer")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.answer: dict[str, Any] | None = None


class AgentSession:
    """One authenticated SSH channel to the agent."""

    def __init__(self, sock: socket.socket, *, host_key_fingerprint: str, client_key: paramiko.PKey,
                 username: str = "root", connect_timeout: float = 15.0, label: str = "the grader agent"):
        self.label = label
        self._pending: dict[int, _Waiter] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        self._why_closed = ""
        self.transport = paramiko.Transport(sock)
        try:
            self.transport.banner_timeout = connect_timeout
            self.transport.handshake_timeout = connect_timeout
            self.transport.start_client(timeout=connect_timeout)
            got = fingerprint(self.transport.get_remote_server_key())
            if got != host_key_fingerprint:
                raise AgentError(f"{label} presented host key {got}, not the pinned {host_key_fingerprint}; "
                                 "refusing to talk to it (run 'labkit down' and bring the instance up again).")
            self.transport.auth_publickey(username, client_key)
            self.channel = self.transport.open_session(timeout=connect_timeout)
            self.channel.exec_command("labkit-agent")  # the server's ForceCommand decides what runs
        except AgentError:
            self.transport.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.transport.close()
            raise AgentError(f"cannot open a session with {label}: {exc or type(exc).__name__}; "
                             "is the instance up ('labkit status')?") from None
        self._reader = threading.Thread(target=self._read, name="agent-reader", daemon=True)
        self._reader.start()
        self.hello = self.request({"op": "hello"}, timeout=connect_timeout)

    # ------------------------------------------------------------------ I/O
    def _read(self) -> None:
        buf = b""
        try:
            while True:
                data = self.channel.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._dispatch(line)
                if len(buf) > MAX_ANSWER:
                    self._why_closed = f"{self.label} sent an answer longer than {MAX_ANSWER} bytes"
                    break
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._why_closed = f"{self.label}'s channel failed: {exc}"
        finally:
            self._why_closed = self._why_closed or f"{self.label} closed the channel"
            self._closed.set()
            with self._lock:
                waiters = list(self._pending.values())
            for w in waiters:
                w.event.set()

    def _dispatch(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        with self._lock:
            w = self._pending.get(msg.get("id"))  # type: ignore[arg-type]
        if w is not None:
            w.answer = msg
            w.event.set()

    def request(self, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer (``timeout`` s + slack); raises
        :class:`AgentError` on an ``error`` answer, a timeout or a closed session."""
        rid = next(self._ids)
        data = json.dumps({"id": rid, **req}, allow_nan=False).encode() + b"\n"
        if len(data) > MAX_CALL_BYTES:
            raise AgentError(f"request to {self.label} is {len(data)} bytes; at most {MAX_CALL_BYTES}.")
        w = _Waiter()
        with self._lock:
            self._pending[rid] = w
        try:
            if self._closed.is_set():
                raise AgentError(f"{self._why_closed}; grade again, or bring the instance up again.")
            with self._send_lock:
                try:
                    self.channel.sendall(data)
                except (OSError, paramiko.SSHException) as exc:
                    raise AgentError(f"cannot send to {self.label}: {exc}.") from None
            if not w.event.wait(timeout + SLACK) or w.answer is None:
                if self._closed.is_set():
                    raise AgentError(f"{self._why_closed}; grade again, or bring the instance up again.")
                raise AgentError(f"{self.label} did not answer {req.get('op')!r} within {timeout + SLACK:.0f} s.")
        finally:
            with self._lock:
                self._pending.pop(rid, None)
        if "error" in w.answer:
            raise AgentError(f"{self.label}: {w.answer['error']}")
        return w.answer

    def open_relay(self, host: str, port: int, timeout: float = 15.0) -> paramiko.Channel:
        """A ``direct-tcpip`` channel to ``host:port``, opened by the agent's SSH server from
        the place that reaches it (``labkit agent-proxy``); refused destinations are an
        :class:`AgentError` with the server's reason."""
        why = _OpenFailure()  # paramiko logs the server's reason and raises only its code
        logger = logging.getLogger(self.transport.get_log_channel())
        logger.addFilter(why)
        try:
            return self.transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
        except paramiko.ChannelException as exc:
            raise AgentError(f"{self.label} refused a connection to {host}:{port}: "
                             f"{why.reason or exc.text}.") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise AgentError(f"{self.label} could not open a connection to {host}:{port}: {exc}.") from None
        finally:
            logger.removeFilter(why)

    def close(self) -> None:
        try:
            self.channel.shutdown_write()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.transport.close()
        self._reader.join(5)


class AgentGround:
    """The grader's ground in the agent: ``place_of(where)`` names the agent's place."""

    mode = "agent"

    def __init__(self, session: AgentSession, place_of: Callable[[str], str],
                 on_close: Callable[[], None] | None = None):
        self.session = session
        self.place_of = place_of
        self._on_close = on_close

    def run(self, where: str, call: ProbeCall, ev_id: str, timeout: float) -> Evidence:
        answer = self.session.request({"op": "probe", "place": self.place_of(where), "call": call.model_dump(),
                                       "ev_id": ev_id, "timeout": timeout}, timeout)
        ev = Evidence.model_validate(answer.get("evidence"))
        if ev.id != ev_id:  # the id names a file of the run: only the one asked for
            raise AgentError(f"{self.session.label} answered evidence {ev.id!r} for {ev_id!r}; refusing it.")
        return ev

    def echo(self, src: str, dst: str, call: EchoCall, timeout: float) -> dict[str, Any]:
        answer = self.session.request({"op": "echo", "src": self.place_of(src), "dst": self.place_of(dst),
                                       "call": call.model_dump(), "timeout": timeout}, timeout)
        result = answer.get("result")
        if not isinstance(result, dict):
            raise AgentError(f"{self.session.label} answered an echo without a result.")
        return result

    def open_relay(self, host: str, port: int) -> paramiko.Channel:
        return self.session.open_relay(host, port)

    def close(self) -> None:
        try:
            self.session.close()
        finally:
            if self._on_close:
                self._on_close()
