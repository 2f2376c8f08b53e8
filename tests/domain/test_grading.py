"""CheckContext.node_exec (a node command becomes evidence, a failure to run too), its probes
and echoes handed to the grader's ground as data, and
Verdict.from_problems (the shared way judges turn a list of problems into a verdict)."""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, cast

import pytest

from labkit.adapters.probes.netlink import routes, set_link_state
from labkit.adapters.providers.base import Provider
from labkit.domain.grading import NODE_OUTPUT_MAX, CheckContext, utcnow
from labkit.errors import ProviderError
from labkit.models.evidence import Evidence
from labkit.models.instance import ExecResult, InstancePlan, InstanceState, VantagePlan
from labkit.models.probe import EchoCall, ProbeCall
from labkit.models.lab import CheckSpec
from labkit.models.results import Verdict


class ScriptedProvider:
    """Answers ``exec`` with a fixed result, or raises; records what it was asked."""

    def __init__(self, result: ExecResult | None = None, error: Exception | None = None):
        self.result, self.error = result, error
        self.calls: list[tuple[str, list[str], str | None, float]] = []

    def exec(self, state: InstanceState, node: str, argv: list[str], *, input: str | None = None,
             timeout: float = 60.0) -> ExecResult:
        self.calls.append((node, argv, input, timeout))
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def _ctx(provider: ScriptedProvider) -> CheckContext:
    spec = CheckSpec(id="c1", title={"fr": "t", "en": "t"}, points=10, grader="x.y", criteria=["C1"])
    return CheckContext(state=InstanceState.model_construct(name="i1"), provider=cast(Provider, provider), check=spec)


def _result(stdout: str, stderr: str = "", rc: int = 0) -> ExecResult:
    return ExecResult(argv=["x"], rc=rc, stdout=stdout, stderr=stderr, duration=0.1234)


def test_node_exec_records_the_command_and_its_output() -> None:
    prov = ScriptedProvider(_result("hello\n", "warn\n", rc=3))
    ev = _ctx(prov).node_exec("srv1", ["echo", "a b"], input="in", timeout=5, meta={"phase": "x"})
    assert prov.calls == [("srv1", ["echo", "a b"], "in", 5)]
    assert ev.ok and ev.kind == "exec" and ev.source == ev.target == "srv1"
    assert ev.action == "echo 'a b'" and ev.id == "c1.01.srv1-echo"
    assert ev.parsed == {"rc": 3, "stdout": "hello\n", "stderr": "warn\n", "duration_s": 0.123}
    assert ev.meta == {"node": "srv1", "phase": "x"}
    assert ev.raw is not None and "[rc=3]" in ev.raw and "[stderr] warn" in ev.raw


def test_node_exec_a_failure_to_run_is_evidence_not_an_exception() -> None:
    ev = _ctx(ScriptedProvider(error=ProviderError("node srv9 is not running"))).node_exec(
        "srv9", ["true"], kind="fault", source="grader", label="stop")
    assert not ev.ok and ev.kind == "fault" and ev.source == "grader" and ev.target == "srv9"
    assert ev.error == "ProviderError: node srv9 is not running" and ev.parsed is None


@pytest.mark.parametrize("stdout,expected_json,stdout_kept", [
    ('{"a": 1}', {"a": 1}, ""),
    ("not json", None, "not json"),
    ("", None, ""),
])
def test_node_exec_reads_json_only_when_asked(stdout: str, expected_json: Any, stdout_kept: str) -> None:
    ev = _ctx(ScriptedProvider(_result(stdout))).node_exec("n", ["cat"], parse_json=True)
    assert ev.parsed is not None and ev.parsed["json"] == expected_json and ev.parsed["stdout"] == stdout_kept
    plain = _ctx(ScriptedProvider(_result(stdout))).node_exec("n", ["cat"])
    assert plain.parsed is not None and "json" not in plain.parsed and plain.parsed["stdout"] == stdout


def test_node_exec_keeps_the_tail_of_long_output_unless_told_otherwise() -> None:
    long = "x" * (NODE_OUTPUT_MAX + 10) + "END"
    cut = _ctx(ScriptedProvider(_result(long, long))).node_exec("n", ["cat"])
    assert cut.parsed is not None and len(cut.parsed["stdout"]) == NODE_OUTPUT_MAX
    assert cut.parsed["stdout"].endswith("END") and len(cut.parsed["stderr"]) == NODE_OUTPUT_MAX
    whole = _ctx(ScriptedProvider(_result(long))).node_exec("n", ["cat"], output_max=None)
    assert whole.parsed is not None and whole.parsed["stdout"] == long


def test_from_problems_passes_only_without_problems_and_lists_each_once() -> None:
    ok = Verdict.from_problems([], "tout va bien", "all good", ["e1"])
    assert ok.status == "pass" and ok.message.en == "all good" and ok.evidence == ["e1"]
    bad = Verdict.from_problems([("a absent", "a missing"), ("b faux", "b wrong"), ("a absent", "a missing")],
                                "tout va bien", "all good")
    assert bad.status == "fail"
    assert bad.message.fr == "a absent; b faux." and bad.message.en == "a missing; b wrong."


# --- probes as data: CheckContext hands ProbeCalls and EchoCalls to the grader's ground -----

class RecordingGround:
    """A GraderGround that records what it is asked and answers from a script."""

    mode = "inprocess"

    def __init__(self, echo_result: dict[str, Any] | None = None, fail: Exception | None = None):
        self.runs: list[tuple[str, ProbeCall, str, float]] = []
        self.echoes: list[tuple[str, str, EchoCall, float]] = []
        self.echo_result, self.fail, self.closed = echo_result, fail, 0

    def run(self, where: str, call: ProbeCall, ev_id: str, timeout: float) -> Evidence:
        self.runs.append((where, call, ev_id, timeout))
        if self.fail is not None:
            raise self.fail
        return Evidence(id=ev_id, check="c1", kind="netlink", source=where, target="t", action="a",
                        started_at=utcnow(), ended_at=utcnow(), ok=True, parsed={"set": True})

    def echo(self, src: str, dst: str, call: EchoCall, timeout: float) -> dict[str, Any]:
        self.echoes.append((src, dst, call, timeout))
        assert self.echo_result is not None
        return self.echo_result

    def close(self) -> None:
        self.closed += 1


class GroundProvider(ScriptedProvider):
    def __init__(self, ground: RecordingGround):
        super().__init__()
        self.made: list[RecordingGround] = []
        self._ground = ground

    def ground(self, state: InstanceState, mode: str | None = None) -> RecordingGround:
        self.made.append(self._ground)
        return self._ground


def _vp_state() -> InstanceState:
    plan = InstancePlan.model_construct(vantage=[VantagePlan(name="v1", segment="a", address="10.0.0.200/24"),
                                                 VantagePlan(name="v2", segment="b", address="10.0.1.200/24")])
    return InstanceState.model_construct(name="i1", plan=plan)


def _gctx(ground: RecordingGround, given: bool = True) -> tuple[CheckContext, GroundProvider]:
    spec = CheckSpec(id="c1", title={"fr": "t", "en": "t"}, points=10, grader="x.y", criteria=["C1"])
    prov = GroundProvider(ground)
    ctx = CheckContext(state=_vp_state(), provider=cast(Provider, prov), check=spec,
                       ground=ground if given else None)
    return ctx, prov


def test_probe_crosses_as_a_probe_call_through_the_given_ground() -> None:
    ground = RecordingGround()
    ctx, prov = _gctx(ground)
    ev = ctx.probe("link:wan-a", "fault", "p1", "down", partial(set_link_state, "p1", False, source="link:wan-a",
                                                                check="c1"), timeout=7.0)
    assert ev.ok and prov.made == []
    assert ground.runs == [("link:wan-a", ProbeCall(probe="netlink.set_link_state", args=["p1", False],
                                                    kwargs={"source": "link:wan-a", "check": "c1"}),
                            ev.id, 7.0)]
    ctx.close()
    assert ground.closed == 0  # a ground handed in is closed by whoever made it


def test_a_probe_that_cannot_cross_is_evidence_and_never_reaches_the_ground() -> None:
    ground = RecordingGround()
    ctx, _ = _gctx(ground)
    bad = ctx.probe("v1", "icmp", "x", "closure", lambda ev_id: None)  # type: ignore[arg-type, return-value]
    notjson = ctx.deferred("v1", "icmp", "x", "event", partial(routes, source="v1", stop=threading.Event()),
                           meta={"phase": "p"})()
    assert not bad.ok and "ProbeNotAllowedError" in (bad.error or "") and "not a registered probe" in (bad.error or "")
    assert not notjson.ok and "not plain JSON" in (notjson.error or "") and notjson.meta == {"phase": "p"}
    assert ground.runs == []
    failing = RecordingGround(fail=ProviderError("agent gone"))
    ev = _gctx(failing)[0].probe("v1", "netlink", "t", "a", partial(routes, source="v1"))
    assert not ev.ok and ev.error == "ProviderError: agent gone" and len(failing.runs) == 1


def test_without_a_ground_the_providers_default_is_made_once_and_closed_by_close() -> None:
    ground = RecordingGround()
    ctx, prov = _gctx(ground, given=False)
    ctx.probe("v1", "netlink", "t", "a", partial(routes, source="v1"))
    assert ctx.signal("v1", "stop-1") and ctx.wait_signal("v1", "ready-1", 2.0)
    assert len(prov.made) == 1 and [c.probe for _, c, _, _ in ground.runs] == [
        "netlink.routes", "rendezvous.set_event", "rendezvous.wait_event"]
    assert ground.runs[2][1].kwargs["timeout"] == 2.0
    ctx.close()
    ctx.close()
    assert ground.closed == 1


def test_echo_goes_through_the_ground_as_an_echo_call() -> None:
    result = {"reachable": True, "verified": 3, "port": 40001, "forged": 0, "responder_received": 3}
    ground = RecordingGround(echo_result=result)
    ctx, _ = _gctx(ground)
    ev = ctx.echo("v1", "v2", count=3, timeout=1.0, meta={"phase": "before"})
    assert ev.ok and ev.parsed == result and ev.target == "10.0.1.200" and ev.meta["phase"] == "before"
    (src, dst, call, timeout), = ground.echoes
    assert (src, dst) == ("v1", "v2") and call == EchoCall(mode="exchange", target_ip="10.0.1.200",
                                                           params={"count": 3, "timeout": 1.0})
    assert timeout >= 10.0 + 3
    ctx.wait_echo("v1", "v2", 20.0)
    assert ground.echoes[1][2].mode == "wait" and ground.echoes[1][2].params == {"deadline_s": 20.0, "interval": 0.2}
    assert ground.echoes[1][3] >= 30.0
    outside = ctx.echo("v1", "nowhere")
    assert not outside.ok and "between vantage points" in (outside.error or "") and len(ground.echoes) == 2
