"""Ansible inventory of a lab instance: one host per node, reached as its provider says.

Each node's connection variables are the provider's ``ansible_host_vars`` as they are (netns:
the ``labkit_netns`` connection plugin and its namespace files; a remote provider: ssh vars);
labkit adds the node's plan (role, interfaces, routes) beside them.

Shape (YAML, netns)::

    all:
      vars:
        lab: {instance: t1, id: routing-multisite, topology: three-sites, seed: 7}
        p: {lan_hq: 10.1.2.0/24, ...}          # the instance parameters, as in lab templates
      children:
        routers:
          hosts:
            r-hq:
              ansible_connection: labkit_netns
              labkit_netns: /run/netns/lk-t1.n.r-hq
              labkit_mnt: /run/labkit/t1/r-hq.mnt
              labkit_uts: /run/labkit/t1/r-hq.uts
              labkit_ipc: /run/labkit/t1/r-hq.ipc
              labkit_pid: /run/labkit/t1/r-hq.pid
              ansible_python_interpreter: /usr/bin/python3
              labkit_role: router
              labkit_interfaces: [{name: eth0, addresses: [10.1.2.1/24], segment: lan-hq}, ...]
              labkit_addresses: {eth0: [10.1.2.1/24], eth1: [...], ...}
              labkit_routes: [{to: default, via: ...}]
        workstations: {hosts: {...}}

The inventory holds the secret parameters (playbooks need them): it is written mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from labkit.models.instance import InstancePlan

CONNECTION = "labkit_netns"
PYTHON = "/usr/bin/python3"

_PLURALS = {"switch": "switches"}

__all__ = ["CONNECTION", "build_inventory", "group_name", "write_inventory"]


def group_name(role: str) -> str:
    """Inventory group of a node role: router -> routers, switch -> switches."""
    return _PLURALS.get(role, f"{role}s")


def _plain(value: Any) -> Any:
    """YAML-safe copy of a parameter value (networks and the like become strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# The labkit_netns plugin's namespace variables: absolute paths, checked here so that a host
# without them never reaches the plugin (which refuses too).
NS_VARS = ("labkit_netns", "labkit_mnt", "labkit_uts", "labkit_ipc", "labkit_pid")
# What labkit writes itself; a provider's connection variables cannot change them.
_OWN_VARS = ("ansible_python_interpreter", "labkit_role", "labkit_services", "labkit_interfaces",
             "labkit_addresses", "labkit_routes")


def _connection_vars(node: str, hv: dict[str, str]) -> dict[str, str]:
    if not hv:
        raise ValueError(f"node {node!r}: the provider gave no connection variables")
    for k, v in hv.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"node {node!r}: connection variable {k!r}={v!r} is not a string")
        if k in _OWN_VARS:
            raise ValueError(f"node {node!r}: connection variable {k!r} is labkit's own and cannot be set")
    conn = dict(hv)
    if "labkit_netns" in conn:
        conn.setdefault("ansible_connection", CONNECTION)
    if conn.get("ansible_connection") == CONNECTION:
        for var in NS_VARS:
            p = conn.get(var)
            if not p or not os.path.isabs(p):
                raise ValueError(f"node {node!r}: {var} path {p!r} is not an absolute path")
    return conn


def build_inventory(plan: InstancePlan, host_vars: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Inventory dict for ``plan``; ``host_vars`` maps every node to its provider's connection
    variables (``Provider.ansible_host_vars``), taken as they are.

    Raises ``ValueError`` if a node has no connection variables (a host without them would
    have nowhere safe to run), if they are malformed (the labkit_netns plugin's paths must be
    absolute), or if ``host_vars`` names a node the plan does not have.
    """
    names = {n.name for n in plan.nodes}
    missing = sorted(names - host_vars.keys())
    unknown = sorted(host_vars.keys() - names)
    if missing:
        raise ValueError(f"no connection variables for node(s) {', '.join(missing)} of instance {plan.name!r}")
    if unknown:
        raise ValueError(f"connection variables given for unknown node(s) {', '.join(unknown)}")

    children: dict[str, dict[str, Any]] = {}
    for node in plan.nodes:
        host: dict[str, Any] = {
            **_connection_vars(node.name, host_vars[node.name]),
            "ansible_python_interpreter": PYTHON,
            "labkit_role": node.role,
            "labkit_services": list(node.services),
            "labkit_interfaces": [i.model_dump(exclude_none=True) for i in node.interfaces],
            "labkit_addresses": {i.name: list(i.addresses) for i in node.interfaces},
            "labkit_routes": [r.model_dump() for r in node.routes],
        }
        group = children.setdefault(group_name(node.role), {"hosts": {}})
        group["hosts"][node.name] = host

    return {
        "all": {
            "vars": {
                "lab": {
                    "instance": plan.name,
                    "id": plan.lab_id,
                    "topology": plan.topology_id,
                    "seed": plan.seed,
                },
                "p": _plain(dict(plan.params)),
            },
            "children": dict(sorted(children.items())),
        }
    }


class _Dumper(yaml.SafeDumper):
    """Safe dumper that never writes anchors/aliases (ansible reads them, people do not)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_inventory(path: Path | str, inventory: dict[str, Any]) -> Path:
    """Write ``inventory`` as YAML to ``path`` (mode 0600, atomically); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(inventory, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# Generated by labkit; holds the instance's secret parameters.\n")
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
