"""Runs after the other probe test modules: nothing they created may be left behind."""

from __future__ import annotations

import json
import os

from probe_testlib import PREFIX, root_only, sh

pytestmark = root_only


def test_no_namespaces_left(probe_registry):
    listed = {line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.strip()}
    ours = {ns for ns in listed if ns.startswith(f"{PREFIX}") and f"-{os.getpid()}-" in ns}
    assert ours == set()
    for ns in probe_registry["namespaces"]:
        assert ns not in listed and not os.path.exists(f"/run/netns/{ns}")


def test_no_daemons_left(probe_registry):
    for pid in probe_registry["pids"]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        assert "snmpd" not in cmdline and "sshd" not in cmdline, f"pid {pid} still runs: {cmdline}"


def test_no_temp_files_left(probe_registry):
    for path in probe_registry["tmpdirs"]:
        assert not path.exists(), path


def test_host_namespace_untouched():
    addrs = json.loads(sh("ip", "-j", "addr").stdout)
    assert not [a for i in addrs for a in i.get("addr_info", []) if a.get("local", "").startswith("10.250.")]
    routes = json.loads(sh("ip", "-j", "route", "show", "table", "all").stdout)
    assert not [r for r in routes if str(r.get("dst", "")).startswith("10.250.")]
