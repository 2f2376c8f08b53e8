"""Every probe the graders use crosses a process boundary as data.

A tests-only "JSON loopback" grader ground serialises each :class:`ProbeCall` and
:class:`EchoCall` to JSON, reads it back, resolves the probe by its registered name and runs it
in the place's namespace, then sends the :class:`Evidence` (or the echo's result) back through
JSON too. The provider's ground is replaced by it for a whole ``up`` / ``solve`` / ``grade`` of
a real lab instance: the reference solution still gets full marks, every probe call survived the
round trip unchanged, and the run records the ground's mode."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from labkit.adapters.netns.ground import run_echo
from labkit.adapters.netns.provider import NetnsProvider
from labkit.adapters.probes import registry
from labkit.models.evidence import Evidence
from labkit.models.instance import InstanceState
from labkit.models.probe import EchoCall, ProbeCall
from tests.conftest import LabEnv, down_leaves_nothing, full_marks

pytestmark = [pytest.mark.root, pytest.mark.slow]


class JsonLoopbackGround:
    """A GraderGround whose every request and answer is JSON text, as over the agent's channel."""

    mode = "loopback"

    def __init__(self, provider: NetnsProvider, state: InstanceState, log: dict[str, Any]):
        self.provider, self.state, self.log = provider, state, log

    def run(self, where: str, call: ProbeCall, ev_id: str, timeout: float) -> Evidence:
        wire = json.dumps({"place": where, "call": call.model_dump(mode="json"), "ev_id": ev_id}, allow_nan=False)
        request = json.loads(wire)
        back = ProbeCall.model_validate(request["call"])
        with self.log["lock"]:
            self.log["calls"].append(back.probe)
            if back != call:
                self.log["changed"].append(call.probe)
        fn = registry.resolve(back, request["ev_id"])  # by name only: the far side has no closure
        ev = self.provider.run_at(self.state, request["place"], fn, timeout)
        return Evidence.model_validate_json(ev.model_dump_json())

    def echo(self, src: str, dst: str, call: EchoCall, timeout: float) -> dict[str, Any]:
        back = EchoCall.model_validate_json(call.model_dump_json())
        with self.log["lock"]:
            self.log["echoes"].append(back.mode)

        def open_at(where: str, fn: Any) -> Any:
            return self.provider.run_at(self.state, where, fn, timeout)

        result: dict[str, Any] = json.loads(json.dumps(run_echo(open_at, src, dst, back), allow_nan=False))
        return result

    def close(self) -> None:
        with self.log["lock"]:
            self.log["closed"] += 1


# per lab: the probes its graders must have sent through the ground (the closures of issue 11
# among them); the two labs whose graders hold state across probes (captures stopped by a
# signal, faults, fresh source addresses, an OpenVPN client kept by a handle)
LABS = {
    "routing-multisite": (31, 60, {"icmp.ping", "netlink.routes", "netlink.addresses", "netlink.set_link_state",
                                   "capture.bridge_block", "ospf.capture_ospf", "netlink.source_address",
                                   "snmp.raw_exchange", "snmp.snmp_get_v3", "rendezvous.set_event",
                                   "rendezvous.wait_event"}),
    "vpn-site-to-site": (32, 30, {"capture.capture", "vpn.udp_receive", "vpn.udp_send_when_ready",
                                  "vpn.client_start", "vpn.client_stop", "vpn.openvpn_impostor", "vpn.route_oif",
                                  "tcp.tcp_connect"}),
}


@pytest.mark.parametrize("lab", sorted(LABS))
def test_lab_graded_through_a_json_loopback_ground(lab_env: LabEnv, monkeypatch: pytest.MonkeyPatch,
                                                   lab: str) -> None:
    seed, wait, expected = LABS[lab]
    log: dict[str, Any] = {"lock": threading.Lock(), "calls": [], "changed": [], "echoes": [], "made": 0, "closed": 0}

    def ground(self: NetnsProvider, state: InstanceState, mode: str | None = None) -> JsonLoopbackGround:
        with log["lock"]:
            log["made"] += 1
        return JsonLoopbackGround(self, state, log)

    monkeypatch.setattr(NetnsProvider, "ground", ground)
    _, summary, run = full_marks(lab_env, lab, f"pdata{seed}", seed=seed, wait=wait)
    assert summary.score == summary.max_score == 100
    assert run.info.vantage == "loopback"
    assert log["changed"] == [] and log["echoes"] and log["made"] >= 1 and log["closed"] == log["made"]
    used = set(log["calls"])
    assert expected <= used, expected - used
    assert used <= set(registry.names())
    down_leaves_nothing(lab_env, f"pdata{seed}")
