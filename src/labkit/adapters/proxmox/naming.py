"""Names of an instance's Proxmox objects, derived from the instance name alone, so that
``destroy`` and ``leftovers`` find them after a crash without the state file.

- pool: ``lk-<instance>``;
- VNets: SDN ids are 2-8 characters ``[a-z][a-z0-9]*`` (PN ``VnetPlugin.pm``), so a compact
  hashed id; the readable ``lk-<instance>:<net>`` goes in the VNet's ``alias`` and is how a
  VNet is found again. A net is one member of a LAN segment (``<segment>.<node>.<iface>``:
  that node's NIC and one grader NIC) or one half of a link (``<link>.a`` / ``<link>.b``);
- VMs and containers: ``lk-<instance>-<node>`` (DNS-safe, for people; a container's hostname),
  tagged ``lk.<instance>`` and members of the pool (how labkit finds them), explicit VMIDs in the
  instance's block.
"""

from __future__ import annotations

import hashlib
import re

POOL_PREFIX = "lk-"
GRADER_NODE = "grader"
BASE_SNAPSHOT = "labkitbase"  # snapshot names: [a-zA-Z][a-zA-Z0-9_-]*
_ALPHA = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = _ALPHA + "0123456789"


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "big")


def pool_id(instance: str) -> str:
    return f"{POOL_PREFIX}{instance}"


def alias(instance: str, net: str) -> str:
    """The readable name of a VNet (kept in its ``alias``); ``:`` never occurs in an instance
    name, so the prefix ``lk-<instance>:`` belongs to that instance alone."""
    return f"lk-{instance}:{net}"


def alias_prefix(instance: str) -> str:
    return f"lk-{instance}:"


def home_id(host: str, home: str) -> str:
    """A short id of one labkit home on one host, marked on its pools and VMs."""
    return hashlib.sha256(f"{host}\0{home}".encode()).hexdigest()[:10]


def home_tag(home: str) -> str:
    """The tag of every VM made by one labkit home (``down --all`` takes only its own)."""
    return f"lkh.{home}"


def vm_tag(instance: str) -> str:
    """The tag every VM of the instance carries (found again from the name alone)."""
    return f"lk.{instance}"


def vnet_id(instance: str, net: str, attempt: int = 0) -> str:
    """A compact VNet id: 8 characters, a letter then letters/digits, from a hash."""
    n = _digest("vnet", instance, net, str(attempt))
    out = [_ALPHA[n % 26]]
    n //= 26
    for _ in range(7):
        out.append(_ALNUM[n % 36])
        n //= 36
    return "".join(out)


def vxlan_tag(instance: str, net: str, attempt: int = 0) -> int:
    """The VXLAN id (VNI) of a VNet in a ``vxlan`` zone (PVE requires one, unique among the
    cluster's VNets): from a hash, in 100000..16777215 (clear of small hand-picked ids)."""
    return 100000 + _digest("vni", instance, net, str(attempt)) % (16777215 - 100000 + 1)


def vm_name(instance: str, node: str) -> str:
    """A DNS-safe VM name (PVE checks names as DNS names)."""
    clean = re.sub(r"[^a-z0-9-]", "-", f"lk-{instance}-{node}".lower()).strip("-")
    return clean[:63].rstrip("-")


def template_name(prefix: str, image: str) -> str:
    """A template's VM name (``lk-tpl-<image>``)."""
    return f"{prefix}{re.sub(r'[^a-z0-9-]', '-', image.lower())}"


def node_template(prefix: str, topology_id: str) -> str:
    """The template every node of a topology is cloned from: one per topology, holding the
    packages of all its nodes (``lk-tpl-<topology>``)."""
    return template_name(prefix, topology_id)


def ct_template(prefix: str, topology_id: str) -> str:
    """The CT template the container nodes of a topology are cloned from (``lk-tpl-ct-<topology>``):
    one per topology, as for VMs, made from the centre's Debian system container archive."""
    return template_name(prefix, f"ct-{topology_id}")


def vmid_block_candidates(instance: str, base: int, block: int, blocks: int) -> list[int]:
    """First VMIDs of the blocks to try, in order: from a hash of the name, then the next ones."""
    start = _digest("vmid", instance) % blocks
    return [base + ((start + i) % blocks) * block for i in range(blocks)]


def segment_vnet(segment: str, member: str) -> str:
    """The net between one member ``node:iface`` of a LAN segment and the grader guest: the
    segment is a star through the grader (its bridge joins one such net per member)."""
    node, _, iface = member.partition(":")
    return f"{segment}.{node}.{iface}"


def link_vnets(link: str) -> tuple[str, str]:
    """The two nets of a point-to-point link: endpoint a <-> grader, endpoint b <-> grader."""
    return f"{link}.a", f"{link}.b"


def grader_mac(instance: str, nic: int) -> str:
    """A locally administered unicast MAC for the grader guest's NIC ``nic``: set by labkit, so
    the agent's places file can name each NIC before the VM exists."""
    n = _digest("mac", instance, str(nic))
    tail = [(n >> (8 * i)) & 0xFF for i in range(5)]
    return ":".join(f"{b:02x}" for b in [0x02, *tail]).upper()
