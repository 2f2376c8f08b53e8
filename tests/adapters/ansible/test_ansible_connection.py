"""The labkit_netns connection plugin: refuses anything that is not a node's namespaces, and
against a REAL throwaway node (root) runs tasks inside it, not on the host.

The node is built here with the provider's recipe, independently of the provider, and is
verified before anything runs in it. Safety rules of this file: every command is an argv
list whose parts are checked non-empty; every step's return code is checked; nothing is
started or written outside the verified node; teardown kills only the PIDs found in the
node's own network namespace.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from ansible.errors import AnsibleConnectionFailure

from labkit.adapters.ansible.inventory import build_inventory, write_inventory
from labkit.adapters.ansible.runner import CONNECTION_PLUGINS, run_playbook
from labkit.models.instance import InstancePlan, NodePlan


def _load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("labkit_netns_plugin", CONNECTION_PLUGINS / "labkit_netns.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


plugin = _load_plugin()


# ------------------------------------------------------------------ refusals (no root needed)


@pytest.mark.parametrize("value", [None, "", "relative/path"])
def test_refuses_unset_or_relative_paths(value: object) -> None:
    with pytest.raises(AnsibleConnectionFailure, match="refusing to run"):
        plugin.check_namespace_file("netns", value)


def test_refuses_what_is_not_a_namespace(tmp_path: Path) -> None:
    with pytest.raises(AnsibleConnectionFailure, match="cannot open"):
        plugin.check_namespace_file("mnt", str(tmp_path / "missing.mnt"))
    plain = tmp_path / "x.mnt"  # what a node's file looks like once its namespace is gone
    plain.touch()
    with pytest.raises(AnsibleConnectionFailure, match="not a namespace file"):
        plugin.check_namespace_file("mnt", str(plain))


def test_refuses_a_namespace_of_the_wrong_kind() -> None:
    with pytest.raises(AnsibleConnectionFailure, match="another kind"):
        plugin.check_namespace_file("netns", "/proc/self/ns/uts")


@pytest.mark.parametrize("option,proc", [("netns", "net"), ("mnt", "mnt"), ("uts", "uts"), ("pid", "pid")])
def test_refuses_the_controllers_own_namespaces(option: str, proc: str) -> None:
    with pytest.raises(AnsibleConnectionFailure, match="controller's own"):
        plugin.check_namespace_file(option, f"/proc/self/ns/{proc}")


# ------------------------------------------------------------------------ throwaway node


def _argv(*parts: str | Path) -> list[str]:
    argv = [str(p) for p in parts]
    if not argv or any(not a for a in argv):
        raise AssertionError(f"refusing to run a command with an empty part: {argv!r}")
    return argv


def _run(*parts: str | Path, timeout: float = 30) -> str:
    argv = _argv(*parts)
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _ns_id(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class ThrowawayNode:
    """lkt-ans-<x>: a named netns + persistent mount/UTS/PID namespaces with private overlays;
    the PID namespace's init is tini, as in the netns provider."""

    OVERLAYS = ("etc", "usr", "opt", "root", "srv")  # /var comes last, after /home

    def __init__(self, x: str, run: Path):
        assert x and x.isalnum()
        self.x = x
        self.ns = f"lkt-ans-{x}"
        self.netns = Path("/run/netns") / self.ns
        self.run = run
        self.mnt = run / f"{x}.mnt"
        self.uts = run / f"{x}.uts"
        self.ipc = run / f"{x}.ipc"
        self.pid = run / f"{x}.pid"
        self.data: Path | None = None
        self.done: list[str] = []

    def prefix(self) -> list[str]:
        if "verified" not in self.done:
            raise AssertionError("the node is not verified; nothing may run in it")
        return _argv("nsenter", *self._ns_args(), "--")

    def _ns_args(self) -> list[str]:
        return [f"--net={self.netns}", f"--mount={self.mnt}", f"--uts={self.uts}", f"--ipc={self.ipc}",
                f"--pid={self.pid}"]

    def create(self) -> None:
        if self.netns.exists():
            raise AssertionError(f"{self.ns} already exists; refusing to reuse it")
        self.run.mkdir()
        _run("mount", "--bind", self.run, self.run)
        self.done.append("run-mounted")
        _run("mount", "--make-private", self.run)
        self.mnt.touch()
        self.uts.touch()
        self.ipc.touch()
        self.pid.touch()
        _run("ip", "netns", "add", self.ns)
        self.done.append("netns")
        d = Path(tempfile.mkdtemp(prefix=f"lkt-ans-{self.x}-", dir="/var/tmp"))
        self.data = d
        for sub in (*self.OVERLAYS, "var"):
            (d / "upper" / sub).mkdir(parents=True)
            (d / "work" / sub).mkdir(parents=True)
        (d / "home").mkdir()
        lines = ["set -e"]
        for sub in self.OVERLAYS:
            lines.append(f"mount -t overlay overlay -o lowerdir=/{sub},upperdir={d}/upper/{sub},"
                         f"workdir={d}/work/{sub} /{sub}")
        lines += [
            f"mount --bind {d}/home /home",
            f"mount -t overlay overlay -o lowerdir=/var,upperdir={d}/upper/var,workdir={d}/work/var /var",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            "mount -t tmpfs -o mode=1777 tmpfs /tmp",
            f"hostname {self.x}",
            "ip link set lo up",
        ]
        _run("nsenter", f"--net={self.netns}", "unshare", f"--mount={self.mnt}", f"--uts={self.uts}",
             f"--ipc={self.ipc}", "--propagation", "private", "/bin/sh", "-ec", "\n".join(lines))
        self.done.append("namespaces")
        subprocess.run(_argv("setsid", "--fork", "nsenter", f"--net={self.netns}", f"--uts={self.uts}",
                             f"--ipc={self.ipc}", "unshare",
                             f"--pid={self.pid}", "--fork", "--kill-child", "nsenter", f"--mount={self.mnt}",
                             "/bin/sh", "-c", "mount -t proc proc /proc && exec tini -- sleep infinity"),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True, timeout=10)
        deadline = time.monotonic() + 10
        while subprocess.run(_argv("nsenter", *self._ns_args(), "cat", "/proc/1/comm"), capture_output=True,
                             text=True).stdout.strip() != "tini":
            assert time.monotonic() < deadline, "the node's init did not start"
            time.sleep(0.02)
        self.verify()

    def verify(self) -> None:
        enter = _argv("nsenter", *self._ns_args(), "--")
        inside_net = _run(*enter, "readlink", "/proc/self/ns/net").strip()
        inside_mnt = _run(*enter, "readlink", "/proc/self/ns/mnt").strip()
        hostname = _run(*enter, "hostname").strip()
        if not inside_net.startswith("net:[") or inside_net == os.readlink("/proc/self/ns/net"):
            raise AssertionError(f"node {self.ns}: network namespace not private ({inside_net!r})")
        if not inside_mnt.startswith("mnt:[") or inside_mnt == os.readlink("/proc/self/ns/mnt"):
            raise AssertionError(f"node {self.ns}: mount namespace not private ({inside_mnt!r})")
        if hostname != self.x:
            raise AssertionError(f"node {self.ns}: hostname is {hostname!r}, not {self.x!r}")
        self.done.append("verified")

    def pids(self) -> list[int]:
        """PIDs whose network namespace is this node's (never the host's)."""
        try:
            target = _ns_id(self.netns)
        except OSError:
            return []
        if target == _ns_id("/proc/self/ns/net"):
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    if _ns_id(f"/proc/{entry}/ns/net") == target:
                        found.append(int(entry))
                except OSError:
                    continue
        return found

    def destroy(self) -> list[str]:
        problems = []
        if "netns" in self.done:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in self.pids():
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 3
                while self.pids() and time.monotonic() < deadline:
                    time.sleep(0.05)
            if self.pids():
                problems.append(f"processes left in {self.ns}: {self.pids()}")
        if "namespaces" in self.done or "netns" in self.done:
            for f in (self.mnt, self.uts, self.ipc, self.pid):
                subprocess.run(_argv("umount", f), check=False, capture_output=True)
        if "netns" in self.done:
            proc = subprocess.run(_argv("ip", "netns", "del", self.ns), check=False,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                problems.append(f"ip netns del {self.ns}: {proc.stderr.strip()}")
        if "run-mounted" in self.done:
            proc = subprocess.run(_argv("umount", self.run), check=False, capture_output=True, text=True)
            if proc.returncode != 0:
                problems.append(f"umount {self.run}: {proc.stderr.strip()}")
        if self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)
        if not os.path.ismount(self.run):
            shutil.rmtree(self.run, ignore_errors=True)
        return problems


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayNode]:
    n = ThrowawayNode(f"c{os.getpid()}", tmp_path_factory.mktemp("lkt-ans") / "RUN")
    try:
        n.create()
    except BaseException:
        n.destroy()
        raise
    yield n
    problems = n.destroy()
    assert not n.netns.exists()
    assert problems == []


def _inventory(node: ThrowawayNode, path: Path, **override: str | None) -> Path:
    plan = InstancePlan(name="lktans", lab_id="none", lab_dir="/nonexistent", topology_id="none", seed=1,
                        params={"greeting": "hi"}, nodes=[NodePlan(name=node.x, role="router", services=[])],
                        segments={}, links={})
    inv = build_inventory(plan, {node.x: {"labkit_netns": str(node.netns), "labkit_mnt": str(node.mnt),
                                          "labkit_uts": str(node.uts), "labkit_ipc": str(node.ipc),
                                          "labkit_pid": str(node.pid)}})
    host = inv["all"]["children"]["routers"]["hosts"][node.x]
    for k, v in override.items():
        if v is None:
            host.pop(k)
        else:
            host[k] = v
    return write_inventory(path, inv)


@pytest.mark.root
def test_playbook_runs_inside_the_node(node: ThrowawayNode, tmp_path: Path) -> None:
    probe = f"lkt-ans-probe-{uuid.uuid4().hex[:8]}"
    content = f"written by {probe}\n"
    host_net = os.readlink("/proc/self/ns/net")
    book = tmp_path / "book.yml"
    book.write_text(f"""
- hosts: all
  gather_facts: false
  tasks:
    - name: a file in the node's /etc (put_file)
      ansible.builtin.copy:
        dest: /etc/{probe}
        content: "{content.strip()}\\n"
        mode: "0644"
    - name: its hostname
      ansible.builtin.command: hostname
      register: hn
      changed_when: false
    - name: its network namespace
      ansible.builtin.command: readlink /proc/self/ns/net
      register: ns
      changed_when: false
    - ansible.builtin.assert:
        that:
          - hn.stdout == "{node.x}"
          - ns.stdout != "{host_net}"
          - p.greeting == "hi"
    - name: the file back (fetch_file)
      ansible.builtin.fetch:
        src: /etc/{probe}
        dest: {tmp_path}/fetched
        flat: true
""")
    inv = _inventory(node, tmp_path / "inv.yml")
    try:
        res = run_playbook(book, inv, artifact_dir=tmp_path / "art", timeout=180)
        assert res.ok, res.stdout_tail
        assert not Path("/etc", probe).exists()  # not on the host
        inside = subprocess.run([*node.prefix(), "cat", f"/etc/{probe}"], check=False,
                                capture_output=True, text=True)
        assert inside.returncode == 0 and inside.stdout == content
        assert node.data is not None and (node.data / "upper" / "etc" / probe).read_text() == content
        assert (tmp_path / "fetched").read_text() == content
    finally:
        if Path("/etc", probe).exists():  # only ever this test's own uniquely named file
            Path("/etc", probe).unlink()


@pytest.mark.root
@pytest.mark.parametrize("override", [
    {"labkit_mnt": None},
    {"labkit_uts": ""},
    {"labkit_netns": "/proc/self/ns/net"},
    {"labkit_mnt": "/nonexistent/x.mnt"},
    {"labkit_pid": None},
    {"labkit_pid": "/proc/self/ns/pid"},
    {"labkit_ipc": None},
    {"labkit_ipc": "/proc/self/ns/ipc"},
], ids=["mnt-missing", "uts-empty", "host-netns", "mnt-gone", "pid-missing", "host-pid", "ipc-missing", "host-ipc"])
def test_refuses_to_run_without_the_nodes_namespaces(node: ThrowawayNode, tmp_path: Path,
                                                     override: dict[str, str | None]) -> None:
    book = tmp_path / "book.yml"
    book.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.raw: 'true'\n")
    res = run_playbook(book, _inventory(node, tmp_path / "inv.yml", **override), artifact_dir=tmp_path / "art",
                       timeout=120)
    assert res.unreachable_hosts == [node.x], res.stdout_tail
    assert "refusing to run" in res.stdout_tail or "cannot open" in res.stdout_tail
