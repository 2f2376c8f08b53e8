"""CheckContext.node_exec (a node command becomes evidence, a failure to run too) and
Verdict.from_problems (the shared way judges turn a list of problems into a verdict)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from labkit.adapters.providers.base import Provider
from labkit.domain.grading import NODE_OUTPUT_MAX, CheckContext
from labkit.errors import ProviderError
from labkit.models.instance import ExecResult, InstanceState
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
