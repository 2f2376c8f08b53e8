"""lan-reachability judges grader-to-grader echoes: a box that answers in the far probe's
place (forged replies) does not make a path reachable."""

from __future__ import annotations

from graders.routing import LanReachability
from tests.graders.evidence import PLAN, make_evidence

ARGS = {"vantage": ["v-hq", "v-br1"]}


def _echo(reachable: bool, forged: int = 0, **meta: str):
    return make_evidence("udp", {"reachable": reachable, "verified": 2 if reachable else 0, "forged": forged},
                         source="v-hq", **meta)


def test_verified_echoes_both_ways_pass() -> None:
    v = LanReachability().judge([_echo(True, target_name="v-br1"), _echo(True, target_name="v-hq")], ARGS, PLAN)
    assert v.status == "pass"


def test_forged_replies_fail_and_say_so() -> None:
    v = LanReachability().judge([_echo(True, target_name="v-br1"), _echo(False, forged=2, target_name="v-hq")],
                                ARGS, PLAN)
    assert v.status == "fail" and "forged" in v.message.en and "falsifi" in v.message.fr


def test_icmp_answers_alone_are_no_proof_between_probes() -> None:
    pings = [make_evidence("icmp", {"reachable": True}, source="v-hq", target_name="pc-br1")]
    assert LanReachability().judge(pings, ARGS, PLAN).status == "error"
