"""AgentGround over a stand-in session (no SSH, no root): the provider's place mapping is
applied, calls cross as plain JSON, and an answer for another evidence id is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labkit.adapters.agent.client import AgentGround
from labkit.adapters.probes._common import utcnow
from labkit.errors import AgentError
from labkit.models.evidence import Evidence
from labkit.models.probe import EchoCall, ProbeCall


class FakeSession:
    label = "the fake agent"

    def __init__(self, answer: dict[str, Any]):
        self.answer = answer
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    def request(self, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.sent.append(json.loads(json.dumps(req)))  # what crosses must be plain JSON
        return self.answer

    def close(self) -> None:
        self.closed = True


def _ev(ev_id: str) -> dict[str, Any]:
    now = utcnow()
    return Evidence(id=ev_id, kind="icmp", source="va", target="10.0.0.2", action="ping", started_at=now,
                    ended_at=now, ok=True).model_dump(mode="json")


def test_run_maps_the_place_and_returns_the_evidence() -> None:
    session = FakeSession({"id": 1, "evidence": _ev("e1")})
    ground = AgentGround(session, lambda where: f"lk-x.v.{where}")  # type: ignore[arg-type]
    ev = ground.run("va", ProbeCall(probe="icmp.ping", args=["10.0.0.2"], kwargs={"source": "va"}), "e1", 7)
    assert ev.id == "e1" and ev.ok
    assert session.sent == [{"op": "probe", "place": "lk-x.v.va", "ev_id": "e1", "timeout": 7,
                             "call": {"probe": "icmp.ping", "args": ["10.0.0.2"], "kwargs": {"source": "va"}}}]
    ground.close()
    assert session.closed and ground.mode == "agent"


def test_evidence_for_another_id_is_refused() -> None:
    ground = AgentGround(FakeSession({"id": 1, "evidence": _ev("../../run.json")}),  # type: ignore[arg-type]
                         lambda where: where)
    with pytest.raises(AgentError, match="refusing it"):
        ground.run("va", ProbeCall(probe="icmp.ping"), "e1", 5)


def test_echo_maps_both_places_and_needs_a_result() -> None:
    session = FakeSession({"id": 2, "result": {"reachable": True}})
    ground = AgentGround(session, lambda where: f"lk-x.v.{where}")  # type: ignore[arg-type]
    assert ground.echo("va", "vb", EchoCall(mode="wait", target_ip="10.0.0.2", params={"deadline_s": 3}), 9) == {
        "reachable": True}
    assert (session.sent[0]["src"], session.sent[0]["dst"], session.sent[0]["call"]["mode"]) == (
        "lk-x.v.va", "lk-x.v.vb", "wait")
    bad = AgentGround(FakeSession({"id": 3}), lambda where: where)  # type: ignore[arg-type]
    with pytest.raises(AgentError, match="without a result"):
        bad.echo("va", "vb", EchoCall(mode="wait", target_ip="10.0.0.2"), 5)
