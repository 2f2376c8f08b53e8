"""The OSPF capture, the grader's silent cut of a bridge, and the SNMP requests sent from a
fresh address refuse to run outside a lab namespace, before they open a socket or run nft."""

from __future__ import annotations

import socket
import subprocess

import pytest

from labkit.adapters.probes.capture import bridge_block
from labkit.adapters.probes.netlink import source_address, veth_ends
from labkit.adapters.probes.ospf import capture_ospf
from labkit.adapters.probes.snmp import raw_exchange
from labkit.errors import NamespaceSafetyError

CALLS = {
    "capture_ospf": lambda: capture_ospf(ev_id="x", source="host", duration_s=0.1),
    "bridge_block": lambda: bridge_block(True, ev_id="x", source="host"),
    "bridge_unblock": lambda: bridge_block(False, ev_id="x", source="host"),
    "snmp_exchange": lambda: raw_exchange("10.250.250.2", "10.250.250.3", "30", "30", kind_label="x", ev_id="x",
                                          source="host", check=None, timeout=0.1, meta={}),
    "source_address": lambda: source_address("10.250.250.3/24", True, ev_id="x", source="host", check=None),
    "veth_ends": lambda: veth_ends(ev_id="x", source="host"),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_refuses_outside_a_lab_namespace(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError(f"{name} reached the network or ran a command outside a lab namespace")

    monkeypatch.setattr(socket, "socket", forbidden)
    monkeypatch.setattr(subprocess, "run", forbidden)
    with pytest.raises(NamespaceSafetyError):
        CALLS[name]()
