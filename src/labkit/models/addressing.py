"""Address arithmetic shared by lab templates and playbook filters (one definition)."""

from __future__ import annotations

import ipaddress
from typing import Any

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressingError(ValueError):
    """A value that is not a network, or a host number outside it; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message = message
        self.hint = hint


def as_network(value: Any) -> Network:
    try:
        return ipaddress.ip_interface(str(value).strip()).network
    except ValueError:
        raise AddressingError(f"'{value}' is not an IP network", "expected for example 10.1.2.0/24") from None


def nth_host(value: Any, n: Any) -> tuple[Address, Network]:
    """The ``n``-th usable host of a network (negative: from the end)."""
    net = as_network(value)
    try:
        index = int(n)
    except (TypeError, ValueError):
        raise AddressingError(f"host number '{n}' is not a whole number", "write for example host(1)") from None
    if net.num_addresses <= 2:  # /31, /32: every address is usable
        first, last = 0, net.num_addresses - 1
    else:
        first, last = 1, net.num_addresses - 2
    usable = last - first + 1
    pos = index if index >= 0 else usable + index + first
    if pos < first or pos > last:
        raise AddressingError(
            f"host {index} is outside {net}, whose hosts are {first} to {last}",
            "pick a host number inside the subnet or give the parameter a shorter prefix",
        )
    return net.network_address + pos, net
