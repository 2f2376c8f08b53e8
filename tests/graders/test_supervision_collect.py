"""The collecting halves of the two supervision checks that run on a provider which cannot
read a node from outside it (Proxmox): run with the real CheckContext against a scripted
ground and provider, no network.

- ``syslog_forwarded`` without ``node_fs`` asks the collector's own exec for its files (the
  real script, run here on a temporary directory standing for ``/var/log/remote``): the
  command never holds the nonce, the grader finds it itself, the evidence says it is the
  node's own answer; a forged reader (a ``tail`` that prints a canned log) and a collector
  that files nothing fail; the wait is bounded.
- ``alert_fires`` names the sender's port from the provider's wiring (``segment_port``), and
  refuses to guess when the provider cannot say; a link-down fault is only ever a port of the
  grader's own link bridge, never the node's interface."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from graders.supervision import READ_ANSWER_MAX, AlertFires, SyslogForwarded, sender_port
from labkit.adapters.providers.base import Provider
from labkit.domain.grading import CheckContext
from labkit.errors import ProviderError
from labkit.models.capabilities import ALL_CAPABILITIES
from labkit.models.evidence import Evidence
from labkit.models.instance import ExecResult, InstanceState
from labkit.models.lab import CheckSpec
from labkit.models.probe import ProbeCall
from tests.graders.evidence import PLAN, make_evidence

SYSLOG = {"emitter": "srv2", "emitter_address": "10.0.1.12", "vantage": "v-b", "collector": "logs",
          "collector_address": "10.0.0.20", "segment": "lan-a", "within_s": 3}
CANNED = "Nov 30 10:00:00 srv2 sshd[1]: Invalid user admin from 10.0.0.1 port 22"


class Ground:
    """The grader's ground, scripted: the SSH attempt hands the nonce to srv2, which (when
    ``forward``) sends the line to logs (written in ``logdir`` when ``files``) and is seen on
    the wire by the capture; it records every probe call."""

    def __init__(self, logdir: Path, *, forward: bool = True, files: bool = True):
        self.logdir, self.forward, self.files = logdir, forward, files
        self.calls: list[tuple[str, ProbeCall]] = []
        self.nonce: str | None = None
        self.stopped = threading.Event()

    def run(self, where: str, call: ProbeCall, ev_id: str, timeout: float) -> Evidence:
        self.calls.append((where, call))
        if call.probe == "sshauth.password_login":
            self.nonce = str(call.kwargs["user"])
            if self.forward and self.files:
                (self.logdir / "srv2.log").write_text(f"Nov 30 10:00:01 srv2 sshd[42]: Invalid user {self.nonce} "
                                                      "from 10.0.1.200 port 50000\n")
            return make_evidence("ssh", {"server_version": "SSH-2.0-OpenSSH_9.2p1"}, target="10.0.1.12:22")
        if call.probe == "capture.capture":
            assert self.stopped.wait(30), "the capture was never stopped"
            seen = self.forward and self.nonce in call.kwargs["markers"]
            hits = [{"marker": 0, "flow": "tcp 10.0.1.12:41070 → 10.0.0.20:514"}] if seen else []
            return make_evidence("capture", {"flows": [], "marker_hits": hits}, source=where)
        if call.probe == "rendezvous.set_event":
            self.stopped.set()
            return make_evidence("tcp", {"set": True}, source=where)
        if call.probe == "netlink.set_link_state":
            return make_evidence("fault", {"iface": call.args[0]}, source=where)
        if call.probe == "http.http_get_json":
            return make_evidence("tcp", {"status": 200, "json": {"status": "success", "data": {"alerts": []}}})
        raise AssertionError(f"unexpected probe {call.probe} at {where}")

    def close(self) -> None:
        pass


class NoNodeFsProvider:
    """As Proxmox: no node_fs, no node_kernel. ``exec`` runs the command on this machine
    (``PATH`` given, e.g. with a forged ``tail`` first) and records argv and input."""

    name = "scripted"
    capabilities = ALL_CAPABILITIES - {"node_fs", "node_kernel"}

    def __init__(self, path: str = "/usr/bin:/bin", stdout: str | None = None):
        self.path, self.stdout = path, stdout
        self.execs: list[tuple[str, list[str], str | None]] = []

    def exec(self, state: InstanceState, node: str, argv: list[str], *, input: str | None = None,
             timeout: float = 60.0) -> ExecResult:
        self.execs.append((node, list(argv), input))
        t0 = time.monotonic()
        if self.stdout is not None:
            return ExecResult(argv=argv, rc=0, stdout=self.stdout, stderr="", duration=0.0, via="guest-agent")
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                              env={"PATH": self.path, "LANG": "C.UTF-8"}, check=False)
        return ExecResult(argv=argv, rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                          duration=time.monotonic() - t0, via="guest-agent")

    def node_fs(self, state: InstanceState, node: str) -> Any:
        raise AssertionError("a provider without node_fs is never asked for a node's files")


def _ctx(provider: Any, ground: Ground, check: str = "syslog-central") -> CheckContext:
    spec = CheckSpec(id=check, title={"fr": "t", "en": "t"}, points=10, grader="supervision.x", criteria=["C1"])
    return CheckContext(state=InstanceState.model_construct(name="i1", plan=PLAN), provider=cast(Provider, provider),
                        check=spec, ground=cast(Any, ground))


def _syslog(tmp_path: Path, provider: Any, **ground: bool) -> tuple[list[Evidence], Ground]:
    logdir = tmp_path / "remote"
    logdir.mkdir()
    (logdir / "r1.log").write_text("Nov 30 10:00:00 r1 chronyd[9]: Selected source 10.0.0.1\n")
    g = Ground(logdir, **ground)
    evidence = SyslogForwarded().collect(_ctx(provider, g), {**SYSLOG, "directory": str(logdir)})
    return evidence, g


def test_syslog_without_node_fs_reads_through_the_collectors_exec_without_the_nonce(tmp_path: Path) -> None:
    prov = NoNodeFsProvider()
    evidence, g = _syslog(tmp_path, prov)
    assert g.nonce and g.nonce.startswith("lk")
    # the nonce went to srv2's sshd and the capture only: never into a command run on logs
    assert prov.execs and all(node == "logs" and g.nonce not in " ".join(argv) and not inp
                              for node, argv, inp in prov.execs)
    search = next(e for e in evidence if e.meta.get("phase") == "search")
    assert search.kind == "exec" and search.source == search.target == "logs" and search.meta["read"] == "node_exec"
    assert search.meta["reported_by"] == ("the node's own answer, read through the node's own exec (inside the "
                                          "candidate's system)")
    logdir = str(tmp_path / "remote")
    assert search.parsed is not None and search.parsed["files"] == [f"{logdir}/srv2.log"]
    assert {r["path"] for r in search.parsed["read"]} == {f"{logdir}/srv2.log", f"{logdir}/r1.log"}
    assert search.raw is not None and g.nonce in search.raw and "holding the nonce" in search.raw
    assert "stdout" not in search.parsed  # the base64 answer is not stored, its reading is
    v = SyslogForwarded().judge(evidence, {**SYSLOG, "directory": logdir}, PLAN)
    assert v.status == "pass" and "logs's own system shows it filed" in v.message.en, v.message.en


def test_syslog_a_forged_reader_printing_a_canned_log_fails(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    tail = fake / "tail"  # the collector's tail replaced: whatever is asked, a canned log
    tail.write_text(f"#!/bin/sh\necho '{CANNED}'\n")
    tail.chmod(0o755)
    prov = NoNodeFsProvider(path=f"{fake}:/usr/bin:/bin")
    evidence, g = _syslog(tmp_path, prov)  # the line is forwarded and filed: the reader hides it
    search = next(e for e in evidence if e.meta.get("phase") == "search")
    assert search.parsed is not None and search.parsed["files"] == [] and search.parsed["read"]
    assert len(prov.execs) >= 2  # asked again until within_s, then given up
    v = SyslogForwarded().judge(evidence, {**SYSLOG, "directory": str(tmp_path / "remote")}, PLAN)
    assert v.status == "fail" and "in no file under" in v.message.en and "own system shows them" in v.message.en
    assert "did not cross" not in v.message.en  # the wire part was fine: the node's answer decided


def test_syslog_nothing_filed_fails_within_a_bounded_time(tmp_path: Path) -> None:
    prov = NoNodeFsProvider()
    t0 = time.monotonic()
    evidence, _ = _syslog(tmp_path, prov, files=False)
    assert time.monotonic() - t0 < SYSLOG["within_s"] + 8
    v = SyslogForwarded().judge(evidence, {**SYSLOG, "directory": str(tmp_path / "remote")}, PLAN)
    assert v.status == "fail" and "in no file under" in v.message.en


def test_syslog_an_oversized_or_absent_answer_credits_nothing(tmp_path: Path) -> None:
    prov = NoNodeFsProvider(stdout="A" * (READ_ANSWER_MAX + 1))
    evidence, _ = _syslog(tmp_path, prov)
    search = next(e for e in evidence if e.meta.get("phase") == "search")
    assert search.parsed is not None and search.parsed["files"] == [] and "larger than" in search.parsed["error"]
    prov = NoNodeFsProvider()
    logdir = tmp_path / "x"
    logdir.mkdir()
    g = Ground(logdir)
    evidence = SyslogForwarded().collect(_ctx(prov, g), {**SYSLOG, "directory": str(tmp_path / "nowhere")})
    search = next(e for e in evidence if e.meta.get("phase") == "search")
    assert search.ok and search.parsed is not None and search.parsed["error"].startswith("no such directory")


def test_syslog_with_node_fs_reads_from_outside_and_runs_nothing_in_the_node(tmp_path: Path) -> None:
    class WithNodeFs(NoNodeFsProvider):
        capabilities = ALL_CAPABILITIES

        def node_fs(self, state: InstanceState, node: str) -> Any:
            raise ProviderError(f"node {node!r} is gone")

    prov = WithNodeFs()
    evidence, _ = _syslog(tmp_path, prov)
    search = next(e for e in evidence if e.meta.get("phase") == "search")
    assert prov.execs == [] and search.meta["read"] == "node_fs" and not search.ok and "gone" in (search.error or "")
    assert SyslogForwarded().judge(evidence, {**SYSLOG, "directory": "/var/log/remote"}, PLAN).status == "error"


# ------------------------------------------------------------------------------- alerts
SENDER = {"node": "mon", "iface": "eth0", "segment": "lan-a", "address": "10.0.0.10"}
ALERT = {"alert": "Down", "within_s": 20, "quiet_s": 0, "prometheus": "10.0.0.10", "source": "v-a",
         "sender": SENDER, "receiver": {"vantage": "helpdesk", "address": "10.0.0.200", "port": 8100, "path": "/a"},
         "fault": {"kind": "stop-service", "node": "srv2", "stop": ["false"], "start": ["true"]}}


class Wired(NoNodeFsProvider):
    def __init__(self, port: str | None):
        super().__init__()
        self.port, self.asked = port, []

    def segment_port(self, state: InstanceState, segment: str, member: str) -> str | None:
        self.asked.append((segment, member))
        return self.port


def test_sender_port_comes_from_the_providers_wiring(tmp_path: Path) -> None:
    prov = Wired("p7")
    assert sender_port(_ctx(prov, Ground(tmp_path), "alert"), "mon", "eth0", "lan-a") == "p7"
    assert prov.asked == [("lan-a", "mon:eth0")]
    for unknown in (Wired(None), NoNodeFsProvider()):
        with pytest.raises(RuntimeError, match=r"which port of lan-a's bridge faces mon:eth0 \(port_map\)"):
            sender_port(_ctx(unknown, Ground(tmp_path), "alert"), "mon", "eth0", "lan-a")


def test_alert_fires_without_the_senders_port_applies_no_fault_and_errs(tmp_path: Path) -> None:
    prov, g = NoNodeFsProvider(), Ground(tmp_path)
    evidence = AlertFires().collect(_ctx(prov, g, "alert"), ALERT)
    assert prov.execs == []  # no fault on srv2 when the check could not be watched
    assert [c.probe for _, c in g.calls] == ["http.http_get_json"]  # nothing asked of mon either
    v = AlertFires().judge(evidence, ALERT, PLAN)
    assert v.status == "error" and "port_map" in v.message.en and "could not be watched" in v.message.en


def test_a_link_down_fault_is_only_ever_the_graders_own_link_port(tmp_path: Path) -> None:
    g = Ground(tmp_path)
    ctx = _ctx(NoNodeFsProvider(), g, "alert")
    fault = {"kind": "link-down", "link": "backup", "port": "p2", "node": "r2", "iface": "eth2"}
    down = AlertFires()._apply(ctx, fault, undo=False)
    up = AlertFires()._apply(ctx, fault, undo=True)
    assert [(w, c.probe, c.args, c.kwargs.get("source")) for w, c in g.calls] == [
        ("link:backup", "netlink.set_link_state", ["p2", False], "link:backup"),
        ("link:backup", "netlink.set_link_state", ["p2", True], "link:backup")]
    assert down.meta["what"] == "backup bridge port p2 (facing r2) set down by the grader" and up.meta["phase"] == \
        "restore"
    # a link-down with no grader link is not applied anywhere (never r2's own eth2)
    g.calls.clear()
    nowhere = AlertFires()._apply(ctx, {"kind": "link-down", "node": "r2", "iface": "eth2"}, undo=False)
    assert g.calls == [] and not nowhere.ok and "names no grader link" in (nowhere.error or "")
