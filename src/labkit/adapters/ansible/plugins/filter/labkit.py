# Jinja filters of labkit for playbooks, with the same meaning as in lab files
# (labkit.domain.params; a test checks both agree). ansible.utils is not needed.
#   '10.1.2.0/24' | host(1)     -> '10.1.2.1'      (host(-1): last usable host)
#   '10.1.2.0/24' | cidr(1)     -> '10.1.2.1/24'
#   '10.1.2.0/24' | prefixlen   -> 24
#   '10.1.2.0/24' | network     -> '10.1.2.0'
#   '10.1.2.0/24' | netmask     -> '255.255.255.0'
from __future__ import annotations

import ipaddress
import typing as t

from ansible.errors import AnsibleFilterError

_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(value: t.Any) -> _Net:
    try:
        return ipaddress.ip_interface(str(value).strip()).network
    except ValueError as exc:
        raise AnsibleFilterError(f"'{value}' is not an IP network (expected e.g. 10.1.2.0/24)") from exc


def _nth_host(value: t.Any, n: t.Any) -> tuple[_Addr, _Net]:
    net = _network(value)
    try:
        index = int(n)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"host number '{n}' is not a whole number; write for example host(1)") from exc
    if net.num_addresses <= 2:  # /31, /32: every address is usable
        first, last = 0, net.num_addresses - 1
    else:
        first, last = 1, net.num_addresses - 2
    usable = last - first + 1
    pos = index if index >= 0 else usable + index + first
    if pos < first or pos > last:
        raise AnsibleFilterError(f"host {index} is outside {net}, whose hosts are {first} to {last}")
    return net.network_address + pos, net


def host(value: t.Any, n: t.Any) -> str:
    return str(_nth_host(value, n)[0])


def cidr(value: t.Any, n: t.Any) -> str:
    addr, net = _nth_host(value, n)
    return f"{addr}/{net.prefixlen}"


def prefixlen(value: t.Any) -> int:
    return _network(value).prefixlen


def network(value: t.Any) -> str:
    return str(_network(value).network_address)


def netmask(value: t.Any) -> str:
    return str(_network(value).netmask)


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"host": host, "cidr": cidr, "prefixlen": prefixlen, "network": network, "netmask": netmask}
