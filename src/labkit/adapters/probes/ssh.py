"""SSH probes (paramiko, pytest-testinfra), run inside a lab namespace.

The TCP socket is opened by the probe in the calling thread (so in its namespace) and
handed to paramiko. Only the given key file is used: no agent, no ~/.ssh keys, no
~/.ssh/config, no known_hosts (lab host keys are per instance; the fingerprint seen is
recorded in meta).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from functools import partial
from typing import Any

import paramiko

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from .tcp import open_tcp_socket
from labkit.adapters.probes.registry import probe

__all__ = ["host_facts", "ssh_run"]

_OUTPUT_MAX = 1 << 20  # per stream and command


class _ProbeFailure(Exception):
    """The probe could not run; ``stage`` says where (connect, auth, ssh)."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def _fingerprint(key: paramiko.PKey) -> dict[str, str]:
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return {"type": key.get_name(), "sha256": f"SHA256:{digest}"}


def _connect(host: str, port: int, user: str, key_file: str, timeout: float,
             meta: dict[str, Any]) -> paramiko.SSHClient:
    """Socket from this thread + paramiko client authenticated with ``key_file`` only."""
    addr = ip_literal(host)
    try:
        sock = open_tcp_socket(str(addr), port, timeout)
    except ConnectionRefusedError:
        raise _ProbeFailure("connect", f"connection to {host}:{port} refused") from None
    except TimeoutError:
        raise _ProbeFailure("connect", f"no TCP answer from {host}:{port} within {timeout} s") from None
    except OSError as exc:
        raise _ProbeFailure("connect", f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(
            str(addr),
            port=port,
            username=user,
            key_filename=key_file,
            sock=sock,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            look_for_keys=False,
            allow_agent=False,
        )
    except paramiko.AuthenticationException as exc:
        _record_host_key(client, meta)
        client.close()
        sock.close()
        raise _ProbeFailure("auth", f"authentication as {user!r} with {key_file} failed: {exc}") from None
    except (OSError, paramiko.SSHException, EOFError, ValueError) as exc:
        _record_host_key(client, meta)
        client.close()
        sock.close()
        raise _ProbeFailure("ssh", f"SSH session with {host}:{port} failed: {describe_exc(exc)}") from None
    _record_host_key(client, meta)
    return client


def _record_host_key(client: paramiko.SSHClient, meta: dict[str, Any]) -> None:
    transport = client.get_transport()
    if transport is None:
        return
    try:
        meta["host_key"] = _fingerprint(transport.get_remote_server_key())
        meta["server_version"] = transport.remote_version
    except (paramiko.SSHException, AttributeError):
        pass


def _exec(client: paramiko.SSHClient, cmd: str, timeout: float) -> dict[str, Any]:
    """Run one command; bounded by ``timeout`` seconds; output capped at 1 MiB per stream."""
    transport = client.get_transport()
    assert transport is not None
    chan = transport.open_session(timeout=timeout)
    out = bytearray()
    err = bytearray()
    timed_out = False
    try:
        chan.settimeout(0.1)
        chan.exec_command(cmd)
        deadline = time.monotonic() + timeout
        while True:
            progressed = False
            while chan.recv_ready():
                data = chan.recv(65536)
                if not data:
                    break
                if len(out) < _OUTPUT_MAX:
                    out += data[: _OUTPUT_MAX - len(out)]
                progressed = True
            while chan.recv_stderr_ready():
                data = chan.recv_stderr(65536)
                if not data:
                    break
                if len(err) < _OUTPUT_MAX:
                    err += data[: _OUTPUT_MAX - len(err)]
                progressed = True
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
            if not progressed:
                time.sleep(0.01)
        rc: int | None = None if timed_out else chan.recv_exit_status()
        if rc == -1:
            rc = None  # closed without an exit status (e.g. killed by a signal)
    finally:
        chan.close()
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    parsed_json: Any = None
    if stdout.strip():
        try:
            parsed_json = json.loads(stdout)
        except ValueError:
            parsed_json = None
    return {"cmd": cmd, "rc": rc, "stdout": stdout, "stderr": stderr, "json": parsed_json,
            "timed_out": timed_out}


def _transcript(results: list[dict[str, Any]]) -> str:
    parts = []
    for r in results:
        block = [f"$ {r['cmd']}"]
        if r["stdout"]:
            block.append(r["stdout"].rstrip("\n"))
        if r["stderr"]:
            block.append("[stderr] " + r["stderr"].rstrip("\n"))
        block.append("[timed out]" if r["timed_out"] else f"[rc={r['rc']}]")
        parts.append("\n".join(block))
    return "\n".join(parts)


@probe("ssh.ssh_run")
def ssh_run(
    host: str,
    commands: list[str],
    *,
    key_file: str,
    ev_id: str,
    source: str,
    check: str | None = None,
    user: str = "root",
    port: int = 22,
    timeout: float = 5.0,
) -> Evidence:
    """Log in with ``key_file`` and run each command in its own channel.

    ``timeout`` bounds the connection steps and each command. parsed: one entry per
    command: ``cmd``, ``rc`` (null if it timed out), ``stdout``, ``stderr``, ``json`` (stdout
    parsed if it is JSON, else null), ``timed_out``. Connection or authentication failure:
    ok=False, ``error`` says why, ``meta.failed_at`` is connect | auth | ssh.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    if isinstance(commands, str):
        commands = [commands]
    action = f"ssh -i {key_file} -p {port} {user}@{host} " + " ; ".join(repr(c) for c in commands)
    base = partial(evidence, ev_id=ev_id, check=check, kind="ssh", source=source,
                   target=f"{host}:{port}", action=action)
    meta: dict[str, Any] = {"netns": netns, "user": user}
    try:
        ip_literal(host)
        if not 0 < timeout <= 600:
            raise ValueError("timeout must be between 0 and 600 s")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)

    results: list[dict[str, Any]] = []
    client: paramiko.SSHClient | None = None
    try:
        client = _connect(host, port, user, key_file, timeout, meta)
        for cmd in commands:
            results.append(_exec(client, cmd, timeout))
    except _ProbeFailure as exc:
        meta["failed_at"] = exc.stage
        return base(started_at=started, ok=False, error=str(exc), meta=meta,
                    raw=_transcript(results), parsed=results or None)
    except (OSError, paramiko.SSHException, EOFError) as exc:
        meta["failed_at"] = "exec"
        return base(started_at=started, ok=False, error=f"SSH command failed: {describe_exc(exc)}",
                    meta=meta, raw=_transcript(results), parsed=results or None)
    finally:
        if client is not None:
            client.close()
    return base(started_at=started, ok=True, raw=_transcript(results), parsed=results, meta=meta)


@probe("ssh.host_facts")
def host_facts(
    host: str,
    *,
    key_file: str,
    ev_id: str,
    source: str,
    check: str | None = None,
    user: str = "root",
    port: int = 22,
    timeout: float = 10.0,
) -> Evidence:
    """Gather hostname, ``ip -j addr`` and ``ip -j route`` through pytest-testinfra (paramiko).

    The paramiko client is connected by this probe (socket from this thread, key file
    only) and handed to testinfra's paramiko backend, so testinfra reads no ~/.ssh config
    and uses no agent. ``timeout`` bounds the whole probe. parsed: ``hostname``,
    ``addresses`` (ip -j addr), ``routes`` (ip -j route), ``commands`` (rc per command).
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    action = f"testinfra paramiko://{user}@{host}:{port}: hostname; ip -j addr; ip -j route"
    base = partial(evidence, ev_id=ev_id, check=check, kind="ssh", source=source,
                   target=f"{host}:{port}", action=action)
    meta: dict[str, Any] = {"netns": netns, "user": user, "backend": "testinfra-paramiko"}
    try:
        addr = ip_literal(host)
        if not 0 < timeout <= 600:
            raise ValueError("timeout must be between 0 and 600 s")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)

    import testinfra.backend
    import testinfra.host

    client: paramiko.SSHClient | None = None
    watchdog: threading.Timer | None = None
    expired = threading.Event()
    cmds = {"hostname": "hostname", "addresses": "ip -j addr", "routes": "ip -j route"}
    lines: list[str] = []
    try:
        client = _connect(host, port, user, key_file, timeout, meta)

        def expire(c: paramiko.SSHClient = client) -> None:
            expired.set()
            c.close()  # unblocks testinfra's reads

        watchdog = threading.Timer(timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        hostspec = f"paramiko://{user}@[{addr}]:{port}" if addr.version == 6 else \
            f"paramiko://{user}@{addr}:{port}"
        # Not testinfra.get_host(): it caches Host objects process-wide by hostspec, and the
        # same address exists in many lab instances (namespaces) and may be probed concurrently.
        backend = testinfra.backend.get_backend(hostspec, ssh_identity_file=key_file,
                                                timeout=int(max(1, timeout)))
        # The paramiko backend connects lazily through a cached_property: hand it our client.
        backend.__dict__["client"] = client
        tihost = testinfra.host.Host(backend)
        backend.set_host(tihost)
        parsed: dict[str, Any] = {"commands": {}}
        for key, cmd in cmds.items():
            res = tihost.run(cmd)
            parsed["commands"][cmd] = res.rc
            lines.append(f"$ {cmd}\n{res.stdout.rstrip()}" + (f"\n[stderr] {res.stderr.rstrip()}"
                                                               if res.stderr else "") + f"\n[rc={res.rc}]")
            if key == "hostname":
                parsed[key] = res.stdout.strip() if res.rc == 0 else None
            else:
                try:
                    parsed[key] = json.loads(res.stdout) if res.rc == 0 else None
                except ValueError:
                    parsed[key] = None
    except _ProbeFailure as exc:
        meta["failed_at"] = exc.stage
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    except Exception as exc:  # noqa: BLE001 - testinfra wraps many errors
        if expired.is_set():
            err = f"gathering facts from {host} took longer than {timeout} s"
        else:
            err = f"gathering facts failed: {describe_exc(exc)}"
        meta["failed_at"] = "exec"
        return base(started_at=started, ok=False, error=err, meta=meta, raw="\n".join(lines))
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if client is not None:
            client.close()
    if expired.is_set():
        meta["failed_at"] = "exec"
        return base(started_at=started, ok=False, error=f"gathering facts from {host} took longer than "
                    f"{timeout} s", meta=meta, raw="\n".join(lines))
    return base(started_at=started, ok=True, raw="\n".join(lines), parsed=parsed, meta=meta)

