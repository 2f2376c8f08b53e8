"""The netns provider's in-process grader ground: probes run in labkit's own process, each in
a short-lived thread moved into the place's namespace (:func:`run_in_netns`).

The agent ground (``vantage: agent``) runs the very same registered probes in
``python -m labkit.agent`` behind SSH; :func:`place_namespace` is the mapping both use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labkit.adapters.probes import registry
from labkit.adapters.probes.echo import EchoPair
from labkit.models.evidence import Evidence
from labkit.models.instance import InstanceState
from labkit.models.probe import EchoCall, ProbeCall

if TYPE_CHECKING:
    from labkit.adapters.netns.provider import NetnsProvider


def run_echo(open_at: Any, src: str, dst: str, call: EchoCall) -> dict[str, Any]:
    """Open an :class:`EchoPair` with ``open_at(place, fn)`` and run ``call`` on it."""
    with EchoPair.open(open_at, src, dst, call.target_ip) as pair:
        if call.mode == "exchange":
            return pair.exchange(**call.params)
        return pair.wait(**call.params)


class InProcessGround:
    mode = "inprocess"

    def __init__(self, provider: NetnsProvider, state: InstanceState):
        self.provider = provider
        self.state = state

    def run(self, where: str, call: ProbeCall, ev_id: str, timeout: float) -> Evidence:
        return self.provider.run_at(self.state, where, registry.resolve(call, ev_id), timeout)

    def echo(self, src: str, dst: str, call: EchoCall, timeout: float) -> dict[str, Any]:
        def open_at(where: str, fn: Any) -> Any:
            return self.provider.run_at(self.state, where, fn, timeout)

        return run_echo(open_at, src, dst, call)

    def close(self) -> None:
        pass
