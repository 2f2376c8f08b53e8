"""The real gns3-server 3.0.6 (GPL-3.0, test-only), run as a separate process in a "GNS3 host"
network namespace of its own, for labkit's GNS3 provider tests. Standard library only: it is
imported by the tests' conftest and runnable as a program (``python g3server.py``, used by the
crash tests: it prints one JSON line with the server's facts, then serves until its stdin closes
or it gets SIGTERM/SIGINT).

What it makes, and removes at stop:
- a network namespace ``lkt-g3-<pid>-<n>`` (only ``lo``, up) and a scratch dir
  ``<tmp>/lkt-g3-<pid>-<n>/`` (HOME, config, projects, images, the stand-ins' command logs,
  the server's log); gns3-server runs inside the namespace (``ip netns exec``: a private mount
  of /sys, so ``is_interface_bridge`` and the stand-ins' TAPs/``brctl addif`` act on the
  namespace, never on the host), listening on 127.0.0.1:3080 there;
- relays: a 127.0.0.1 port of the root namespace per relayed port; each accepted connection is
  forwarded by a thread that entered the namespace (setns) and connected to 127.0.0.1:<port>
  there. ``relay(port)`` serves any other service of the GNS3 host (a node console, labkit's
  agent SSH server).

A crashed run (its pid dead) leaves a namespace and a scratch dir with its pid in the name:
every start removes those of dead owners (it kills what still runs in such a namespace first).
gns3-server itself gets SIGTERM when the process that started it dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
PREFIX = "lkt-g3-"
NETNS_DIR = Path("/run/netns")
DEFAULT_VENV = "/var/lib/labkit/gns3-venv"
SERVER_PORT = 3080
START_TIMEOUT = 90.0
VERSION = "3.0.6"
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
MAX_RELAY_CONNECTIONS = 128

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_counter = itertools.count()
_NAME_RE = re.compile(rf"^{re.escape(PREFIX)}(\d+)-(\d+)$")


class HarnessError(RuntimeError):
    pass


def venv_dir() -> Path:
    return Path(os.environ.get("LABKIT_GNS3_VENV", DEFAULT_VENV))


def gns3server_exe(venv: Path | None = None) -> Path:
    """The venv's gns3server; a HarnessError saying how to make it when it is missing."""
    venv = venv or venv_dir()
    exe = venv / "bin" / "gns3server"
    if not exe.is_file() or not (venv / f".labkit-gns3-server-{VERSION}").is_file():
        raise HarnessError(f"the gns3-server {VERSION} venv is missing at {venv}: run "
                           f"'scripts/gns3-venv.sh {venv}' (or set LABKIT_GNS3_VENV to where it is)")
    return exe


def _start_ticks(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _owner_alive(name: str, scratch_root: Path) -> bool:
    m = _NAME_RE.match(name)
    if not m:
        return True  # not ours: never touch
    pid = int(m.group(1))
    ticks = _start_ticks(pid)
    if ticks is None:
        return False
    try:  # the owner wrote "pid ticks" at start: a reused pid is not the owner
        owner = (scratch_root / name / "owner").read_text().split()
        return int(owner[1]) == ticks
    except (OSError, IndexError, ValueError):
        return True  # cannot tell: assume alive


def _ns_pids(name: str) -> list[int]:
    r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _kill_ns_processes(name: str, timeout: float = 10.0) -> None:
    """SIGTERM then SIGKILL every process whose network namespace is ``name``."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, timeout)):
        pids = _ns_pids(name)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _ns_pids(name):
            time.sleep(0.1)
    left = _ns_pids(name)
    if left:
        raise HarnessError(f"processes {left} still run in namespace {name}")


def _delete_ns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


def sweep(scratch_root: Path | None = None) -> list[str]:
    """Remove the namespaces and scratch dirs of harness runs whose process is dead."""
    root = scratch_root or Path(tempfile.gettempdir())
    removed = []
    names = {p.name for p in NETNS_DIR.glob(f"{PREFIX}*")} | {p.name for p in root.glob(f"{PREFIX}*")}
    for name in sorted(names):
        if not _NAME_RE.match(name) or _owner_alive(name, root):
            continue
        if (NETNS_DIR / name).exists():
            _kill_ns_processes(name)
            _delete_ns(name)
        shutil.rmtree(root / name, ignore_errors=True)
        removed.append(name)
    return removed


def _setns(name: str) -> None:
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def in_netns(name: str, fn, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """Run ``fn()`` in a fresh thread that entered namespace ``name``; return its result."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            _setns(name)
            box["r"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["e"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"call in namespace {name} did not finish within {timeout} s")
    if "e" in box:
        raise box["e"]  # type: ignore[misc]
    return box.get("r")


class Relay:
    """127.0.0.1:<local_port> of the root namespace -> 127.0.0.1:<port> inside ``netns``."""

    def __init__(self, netns: str, port: int):
        self.netns, self.port = netns, port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.local_port: int = self.listener.getsockname()[1]
        self.stopping = False
        self.active = threading.BoundedSemaphore(MAX_RELAY_CONNECTIONS)
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"relay:{port}", daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.active.acquire(timeout=10):
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            _setns(self.netns)  # this thread only: the upstream socket is made inside the namespace
            upstream = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            upstream.settimeout(None)
            with self.lock:
                self.conns |= {client, upstream}
            pair = {client: upstream, upstream: client}
            while not self.stopping:
                ready, _, _ = select.select(list(pair), [], [], 1.0)
                done = False
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        done = True
                        break
                    pair[s].sendall(data)
                if done:
                    break
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    with self.lock:
                        self.conns.discard(s)
                    with contextlib.suppress(OSError):
                        s.close()
            self.active.release()

    def close(self) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            for s in list(self.conns):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def _pdeathsig() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class G3Server:
    """One gns3-server in its own namespace. ``start()`` / ``stop()`` (or ``with``)."""

    def __init__(self, venv: Path | None = None, scratch_root: Path | None = None):
        self.exe = gns3server_exe(venv)
        self.scratch_root = scratch_root or Path(tempfile.gettempdir())
        self.namespace = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.scratch = self.scratch_root / self.namespace
        self.admin_user = "admin"
        self.admin_password = "lk-" + secrets.token_urlsafe(12)
        self.proc: subprocess.Popen[bytes] | None = None
        self.relays: dict[int, Relay] = {}
        self._relay_lock = threading.Lock()
        self.url = ""
        self._log = None

    # -- facts
    @property
    def logdir(self) -> Path:
        return self.scratch / "logs"

    def _lines(self, program: str) -> list[str]:
        try:
            return (self.logdir / f"{program}.log").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def ubridge_log(self) -> list[str]:
        """Every command the stand-in uBridge processes received, in order."""
        return self._lines("ubridge")

    def dynamips_log(self) -> list[str]:
        """Every command the stand-in Dynamips processes (Ethernet switches/hubs) received."""
        return self._lines("dynamips")

    def qemu_log(self) -> list[str]:
        """The stand-in QEMU's log: ``<vm name> argv ...`` at each start, then every monitor
        command as ``<vm name> <command>`` (e.g. ``r1 set_link gns3-0 off``)."""
        return self._lines("qemu")

    def binds_log(self) -> list[str]:
        """Every UDP bind a stand-in could not make because another process held the port,
        with the holders (``_hvstub.bind_or_report``): gns3-server gave that port out twice."""
        return self._lines("binds")

    def server_log(self) -> str:
        try:
            return (self.scratch / "gns3server.log").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def qemu_available(self) -> str | None:
        """The stand-in qemu-system-x86_64 when it is shipped (with its qemu-img), else None."""
        exe, img = STANDINS / "qemu-system-x86_64", STANDINS / "qemu-img"
        ok = all(p.is_file() and os.access(p, os.X_OK) for p in (exe, img))
        return str(exe) if ok else None

    def info(self) -> dict[str, object]:
        return {"url": self.url, "namespace": self.namespace, "scratch": str(self.scratch), "exe": str(self.exe),
                "admin_user": self.admin_user, "admin_password": self.admin_password,
                "pid": os.getpid(), "server_pid": self.proc.pid if self.proc else None}

    # -- lifecycle
    def _config(self) -> Path:
        s = self.scratch
        for d in ("home", "images", "projects", "appliances", "symbols", "configs", "logs", "config"):
            (s / d).mkdir(parents=True, exist_ok=True)
        text = f"""[Server]
host = 127.0.0.1
port = {SERVER_PORT}
images_path = {s / 'images'}
projects_path = {s / 'projects'}
appliances_path = {s / 'appliances'}
symbols_path = {s / 'symbols'}
configs_path = {s / 'configs'}
report_errors = False
auto_discover_images = False
install_builtin_appliances = False
ubridge_path = {STANDINS / 'ubridge'}
console_start_port_range = 5000
console_end_port_range = 5999
udp_start_port_range = 20000
udp_end_port_range = 29999

[Controller]
default_admin_username = {self.admin_user}
default_admin_password = {self.admin_password}
jwt_secret_key = {secrets.token_hex(32)}

[VPCS]
vpcs_path = {STANDINS / 'vpcs'}

[Dynamips]
dynamips_path = {STANDINS / 'dynamips'}

[Qemu]
enable_hardware_acceleration = False
"""
        path = s / "config" / "gns3_server.conf"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        return path

    def start(self) -> G3Server:
        sweep(self.scratch_root)
        self.scratch.mkdir(mode=0o700)
        (self.scratch / "owner").write_text(f"{os.getpid()} {_start_ticks(os.getpid())}\n")
        try:
            subprocess.run(["ip", "netns", "add", self.namespace], check=True, capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "exec", self.namespace, "ip", "link", "set", "lo", "up"],
                           check=True, capture_output=True, timeout=30)
            conf = self._config()
            env = {"PATH": f"{STANDINS}:{self.exe.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOME": str(self.scratch / "home"), "LANG": "C.UTF-8",
                   "LABKIT_G3_STANDIN_LOGDIR": str(self.logdir),
                   "LABKIT_G3_ROOT_NETNS_INODE": str(os.stat("/proc/self/ns/net").st_ino),
                   "TMPDIR": str(self.scratch / "home")}
            self._log = open(self.scratch / "gns3server.log", "wb")  # noqa: SIM115 - closed in stop()
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, str(self.exe), "--config", str(conf),
                 *(["--debug"] if os.environ.get("LABKIT_G3_DEBUG") else [])],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                cwd=self.scratch, preexec_fn=_pdeathsig)  # noqa: PLW1509 - only a prctl
            self.url = f"http://127.0.0.1:{self.relay(SERVER_PORT)}"
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise HarnessError(f"gns3-server exited with {self.proc.returncode}: {self.server_log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v3/version", timeout=5) as r:
                    version = json.load(r).get("version")
                if version != VERSION:
                    raise HarnessError(f"gns3-server answers version {version}, expected {VERSION}")
                # the controller reaches its local compute a moment after the API is up; nodes made
                # before that fail ("Cannot choose from an empty sequence")
                if "Connected to compute 'local'" in self.server_log():
                    return
                last = "the controller is not connected to its local compute yet"
                time.sleep(0.2)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = str(exc)
                time.sleep(0.3)
        raise HarnessError(f"gns3-server did not answer within {START_TIMEOUT} s ({last}): {self.server_log()[-3000:]}")

    def relay(self, port_in_ns: int) -> int:
        """A 127.0.0.1 port of the root namespace forwarded to 127.0.0.1:``port_in_ns`` in the
        GNS3 host namespace (one relay per port, made on first call)."""
        with self._relay_lock:
            if port_in_ns not in self.relays:
                self.relays[port_in_ns] = Relay(self.namespace, port_in_ns)
            return self.relays[port_in_ns].local_port

    def stop(self) -> None:
        with self._relay_lock:
            for r in self.relays.values():
                r.close()
            self.relays.clear()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if (NETNS_DIR / self.namespace).exists():
            _kill_ns_processes(self.namespace)
            _delete_ns(self.namespace)
        keep = os.environ.get("LABKIT_G3_KEEP_LOGS")
        if keep and self.scratch.exists():
            dest = Path(keep) / self.namespace
            shutil.copytree(self.scratch / "logs", dest / "logs", dirs_exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy(self.scratch / "gns3server.log", dest / "gns3server.log")
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> G3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """Run a server until stdin closes (or SIGTERM/SIGINT); print its facts as one JSON line."""
    venv = Path(argv[argv.index("--venv") + 1]) if "--venv" in argv else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        server = G3Server(venv).start()
    except HarnessError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    try:
        extra = [int(a.split("=", 1)[1]) for a in argv if a.startswith("--relay=")]
        info = server.info() | {"relays": {p: server.relay(p) for p in extra}}
        print(json.dumps(info), flush=True)

        def wait_stdin() -> None:
            with contextlib.suppress(OSError):
                while sys.stdin.buffer.read(1):
                    pass
            stop.set()

        threading.Thread(target=wait_stdin, daemon=True).start()
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
