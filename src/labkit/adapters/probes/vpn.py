"""Probes for VPN labs, run inside a lab namespace (each calls ``assert_in_lab_netns()``
before anything is sent or started), and the grader's view of a node's tunnel daemons:

- ``udp_send`` / ``udp_receive``: a marker datagram sent from one vantage point and counted
  where it arrives, to prove it crossed the network (while a capture looks for it in clear);
- ``openvpn_hard_reset``: one OpenVPN ``P_CONTROL_HARD_RESET_CLIENT_V2`` packet; a server in
  TLS mode (without tls-auth/tls-crypt) answers ``P_CONTROL_HARD_RESET_SERVER_V2``, a
  static-key server stays silent;
- ``OpenvpnClient``: a real OpenVPN client of the grader's, with a given identity (the
  laptop's) or a fresh self-signed one (``openvpn_impostor``), ``--dev null`` or a TUN device
  in the vantage namespace whose routes the grader sets itself; bounded in time, always
  killed by its pid, its files in a private temporary folder;
- ``cert_issued_by``: the grader's own ``openssl verify`` of a certificate against a CA;
- ``route_oif``: the interface a node's kernel routes an address through (netlink);
- ``tun_holders`` / ``kill_pids``: the processes of a node that hold a TUN device, read from
  the host's ``/proc`` (kernel-made, whatever the node mounts on its own ``/proc``), and
  SIGKILL through pidfds.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import select
import shutil
import signal
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
from labkit.adapters.probes import rendezvous
from labkit.adapters.probes.registry import probe

__all__ = ["OpenvpnClient", "cert_issued_by", "kill_pids", "openvpn_hard_reset", "openvpn_impostor", "route_oif",
           "tun_holders", "udp_receive", "udp_send"]

P_CONTROL_HARD_RESET_CLIENT_V2 = 7
P_CONTROL_HARD_RESET_SERVER_V2 = 8
MAX_WAIT_S = 60.0


@probe("vpn.udp_send")
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


@probe("vpn.udp_receive")
def udp_receive(port: int, *, marker: str, ev_id: str, source: str, check: str | None = None,
                duration_s: float = 5.0, expect: int = 1, ready: threading.Event | str | None = None) -> Evidence:
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
        if (ready_ev := rendezvous.event(ready)) is not None:
            ready_ev.set()
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


@probe("vpn.openvpn_hard_reset")
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
         "-keyout", os.path.join(folder, "client.key"), "-out", os.path.join(folder, "client.crt"),
         "-days", "1", "-subj", "/CN=laptop", "-addext", "extendedKeyUsage=clientAuth"],
        check=True, capture_output=True, timeout=20)


def cert_issued_by(cert_pem: str, ca_pem: str) -> tuple[bool, str]:
    """Whether ``cert_pem`` chains to ``ca_pem``, checked by the grader's own ``openssl
    verify`` on the grader's machine (nothing of the lab runs). Returns (ok, openssl's line)."""
    with tempfile.TemporaryDirectory(prefix="labkit-verify-") as d:
        for name, pem in (("ca.crt", ca_pem), ("cert.crt", cert_pem)):
            with open(os.path.join(d, name), "w") as fh:
                fh.write(pem)
        try:
            res = subprocess.run(["openssl", "verify", "-CAfile", "ca.crt", "-purpose", "sslclient", "cert.crt"],
                                 cwd=d, capture_output=True, text=True, timeout=20,
                                 env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.SubprocessError) as exc:
            return False, describe_exc(exc)
    out = (res.stdout + res.stderr).strip().splitlines()
    return res.returncode == 0, (out[-1] if out else f"exit {res.returncode}")[:300]


# What an OpenVPN client's log says (the log runs with --suppress-timestamps, and a mark only
# counts at the start of a line: the server's certificate names, which the candidate writes,
# appear in the middle of lines).
SERVER_ANSWERED = "TLS: Initial packet from "
SERVER_VERIFIED = "VERIFY OK: depth=0"
CLIENT_REFUSED_SERVER = "VERIFY ERROR"
SESSION_MARKS = ("Initialization Sequence Completed", "PUSH: Received control message: 'PUSH_REPLY")
TLS_FAILED_MARKS = ("TLS Error", "TLS handshake failed", "AUTH_FAILED", "tls-crypt unwrapping failed")
# pushed options a grader client never applies (its namespace is the grader's)
PULL_IGNORED = ("redirect-gateway", "redirect-private", "dhcp-option", "setenv", "route-ipv6", "ifconfig-ipv6",
                "block-outside-dns", "register-dns")


def _scan_log(lines: list[str]) -> dict[str, object]:
    answered = any(x.startswith(SERVER_ANSWERED) for x in lines)
    push = next((x for x in lines if x.startswith(SESSION_MARKS[1])), None)
    pushed = push.split("'", 1)[1].rstrip("'").split(",")[1:] if push else []
    tun_ip = next((o.split()[1] for o in pushed if o.startswith("ifconfig ") and len(o.split()) >= 2), None)
    return {
        "server_answered": answered,
        "server_verified": any(x.startswith(SERVER_VERIFIED) for x in lines),
        "client_refused_server": any(x.startswith(CLIENT_REFUSED_SERVER) for x in lines),
        "accepted": any(x.startswith(SESSION_MARKS) for x in lines),
        "tls_failed": any(x.startswith(m) for x in lines for m in TLS_FAILED_MARKS),
        "pushed_routes": [o[6:] for o in pushed if o.startswith("route ")][:20],
        "tun_ip": tun_ip,
    }


class OpenvpnClient:
    """An OpenVPN TLS client of the grader's, started in the calling thread's lab namespace
    with the identity it is given (or a fresh self-signed one), its log in a private
    temporary folder, always ended by its pid (:meth:`stop`).

    ``dev="null"``: no TUN device, the session alone is observed; ``dev="tun"``: a TUN
    device ``lkrw0`` in the vantage namespace, pushed routes never applied (``route-noexec``)
    and ``routes`` set by the grader itself through the tunnel instead."""

    TUN = "lkrw0"

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, server: str, port: int, *, ca_pem: str, cert_pem: str | None, key_pem: str | None, ev_id: str,
              source: str, check: str | None = None, wait_s: float = 8.0, dev: str = "null",
              routes: list[str] | None = None, label: str = "client") -> Evidence:
        netns = assert_in_lab_netns()
        started = utcnow()
        fresh = cert_pem is None
        who = "fresh self-signed key" if fresh else "given certificate"
        base = partial(evidence, ev_id=ev_id, check=check, kind="exec", source=source, target=f"{server}:{port}",
                       action=f"openvpn --client --dev {dev} ({who}) to {server}:{port}/udp, at most {wait_s:g} s "
                              "for a session")
        meta: dict[str, object] = {"netns": netns, "role": label}
        if not 0 < wait_s <= MAX_WAIT_S or dev not in ("null", "tun"):
            return base(started_at=started, ok=False, error=f"wait must be in (0, {MAX_WAIT_S:g}] s, dev null or tun",
                        meta=meta)
        if shutil.which("openvpn") is None:
            return base(started_at=started, ok=False, error="openvpn is not installed on the grader's machine",
                        meta=meta)
        try:
            addr = ip_literal(server)
            nets = [str(ipaddress.ip_network(r, strict=False)) for r in routes or []]
        except ValueError as exc:
            return base(started_at=started, ok=False, error=str(exc), meta=meta)
        self.dir = tempfile.TemporaryDirectory(prefix="labkit-ovpn-")
        d = self.dir.name
        try:
            if fresh:
                _fresh_identity(d)
            else:
                for name, pem in (("client.crt", cert_pem or ""), ("client.key", key_pem or "")):
                    fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as fh:
                        fh.write(pem)
        except (OSError, subprocess.SubprocessError) as exc:
            self.stop()
            return base(started_at=started, ok=False, error=f"could not write the client identity: {describe_exc(exc)}",
                        meta=meta)
        with open(os.path.join(d, "ca.crt"), "w") as fh:
            fh.write(ca_pem)
        # made-up credentials, for a server that asks for some
        with open(os.path.join(d, "auth.txt"), "w") as fh:
            fh.write(f"grader-{secrets.token_hex(4)}\n{secrets.token_hex(12)}\n")
        argv = ["openvpn", "--client", "--proto", "udp", "--remote", str(addr), str(port), "--nobind",
                "--ca", "ca.crt", "--cert", "client.crt", "--key", "client.key", "--remote-cert-tls", "server",
                "--auth-user-pass", "auth.txt", "--auth-nocache", "--route-noexec", "--connect-retry-max", "1",
                "--hand-window", str(max(1, int(wait_s))), "--verb", "3", "--suppress-timestamps",
                "--script-security", "0", "--log", "client.log"]
        for opt in PULL_IGNORED:
            argv += ["--pull-filter", "ignore", opt]
        argv += ["--dev", self.TUN, "--dev-type", "tun"] if dev == "tun" else ["--dev", "null", "--ifconfig-noexec"]
        try:
            self.proc = subprocess.Popen(argv, cwd=d, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True,
                                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        except OSError as exc:
            self.stop()
            return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
        meta["pid"] = self.proc.pid
        exit_how = "running"
        lines: list[str] = []
        deadline = time.monotonic() + wait_s
        while True:
            lines = self._log()
            state = _scan_log(lines)
            if self.proc.poll() is not None:
                exit_how = f"exited {self.proc.returncode}"
                break
            if state["accepted"] or state["tls_failed"] or state["client_refused_server"]:
                break
            if time.monotonic() >= deadline:
                exit_how = "no outcome in time"
                break
            time.sleep(0.1)
        state = _scan_log(lines)
        routed: list[str] = []
        if dev == "tun" and state["accepted"] and self.proc.poll() is None:
            assert_in_lab_netns()
            for net in nets:
                res = run_bounded_ip(["route", "replace", net, "dev", self.TUN])
                if res:
                    lines.append(f"[grader] ip route replace {net} dev {self.TUN}: {res}")
                else:
                    routed.append(net)
        if not (dev == "tun" and state["accepted"]):
            self.stop()
            exit_how = exit_how if exit_how != "running" else "killed"
        tail = lines[-30:]
        return base(started_at=started, ok=True, raw="\n".join(lines[-60:]),
                    parsed={**state, "exit": exit_how, "routes_set": routed, "log_tail": tail}, meta=meta)

    def _log(self) -> list[str]:
        if self.dir is None:
            return []
        try:
            with open(os.path.join(self.dir.name, "client.log"), errors="replace") as fh:
                return fh.read(1 << 20).splitlines()
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        """Kill the client by its pid (the Popen object's own child) and remove its folder."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.dir is not None:
            self.dir.cleanup()
            self.dir = None


def run_bounded_ip(argv: list[str]) -> str:
    """``ip ARGV`` in the calling thread's lab namespace; '' on success, else the error."""
    assert_in_lab_netns()
    try:
        res = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=10,
                             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    except (OSError, subprocess.SubprocessError) as exc:
        return describe_exc(exc)
    return "" if res.returncode == 0 else (res.stderr.strip() or f"exit {res.returncode}")[:200]


@probe("vpn.openvpn_impostor")
def openvpn_impostor(server: str, port: int, *, ca_pem: str, ev_id: str, source: str, check: str | None = None,
                     wait_s: float = 8.0) -> Evidence:
    """An OpenVPN TLS client with a fresh self-signed key against ``server:port``, until the
    server accepts it, a TLS error is logged, or ``wait_s`` s pass; then killed by pid. It
    trusts the lab's published CA (``ca_pem``) to verify the server.

    parsed: ``accepted`` (a session: a pushed reply or an initialised tunnel),
    ``server_answered`` (the server's TLS reset came), ``server_verified`` (the server's
    certificate chains to ``ca_pem``), ``client_refused_server``, ``tls_failed``, ``exit``,
    ``log_tail``."""
    return OpenvpnClient().start(server, port, ca_pem=ca_pem, cert_pem=None, key_pem=None, ev_id=ev_id,
                                 source=source, check=check, wait_s=wait_s, label="impostor")


# ----------------------------------------------------------- tunnel daemons of a node
@probe("vpn.route_oif")
def route_oif(target: str, *, ev_id: str, source: str, check: str | None = None,
              from_addr: str | None = None) -> Evidence:
    """The interface the calling thread's namespace (a node) routes ``target`` through, read
    from the kernel over netlink (nothing runs in the node). With ``from_addr``: the route a
    packet from ``from_addr`` arriving on the interface facing it is forwarded by (policy
    routing included), as the node forwards that LAN's traffic. parsed: ``oif``, ``iif``,
    ``gateway``."""
    from pyroute2 import IPRoute

    netns = assert_in_lab_netns()
    started = utcnow()
    action = f"netlink route get {target}" + (f" from {from_addr} (forwarded)" if from_addr else "")
    base = partial(evidence, ev_id=ev_id, check=check, kind="netlink", source=source, target=target, action=action)
    iif_name = None
    try:
        ip_literal(target)
        with IPRoute() as ipr:
            def name(index: int | None) -> str | None:
                return ipr.get_links(index)[0].get_attr("IFLA_IFNAME") if index else None

            if from_addr:
                ip_literal(from_addr)
                iif = ipr.route("get", dst=from_addr)[0].get_attr("RTA_OIF")
                iif_name = name(iif)
                msg = ipr.route("get", dst=target, src=from_addr, iif=iif)[0]
            else:
                msg = ipr.route("get", dst=target)[0]
            oif = name(msg.get_attr("RTA_OIF"))
            gw = msg.get_attr("RTA_GATEWAY")
    except Exception as exc:  # noqa: BLE001 - no route is an answer too
        return base(started_at=started, ok=True, raw=f"no route: {describe_exc(exc)}",
                    parsed={"oif": None, "iif": iif_name, "gateway": None, "error": describe_exc(exc)},
                    meta={"netns": netns})
    return base(started_at=started, ok=True, raw=f"{target} via {gw or '-'} dev {oif} (from {iif_name or 'here'})",
                parsed={"oif": oif, "iif": iif_name, "gateway": gw}, meta={"netns": netns})


def _ino(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def tun_holders(init_pid: int) -> list[dict[str, object]]:
    """Processes in the same PID and network namespaces as ``init_pid`` (a node's init) that
    hold a TUN device, read from the host's ``/proc`` (what the kernel says, not what the
    node's own ``/proc`` mount shows): ``pid`` (host), ``nspid`` (in the node), ``comm``,
    ``iff`` (the TUN interface names)."""
    pidns, netns = _ino(f"/proc/{init_pid}/ns/pid"), _ino(f"/proc/{init_pid}/ns/net")
    if pidns is None or netns is None:
        raise ProcessLookupError(f"the node's init (pid {init_pid}) is gone")
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if _ino(f"/proc/{pid}/ns/pid") != pidns or _ino(f"/proc/{pid}/ns/net") != netns:
            continue
        iffs: set[str] = set()
        try:
            for fd in os.listdir(f"/proc/{pid}/fdinfo"):
                try:
                    with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                        for line in fh:
                            if line.startswith("iff:"):
                                iffs.add(line.split(":", 1)[1].strip())
                except OSError:
                    continue
            with open(f"/proc/{pid}/comm") as fh:
                comm = fh.read().strip()
            with open(f"/proc/{pid}/status") as fh:
                nspid = next((ln.split()[-1] for ln in fh if ln.startswith("NSpid:")), "?")
        except OSError:
            continue  # the process ended meanwhile
        if iffs:
            out.append({"pid": pid, "nspid": nspid, "comm": comm[:32], "iff": sorted(iffs)})
    return out


def kill_pids(pids: list[int], wait_s: float = 5.0) -> dict[str, object]:
    """SIGKILL each pid through a pidfd (no pid reuse race), then wait until each has ended.
    Returns ``killed`` (pids signalled), ``gone`` (all ended within ``wait_s``), ``errors``."""
    fds: dict[int, int] = {}
    errors: list[str] = []
    for pid in pids:
        try:
            fds[pid] = os.pidfd_open(pid)
            signal.pidfd_send_signal(fds[pid], signal.SIGKILL)
        except OSError as exc:
            errors.append(f"{pid}: {describe_exc(exc)}")
    deadline = time.monotonic() + wait_s
    alive = dict(fds)
    try:
        while alive and time.monotonic() < deadline:
            r, _, _ = select.select(list(alive.values()), [], [], max(0.0, deadline - time.monotonic()))
            for pid in [p for p, fd in alive.items() if fd in r]:
                del alive[pid]
    finally:
        for fd in fds.values():
            os.close(fd)
    return {"killed": sorted(fds), "gone": not alive and not errors, "errors": errors}


@probe("vpn.udp_send_when_ready")
def udp_send_when_ready(target: str, port: int, *, marker: str, ev_id: str, source: str, check: str | None = None,
                        count: int = 5, wait_for: list[str], stop: str, ready_wait_s: float = 10.0) -> Evidence:
    """Wait until every signal of ``wait_for`` is set (the captures and the receiver listen),
    send like :func:`udp_send`, then set ``stop`` one second later (the last datagrams cross
    before the captures stop) — also when nothing could be sent."""
    try:
        if not all(rendezvous.event(name).wait(ready_wait_s) for name in wait_for):  # type: ignore[union-attr]
            raise TimeoutError(f"capture or receiver not ready within {ready_wait_s:g} s")
        time.sleep(0.2)
        return udp_send(target, port, marker=marker, ev_id=ev_id, source=source, check=check, count=count)
    finally:
        time.sleep(1.0)
        rendezvous.event(stop).set()  # type: ignore[union-attr]


@probe("vpn.client_start")
def client_start(server: str, port: int, *, handle: str, ca_pem: str, cert_pem: str | None, key_pem: str | None,
                 ev_id: str, source: str, check: str | None = None, wait_s: float = 8.0, dev: str = "null",
                 routes: list[str] | None = None, label: str = "client") -> Evidence:
    """Start the grader's :class:`OpenvpnClient` here and keep it under ``handle`` until
    :func:`client_stop` (or the end of the process that runs the probes)."""
    client = OpenvpnClient()
    rendezvous.put(handle, client)
    return client.start(server, port, ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem, ev_id=ev_id, source=source,
                        check=check, wait_s=wait_s, dev=dev, routes=routes, label=label)


@probe("vpn.client_stop")
def client_stop(handle: str, *, ev_id: str, source: str, check: str | None = None) -> Evidence:
    """End the client started under ``handle`` (by its pid) and remove its folder."""
    started = utcnow()
    client = rendezvous.take(handle)
    if isinstance(client, OpenvpnClient):
        client.stop()
    return evidence(ev_id=ev_id, check=check, kind="exec", source=source, target=handle,
                    action="stop the openvpn client",
                    started_at=started, ok=True, parsed={"stopped": client is not None})
