"""Probes for VPN labs, run inside a lab namespace (each calls ``assert_in_lab_netns()``
before anything is sent or started):

- ``udp_send`` / ``udp_receive``: a marker datagram sent from one vantage point and counted
  where it arrives, to prove it crossed the network (while a capture looks for it in clear);
- ``openvpn_hard_reset``: one OpenVPN ``P_CONTROL_HARD_RESET_CLIENT_V2`` packet; a server in
  TLS mode (without tls-auth/tls-crypt) answers ``P_CONTROL_HARD_RESET_SERVER_V2``, a
  static-key server stays silent;
- ``openvpn_impostor``: a real OpenVPN client of the grader's, with a fresh self-signed key
  and certificate and ``--dev null`` (no TUN device), started in the calling thread's
  namespace, bounded in time and always killed by its pid.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from functools import partial

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow

__all__ = ["openvpn_hard_reset", "openvpn_impostor", "udp_receive", "udp_send"]

P_CONTROL_HARD_RESET_CLIENT_V2 = 7
P_CONTROL_HARD_RESET_SERVER_V2 = 8
MAX_WAIT_S = 60.0
# Lines of an OpenVPN client's log that show the server accepted it.
ACCEPTED_MARKS = ("Peer Connection Initiated", "Initialization Sequence Completed", "PUSH: Received control message")
TLS_FAILED_MARKS = ("TLS Error", "TLS handshake failed", "VERIFY ERROR", "AUTH_FAILED", "tls-crypt unwrapping failed")


def udp_send(target: str, port: int, *, marker: str, ev_id: str, source: str, check: str | None = None,
             count: int = 5, interval: float = 0.05) -> Evidence:
    """Send ``count`` datagrams carrying ``marker`` to ``target:port``. The marker itself is
    not written to the evidence. parsed: ``sent``, ``send_errors``."""
    netns = assert_in_lab_netns()
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="udp", source=source, target=f"{target}:{port}",
                   action=f"send {count} UDP datagram(s) with a marker to {target}:{port}")
    try:
        addr = ip_literal(target)
        if not 1 <= count <= 100 or not 0 <= interval <= 1:
            raise ValueError("count must be in 1..100 and interval in 0..1 s")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta={"netns": netns})
    sent, errors = 0, []
    sock = socket.socket(socket.AF_INET if addr.version == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        for i in range(count):
            try:
                sock.sendto(f"{marker} {i}".encode(), (str(addr), port))
                sent += 1
            except OSError as exc:
                errors.append(describe_exc(exc))
            time.sleep(interval)
    finally:
        sock.close()
    return base(started_at=started, ok=True, raw=f"{sent} datagram(s) sent, {len(errors)} send error(s)",
                parsed={"sent": sent, "send_errors": errors[:5]}, meta={"netns": netns})


def udp_receive(port: int, *, marker: str, ev_id: str, source: str, check: str | None = None,
                duration_s: float = 5.0, expect: int = 1, ready: threading.Event | None = None) -> Evidence:
    """Listen on UDP ``port`` for at most ``duration_s`` s (or until ``expect`` datagrams
    with the marker came). parsed: ``received`` (with the marker), ``other`` (without)."""
    netns = assert_in_lab_netns()
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="udp", source=source, target=f"udp/{port}",
                   action=f"listen on UDP port {port} for a marker, at most {duration_s:g} s")
    if not 0 < duration_s <= MAX_WAIT_S:
        return base(started_at=started, ok=False, error=f"duration must be in (0, {MAX_WAIT_S:g}] s")
    received = other = 0
    senders: set[str] = set()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("0.0.0.0", port))
        if ready is not None:
            ready.set()
        deadline = time.monotonic() + duration_s
        while received < expect:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([sock], [], [], left)
            if not r:
                continue
            data, addr = sock.recvfrom(65535)
            if marker.encode() in data:
                received += 1
                senders.add(addr[0])
            else:
                other += 1
    except OSError as exc:
        return base(started_at=started, ok=False, error=describe_exc(exc), meta={"netns": netns})
    finally:
        sock.close()
    return base(started_at=started, ok=True, raw=f"{received} datagram(s) with the marker from {sorted(senders)}, "
                f"{other} other", parsed={"received": received, "other": other, "senders": sorted(senders)},
                meta={"netns": netns})


def openvpn_hard_reset(server: str, port: int, *, ev_id: str, source: str, check: str | None = None,
                       timeout: float = 2.0, tries: int = 2) -> Evidence:
    """Send an OpenVPN client hard reset (v2, no tls-auth) and wait for the server's.

    parsed: ``answered`` (a hard reset from the server came back), ``opcode`` of the first
    reply (or null), ``replies``."""
    netns = assert_in_lab_netns()
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="udp", source=source, target=f"{server}:{port}",
                   action=f"OpenVPN P_CONTROL_HARD_RESET_CLIENT_V2 to {server}:{port}/udp, {tries} x {timeout:g} s")
    try:
        addr = ip_literal(server)
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc))
    session = secrets.token_bytes(8)
    # opcode/key id, session id, ack array length 0, message packet id 0, no payload
    packet = bytes([P_CONTROL_HARD_RESET_CLIENT_V2 << 3]) + session + b"\x00" + struct.pack("!I", 0)
    sock = socket.socket(socket.AF_INET if addr.version == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
    opcodes: list[int] = []
    lines: list[str] = []
    try:
        sock.connect((str(addr), port))
        for attempt in range(1, tries + 1):
            sock.send(packet)
            lines.append(f"sent hard reset #{attempt} ({len(packet)} bytes)")
            r, _, _ = select.select([sock], [], [], timeout)
            if not r:
                lines.append(f"no answer within {timeout:g} s")
                continue
            try:
                data = sock.recv(65535)
            except ConnectionRefusedError:
                lines.append("ICMP port unreachable")
                break
            opcodes.append(data[0] >> 3 if data else -1)
            lines.append(f"answer: {len(data)} bytes, opcode {opcodes[-1]}")
            break
    except OSError as exc:
        return base(started_at=started, ok=False, error=describe_exc(exc), meta={"netns": netns})
    finally:
        sock.close()
    return base(started_at=started, ok=True, raw="\n".join(lines),
                parsed={"answered": P_CONTROL_HARD_RESET_SERVER_V2 in opcodes,
                        "opcode": opcodes[0] if opcodes else None, "replies": len(opcodes),
                        "port_unreachable": any("unreachable" in x for x in lines)},
                meta={"netns": netns})


def _fresh_identity(folder: str) -> None:
    """A fresh EC key and a self-signed client certificate no lab CA ever signed."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", os.path.join(folder, "impostor.key"), "-out", os.path.join(folder, "impostor.crt"),
         "-days", "1", "-subj", "/CN=laptop", "-addext", "extendedKeyUsage=clientAuth"],
        check=True, capture_output=True, timeout=20)


def openvpn_impostor(server: str, port: int, *, ca_pem: str, ev_id: str, source: str, check: str | None = None,
                     wait_s: float = 8.0) -> Evidence:
    """Run an OpenVPN TLS client with a fresh key against ``server:port`` until the server
    accepts it, a TLS error is logged, or ``wait_s`` s pass; then kill it by pid. It trusts
    the lab's CA (``ca_pem``, public) to verify the server, but its own certificate is
    self-signed, and it offers a made-up user name and password to a server that asks.

    parsed: ``accepted`` (the server opened a session: a line of ACCEPTED_MARKS),
    ``tls_failed`` (a TLS error was logged), ``exit`` (how the process ended), ``log_tail``."""
    netns = assert_in_lab_netns()
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="exec", source=source, target=f"{server}:{port}",
                   action=f"openvpn --client --dev null (fresh self-signed key) to {server}:{port}/udp, "
                          f"killed after at most {wait_s:g} s")
    meta: dict[str, object] = {"netns": netns}
    if not 0 < wait_s <= MAX_WAIT_S:
        return base(started_at=started, ok=False, error=f"wait must be in (0, {MAX_WAIT_S:g}] s", meta=meta)
    if shutil.which("openvpn") is None:
        return base(started_at=started, ok=False, error="openvpn is not installed on the grader's machine", meta=meta)
    try:
        addr = ip_literal(server)
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    log: list[str] = []
    accepted = tls_failed = False
    exit_how = "killed"
    with tempfile.TemporaryDirectory(prefix="labkit-impostor-") as d:
        try:
            _fresh_identity(d)
        except (OSError, subprocess.SubprocessError) as exc:
            return base(started_at=started, ok=False, error=f"could not make a fresh key: {describe_exc(exc)}",
                        meta=meta)
        with open(os.path.join(d, "ca.crt"), "w") as fh:
            fh.write(ca_pem)
        # made-up credentials, for a server that asks for some
        with open(os.path.join(d, "auth.txt"), "w") as fh:
            fh.write(f"impostor-{secrets.token_hex(4)}\n{secrets.token_hex(12)}\n")
        argv = ["openvpn", "--client", "--dev", "null", "--proto", "udp", "--remote", str(addr), str(port),
                "--nobind", "--ca", "ca.crt", "--cert", "impostor.crt", "--key", "impostor.key",
                "--remote-cert-tls", "server", "--auth-user-pass", "auth.txt", "--auth-nocache",
                "--ifconfig-noexec", "--route-noexec", "--connect-retry-max", "1",
                "--hand-window", str(max(1, int(wait_s))), "--verb", "3", "--script-security", "0"]
        try:
            proc = subprocess.Popen(argv, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        except OSError as exc:
            return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
        meta["pid"] = proc.pid
        try:
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)
            deadline = time.monotonic() + wait_s
            buf = ""
            while time.monotonic() < deadline and not accepted and not tls_failed:
                r, _, _ = select.select([proc.stdout], [], [], 0.2)
                if r:
                    chunk = proc.stdout.read() or ""
                    if not chunk and proc.poll() is not None:
                        exit_how = f"exited {proc.returncode}"
                        break
                    buf += chunk
                    *done, buf = buf.split("\n")
                    for line in done:
                        log.append(line)
                        accepted = accepted or any(m in line for m in ACCEPTED_MARKS)
                        tls_failed = tls_failed or any(m in line for m in TLS_FAILED_MARKS)
                elif proc.poll() is not None:
                    exit_how = f"exited {proc.returncode}"
                    break
        finally:
            if proc.poll() is None:
                proc.kill()  # by pid: the Popen object's own child
            proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
    tail = [x.split(" ", 5)[-1] if x[:4].isdigit() else x for x in log[-25:]]
    return base(started_at=started, ok=True, raw="\n".join(log[-60:]),
                parsed={"accepted": accepted, "tls_failed": tls_failed, "exit": exit_how, "log_tail": tail},
                meta=meta)
