"""Probes: plain functions that observe a lab from inside one of its network namespaces.

Call each one through ``labkit.adapters.netns.nsutil.run_in_netns(ns, lambda: probe(...))``.
Every probe calls ``assert_in_lab_netns()`` first and raises ``NamespaceSafetyError``
(before anything is sent) when it is not inside a lab namespace. Otherwise it never raises:
it returns an :class:`~labkit.models.evidence.Evidence`; ``ok`` says whether the probe
itself completed (no answer is a completed observation), ``parsed`` holds the result.
Targets are IP address literals (no name resolution). All waits are bounded.
"""

from .icmp import ping, wait_reachable
from .netlink import addresses, routes, set_link_state
from .snmp import snmp_get_community, snmp_get_v3
from .ssh import host_facts, ssh_run
from .tcp import tcp_connect

__all__ = [
    "addresses",
    "host_facts",
    "ping",
    "routes",
    "set_link_state",
    "snmp_get_community",
    "snmp_get_v3",
    "ssh_run",
    "tcp_connect",
    "wait_reachable",
]
