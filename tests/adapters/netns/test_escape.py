"""The escape suite: from a candidate console, in every lab, every escape attempt is refused.

``escape_attempts.py`` runs inside a node, through exactly the argv a candidate's console
gets (``labkit console`` / the SSH bastion / the browser terminal): at least 15 attempts at
leaving the node (mount, umount, mknod of a disk or of /dev/mem, the host's disk mounted,
module loading, ptrace, setns/unshare, host sysctls and /sys, keyctl, bpf, io_uring,
open_by_handle_at, reboot, chroot break-out, labkit's home and project, the grader's keys,
the portal's database file and port, the host's services and abstract sockets, another
candidate's network, the host's processes).

Each attempt is proven able to see a success: the same script through an UNCONFINED entry
into the same node (plain nsenter, what labkit did before) succeeds at every attempt that
confinement stops, and for what isolation stops (files, networks) a host-side control shows
the target is really there and answering (the listener answers the host, the other
candidate's listener answers that candidate's own node, the files exist on the host).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.netns.provider import NetnsProvider, vantage_ns
from labkit.settings import Settings
from labkit.usecases.lifecycle import Context, console_argv, down, up
from tests.conftest import PROJECT, leftovers, namespace_inodes

pytestmark = [pytest.mark.root, pytest.mark.slow]

SCRIPT = (Path(__file__).parent / "escape_attempts.py").read_text()
LABS = ["routing-multisite", "ad-gpo", "backup-restore", "vpn-site-to-site", "supervision-snmp"]
OTHER = "escb"  # another candidate's instance, up for the whole module
# Attempts that the confinement stops (not the isolation): through an unconfined entry they
# must succeed, which proves each can see an escape.
CONFINEMENT = {
    "mount-tmpfs", "umount-a-mask", "remount-sys-rw", "mknod-block-device", "mknod-memory-device",
    "load-kernel-module", "unload-kernel-module", "ptrace-attach", "setns", "unshare-user",
    "unshare-mount-and-net", "keyctl", "bpf", "io-uring", "open-by-handle", "reboot",
}


class Listener:
    """A TCP (or abstract unix) server that answers each connection with a nonce and counts
    them; on 127.0.0.1 of the host, or inside a lab namespace when made there."""

    def __init__(self, sock: socket.socket, nonce: str):
        self.sock, self.nonce, self.accepted = sock, nonce, 0
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                conn.sendall(self.nonce.encode())
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _tcp(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    return s


def _host_targets() -> list[list[object]]:
    """The host's listening TCP ports on its own non-loopback addresses (read, never changed)."""
    addrs = [line.split()[3].split("/")[0] for line in subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout.splitlines()]
    ports = set()
    for line in subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout.splitlines():
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        if host in ("0.0.0.0", "*", "[::]") or host in addrs:
            ports.add(int(port))
    ports.add(22)
    return [[a, p] for a in addrs[:2] for p in sorted(ports)[:6]]


class Escape:
    def __init__(self, settings: Settings, env: dict[str, str]):
        self.settings, self.env = settings, env
        self.ctx = Context(settings)
        self.nonce = secrets.token_hex(8)
        self.host_lo = Listener(_tcp("127.0.0.1"), self.nonce)
        self.db_tcp = Listener(_tcp("127.0.0.1"), self.nonce)
        ab = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract_name = f"labkit-escape-{self.nonce}"
        ab.bind("\0" + self.abstract_name)
        self.abstract = Listener(ab, self.nonce)
        self.db_file = settings.home / "labkit.db"
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.db_file.write_text("stand-in for the portal's database\n")
        up(self.ctx, "routing-multisite", instance=OTHER, seed=404)
        state = self.ctx.store.load(OTHER)
        v = state.plan.vantage_point("v-hq")
        assert v is not None
        self.other_addr = v.address.split("/")[0]
        self.other = run_in_netns(vantage_ns(OTHER, "v-hq"),
                                  lambda: Listener(_tcp(self.other_addr), self.nonce), timeout=5)

    def args(self, name: str) -> dict[str, object]:
        dev = os.stat("/").st_dev
        state = self.ctx.store.load(name)
        return {
            "home": str(self.settings.home), "project": str(PROJECT), "run_dir": str(self.settings.run_dir),
            "other_instance": str(self.settings.instances / OTHER),
            "secrets": [state.ssh_key, self.ctx.store.load(OTHER).ssh_key,
                        str(self.settings.home / "bastion" / "ssh_host_ed25519_key"),
                        str(self.settings.inventories / f"{name}.yml")],
            "database_files": [str(self.db_file), "/var/lib/postgresql"],
            "database_tcp": ["127.0.0.1", self.db_tcp.port], "host_lo": ["127.0.0.1", self.host_lo.port],
            "host_tcp": _host_targets(), "abstract": self.abstract_name, "nonce": self.nonce,
            "other_tcp": [[self.other_addr, self.other.port]], "disk": [os.major(dev), os.minor(dev)],
            "host_secret_digests": _host_secret_digests(),
        }

    def run(self, argv: list[str], name: str) -> dict[str, dict[str, object]]:
        """Type the script into the shell ``argv`` starts, as a candidate at a console would."""
        text = (f"python3 - '{json.dumps(self.args(name))}' <<'LABKIT_ESCAPE_EOF'\n{SCRIPT}\n"
                "LABKIT_ESCAPE_EOF\nexit\n")
        proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=180, env=self.env)
        results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("ESCAPE {")]
        assert any(line.startswith("ESCAPE-DONE") for line in proc.stdout.splitlines()), proc.stdout + proc.stderr
        return {r["id"]: r for r in results}

    def close(self) -> None:
        for listener in (self.host_lo, self.db_tcp, self.abstract, self.other):
            listener.close()
        down(self.ctx, OTHER)


@pytest.fixture(scope="module")
def escape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Escape]:
    tmp = tmp_path_factory.mktemp("escape")
    home, run_dir = tmp / "home", Path(f"/run/labkit-test-escape-{os.getpid()}")
    env = {**os.environ, "LABKIT_HOME": str(home), "LABKIT_RUN_DIR": str(run_dir), "LABKIT_PROJECT": str(PROJECT)}
    saved = {k: os.environ.get(k) for k in ("LABKIT_HOME", "LABKIT_RUN_DIR", "LABKIT_PROJECT")}
    os.environ.update({k: env[k] for k in saved})
    settings = Settings(home=home, run_dir=run_dir, project=PROJECT)
    esc = Escape(settings, env)
    try:
        yield esc
    finally:
        esc.close()
        for name in esc.ctx.store.names():
            down(esc.ctx, name)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        assert leftovers(settings, OTHER) == []


HOST_SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key",
                "/etc/ssh/ssh_host_ecdsa_key")


def _host_secret_digests() -> dict[str, str]:
    """sha256 of the host's shadow and SSH host keys that exist (only digests enter the node)."""
    import hashlib

    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in HOST_SECRETS if Path(p).exists()}


def _host_can_mount_its_disk() -> bool:
    """Whether root on this host may mount the disk under / a second time, read-only, in a
    throwaway mount namespace (some sandboxes refuse it even to the host's root)."""
    dev = os.stat("/").st_dev
    if os.major(dev) == 0:
        return False
    script = (f"d=$(mktemp -d) && mknod $d/disk b {os.major(dev)} {os.minor(dev)} && mkdir $d/m && "
              "mount -o ro $d/disk $d/m && umount $d/m; rc=$?; rm -rf $d; exit $rc")
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, timeout=30).returncode == 0


def _candidate_nodes(esc: Escape, name: str) -> list[str]:
    """The lab's workstation (where a candidate lands) and a router or server."""
    nodes = esc.ctx.store.load(name).plan.nodes
    first = [n.name for n in nodes if n.role == "workstation"][:1] or [nodes[0].name]
    other = [n.name for n in nodes if n.role in ("router", "server") and n.name not in first][:1]
    return first + other


@pytest.mark.parametrize("lab", LABS)
def test_every_escape_attempt_is_refused(escape: Escape, lab: str) -> None:
    name = "esc" + lab.split("-")[0][:6]
    up(escape.ctx, lab, instance=name, seed=31)
    try:
        for node in _candidate_nodes(escape, name):
            results = escape.run(console_argv(escape.ctx, name, node), name)
            assert len(results) >= 25 and len(CONFINEMENT) >= 15
            assert {k: v["detail"] for k, v in results.items() if not v["refused"]} == {}, (lab, node)
        assert escape.other.accepted == 0  # not even a connection reached the other candidate
        assert escape.db_tcp.accepted == 0 and escape.abstract.accepted == 0
    finally:
        inodes = namespace_inodes(name)
        down(escape.ctx, name)
        assert leftovers(escape.settings, name, inodes) == []


def test_each_attempt_can_see_an_escape(escape: Escape) -> None:
    """The control: the same attempts through an unconfined entry into a node of the other
    instance (plain nsenter into its namespaces, as labkit entered nodes before) get through,
    and every isolated target answers those who may reach it."""
    prov = NetnsProvider(escape.settings)
    ns = prov._ns_files(OTHER, "pc-hq")
    unconfined = ["nsenter", f"--net={ns.net}", f"--mount={ns.mnt}", f"--uts={ns.uts}", f"--ipc={ns.ipc}",
                  f"--pid={ns.pid}", "--wd=/", "/bin/bash"]
    results = escape.run(unconfined, OTHER)
    assert {k for k in CONFINEMENT if results[k]["refused"]} == set(), {k: results[k] for k in CONFINEMENT}
    if _host_can_mount_its_disk():  # else (a sandbox, a container) not even the host's root can
        assert results["host-disk-mount"]["refused"] is False, results["host-disk-mount"]
    # the isolated targets are real: the host reaches its listeners, the other candidate's
    # own workstation reaches their vantage listener on its LAN, the files exist
    for listener in (escape.host_lo, escape.db_tcp):
        with socket.create_connection(("127.0.0.1", listener.port), timeout=2) as s:
            assert s.recv(64).decode() == escape.nonce
    ab = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ab.connect("\0" + escape.abstract_name)
    assert ab.recv(64).decode() == escape.nonce
    ab.close()
    before = escape.other.accepted
    own = subprocess.run(console_argv(escape.ctx, OTHER, "pc-hq"), capture_output=True, text=True, timeout=60,
                         input=f"python3 -c \"import socket; s=socket.create_connection(('{escape.other_addr}', "
                               f"{escape.other.port}), timeout=3); print('GOT', s.recv(64).decode())\"\nexit\n")
    assert f"GOT {escape.nonce}" in own.stdout and escape.other.accepted == before + 1
    assert escape.db_file.exists() and Path(escape.ctx.store.load(OTHER).ssh_key).exists()
    assert "/etc/shadow" in _host_secret_digests()  # the host's shadow is there to be compared
    assert Path(sys.executable).exists()
