"""Ansible inventory of a lab instance: one host per node, reached through labkit_netns.

Shape (YAML)::

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


NS_LABELS = ("netns", "mnt", "uts", "ipc", "pid")


def _check_paths(node: str, paths: tuple[str, ...]) -> tuple[str, ...]:
    if len(paths) != len(NS_LABELS):
        raise ValueError(f"node {node!r}: expected ({', '.join(NS_LABELS)}) paths, got {paths!r}")
    for label, p in zip(NS_LABELS, paths, strict=True):
        if not isinstance(p, str) or not p or not os.path.isabs(p):
            raise ValueError(f"node {node!r}: {label} path {p!r} is not an absolute path")
    return paths


def build_inventory(plan: InstancePlan, node_ns: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """Inventory dict for ``plan``; ``node_ns`` maps every node to its (netns, mnt, uts, ipc,
    pid) namespace files.

    Raises ``ValueError`` if a node has no namespace paths (a host without them would have
    nowhere safe to run) or if ``node_ns`` names a node the plan does not have.
    """
    names = {n.name for n in plan.nodes}
    missing = sorted(names - node_ns.keys())
    unknown = sorted(node_ns.keys() - names)
    if missing:
        raise ValueError(f"no namespace paths for node(s) {', '.join(missing)} of instance {plan.name!r}")
    if unknown:
        raise ValueError(f"namespace paths given for unknown node(s) {', '.join(unknown)}")

    children: dict[str, dict[str, Any]] = {}
    for node in plan.nodes:
        netns, mnt, uts, ipc, pid = _check_paths(node.name, node_ns[node.name])
        host: dict[str, Any] = {
            "ansible_connection": CONNECTION,
            "labkit_netns": netns,
            "labkit_mnt": mnt,
            "labkit_uts": uts,
            "labkit_ipc": ipc,
            "labkit_pid": pid,
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
