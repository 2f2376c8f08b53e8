"""Every probe refuses to run outside a lab namespace, before it creates any socket."""

from __future__ import annotations

import asyncio
import socket
import threading

import paramiko
import pytest

from labkit.adapters.netns import nsutil
from labkit.adapters.probes import (
    addresses,
    host_facts,
    netlink,
    ping,
    routes,
    set_link_state,
    snmp_get_community,
    snmp_get_v3,
    ssh_run,
    tcp_connect,
    wait_reachable,
)
from labkit.errors import NamespaceSafetyError

TARGET = "10.250.250.2"  # never reachable from the host: no lab address or route lives there

PROBES = {
    "ping": lambda: ping(TARGET, ev_id="x", source="host", count=1, timeout=0.1),
    "wait_reachable": lambda: wait_reachable(TARGET, deadline_s=0.1, ev_id="x", source="host"),
    "tcp_connect": lambda: tcp_connect(TARGET, 22, ev_id="x", source="host", timeout=0.1),
    "snmp_get_v3": lambda: snmp_get_v3(TARGET, ["1.3.6.1.2.1.1.5.0"], user="u", auth_protocol="SHA",
                                       auth_key="k" * 8, priv_protocol="AES", priv_key="p" * 8,
                                       ev_id="x", source="host", timeout=0.1, retries=0),
    "snmp_get_community": lambda: snmp_get_community(TARGET, ["1.3.6.1.2.1.1.5.0"], community="c",
                                                     ev_id="x", source="host", timeout=0.1, retries=0),
    "ssh_run": lambda: ssh_run(TARGET, ["true"], key_file="/nonexistent", ev_id="x", source="host",
                               timeout=0.1),
    "host_facts": lambda: host_facts(TARGET, key_file="/nonexistent", ev_id="x", source="host", timeout=0.1),
    "routes": lambda: routes(ev_id="x", source="host"),
    "addresses": lambda: addresses(ev_id="x", source="host"),
    "set_link_state": lambda: set_link_state("lo", False, ev_id="x", source="host"),
}


class _Forbidden(AssertionError):
    pass


@pytest.fixture
def no_sockets(monkeypatch):
    """Make every way a probe could reach the network fail loudly."""
    created: list[str] = []

    def forbid(what):
        def boom(*a, **k):
            created.append(what)
            raise _Forbidden(f"{what} called outside a lab namespace")
        return boom

    monkeypatch.setattr(socket, "socket", forbid("socket.socket"))
    monkeypatch.setattr(socket, "create_connection", forbid("socket.create_connection"))
    monkeypatch.setattr(asyncio, "new_event_loop", forbid("asyncio.new_event_loop"))
    monkeypatch.setattr(paramiko, "SSHClient", forbid("paramiko.SSHClient"))
    monkeypatch.setattr(netlink, "_iproute", forbid("IPRoute"))
    return created


@pytest.mark.parametrize("name", sorted(PROBES))
def test_probe_refuses_outside_lab_netns(name, no_sockets):
    assert nsutil.current_netns() is None
    with pytest.raises(NamespaceSafetyError):
        PROBES[name]()
    assert no_sockets == []


@pytest.mark.parametrize("name", sorted(PROBES))
def test_probe_refuses_in_a_thread_not_moved_into_a_namespace(name, no_sockets):
    """A thread that claims a lab namespace but still sits in the host's is caught too."""
    box: dict[str, BaseException] = {}

    def worker():
        nsutil._local.netns = "lkt-probe-claimed-only"  # a lie: no setns happened
        try:
            PROBES[name]()
        except BaseException as exc:  # noqa: BLE001 - inspected below
            box["exc"] = exc

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert isinstance(box.get("exc"), NamespaceSafetyError), box
    assert no_sockets == []
