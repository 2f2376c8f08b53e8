"""Node binaries get a minimal environment, never labkit's own (issue 8, bad input):
``labkit exec``, ``labkit console`` and the Ansible connection clear it on the host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.netns import provider as netns_provider
from labkit.adapters.netns.provider import NetnsProvider
from tests.conftest import PROJECT, LabEnv, leftovers, namespace_inodes

NODE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MINIMAL = {NODE_PATH, "HOME=/root", "LANG=C.UTF-8"}
SECRETS = {"LABKIT_SECRET_PROBE": "xyz", "SSH_AUTH_SOCK": "/tmp/lk-agent.sock",
           "AWS_SECRET_ACCESS_KEY": "lk-not-a-real-key"}


class _State:
    name = "lkenv"


def _clean_prefix(argv: list[str]) -> tuple[set[str], list[str]]:
    """(NAME=VALUE assignments of the leading 'env -i', the rest of argv)."""
    assert argv[:2] == ["/usr/bin/env", "-i"], argv
    i = 2
    while "=" in argv[i]:
        i += 1
    return set(argv[2:i]), argv[i:]


def test_every_provider_command_runs_with_the_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_bounded is how the provider runs everything (exec, node set-up, daemons at up):
    the child gets NODE_ENV and nothing of labkit's."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    out = netns_provider.run_bounded(["/usr/bin/env"], timeout=10).stdout
    assert set(out.splitlines()) == MINIMAL


def test_exec_enters_the_node_through_run_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(argv: list[str], *, input: str | None = None, timeout: float) -> subprocess.CompletedProcess[str]:
        seen["argv"] = argv
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(netns_provider, "run_bounded", fake_run)
    prov = NetnsProvider.__new__(NetnsProvider)
    monkeypatch.setattr(prov, "_check_node", lambda state, node: None, raising=False)
    monkeypatch.setattr(prov, "node_enter_argv",
                        lambda name, node, wd="/": ["nsenter", "--net=/run/netns/x", f"--wd={wd}"], raising=False)
    res = prov.exec(_State(), "r1", ["env"])  # type: ignore[arg-type]
    assert seen["argv"] == ["nsenter", "--net=/run/netns/x", "--wd=/", "env"]
    assert res.argv == ["env"]


def test_console_clears_the_environment_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    prov = NetnsProvider.__new__(NetnsProvider)
    monkeypatch.setattr(prov, "_check_node", lambda state, node: None, raising=False)
    monkeypatch.setattr(prov, "node_enter_argv", lambda name, node, wd="/": ["nsenter", f"--wd={wd}"], raising=False)
    for term, want in (("xterm-256color", "xterm-256color"), ("x\x1b]evil", "xterm"), ("", "xterm")):
        monkeypatch.setenv("TERM", term)
        assigned, rest = _clean_prefix(prov.console_argv(_State(), "r1"))  # type: ignore[arg-type]
        assert assigned == MINIMAL | {f"TERM={want}"}
        assert rest == ["nsenter", "--wd=/root", "/bin/bash", "-l"]  # no node 'env' in between


def test_ansible_connection_gives_nodes_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection plugin starts nsenter with its own small environment, not the controller's."""
    sys.path.insert(0, str(PROJECT / "src" / "labkit" / "adapters" / "ansible" / "plugins" / "connection"))
    try:
        import labkit_netns as plugin  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    seen: dict[str, Any] = {}

    class FakePopen:
        def __init__(self, argv: list[bytes], **kw: Any):
            seen.update(kw, argv=argv)

    monkeypatch.setattr(plugin.subprocess, "Popen", FakePopen)
    conn = plugin.Connection.__new__(plugin.Connection)
    monkeypatch.setattr(conn, "_argv", lambda cmd: ["/usr/bin/nsenter", "--", "/bin/sh", "-c", cmd], raising=False)

    class PC:
        remote_addr = "n"

    conn._play_context = PC()  # type: ignore[attr-defined]
    conn._popen("env")
    env = seen["env"]
    assert not any(k.startswith("LABKIT_") for k in env)
    assert not set(SECRETS) & set(env)
    assert env["PATH"] == NODE_PATH.split("=", 1)[1] and env["HOME"] == "/root" and env["LANG"] == "C.UTF-8"


@pytest.mark.root
def test_labkit_exec_and_console_hide_labkit_environment(lab_env: LabEnv) -> None:
    name = "bienv"
    lab_env.labkit("up", "routing-multisite", "--instance", name, "--seed", "811")
    inodes = namespace_inodes(name)
    try:
        lab_env.env.update(SECRETS)
        out = lab_env.labkit("exec", name, "r-hq", "--", "env").stdout
        assert set(out.splitlines()) == MINIMAL, out
        # through a shell too, and what PID 1's children inherit is not labkit's either
        out = lab_env.labkit("exec", name, "pc-hq", "--", "sh", "-c", "env; cat /proc/$$/environ | tr '\\0' '\\n'"
                             ).stdout
        assert "xyz" not in out and "LABKIT_" not in out and "SSH_AUTH_SOCK" not in out, out
        proc = subprocess.run([sys.executable, "-m", "labkit", "console", name, "r-br1"],
                              env={**lab_env.env, "TERM": "vt100"}, cwd=PROJECT, input="env; exit 0\n",
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        lines = set(proc.stdout.splitlines())
        assert MINIMAL | {"TERM=vt100"} <= lines, proc.stdout
        assert "xyz" not in proc.stdout and "LABKIT_" not in proc.stdout and "SSH_AUTH_SOCK" not in proc.stdout
    finally:
        lab_env.labkit("down", name)
    assert leftovers(lab_env.settings, name, inodes) == []
    assert not Path(f"/run/netns/lk-{name}.n.r-hq").exists()


LEAK_SCAN = ("for f in /proc/[0-9]*/environ; do if tr '\\0' '\\n' < $f 2>/dev/null | "
             "grep -q 'xyz\\|SSH_AUTH_SOCK\\|LABKIT_\\|AWS_SECRET'; then echo $(cat ${f%environ}comm); fi; done")


@pytest.mark.root
def test_daemons_started_at_up_do_not_carry_labkit_environment(lab_env: LabEnv) -> None:
    """The candidate is root in the node and reads /proc/*/environ of every process there."""
    name = "bienvd"
    lab_env.env.update(SECRETS)
    try:
        lab_env.labkit("up", "routing-multisite", "--instance", name, "--seed", "812")
        leaking = lab_env.labkit("exec", name, "r-hq", "--", "sh", "-c", LEAK_SCAN).stdout.split()
    finally:
        lab_env.labkit("down", name)
    assert leaking == []
