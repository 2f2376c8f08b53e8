"""Shared core of the project's stand-ins for uBridge and Dynamips (test-only; no GNS3 code).

gns3-server drives both through a line protocol on TCP (``-H host:port``): one command per
line, answers ``1xx text\\r\\n`` lines ending with ``100-text\\r\\n`` (success) or
``2xx-text\\r\\n`` (error). This module answers every command gns3-server 3.0.6 sends, logs each
command (one line, as received) to ``$LABKIT_G3_STANDIN_LOGDIR/<program>.log`` (or
``./<program>-commands.log`` without the variable), and REALLY moves frames:

- uBridge ``bridge``: two NIOs (UDP, TAP, Linux raw socket); a frame read from one is sent out of
  the other, through the bridge's packet filters (``packet_loss``, ``frequency_drop``,
  ``corrupt``, ``delay``; ``bpf`` is accepted and logged but not applied), and written to the
  bridge's pcap capture when one runs;
- Dynamips ``ethsw``: a learning switch over its UDP/TAP NIOs (access ports by VLAN; dot1q and
  QinQ ports are accepted as members of every VLAN, frames are forwarded untagged), with
  per-NIO ``capture`` filters writing pcap files.

TAP devices, raw sockets and ``brctl addif`` act in the process's own network namespace, and
ONLY when the harness said which namespace is the host's root one (env
``LABKIT_G3_ROOT_NETNS_INODE``) and this is another one: otherwise those commands fail with an
error saying why.
"""

from __future__ import annotations

import fcntl
import heapq
import os
import random
import selectors
import shlex
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
ETH_P_ALL = 0x0003
MAX_FRAME = 65535


class CommandError(Exception):
    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code


# ---------------------------------------------------------------------------------------- log

def _log_path(program: str) -> Path:
    d = os.environ.get("LABKIT_G3_STANDIN_LOGDIR")
    return Path(d) / f"{program}.log" if d else Path.cwd() / f"{program}-commands.log"


def log_line(program: str, line: str) -> None:
    data = (line.replace("\n", " ") + "\n").encode()
    fd = os.open(_log_path(program), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)  # one write of a short line with O_APPEND: lines of processes never mix
    finally:
        os.close(fd)


def _port_holders(port: int) -> list[str]:
    """Who holds UDP ``port`` in this namespace: ``pid cmdline`` from /proc (test diagnostics)."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                for row in fh.read().splitlines()[1:]:
                    f = row.split()
                    if len(f) > 9 and int(f[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{f[9]}]")
        except OSError:
            pass
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
                out.append(f"{pid} {cmd[:160]}")
        except OSError:
            pass
    return out


def bind_or_report(sock, addr, program="standin"):
    """bind, as the real emulators do: at once or never. A port in use is logged to
    ``binds.log`` with its holders before the error goes up: a stand-in whose port another
    process holds means gns3-server gave one UDP port twice (labkit's GNS3 provider serialises
    the calls that allocate them: adapters/gns3/provider.py)."""
    import errno
    try:
        sock.bind(addr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log_line("binds", f"{program} {os.getpid()} could not bind {addr}: in use, held by: "
                              f"{' | '.join(_port_holders(int(addr[1]))) or 'nobody found'}")
        raise


# --------------------------------------------------------------------------------------- pcap

LINKTYPES = {"en10mb": 1, "ethernet": 1, "raw": 101, "null": 0, "c_hdlc": 104, "ppp_serial": 50,
             "frelay": 107, "atm_rfc1483": 11}


class Pcap:
    """A pcap file (classic format, microsecond stamps); a header at once, frames as they pass."""

    def __init__(self, path: str, linktype: int = 1):
        self.path = path
        self.lock = threading.Lock()
        self.fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, MAX_FRAME, linktype))
        self.fh.flush()

    def write(self, frame: bytes) -> None:
        t = time.time()
        with self.lock:
            if self.fh.closed:
                return
            self.fh.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame)
            self.fh.flush()

    def close(self) -> None:
        with self.lock:
            self.fh.close()


def linktype_of(name: str | None) -> int:
    if not name:
        return 1
    n = name.lower()
    n = n[4:] if n.startswith("dlt_") else n
    return LINKTYPES.get(n, 1)


# --------------------------------------------------------------------------------------- NIOs

def _in_root_netns() -> bool:
    """True unless this process provably runs in another namespace than the harness's root one
    (the harness passes its own namespace's inode: /proc/1/ns/net is not readable everywhere)."""
    try:
        root = int(os.environ["LABKIT_G3_ROOT_NETNS_INODE"])
        return os.stat("/proc/self/ns/net").st_ino == root
    except (KeyError, ValueError, OSError):
        return True  # cannot tell: behave as if in the root namespace (refuse)


def _refuse_in_root(what: str) -> None:
    if _in_root_netns():
        raise CommandError(209, f"{what} refused: this stand-in runs in the host's root network namespace "
                                f"(run gns3-server in its own namespace, see tests/adapters/gns3/g3server.py)")


class Nio:
    kind = "?"

    def fileno(self) -> int:
        raise NotImplementedError

    def recv(self) -> bytes:
        raise NotImplementedError

    def send(self, frame: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class UdpNio(Nio):
    kind = "udp"

    def __init__(self, lport: int, rhost: str, rport: int):
        fam = socket.AF_INET6 if ":" in rhost else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bind_or_report(self.sock, ("::" if fam == socket.AF_INET6 else "0.0.0.0", lport),
                       program=os.path.basename(sys.argv[0]))
        self.dest = (rhost, rport)
        self.desc = f"udp {lport} {rhost} {rport}"

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> bytes:
        return self.sock.recv(MAX_FRAME)

    def send(self, frame: bytes) -> None:
        try:
            self.sock.sendto(frame, self.dest)
        except OSError:
            pass  # the other end is not listening (yet): a cable to a switched-off node

    def close(self) -> None:
        self.sock.close()


class TapNio(Nio):
    kind = "tap"

    def __init__(self, name: str):
        _refuse_in_root(f"TAP {name}")
        self.name = name
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode()[:15], IFF_TAP | IFF_NO_PI))
        except OSError as exc:
            os.close(self.fd)
            raise CommandError(209, f"cannot create TAP {name}: {exc.strerror}") from None
        subprocess.run(["ip", "link", "set", "dev", name, "up"], check=False, capture_output=True)
        self.desc = f"tap {name}"

    def fileno(self) -> int:
        return self.fd

    def recv(self) -> bytes:
        return os.read(self.fd, MAX_FRAME)

    def send(self, frame: bytes) -> None:
        try:
            os.write(self.fd, frame)
        except OSError:
            pass

    def close(self) -> None:
        os.close(self.fd)  # a non-persistent TAP disappears with its last descriptor


class RawNio(Nio):
    kind = "linux_raw"

    def __init__(self, ifname: str):
        _refuse_in_root(f"raw socket on {ifname}")
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            self.sock.bind((ifname, 0))
        except OSError as exc:
            self.sock.close()
            raise CommandError(209, f"cannot bind a raw socket to {ifname}: {exc.strerror}") from None
        self.desc = f"linux_raw {ifname}"

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> bytes:
        data, addr = self.sock.recvfrom(MAX_FRAME)
        if addr[2] == socket.PACKET_OUTGOING:
            return b""  # our own sends, seen again
        return data

    def send(self, frame: bytes) -> None:
        try:
            self.sock.send(frame)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


# -------------------------------------------------------------------------------- data plane

class DataPlane:
    """One thread reading every NIO; a frame goes to its owner's ``on_frame(nio, frame)``."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.rpipe, self.wpipe = os.pipe()
        os.set_blocking(self.rpipe, False)
        self.sel.register(self.rpipe, selectors.EVENT_READ, None)
        threading.Thread(target=self._run, name="dataplane", daemon=True).start()

    def add(self, nio: Nio, handler: Callable[[Nio, bytes], None]) -> None:
        with self.lock:
            self.sel.register(nio.fileno(), selectors.EVENT_READ, (nio, handler))
        os.write(self.wpipe, b"x")

    def remove(self, nio: Nio) -> None:
        with self.lock:
            try:
                self.sel.unregister(nio.fileno())
            except (KeyError, ValueError):
                pass
        os.write(self.wpipe, b"x")

    def _run(self) -> None:
        while True:
            with self.lock:
                pass  # let add/remove in between two selects
            for key, _ in self.sel.select(0.5):
                if key.data is None:
                    try:
                        os.read(self.rpipe, 4096)
                    except BlockingIOError:
                        pass
                    continue
                nio, handler = key.data
                try:
                    frame = nio.recv()
                except OSError:
                    continue
                if frame:
                    try:
                        handler(nio, frame)
                    except Exception as exc:  # noqa: BLE001 - a bad frame must not stop the plane
                        print(f"data plane: {exc!r}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------- protocol

class Hypervisor:
    """Base: the protocol server; subclasses map commands to ``cmd_<module>_<verb>(args)``."""

    program = "hypervisor"
    version = "0.0.0"

    def __init__(self) -> None:
        self.plane = DataPlane()
        self.lock = threading.RLock()
        self.server: socketserver.ThreadingTCPServer | None = None

    def dispatch(self, line: str) -> list[str]:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise CommandError(202, f"cannot parse command: {exc}") from None
        if len(words) < 2:
            raise CommandError(200, f"unknown command '{line}'")
        fn = getattr(self, f"cmd_{words[0]}_{words[1]}", None)
        if fn is None:
            raise CommandError(200, f"unknown command '{words[0]} {words[1]}'")
        with self.lock:
            result: list[str] = fn(words[2:]) or []
        return result

    # hypervisor module (both programs)
    def cmd_hypervisor_version(self, args: list[str]) -> list[str]:
        return [self.version]

    def cmd_hypervisor_close(self, args: list[str]) -> list[str]:
        return []

    def cmd_hypervisor_stop(self, args: list[str]) -> list[str]:
        threading.Timer(0.2, self._shutdown).start()
        return []

    def cmd_hypervisor_reset(self, args: list[str]) -> list[str]:
        self.reset()
        return []

    def cmd_hypervisor_working_dir(self, args: list[str]) -> list[str]:
        if args:
            try:
                os.chdir(args[0])
            except OSError as exc:
                raise CommandError(201, f"cannot change to {args[0]}: {exc.strerror}") from None
        return []

    def cmd_hypervisor_module_list(self, args: list[str]) -> list[str]:
        return sorted({n.split("_")[1] for n in dir(self) if n.startswith("cmd_")})

    def cmd_hypervisor_cmd_list(self, args: list[str]) -> list[str]:
        mod = args[0] if args else ""
        return sorted(n.split("_", 2)[2] for n in dir(self) if n.startswith(f"cmd_{mod}_"))

    def reset(self) -> None:
        pass

    def _shutdown(self) -> None:
        self.reset()
        os._exit(0)

    def serve(self, host: str, port: int) -> None:
        hv = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for raw in self.rfile:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line:
                        continue
                    log_line(hv.program, line)
                    try:
                        out = hv.dispatch(line)
                        reply = "".join(f"101 {o}\r\n" for o in out[:-1])
                        reply += f"100-{out[-1]}\r\n" if out else "100-OK\r\n"
                    except CommandError as exc:
                        reply = f"{exc.code}-{exc}\r\n"
                    except Exception as exc:  # noqa: BLE001 - an answer, never a dead hypervisor
                        reply = f"209-{type(exc).__name__}: {exc}\r\n"
                    self.wfile.write(reply.encode())
                    self.wfile.flush()

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = Server((host, port), Handler)
        self.server.serve_forever()


def parse_hp(value: str) -> tuple[str, int]:
    """``-H`` argument: ``host:port``, ``[v6]:port`` or ``port``."""
    if value.isdigit():
        return "127.0.0.1", int(value)
    host, _, port = value.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Delayer:
    """Sends frames later (uBridge's ``delay LATENCY [JITTER]`` filter, milliseconds): one
    thread, a bounded queue (frames beyond MAX_DELAYED are dropped)."""

    MAX_DELAYED = 10000

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Nio, bytes]] = []
        self.cond = threading.Condition()
        self.seq = 0
        threading.Thread(target=self._run, name="delay", daemon=True).start()

    def later(self, delay_s: float, nio: Nio, frame: bytes) -> None:
        with self.cond:
            if len(self.heap) >= self.MAX_DELAYED:
                return
            self.seq += 1
            heapq.heappush(self.heap, (time.monotonic() + delay_s, self.seq, nio, frame))
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.heap or self.heap[0][0] > time.monotonic():
                    self.cond.wait(max(0.0, self.heap[0][0] - time.monotonic()) if self.heap else None)
                _, _, nio, frame = heapq.heappop(self.heap)
            nio.send(frame)


def delay_of(filters: dict[str, list[Any]]) -> float:
    """Seconds a frame waits under a ``delay`` filter (latency plus a random jitter), else 0."""
    values = filters.get("delay")
    if not values:
        return 0.0
    latency = float(values[0])
    jitter = float(values[1]) if len(values) > 1 else 0.0
    return max(0.0, latency + random.uniform(-jitter, jitter)) / 1000.0


def frame_filter(filters: dict[str, list[Any]]) -> Callable[[bytes], bytes | None]:
    """The uBridge packet filters applied to one frame (None: dropped)."""
    counter = {"n": 0}

    def apply(frame: bytes) -> bytes | None:
        for kind, values in filters.items():
            if kind == "packet_loss" and values and random.uniform(0, 100) < float(values[0]):
                return None
            if kind == "frequency_drop" and values:
                f = int(values[0])
                counter["n"] += 1
                if f == -1 or (f > 0 and counter["n"] % f == 0):
                    return None
            if kind == "corrupt" and values and random.uniform(0, 100) < float(values[0]) and frame:
                i = random.randrange(len(frame))
                frame = frame[:i] + bytes([frame[i] ^ 0xFF]) + frame[i + 1:]
        return frame

    return apply
