# Jinja filters of labkit for playbooks, with the same meaning as in lab files
# (labkit.domain.params; a test checks both agree). ansible.utils is not needed.
#   '10.1.2.0/24' | host(1)     -> '10.1.2.1'      (host(-1): last usable host)
#   '10.1.2.0/24' | cidr(1)     -> '10.1.2.1/24'
#   '10.1.2.0/24' | prefixlen   -> 24
#   '10.1.2.0/24' | network     -> '10.1.2.0'
#   '10.1.2.0/24' | netmask     -> '255.255.255.0'
from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from labkit.models.addressing import AddressingError, Network
from labkit.models.addressing import as_network as _as_network
from labkit.models.addressing import nth_host as _nth


def _network(value: t.Any) -> Network:
    try:
        return _as_network(value)
    except AddressingError as exc:
        raise AnsibleFilterError(f"{exc.message} ({exc.hint})") from exc


def _nth_host(value: t.Any, n: t.Any) -> tuple[t.Any, Network]:
    try:
        return _nth(value, n)
    except AddressingError as exc:
        raise AnsibleFilterError(f"{exc.message} ({exc.hint})") from exc


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
