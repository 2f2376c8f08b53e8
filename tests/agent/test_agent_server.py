"""The grader agent's JSON-lines protocol (labkit.agent.server), without namespaces: the
place runner is replaced by a fake one, so these run without root; one test spawns the real
``python -I -m labkit.agent`` to check nothing but protocol lines reach its stdout."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from labkit.adapters.probes import registry
from labkit.agent.server import MAX_CONCURRENT, MAX_LINE, MAX_TIMEOUT, Places, Server
from labkit.models.evidence import Evidence
from labkit.models.probe import ProbeCall
from labkit.adapters.probes._common import utcnow

registry.load_all()


class _Out(io.RawIOBase):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        with self.lock:
            self.buf += bytes(b)
        return len(b)

    def answers(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in bytes(self.buf).splitlines()]


class FakeRunner:
    """Records the places asked for; answers evidence after ``delay`` s; counts concurrency."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.places: list[str] = []
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.timeouts: list[float] = []

    def __call__(self, ns: str, fn: Any, timeout: float) -> Evidence:
        with self.lock:
            self.places.append(ns)
            self.timeouts.append(timeout)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.delay)
            now = utcnow()
            # what the agent resolved: a partial of the registered probe with its arguments
            return Evidence(id=fn.keywords["ev_id"], kind="icmp", source=ns, target=str(fn.args[0]),
                            action=fn.func.__name__, started_at=now, ended_at=now, ok=True,
                            parsed={"kwargs": {k: v for k, v in fn.keywords.items() if k != "ev_id"}})
        finally:
            with self.lock:
                self.running -= 1


def serve(lines: list[bytes | str | dict[str, Any]], runner: FakeRunner | None = None,
          instance: str = "inst1") -> tuple[list[dict[str, Any]], FakeRunner]:
    runner = runner or FakeRunner()
    data = b"".join((json.dumps(x).encode() if isinstance(x, dict) else x.encode() if isinstance(x, str) else x)
                    + b"\n" for x in lines)
    out = _Out()
    Server(Places(instance, runner), io.BytesIO(data), out).serve()  # type: ignore[arg-type]
    return out.answers(), runner


def probe_req(rid: int, place: str = "lk-inst1.v.a", name: str = "icmp.ping", **extra: Any) -> dict[str, Any]:
    call = ProbeCall(probe=name, args=["10.0.0.1"], kwargs={"source": "a", "count": 1}).model_dump()
    return {"id": rid, "op": "probe", "place": place, "call": call, "ev_id": f"e{rid}", "timeout": 5, **extra}


def by_id(answers: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {a["id"]: a for a in answers}


def test_hello_names_the_registered_probes() -> None:
    answers, _ = serve([{"id": 1, "op": "hello"}])
    assert answers[0]["id"] == 1 and answers[0]["instance"] == "inst1"
    assert answers[0]["probes"] == registry.names() and "icmp.ping" in answers[0]["probes"]


def test_probe_runs_the_registered_function_at_the_place_and_returns_evidence() -> None:
    answers, runner = serve([probe_req(7)])
    ev = Evidence.model_validate(answers[0]["evidence"])
    assert (ev.id, ev.source, ev.target, ev.action) == ("e7", "lk-inst1.v.a", "10.0.0.1", "ping")
    assert ev.parsed == {"kwargs": {"source": "a", "count": 1}}
    assert runner.places == ["lk-inst1.v.a"]


def test_unknown_probe_is_refused_and_nothing_runs() -> None:
    answers, runner = serve([probe_req(1, name="os.system"), probe_req(2, name="icmp.nope")])
    assert [a["id"] for a in answers] == [1, 2]
    assert all("is not registered" in a["error"] for a in answers)
    assert runner.places == []


@pytest.mark.parametrize("place", ["lk-other.v.a", "lk-inst10.v.a", "lk-inst1.", "lk-inst1.g", "lk-inst1.c",
                                   "lk-inst1.v/../x", "host", "", None, 5])
def test_place_outside_the_instance_is_refused(place: Any) -> None:
    answers, runner = serve([probe_req(1, place=place)])
    assert "is not a namespace of instance 'inst1'" in answers[0]["error"]
    assert runner.places == []


def test_echo_places_are_checked_too() -> None:
    req = {"id": 3, "op": "echo", "src": "lk-inst1.v.a", "dst": "lk-x.v.b",
           "call": {"mode": "exchange", "target_ip": "10.0.0.2"}, "timeout": 5}
    answers, runner = serve([req])
    assert "lk-x.v.b" in answers[0]["error"] and runner.places == []


def test_bad_json_bad_shape_and_missing_id_get_one_line_errors_and_the_agent_goes_on() -> None:
    answers, _ = serve(["{not json", "[1, 2]", {"op": "hello"}, {"id": True, "op": "hello"},
                        {"id": 4, "op": "dance"}, {"id": 5, "op": "probe", "call": "x", "place": "lk-inst1.v.a",
                                                   "ev_id": "e"},
                        b"\xff\xfe", {"id": 6, "op": "hello"}])
    # lines refused while reading are answered at once, in order; requests 4-6 by their own
    # threads, so they may come back in any order among the refusals
    assert sorted(a["id"] for a in answers if a["id"] is not None) == [4, 5, 6]
    refused = [a["error"] for a in answers if a["id"] is None]
    assert len(refused) == 5
    assert refused[0].startswith("request is not valid JSON") and refused[4].startswith("request is not valid JSON")
    assert refused[1] == "request must be a JSON object."
    assert "no id" in refused[2] and "no id" in refused[3]
    got = by_id(answers)
    assert "unknown op 'dance'" in got[4]["error"]
    assert "not a probe call" in got[5]["error"]
    assert "probes" in got[6]


def test_a_line_over_the_bound_is_refused_and_the_next_one_is_served() -> None:
    huge = json.dumps({"id": 1, "op": "hello", "pad": "x" * (MAX_LINE + 10)})
    answers, _ = serve([huge, {"id": 2, "op": "hello"}])
    assert answers[0] == {"id": None, "error": f"request line longer than {MAX_LINE} bytes; refused."}
    assert answers[1]["id"] == 2 and "probes" in answers[1]


def test_bad_timeout_is_refused_and_a_long_one_is_capped() -> None:
    answers, runner = serve([probe_req(1, timeout=-1), probe_req(2, timeout="soon"), probe_req(3, timeout=10_000)])
    got = by_id(answers)
    assert "timeout must be a positive number" in got[1]["error"]
    assert "timeout must be a positive number" in got[2]["error"]
    assert "evidence" in got[3] and runner.timeouts == [MAX_TIMEOUT]


def test_requests_are_served_concurrently_and_bounded() -> None:
    runner = FakeRunner(delay=0.3)
    n = MAX_CONCURRENT + 8
    t0 = time.monotonic()
    answers, _ = serve([probe_req(i) for i in range(n)], runner)
    elapsed = time.monotonic() - t0
    assert sorted(a["id"] for a in answers) == list(range(n))
    assert all("evidence" in a for a in answers)
    # 24 requests of 0.3 s each: two waves, not 24 in a row; never more than 16 at once
    assert runner.peak == MAX_CONCURRENT
    assert elapsed < 0.3 * n / 3, elapsed


def test_a_failing_probe_is_an_error_answer_not_a_crash() -> None:
    def boom(ns: str, fn: Any, timeout: float) -> Any:
        raise RuntimeError("kaboom")

    out = _Out()
    data = (json.dumps(probe_req(1)) + "\n" + json.dumps({"id": 2, "op": "hello"}) + "\n").encode()
    Server(Places("inst1", boom), io.BytesIO(data), out).serve()  # type: ignore[arg-type]
    got = by_id(out.answers())
    assert got[1]["error"] == "RuntimeError: kaboom" and "probes" in got[2]


def test_instance_name_is_checked() -> None:
    with pytest.raises(ValueError):
        Places("../etc")


def test_the_real_agent_process_writes_only_protocol_lines_on_stdout() -> None:
    lines = [{"id": 1, "op": "hello"}, "garbage", probe_req(2, place="lk-zz-none.v.a"),
             probe_req(3, place="lk-inst1.v.nowhere-really")]
    data = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    proc = subprocess.run([sys.executable, "-I", "-m", "labkit.agent", "--instance", "inst1"], input=data,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(x) for x in proc.stdout.splitlines()]  # every line is JSON
    got = by_id(answers[1:]) | {1: answers[0]}
    assert "probes" in got[1] and answers[1]["id"] is None
    assert "not a namespace of instance" in got[2]["error"]
    assert "does not exist" in got[3]["error"] or "are you root" in got[3]["error"]
    assert "Traceback" not in proc.stdout


def test_the_agent_without_instance_says_how_to_run_it() -> None:
    proc = subprocess.run([sys.executable, "-I", "-m", "labkit.agent"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "python -I -m labkit.agent --instance NAME" in proc.stderr
