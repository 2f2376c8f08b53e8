"""The netns provider: each node is a named network namespace plus persistent mount, UTS, IPC
and PID namespaces. Its root filesystem is its own overlay on the nodes' image (a Debian
system built from Debian's packages by ``scripts/build-node-image.sh``; nothing of the host's
files is below it: the mount namespace is pivoted into the overlay and the host's tree
detached), with tmpfs /run, /tmp and /dev and its own /proc: in a node, ``ps`` lists the
node's processes only, and its PID 1 is ``tini``, which reaps the daemons' orphans; when that
init ends, the kernel ends every process of the node. Everything that runs in a node is
started through ``enter.py`` on the host's Python: capability bounding set and seccomp filter
(see there), so root in a node cannot mount, mknod, load modules, ptrace or leave its
namespaces. LAN segments are bridges in their own "switch" namespaces; grader vantage points
are namespaces of their own on those LANs.

Nothing is ever added to the host's root network namespace: both ends of every veth pair
are created directly inside their namespaces. Every name carries the instance name, so two
instances of one lab (same addresses) run side by side, and ``destroy`` finds everything
from the name alone, after a crash, from a new process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from labkit.adapters.netns import enter as enter_module
from labkit.adapters.netns.nodefs import NodeFS, init_pid_of
from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.netns.ground import InProcessGround
from labkit.adapters.providers.base import GraderGround
from labkit.errors import MissingDependencyError, NotRootError, ProviderError, UnknownNodeError, UserError
from labkit.models.device import DEVICE_USER, DeviceEndpoint
from labkit.models.capabilities import ALL_CAPABILITIES, Capability
from labkit.models.instance import ExecResult, InstancePlan, InstanceState, InstanceStatus, NodeStatus
from labkit.models.services import SERVICE_PACKAGES
from labkit.settings import Settings, load_settings

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
_THREAD_LOCK = threading.Lock()  # flock is per open file: threads of one process need this too
# The helper that enters a node, confined; run by the host's Python in isolated mode, without
# site (it gets the instance's compiled seccomp filter, so it needs nothing but the stdlib).
ENTER = [sys.executable, "-I", "-S", str(Path(enter_module.__file__).resolve())]
SECCOMP_FILE = "seccomp.bpf"  # in the instance's private run directory
IMAGE_MARK = ".labkit-image"
@dataclass(frozen=True)
class NodeNamespaces:
    """Where a node's namespaces are bound: its named network namespace, and files in the
    instance's private run directory for the others."""

    net: Path
    mnt: Path
    uts: Path
    ipc: Path
    pid: Path


@dataclass(frozen=True)
class BaseService:
    """A daemon the provider starts in a node at ``up`` (candidates restart it themselves): its
    Debian package, binary and process (models.services, shared with the other providers) and
    how netns starts it."""

    binary: str  # its presence says the Debian package is installed
    package: str
    start: str  # shell command run inside the node
    process: str  # process name that shows it runs (``status``)


# How netns starts each service inside a node (no systemd there: the init script, or the daemon).
SERVICE_STARTS: dict[str, str] = {
    "frr": "/etc/init.d/frr start",
    "snmpd": "/etc/init.d/snmpd start",
    "ssh": "/etc/init.d/ssh start",
    # Debian's cron init script starts and stops through /run/crond.pid only (killproc -p),
    # so one node's "service cron stop" never signals another node's cron.
    "cron": "/etc/init.d/cron start",
    # Debian 12 ships no init script for rsyslog (systemd only): it is started directly and
    # stopped with "kill $(cat /run/rsyslogd.pid)" (the node's own /run). Its kernel log
    # input is turned off in each node (see RSYSLOG_SEED): /proc/kmsg is the host's.
    "rsyslog": "/usr/sbin/rsyslogd",
    # chrony's init script stops through /run/chrony/chronyd.pid only; -x (CHRONY_DEFAULT)
    # because nodes share the host's clock: chronyd must never set it.
    "chrony": "/etc/init.d/chrony start",
}
# Order matters: services start in this order within a node (that of models.services).
SERVICES: dict[str, BaseService] = {
    name: BaseService(binary=p.binary, package=p.package, start=SERVICE_STARTS[name], process=p.process)
    for name, p in SERVICE_PACKAGES.items()
}
CHRONY_DEFAULT = """# labkit: nodes share the host's clock; chronyd must never set it (-x)
DAEMON_OPTS="-F 1 -x"
"""
RSYSLOG_SEED = "sed -i 's/^module(load=\"imklog\")/# labkit, the kernel log is the host one: &/' /etc/rsyslog.conf"
# Nodes share the host's process list (no PID namespace): Debian's stock snmpd init script
# stops every process running /usr/sbin/snmpd, i.e. every node's agent. Each node gets its
# own /etc/default/snmpd whose stop command only signals the pid in the node's /run.
SNMPD_DEFAULT = """# labkit: stop only this node's snmpd (nodes share the host's process list)
export MIBS=
do_stop_cmd_override() {
\tstart-stop-daemon --stop --quiet --retry=TERM/5/KILL/2 --pidfile "$PIDFILE" --exec "$DAEMON"
\tRETVAL="$?"
\t[ "$RETVAL" = 2 ] && return 2
\trm -f "$PIDFILE"
\treturn "$RETVAL"
}
"""
TOOLS = ("ip", "nsenter", "unshare", "setsid", "mount", "pivot_root")
NODE_INIT = "/usr/bin/tini"
DEVICES = (
    ("null", "c", 1, 3, "666"), ("zero", "c", 1, 5, "666"), ("full", "c", 1, 7, "666"),
    ("random", "c", 1, 8, "666"), ("urandom", "c", 1, 9, "666"), ("tty", "c", 5, 0, "666"),
    ("net/tun", "c", 10, 200, "666"),
)


def ns_prefix(instance: str) -> str:
    return f"lk-{instance}."


def node_ns(instance: str, node: str) -> str:
    return f"lk-{instance}.n.{node}"


def switch_ns(instance: str, segment: str) -> str:
    return f"lk-{instance}.s.{segment}"


def vantage_ns(instance: str, vantage: str) -> str:
    return f"lk-{instance}.v.{vantage}"


def link_ns(instance: str, link: str) -> str:
    """The grader-owned namespace a point-to-point link passes through (bridge ``br0``)."""
    return f"lk-{instance}.w.{link}"


# The ports of a link's bridge, facing the link's first and second endpoint.
LINK_PORTS = ("p1", "p2")


# The whole environment of every command the provider runs, on the host or in a node: the
# node's init and every daemon started at `up` inherit it, and the candidate (root in the
# node) reads /proc/*/environ. Nothing of labkit's (LABKIT_*, SSH_AUTH_SOCK, tokens) gets in.
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NODE_ENV = {"PATH": NODE_PATH, "HOME": "/root", "LANG": "C.UTF-8"}


def run_bounded(argv: list[str], *, input: str | None = None, timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a process group of its own, with the minimal ``NODE_ENV``; on
    timeout the whole group is killed (``nsenter --pid`` forks: killing nsenter alone would
    leave the command running in the node). Raises ``subprocess.TimeoutExpired`` like
    ``subprocess.run``."""
    with subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, env=NODE_ENV) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _run(argv: list[str], *, input: str | None = None, timeout: float = 30.0) -> str:
    try:
        proc = run_bounded(argv, input=input, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ProviderError(f"'{' '.join(argv)}' did not finish within {timeout} s.") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise ProviderError(
            f"'{' '.join(argv[:8])}' failed: {msg[-1] if msg else 'exit ' + str(proc.returncode)}."
        )
    return proc.stdout


_NSFS_DEV = os.stat("/proc/self/ns/net").st_dev


def _ns_inode(path: Path) -> int | None:
    """Inode of the namespace bound at ``path``; None if nothing (or a plain file) is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino if st.st_dev == _NSFS_DEV else None


def _pids_in(inodes: set[int]) -> list[int]:
    """Processes whose network or mount namespace is one of ``inodes``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        for kind in ("net", "mnt"):
            try:
                if os.stat(f"/proc/{pid}/ns/{kind}").st_ino in inodes:
                    found.append(pid)
                    break
            except OSError:
                break
    return found


def _mounts_under(prefix: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix.rstrip("/") or mp.startswith(prefix.rstrip("/") + "/"):
                out.append(mp)
    return out


def segment_ports(plan: InstancePlan) -> dict[tuple[str, str], str]:
    """(segment, member) -> the port of the segment's bridge facing that member, as
    :meth:`NetnsProvider.create` numbers them: one counter over every segment's members in
    plan order, then over the vantage points (member ``<vantage>:eth0``)."""
    ports: dict[tuple[str, str], str] = {}
    port = 0
    for seg, members in plan.segments.items():
        for member in members:
            port += 1
            ports[(seg, member)] = f"p{port}"
    for v in plan.vantage:
        port += 1
        ports[(v.segment, f"{v.name}:eth0")] = f"p{port}"
    return ports


class NetnsProvider:
    name = "netns"
    capabilities: frozenset[Capability] = ALL_CAPABILITIES

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load_settings()

    # ----------------------------------------------------------------- paths
    def _inst_run_dir(self, name: str) -> Path:
        return self.settings.run_dir / name

    def _ns_files(self, name: str, node: str) -> NodeNamespaces:
        d = self._inst_run_dir(name)
        return NodeNamespaces(net=NETNS_DIR / node_ns(name, node), mnt=d / f"{node}.mnt", uts=d / f"{node}.uts",
                              ipc=d / f"{node}.ipc", pid=d / f"{node}.pid")

    def _node_dir(self, name: str, node: str) -> Path:
        return self.settings.instances / name / "nodes" / node

    def node_enter_argv(self, name: str, node: str, wd: str = "/") -> list[str]:
        """The confined way into a node (``enter.py``): append the command to run there."""
        ns = self._ns_files(name, node)
        return [*ENTER, "--filter", str(self._inst_run_dir(name) / SECCOMP_FILE), "--net", str(ns.net),
                "--uts", str(ns.uts), "--ipc", str(ns.ipc), "--pid", str(ns.pid), "--mnt", str(ns.mnt), "--wd", wd,
                "--"]

    def image(self) -> Path:
        """The nodes' root filesystem image new nodes start from (its real path)."""
        current = self.settings.images / "current"
        real = current.resolve()
        if not (real / IMAGE_MARK).is_file():
            raise MissingDependencyError(
                f"the nodes' image is missing ({current}); run 'make deps' (it builds it with "
                "scripts/build-node-image.sh) and retry."
            )
        return real

    # ------------------------------------------------------------- preflight
    def preflight(self, plan: InstancePlan) -> None:
        if os.geteuid() != 0:
            raise NotRootError(
                "the netns provider needs root to create network namespaces; run labkit with sudo or as root."
            )
        odd = sorted(f"{n.name} ({n.platform})" for n in plan.nodes if n.platform not in (None, "frr"))
        if odd:
            raise UserError(f"the netns provider hosts 'frr' network devices only (FRR's vtysh as their CLI), not "
                            f"{', '.join(odd)}; bring this lab up on a provider with those appliances (gns3).")
        if any(n.platform == "frr" and not {"frr", "ssh"} <= set(n.services) for n in plan.nodes):
            raise UserError("a 'platform: frr' node must list the frr and ssh services in its topology "
                            "(its CLI is vtysh, reached over the node's sshd); add them.")
        missing_tools = [t for t in TOOLS if shutil.which(t) is None]
        image = self.image()
        missing_pkgs = sorted({
            pkg for n in plan.nodes for s in n.services
            for binary, pkg in [(SERVICES[s].binary, SERVICES[s].package)] if not (image / binary.lstrip("/")).exists()
        })
        if missing_tools or missing_pkgs:
            what = ", ".join([*missing_tools, *(f"package {p}" for p in missing_pkgs)])
            raise MissingDependencyError(
                f"missing on this machine or in the nodes' image: {what}; run 'make deps' (it installs the "
                "Debian packages and builds the image) and retry."
            )

    # ---------------------------------------------------------------- create
    def create(self, state: InstanceState) -> None:
        plan = state.plan
        name = state.name
        with self._run_dir_lock():
            self._ensure_private_run_dir()
            self._inst_run_dir(name).mkdir(mode=0o700, exist_ok=False)
        enter_module.write_filter(str(self._inst_run_dir(name) / SECCOMP_FILE))
        state.provider_data = {"image": str(self.image())}
        for seg in plan.segments:
            self._bridge_ns(switch_ns(name, seg))
        for link in plan.links:
            self._bridge_ns(link_ns(name, link))
        for node in plan.nodes:
            self._create_node(state, node.name)
        # a point-to-point link passes through a bridge the grader owns (veth - br0 - veth),
        # so it can be watched and cut where the candidate cannot undo it
        for link, ends in plan.links.items():
            for link_port, end in zip(LINK_PORTS, ends, strict=True):
                n, i = end.split(":")
                self._plug(link_ns(name, link), link_port, node_ns(name, n), i)
        port = 0
        for seg, members in plan.segments.items():
            sw = switch_ns(name, seg)
            for member in members:
                n, i = member.split(":")
                port += 1
                self._plug(sw, f"p{port}", node_ns(name, n), i)
        for node in plan.nodes:
            ns = node_ns(name, node.name)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            for iface in node.interfaces:
                for addr in iface.addresses:
                    _run(["ip", "-n", ns, "addr", "add", addr, "dev", iface.name])
                _run(["ip", "-n", ns, "link", "set", iface.name, "up"])
            for route in node.routes:
                _run(["ip", "-n", ns, "route", "add", route.to, "via", route.via])
            if node.role == "router":
                self._sysctl(ns, "net.ipv4.ip_forward", "1")
        for v in plan.vantage:
            ns = vantage_ns(name, v.name)
            _run(["ip", "netns", "add", ns])
            port += 1
            self._plug(switch_ns(name, v.segment), f"p{port}", ns, "eth0")
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "addr", "add", v.address, "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            if v.gateway:
                _run(["ip", "-n", ns, "route", "add", "default", "via", v.gateway])
        state.provider_data = {
            "image": state.provider_data["image"],
            "run_dir": str(self._inst_run_dir(name)),
            "namespaces": sorted(p.name for p in NETNS_DIR.glob(ns_prefix(name) + "*")),
        }
        if state.vantage == "agent":
            from labkit.adapters.netns.agentground import start_agent

            state.provider_data["agent"] = start_agent(self, state)
            state.provider_data["namespaces"] = sorted(p.name for p in NETNS_DIR.glob(ns_prefix(name) + "*"))

    def _bridge_ns(self, ns: str) -> None:
        _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge", "stp_state", "0",
              "forward_delay", "0"])
        _run(["ip", "-n", ns, "link", "set", "br0", "up"])

    def _plug(self, sw: str, port: str, ns: str, iface: str) -> None:
        _run(["ip", "link", "add", "name", iface, "netns", ns, "type", "veth",
              "peer", "name", port, "netns", sw])
        _run(["ip", "-n", sw, "link", "set", port, "master", "br0", "up"])

    def _sysctl(self, ns: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        _run(["ip", "netns", "exec", ns, "sh", "-c", f"echo {value} > {path}"])

    @contextlib.contextmanager
    def _run_dir_lock(self) -> Iterator[None]:
        """One process or thread at a time sets up or removes the private run directory:
        two instances coming up at once would otherwise both bind-mount it (stacked mounts),
        and the last instance going down could unmount it under one coming up."""
        parent = self.settings.run_dir.parent  # locked as a directory: no lock file left behind
        parent.mkdir(parents=True, exist_ok=True)
        with _THREAD_LOCK:
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock

    def _ensure_private_run_dir(self) -> None:
        rd = self.settings.run_dir
        rd.mkdir(mode=0o700, parents=True, exist_ok=True)
        if str(rd) not in _mounts_under(str(rd)):
            _run(["mount", "--bind", str(rd), str(rd)])
        _run(["mount", "--make-private", str(rd)])

    def _create_node(self, state: InstanceState, node: str) -> None:
        name = state.name
        _run(["ip", "netns", "add", node_ns(name, node)])
        ns = self._ns_files(name, node)
        for f in (ns.mnt, ns.uts, ns.ipc, ns.pid):
            f.touch()
        d = self._node_dir(name, node)
        for sub in ("upper", "work", "merged"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        image = Path(state.provider_data.get("image") or self.image())
        plan = state.plan.node(node)
        volumes = [(v.path, v.size) for v in plan.volumes] if plan else []
        _run(["nsenter", f"--net={ns.net}", "unshare", f"--mount={ns.mnt}", f"--uts={ns.uts}", f"--ipc={ns.ipc}",
              "--propagation", "private", "/bin/sh", "-ec", self._node_script(node, d, image, volumes)])
        self._start_init(name, node)
        self._verify_node(name, node)
        self._seed_node(state, node)

    def _node_script(self, node: str, d: Path, image: Path, volumes: list[tuple[str, str]] | None = None) -> str:
        """Run by the host's /bin/sh in the node's new mount namespace: the node's root is an
        overlay whose only lower layer is the image, with its own /run, /tmp, /dev and a
        read-only /sys; then ``pivot_root`` into it and detach the host's tree, so that no
        file of the host (its /etc/shadow, labkit's home, other instances) is reachable from
        the node, even by unmounting (which the node's root cannot do anyway)."""
        m = shlex.quote(str(d / "merged"))
        lines = [
            f"mount -t overlay overlay -o lowerdir={shlex.quote(str(image))},upperdir={shlex.quote(str(d / 'upper'))},"
            f"workdir={shlex.quote(str(d / 'work'))} {m}",
            f"cd {m}",
            "mount -t tmpfs -o size=64m,mode=755,nosuid,nodev tmpfs run",
            "mkdir -p run/lock run/sshd && chmod 1777 run/lock",
            "mount -t tmpfs -o size=256m,mode=1777,nosuid,nodev tmpfs tmp",
            "mount -t sysfs -o ro,nosuid,nodev,noexec sysfs sys",
            "mount -t tmpfs -o size=1m,mode=755,nosuid tmpfs dev",
            "mkdir -p dev/net dev/pts dev/shm",
        ]
        for devname, kind, major, minor, mode in DEVICES:
            lines.append(f"mknod -m {mode} dev/{devname} {kind} {major} {minor}")
        lines += [
            "mount -t devpts -o newinstance,ptmxmode=0666,mode=620,nosuid,noexec devpts dev/pts",
            "ln -s pts/ptmx dev/ptmx",
            "mount -t tmpfs -o size=64m,mode=1777,nosuid,nodev tmpfs dev/shm",
            "ln -s /proc/self/fd dev/fd; ln -s /proc/self/fd/0 dev/stdin",
            "ln -s /proc/self/fd/1 dev/stdout; ln -s /proc/self/fd/2 dev/stderr",
        ]
        # data volumes: a size-limited tmpfs of the node's own
        for path, size in volumes or []:
            rel = shlex.quote("." + path)
            lines.append(f"mkdir -p {rel} && mount -t tmpfs -o size={shlex.quote(size)},mode=755,"
                         f"nosuid,nodev tmpfs {rel}")
        lines += [
            f"hostname {shlex.quote(node)}",
            "mkdir .labkit-oldroot",
            "pivot_root . .labkit-oldroot",
            "cd /",
            # umount reads /proc/self/mountinfo: a /proc for that moment only (the node's init
            # mounts the node's own)
            "mount -t proc proc /proc",
            "umount -l /.labkit-oldroot",
            "umount /proc",
            "rmdir /.labkit-oldroot",
        ]
        return "\n".join(lines)

    def _start_init(self, name: str, node: str) -> None:
        """The node's PID namespace, bound to ``<node>.pid``, and its init: ``enter.py --init``
        mounts the node's /proc as PID 1, confines itself and becomes ``tini`` (it reaps
        orphaned daemons). ``unshare`` stays in the host's mount namespace to bind the file."""
        ns = self._ns_files(name, node)
        # setsid --fork: the init's chain leaves this process at once (no child of ours to reap);
        # no pipe of ours may reach it, or reading our end would wait for the node's lifetime
        subprocess.run(["setsid", "--fork", "nsenter", f"--net={ns.net}", f"--uts={ns.uts}", f"--ipc={ns.ipc}",
                        "unshare", f"--pid={ns.pid}", "--fork", "--kill-child",
                        *ENTER, "--init", "--filter", str(self._inst_run_dir(name) / SECCOMP_FILE),
                        "--mnt", str(ns.mnt), "--", NODE_INIT, "--", "sleep", "infinity"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True, timeout=10, env=NODE_ENV)
        deadline = time.monotonic() + 10
        while _ns_inode(ns.pid) is None or not self._init_ready(name, node):
            if time.monotonic() > deadline:
                raise ProviderError(f"node {node!r} did not get its init process within 10 s; nothing was "
                                    "started in it.")
            time.sleep(0.01)

    def _init_ready(self, name: str, node: str) -> bool:
        try:
            out = subprocess.run([*self.node_enter_argv(name, node), "cat", "/proc/1/comm"],
                                 capture_output=True, text=True, timeout=5, env=NODE_ENV)
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0 and out.stdout.strip() == Path(NODE_INIT).name

    def _verify_node(self, name: str, node: str) -> None:
        """Prove the node's namespaces and confinement took effect before anything runs in
        it: its own hostname, network and PID namespaces, tini as PID 1, an overlay root,
        and, for the command that ran this check, the reduced bounding set and seccomp."""
        out = _run([*self.node_enter_argv(name, node), "/bin/sh", "-c",
                    "hostname; readlink /proc/self/ns/net; "
                    "awk '$5 == \"/\" {print $9}' /proc/self/mountinfo | tail -1; "
                    "readlink /proc/self/ns/pid; cat /proc/1/comm; "
                    "sed -n 's/^CapBnd:[[:space:]]*//p; s/^Seccomp:[[:space:]]*//p' /proc/self/status"])
        host_net, host_pid = os.readlink("/proc/self/ns/net"), os.readlink("/proc/self/ns/pid")
        lines = out.split()
        want_caps = f"{enter_module.keep_mask():016x}"
        if (len(lines) != 7 or lines[0] != node or lines[1] == host_net or lines[2] != "overlay"
                or lines[3] == host_pid or lines[4] != Path(NODE_INIT).name or lines[5] != want_caps
                or lines[6] != "2"):
            raise ProviderError(f"node {node!r} was not isolated and confined as expected ({out.strip()!r}); "
                                "nothing was started in it.")

    def _seed_node(self, state: InstanceState, node: str) -> None:
        plan = state.plan
        hosts = ["127.0.0.1 localhost", f"127.0.1.1 {node}"]
        for n in plan.nodes:
            addr = n.first_address()
            if addr and n.name != node:
                hosts.append(f"{addr} {n.name}")
        pub = Path(state.ssh_key + ".pub").read_text().strip()
        script = "\n".join([
            f"echo {node} > /etc/hostname",
            "cat > /etc/hosts <<'EOF'\n" + "\n".join(hosts) + "\nEOF",
            "rm -f /etc/resolv.conf",
            "printf '# labkit: this lab has no DNS server\\nnameserver 127.0.0.1\\noptions timeout:1 attempts:1\\n'"
            " > /etc/resolv.conf",
            "rm -f /etc/ssh/ssh_host_*",
            "ssh-keygen -q -t ed25519 -N '' -C " + node + " -f /etc/ssh/ssh_host_ed25519_key",
            "mkdir -p /etc/ssh/sshd_config.d /root/.ssh && chmod 700 /root/.ssh",
            "printf 'HostKey /etc/ssh/ssh_host_ed25519_key\\nPermitRootLogin prohibit-password\\n"
            "PasswordAuthentication no\\nUseDNS no\\n' > /etc/ssh/sshd_config.d/labkit.conf",
            f"echo '{pub}' > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
            "rm -f /etc/frr/frr.conf.sav; printf 'frr defaults traditional\\nhostname " + node
            + "\\nservice integrated-vtysh-config\\n!\\n' > /etc/frr/frr.conf 2>/dev/null || true",
        ])
        self._node_shell(state.name, node, script)
        self._seed_services(state, node)
        self._seed_device(state, node, pub)

    def _seed_device(self, state: InstanceState, node: str, pub: str) -> None:
        """A device node (``platform: frr``) is an FRR appliance: its routing daemons run (ospfd
        on, with an empty configuration) and its device user ``labkit`` logs in over the
        node's own sshd with the instance's key straight into vtysh, its login shell: the
        device's CLI, through which solutions and graders reach it (netmiko). The user may
        save the configuration (``write memory``: group frr may write /etc/frr)."""
        n = state.plan.node(node)
        if n is None or n.platform is None:
            return
        user = DEVICE_USER
        self._node_shell(state.name, node, "\n".join([
            "sed -i 's/^ospfd=no/ospfd=yes/' /etc/frr/daemons",
            f"id {user} >/dev/null 2>&1 || useradd -m -s /usr/bin/vtysh -G frrvty,frr {user}",
            f"mkdir -p /home/{user}/.ssh && echo '{pub}' > /home/{user}/.ssh/authorized_keys",
            f"chown -R {user}: /home/{user}/.ssh && chmod 700 /home/{user}/.ssh "
            f"&& chmod 600 /home/{user}/.ssh/authorized_keys",
            "chmod g+w /etc/frr && chgrp frr /etc/frr/frr.conf && chmod 660 /etc/frr/frr.conf",
        ]))

    def _seed_services(self, state: InstanceState, node: str) -> None:
        """Per-node service defaults that keep one node's init scripts away from the others."""
        n = state.plan.node(node)
        if n is None:
            return
        if "snmpd" in n.services:
            self._node_shell(state.name, node, "cat > /etc/default/snmpd <<'EOF'\n" + SNMPD_DEFAULT + "EOF")
        if "chrony" in n.services:
            self._node_shell(state.name, node, "cat > /etc/default/chrony <<'EOF'\n" + CHRONY_DEFAULT + "EOF")
        if "rsyslog" in n.services:
            self._node_shell(state.name, node, RSYSLOG_SEED)

    def _node_shell(self, name: str, node: str, script: str, timeout: float = 30.0) -> str:
        return _run([*self.node_enter_argv(name, node), "/bin/sh", "-ec", script], timeout=timeout)

    # ----------------------------------------------------------------- start
    def start(self, state: InstanceState) -> None:
        for node in state.plan.nodes:
            cmds = [f"{svc.start} >/dev/null" for name, svc in SERVICES.items() if name in node.services]
            if cmds:
                self._node_shell(state.name, node.name, "\n".join(cmds), timeout=60)

    # ---------------------------------------------------------------- status
    def status(self, state: InstanceState) -> InstanceStatus:
        nodes = []
        for node in state.plan.nodes:
            ino = _ns_inode(NETNS_DIR / node_ns(state.name, node.name))
            comms: set[str] = set()
            pids = _pids_in({ino}) if ino else []
            for pid in pids:
                try:
                    comms.add(Path(f"/proc/{pid}/comm").read_text().strip())
                except OSError:
                    pass
            nodes.append(NodeStatus(
                name=node.name, present=ino is not None, processes=len(pids),
                services={s: SERVICES[s].process in comms for s in node.services if s in SERVICES},
            ))
        return InstanceStatus(
            name=state.name, lab_id=state.plan.lab_id, provider=self.name, phase=state.phase,
            created_at=state.created_at, nodes=nodes,
        )

    # ------------------------------------------------------------------ exec
    def _check_node(self, state: InstanceState, node: str) -> None:
        if state.plan.node(node) is None:
            names = ", ".join(n.name for n in state.plan.nodes)
            raise UnknownNodeError(f"instance {state.name!r} has no node {node!r}; its nodes are: {names}.")
        if not (NETNS_DIR / node_ns(state.name, node)).exists():
            raise ProviderError(
                f"node {node!r} of instance {state.name!r} is gone; "
                f"run 'labkit down {state.name}' and bring it up again."
            )

    def exec(self, state: InstanceState, node: str, argv: list[str], *, input: str | None = None,
             timeout: float = 60.0) -> ExecResult:
        """Run ``argv`` in the node with the minimal ``NODE_ENV`` (PATH, HOME, LANG), set on
        the host for nsenter itself: nothing of labkit's environment (LABKIT_*,
        SSH_AUTH_SOCK, tokens) reaches any binary of the node."""
        self._check_node(state, node)
        full = [*self.node_enter_argv(state.name, node), *argv]
        t0 = time.monotonic()
        try:
            proc = run_bounded(full, input=input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ProviderError(f"the command did not finish within {timeout} s in node {node!r}.") from exc
        return ExecResult(argv=argv, rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                          duration=time.monotonic() - t0)

    def console_argv(self, state: InstanceState, node: str) -> list[str]:
        """A root login shell in the node, with the same minimal environment as ``exec`` plus
        TERM, cleared on the host before nsenter (the node's own ``env`` never sees labkit's)."""
        self._check_node(state, node)
        term = os.environ.get("TERM") or "xterm"
        if not term.replace("-", "").replace(".", "").replace("+", "").isalnum():
            term = "xterm"
        return ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in NODE_ENV.items()), f"TERM={term}",
                *self.node_enter_argv(state.name, node, wd="/root"), "/bin/bash", "-l"]

    # -------------------------------------------------------------- grading
    def place_namespace(self, state: InstanceState, where: str) -> str:
        """The namespace of a grader place. ``where``: a vantage point, a node (read its kernel
        state, cut its links), ``segment:NAME``, the LAN's switch namespace, or ``link:NAME``,
        the namespace a point-to-point link passes through (ports ``p1``/``p2`` facing its two
        endpoints), where a grader may capture on ``br0`` or cut the link."""
        if where.startswith("segment:") and where[8:] in state.plan.segments:
            ns = switch_ns(state.name, where[8:])
        elif where.startswith("link:") and where[5:] in state.plan.links:
            ns = link_ns(state.name, where[5:])
        elif state.plan.vantage_point(where):
            ns = vantage_ns(state.name, where)
        elif state.plan.node(where):
            ns = node_ns(state.name, where)
        else:
            raise UnknownNodeError(f"instance {state.name!r} has no vantage point or node {where!r}.")
        return ns

    def segment_port(self, state: InstanceState, segment: str, member: str) -> str | None:
        """The port of ``segment``'s bridge (in its switch namespace, the place
        ``segment:<segment>``) facing ``member`` ("node:iface", or "vantage:eth0"), from this
        provider's own wiring: ``create`` plugs every segment member in plan order, then every
        vantage point, on ports ``p1``, ``p2``... numbered by ONE counter over all segments;
        recomputed here from the plan in that order (nothing is asked of the node). None when
        ``member`` is not on that segment."""
        return segment_ports(state.plan).get((segment, member))

    def run_at(self, state: InstanceState, where: str, fn: Callable[[], T], timeout: float) -> T:
        """Run ``fn`` in labkit's process with its sockets opened at place ``where``
        (:meth:`place_namespace`); the in-process ground and the agent both come here."""
        return run_in_netns(self.place_namespace(state, where), fn, timeout=timeout)

    def ground(self, state: InstanceState, mode: str | None = None) -> GraderGround:
        """In-process by default; ``agent``: the grader agent behind SSH on the instance's
        management namespace (made at ``up`` when the instance's vantage is ``agent``)."""
        mode = mode or state.vantage
        if mode == "inprocess":
            return InProcessGround(self, state)
        if mode == "agent":
            from labkit.adapters.netns.agentground import open_agent_ground

            return open_agent_ground(self, state)
        raise UserError(f"unknown vantage {mode!r}; use 'inprocess' or 'agent'.")

    def instances(self) -> list[str]:
        """The instances with files in this run dir (also those whose state is gone after a
        crash); the instances of other labkit homes, in their own run dirs, are not listed."""
        rd = self.settings.run_dir
        return sorted(p.name for p in rd.iterdir() if p.is_dir()) if rd.is_dir() else []

    def leftovers(self, name: str) -> list[str]:
        """Namespaces and run-directory files of ``name`` still on this host."""
        left = [str(p) for p in NETNS_DIR.glob(ns_prefix(name) + "*")] if NETNS_DIR.is_dir() else []
        if self._inst_run_dir(name).exists():
            left.append(str(self._inst_run_dir(name)))
        return sorted(left)

    def node_fs(self, state: InstanceState, node: str) -> NodeFS:
        """The node's files, read by the grader's own code (nothing runs in the node)."""
        self._check_node(state, node)
        init = init_pid_of(self._ns_files(state.name, node).pid)
        image = state.provider_data.get("image")
        return NodeFS(Path(f"/proc/{init}/root"), init_pid=init, image=Path(image) if image else None)

    def ansible_host_vars(self, state: InstanceState, node: str) -> dict[str, str]:
        ns = self._ns_files(state.name, node)
        return {
            "labkit_netns": str(ns.net),
            "labkit_mnt": str(ns.mnt),
            "labkit_uts": str(ns.uts),
            "labkit_ipc": str(ns.ipc),
            "labkit_pid": str(ns.pid),
        }

    # -------------------------------------------------------------- devices
    def device_endpoint(self, state: InstanceState, node: str) -> DeviceEndpoint:
        """SSH to the device's first planned address, from the vantage point of one of its
        LANs (the grader's own place), as the device user with the instance's key."""
        self._check_node(state, node)
        n = state.plan.node(node)
        assert n is not None
        if n.platform is None:
            raise UserError(f"node {node!r} is a Linux host, not a network device; use Ansible or 'labkit exec'.")
        for v in state.plan.vantage:
            addr = n.first_address(v.segment)
            if addr:
                return DeviceEndpoint(node=node, platform=n.platform, transport="ssh", host=addr, port=22,
                                      username=DEVICE_USER, key_file=state.ssh_key, via=v.name)
        raise UserError(f"device {node!r} has no address on a LAN with a vantage point; add a vantage "
                        "point on one of its LANs to the lab so the grader can reach its CLI.")

    def device_socket(self, state: InstanceState, node: str, timeout: float = 10.0) -> socket.socket:
        """A TCP socket to the device's SSH port, created inside the vantage namespace of
        :meth:`device_endpoint` (never in the host's root namespace), for netmiko's ``sock``."""
        ep = self.device_endpoint(state, node)
        assert ep.via is not None

        def connect() -> socket.socket:
            return socket.create_connection((ep.host, ep.port), timeout=timeout)

        try:
            return self.run_at(state, ep.via, connect, timeout=timeout + 2)
        except OSError as exc:
            raise ProviderError(f"cannot reach device {node!r} at {ep.host}:{ep.port} from vantage point "
                                f"{ep.via!r} ({exc}); is its sshd running ('labkit status')?") from None

    # --------------------------------------------------------------- destroy
    def destroy(self, name: str, state: InstanceState | None) -> list[str]:
        """Remove every namespace, process, mount and file of ``name``. Idempotent."""
        from labkit.adapters.netns.agentground import stop_agent

        removed: list[str] = stop_agent(self, name)  # vantage agent: its sshd, by pid file
        namespaces = sorted(NETNS_DIR.glob(ns_prefix(name) + "*")) if NETNS_DIR.is_dir() else []
        inst_run = self._inst_run_dir(name)
        ns_files = sorted(inst_run.glob("*.mnt")) + sorted(inst_run.glob("*.uts")) if inst_run.is_dir() else []
        inodes = {i for i in (_ns_inode(p) for p in [*namespaces, *ns_files]) if i is not None}
        inodes -= {os.stat("/proc/self/ns/net").st_ino, os.stat("/proc/self/ns/mnt").st_ino}
        if inodes:
            # Re-scan: a daemon may fork while it handles SIGTERM (samba, smbd, winbindd do).
            for _ in range(5):
                killed = self._kill(inodes)
                removed += [f"process {pid}" for pid in killed]
                if not killed:
                    break
        for mp in reversed(_mounts_under(str(inst_run))):
            subprocess.run(["umount", mp], capture_output=True)
            if mp in _mounts_under(mp):
                subprocess.run(["umount", "-l", mp], capture_output=True)
            removed.append(f"mount {mp}")
        for ns in namespaces:
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)
            if ns.exists():
                subprocess.run(["umount", "-l", str(ns)], capture_output=True)
                ns.unlink(missing_ok=True)
            removed.append(f"netns {ns.name}")
        for d in (inst_run, self.settings.instances / name / "nodes"):
            if d.exists():
                shutil.rmtree(d, ignore_errors=True)
                removed.append(f"dir {d}")
        rd = self.settings.run_dir
        with self._run_dir_lock():
            if rd.is_dir() and not any(rd.iterdir()):
                if str(rd) in _mounts_under(str(rd)):
                    subprocess.run(["umount", str(rd)], capture_output=True)
                try:
                    rd.rmdir()
                except OSError:
                    pass
        leftover = [str(p) for p in NETNS_DIR.glob(ns_prefix(name) + "*")] if NETNS_DIR.is_dir() else []
        if leftover:
            raise ProviderError(f"could not remove {', '.join(leftover)}; run 'labkit down {name}' again.")
        return removed

    def _kill(self, inodes: set[int]) -> list[int]:
        """SIGTERM, then SIGKILL, the processes living in these namespaces; wait until gone."""
        me = os.getpid()
        pids = [p for p in _pids_in(inodes) if p != me]
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            alive = [p for p in pids if Path(f"/proc/{p}").exists()]
            if not alive:
                break
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                alive = [p for p in pids if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
                if not alive:
                    break
                time.sleep(0.02)
        return pids


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
