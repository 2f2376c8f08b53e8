"""The base configuration lines of a device (pure, offline)."""

from __future__ import annotations

from labkit.adapters.devices.base_config import base_config_lines
from labkit.models.instance import IfacePlan, NodePlan


def test_hostname_then_one_block_per_addressed_interface() -> None:
    node = NodePlan(name="r-hq", role="router", services=[], platform="frr", interfaces=[
        IfacePlan(name="eth0", addresses=["10.1.0.1/24"]),
        IfacePlan(name="eth1", addresses=[]),
        IfacePlan(name="eth2", addresses=["10.9.0.1/30", "2001:db8::1/64"]),
    ])
    assert base_config_lines(node) == [
        "hostname r-hq",
        "interface eth0", " ip address 10.1.0.1/24", "exit",
        "interface eth2", " ip address 10.9.0.1/30", " ipv6 address 2001:db8::1/64", "exit",
    ]


def test_a_node_without_interfaces_gets_its_hostname_only() -> None:
    assert base_config_lines(NodePlan(name="r9", role="router", services=[], platform="frr")) == ["hostname r9"]
