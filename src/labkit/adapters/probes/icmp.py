"""ICMP echo probes on a raw socket (needs root), run inside a lab namespace.

Both probes build their own echo requests: one random identifier per call, a per-call
token in the payload, and replies are matched on identifier + sequence + source address
(+ token), so concurrent probes in the same namespace do not see each other's answers.
"""

from __future__ import annotations

import ipaddress
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from functools import partial

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from labkit.adapters.probes.registry import probe

__all__ = ["ping", "wait_reachable"]

_ECHO_REQUEST = {4: 8, 6: 128}
_ECHO_REPLY = {4: 0, 6: 129}
# ICMP errors that quote our request: v4 dest-unreachable, time-exceeded; v6 the same two.
_ERROR_TYPES = {4: {3: "destination-unreachable", 11: "time-exceeded"},
                6: {1: "destination-unreachable", 3: "time-exceeded"}}
_TOKEN_LEN = 8
_MAX_COUNT = 1000
_MAX_DEADLINE_S = 3600.0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


@dataclass
class _Event:
    kind: str  # "reply" | "error"
    seq: int
    src: str
    at: float  # monotonic receive time
    ttl: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass
class _EchoSocket:
    """One raw ICMP socket bound to one target and one identifier."""

    target: ipaddress.IPv4Address | ipaddress.IPv6Address
    ident: int = field(default_factory=lambda: secrets.randbelow(0xFFFF) + 1)
    token: bytes = field(default_factory=lambda: secrets.token_bytes(_TOKEN_LEN))
    sock: socket.socket | None = None

    @property
    def family(self) -> int:
        return self.target.version

    def _is_target(self, addr: str) -> bool:
        """``addr`` is the target (IPv6 scope ids, e.g. fe80::1%eth0, are ignored)."""
        try:
            return ipaddress.ip_address(addr.split("%")[0]) == self._bare
        except ValueError:
            return False

    @property
    def _bare(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(str(self.target).split("%")[0])

    def open(self) -> None:
        if self.family == 4:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        else:
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        self.sock.setblocking(False)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def packet(self, seq: int) -> bytes:
        payload = self.token + struct.pack("!d", time.time()) + bytes(range(40))
        header = struct.pack("!BBHHH", _ECHO_REQUEST[self.family], 0, 0, self.ident, seq & 0xFFFF)
        if self.family == 4:
            csum = _checksum(header + payload)
            header = struct.pack("!BBHHH", _ECHO_REQUEST[4], 0, csum, self.ident, seq & 0xFFFF)
        # ICMPv6: the kernel fills in the checksum (it needs the pseudo-header).
        return header + payload

    def send(self, seq: int) -> str | None:
        """Send echo ``seq``; return None or the send error (a network outcome)."""
        assert self.sock is not None
        try:
            self.sock.sendto(self.packet(seq), (str(self.target), 0))
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    def wait(self, until: float) -> list[_Event]:
        """Wait until ``until`` (monotonic) for readable data; return matched events."""
        assert self.sock is not None
        delay = max(0.0, until - time.monotonic())
        readable, _, _ = select.select([self.sock], [], [], delay)
        events: list[_Event] = []
        if not readable:
            return events
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            ev = self._match(data, addr[0], time.monotonic())
            if ev is not None:
                events.append(ev)
        return events

    def _match(self, data: bytes, src: str, at: float) -> _Event | None:
        ttl: int | None = None
        if self.family == 4:
            if len(data) < 20:
                return None
            ihl = (data[0] & 0x0F) * 4
            ttl = data[8]
            icmp = data[ihl:]
        else:
            icmp = data  # IPv6 raw sockets deliver no IP header
        if len(icmp) < 8:
            return None
        itype, code, _csum, ident, seq = struct.unpack("!BBHHH", icmp[:8])
        if itype == _ECHO_REPLY[self.family]:
            if ident != self.ident or icmp[8 : 8 + _TOKEN_LEN] != self.token:
                return None
            if not self._is_target(src):
                return None
            return _Event("reply", seq, src, at, ttl=ttl)
        if itype in _ERROR_TYPES[self.family]:
            quoted = icmp[8:]
            if self.family == 4:
                if len(quoted) < 20:
                    return None
                qihl = (quoted[0] & 0x0F) * 4
                qdst = socket.inet_ntop(socket.AF_INET, quoted[16:20])
                qicmp = quoted[qihl:]
            else:
                if len(quoted) < 40:
                    return None
                qdst = socket.inet_ntop(socket.AF_INET6, quoted[24:40])
                qicmp = quoted[40:]
            if len(qicmp) < 8 or not self._is_target(qdst):
                return None
            qtype, _qc, _qs, qident, qseq = struct.unpack("!BBHHH", qicmp[:8])
            if qtype != _ECHO_REQUEST[self.family] or qident != self.ident:
                return None
            return _Event("error", qseq, src, at, icmp_type=itype, icmp_code=code)
        return None


def _error_name(family: int, itype: int | None) -> str:
    return _ERROR_TYPES[family].get(itype or -1, f"type-{itype}")


@probe("icmp.ping")
def ping(
    target: str,
    *,
    ev_id: str,
    source: str,
    check: str | None = None,
    count: int = 3,
    interval: float = 0.2,
    timeout: float = 1.0,
) -> Evidence:
    """Send ``count`` echo requests ``interval`` s apart; each may be answered within ``timeout`` s.

    Runs for at most ``(count - 1) * interval + timeout`` seconds. parsed: ``sent``,
    ``received``, ``rtt_ms`` (list, in sequence order), ``reachable`` (any reply), plus
    ``replies`` (seq, rtt_ms, ttl), ``late`` (seqs answered after ``timeout``),
    ``icmp_errors`` (unreachable / time exceeded sent back by a router) and ``send_errors``.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    action = f"ping -c {count} -i {interval} -W {timeout} {target} (raw ICMP echo)"
    base = partial(evidence, ev_id=ev_id, check=check, kind="icmp", source=source, target=target, action=action)
    try:
        addr = ip_literal(target)
        if not 1 <= count <= _MAX_COUNT:
            raise ValueError(f"count must be between 1 and {_MAX_COUNT}")
        if interval < 0 or not 0 < timeout <= 60:
            raise ValueError("interval must be >= 0 and timeout between 0 and 60 s")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc))

    es = _EchoSocket(addr)
    meta = {"netns": netns, "identifier": es.ident, "family": addr.version}
    try:
        es.open()
        sent_at: dict[int, float] = {}
        rtt: dict[int, float] = {}
        ttls: dict[int, int | None] = {}
        late: list[int] = []
        icmp_errors: list[dict[str, object]] = []
        send_errors: list[dict[str, object]] = []
        lines: list[str] = []
        t0 = time.monotonic()
        seq = 0
        next_send = t0
        final_deadline = t0 + (count - 1) * interval + timeout
        while True:
            now = time.monotonic()
            if seq < count and now >= next_send:
                seq += 1
                err = es.send(seq)
                if err is None:
                    sent_at[seq] = time.monotonic()
                else:
                    send_errors.append({"seq": seq, "error": err})
                    lines.append(f"send icmp_seq={seq}: {err}")
                next_send = t0 + seq * interval
            if now >= final_deadline:
                break
            if seq >= count and all(s in rtt for s in sent_at):
                break
            until = min(next_send, final_deadline) if seq < count else final_deadline
            for ev in es.wait(until):
                if ev.seq not in sent_at:
                    continue
                if ev.kind == "reply":
                    if ev.seq in rtt or ev.seq in late:
                        continue  # duplicate
                    elapsed = ev.at - sent_at[ev.seq]
                    if elapsed > timeout:
                        late.append(ev.seq)
                        lines.append(f"late reply from {ev.src}: icmp_seq={ev.seq}")
                        continue
                    rtt[ev.seq] = round(elapsed * 1000.0, 3)
                    ttls[ev.seq] = ev.ttl
                    ttl_text = f" ttl={ev.ttl}" if ev.ttl is not None else ""
                    lines.append(f"reply from {ev.src}: icmp_seq={ev.seq}{ttl_text} time={rtt[ev.seq]} ms")
                else:
                    name = _error_name(addr.version, ev.icmp_type)
                    icmp_errors.append(
                        {"seq": ev.seq, "from": ev.src, "type": ev.icmp_type, "code": ev.icmp_code,
                         "name": name}
                    )
                    lines.append(f"from {ev.src} icmp_seq={ev.seq} {name} (code {ev.icmp_code})")
    except OSError as exc:
        return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
    finally:
        es.close()

    sent = len(sent_at)
    received = len(rtt)
    loss = round(100.0 * (sent - received) / sent, 1) if sent else 100.0
    lines.append(f"--- {target} ping statistics ---")
    lines.append(f"{sent} packets transmitted, {received} received, {loss}% packet loss")
    parsed = {
        "sent": sent,
        "received": received,
        "rtt_ms": [rtt[s] for s in sorted(rtt)],
        "reachable": received > 0,
        "loss_pct": loss,
        "replies": [{"seq": s, "rtt_ms": rtt[s], "ttl": ttls.get(s)} for s in sorted(rtt)],
        "late": late,
        "icmp_errors": icmp_errors,
        "send_errors": send_errors,
    }
    return base(started_at=started, ok=True, raw="\n".join(lines), parsed=parsed, meta=meta)


@probe("icmp.wait_reachable")
def wait_reachable(
    target: str,
    *,
    deadline_s: float,
    ev_id: str,
    source: str,
    check: str | None = None,
    interval: float = 0.2,
) -> Evidence:
    """Ping every ``interval`` s until the first reply or until ``deadline_s`` s have passed.

    For resilience measurements (e.g. time to reroute after a link fault). parsed:
    ``reachable``, ``first_reply_after_s`` (seconds from the start of this probe to the first
    reply, or null), ``answered_seq`` / ``answered_sent_after_s`` (which request got the
    reply and when it was sent), ``sent``, ``deadline_s``, ``icmp_errors`` (count by name),
    ``send_errors`` (count).
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    action = f"ping every {interval} s until first reply, at most {deadline_s} s: {target} (raw ICMP echo)"
    base = partial(evidence, ev_id=ev_id, check=check, kind="icmp", source=source, target=target, action=action)
    try:
        addr = ip_literal(target)
        if not 0 < deadline_s <= _MAX_DEADLINE_S:
            raise ValueError(f"deadline_s must be between 0 and {_MAX_DEADLINE_S} s")
        if not 0.01 <= interval <= 60:
            raise ValueError("interval must be between 0.01 and 60 s")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc))

    es = _EchoSocket(addr)
    meta = {"netns": netns, "identifier": es.ident, "family": addr.version}
    sent_at: dict[int, float] = {}
    err_counts: dict[str, int] = {}
    send_errors = 0
    first: _Event | None = None
    try:
        es.open()
        t0 = time.monotonic()
        deadline = t0 + deadline_s
        seq = 0
        next_send = t0
        while first is None:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_send:
                seq += 1
                if es.send(seq) is None:
                    sent_at[seq] = time.monotonic()
                else:
                    send_errors += 1
                next_send = t0 + seq * interval
            for ev in es.wait(min(next_send, deadline)):
                if ev.seq not in sent_at:
                    continue
                if ev.kind == "reply":
                    first = ev
                    break
                name = _error_name(addr.version, ev.icmp_type)
                err_counts[name] = err_counts.get(name, 0) + 1
    except OSError as exc:
        return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
    finally:
        es.close()

    after: float | None = None
    sent_after: float | None = None
    if first is not None:
        after = round(first.at - t0, 6)
        sent_after = round(sent_at[first.seq] - t0, 6)
        raw = (f"first reply from {first.src} after {after} s (icmp_seq={first.seq}, "
               f"sent after {sent_after} s); {len(sent_at)} requests sent")
    else:
        raw = f"no reply from {target} within {deadline_s} s; {len(sent_at)} requests sent"
    parsed = {
        "reachable": first is not None,
        "first_reply_after_s": after,
        "answered_seq": first.seq if first else None,
        "answered_sent_after_s": sent_after,
        "sent": len(sent_at),
        "deadline_s": deadline_s,
        "interval_s": interval,
        "icmp_errors": err_counts,
        "send_errors": send_errors,
    }
    return base(started_at=started, ok=True, raw=raw, parsed=parsed, meta=meta)
