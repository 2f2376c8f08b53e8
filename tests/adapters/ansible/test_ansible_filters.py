"""labkit's Ansible filter plugin means the same as the lab-file filters of labkit.domain.params."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from labkit.adapters.ansible.runner import FILTER_PLUGINS
from labkit.domain import params as domain
from labkit.domain.params import ParamError


def _load() -> ModuleType:
    path = Path(FILTER_PLUGINS) / "labkit.py"
    spec = importlib.util.spec_from_file_location("labkit_ansible_filters", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


plugin = _load()
FILTERS = plugin.FilterModule().filters()

NETS = ["10.1.2.0/24", "172.16.0.4/30", "10.9.0.0/31", "192.168.7.9/32", "10.1.2.77/24", "2001:db8::/64"]
INDEXES = [0, 1, 2, 3, 10, 250, 254, 255, -1, -2, 9999]


def _call(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn(*args))
    except (ParamError, AnsibleFilterError):
        return ("error", None)


@pytest.mark.parametrize("net", NETS)
def test_same_answers_as_the_lab_filters(net: str) -> None:
    for n in INDEXES:
        assert _call(FILTERS["host"], net, n) == _call(domain.host_filter, net, n), (net, n)
        assert _call(FILTERS["cidr"], net, n) == _call(domain.cidr_filter, net, n), (net, n)
    assert FILTERS["prefixlen"](net) == domain.prefixlen_filter(net)
    assert FILTERS["network"](net) == domain.network_filter(net)
    assert FILTERS["netmask"](net) == domain.netmask_filter(net)


def test_examples() -> None:
    assert FILTERS["host"]("10.1.2.0/24", 1) == "10.1.2.1"
    assert FILTERS["cidr"]("10.1.2.0/24", 10) == "10.1.2.10/24"
    assert FILTERS["host"]("172.16.0.4/30", 2) == "172.16.0.6"
    assert FILTERS["host"]("10.1.2.0/24", -1) == "10.1.2.254"
    assert FILTERS["prefixlen"]("10.1.2.0/24") == 24
    assert FILTERS["network"]("10.1.2.0/24") == "10.1.2.0"


def test_errors_are_filter_errors() -> None:
    with pytest.raises(AnsibleFilterError, match="outside"):
        FILTERS["host"]("172.16.0.4/30", 3)
    with pytest.raises(AnsibleFilterError, match="not an IP network"):
        FILTERS["host"]("banana", 1)
    with pytest.raises(AnsibleFilterError, match="whole number"):
        FILTERS["cidr"]("10.0.0.0/24", "x")
