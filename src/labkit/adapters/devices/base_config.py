"""A network device's base configuration from the instance plan: its hostname and, per
interface of the plan, its addresses (what the netns provider sets on every node itself; on
GNS3 labkit pushes these lines to ``platform: frr`` devices through their consoles).

Pure: plan in, CLI lines out (vtysh / IOS syntax; ``configure terminal`` and ``write memory``
are the driver's, see netmiko_driver.push_config)."""

from __future__ import annotations

from labkit.models.instance import NodePlan

# platforms whose base configuration labkit writes (the lines below are their syntax)
BASE_CONFIG_PLATFORMS = ("frr",)


def base_config_lines(node: NodePlan) -> list[str]:
    """``hostname <node>`` then ``interface ethN`` / `` ip address A/P`` / ``exit`` per
    interface of the plan that has addresses (IPv4 and IPv6 alike: vtysh takes both)."""
    out = [f"hostname {node.name}"]
    for iface in node.interfaces:
        if not iface.addresses:
            continue
        out.append(f"interface {iface.name}")
        for addr in iface.addresses:
            out.append(f" {'ipv6' if ':' in addr else 'ip'} address {addr}")
        out.append("exit")
    return out
