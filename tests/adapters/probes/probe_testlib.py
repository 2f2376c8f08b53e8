"""Tiny namespace topologies for the probe tests (helpers; fixtures are in conftest.py).

Every test module builds its own pair of namespaces named ``lkt-probe-<tag>-<pid>-v``
(the grader's vantage) and ``...-n`` (a node), joined by a veth pair created directly
inside them, with addresses from 10.250.<x>.0/24. Nothing is added to the host's root
namespace. Daemons only ever start through ``ip netns exec lkt-probe-...``; teardown kills
exactly the PIDs started here, deletes the namespaces and removes the temp directories.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

PREFIX = "lkt-probe-"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

root_only = [
    pytest.mark.root,
    pytest.mark.skipif(not IS_ROOT, reason="needs root (network namespaces, raw sockets)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, timeout=30)


class NetnsLab:
    """Two namespaces (vantage ``v`` and node ``n``) and a veth link between them."""

    def __init__(self, tag: str, subnet: int, registry: dict[str, Any]):
        assert 0 <= subnet <= 255
        stem = f"{PREFIX}{tag}-{os.getpid()}"
        self.v = f"{stem}-v"
        self.n = f"{stem}-n"
        self.subnet = subnet
        self.v_ip = f"10.250.{subnet}.1"
        self.n_ip = f"10.250.{subnet}.2"
        self.registry = registry
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{tag}-"))
        os.chmod(self.tmp, 0o700)
        registry["tmpdirs"].append(self.tmp)

    @property
    def namespaces(self) -> tuple[str, str]:
        return (self.v, self.n)

    def up(self) -> NetnsLab:
        for ns in self.namespaces:
            assert ns.startswith(PREFIX)
            sh("ip", "netns", "add", ns)
            self.registry["namespaces"].append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.add_link("eth0", self.v_ip, self.n_ip, 24)
        return self

    def add_link(self, ifname: str, v_addr: str, n_addr: str, plen: int) -> None:
        # Both ends are created directly inside their namespaces: nothing touches the host.
        sh("ip", "link", "add", "name", ifname, "netns", self.v, "type", "veth",
           "peer", "name", ifname, "netns", self.n)
        for ns, addr in ((self.v, v_addr), (self.n, n_addr)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/{plen}", "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")

    def spawn(self, ns: str, argv: list[str], *, env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start a daemon inside namespace ``ns`` (one of ours) and remember its PID."""
        assert ns in self.namespaces and ns.startswith(PREFIX)
        cmd = ["ip", "netns", "exec", ns, *argv]
        assert cmd[:3] == ["ip", "netns", "exec"] and cmd[3].startswith(PREFIX), cmd
        out = open(log or os.devnull, "ab")  # noqa: SIM115 - closed right after Popen
        try:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        self.procs.append(proc)
        self.registry["pids"].append(proc.pid)
        return proc

    def wait_listening(self, ns: str, proto: str, addr: str, port: int, proc: subprocess.Popen[bytes],
                       timeout: float = 10.0) -> None:
        flag = "-ltnH" if proto == "tcp" else "-lunH"
        want = f"{addr}:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
            out = sh("ss", "-N", ns, flag, check=False).stdout
            if any(want in line.split() for line in out.splitlines()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nothing listening on {proto} {want} in {ns} after {timeout} s")

    def down(self) -> None:
        errors = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # exactly the PID we started
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        for ns in self.namespaces:
            res = sh("ip", "netns", "del", ns, check=False)
            if res.returncode != 0 and "No such file" not in res.stderr:
                errors.append(f"ip netns del {ns}: {res.stderr.strip()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise RuntimeError("; ".join(errors))
