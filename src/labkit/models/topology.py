"""Topology files (``topologies/*.yaml``): nodes, LAN segments and point-to-point links."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from labkit.models.common import I18n, IfaceName, Name, Strict

Role = Literal["router", "workstation", "server", "firewall", "switch"]
Service = Literal["ssh", "frr", "snmpd", "cron", "rsyslog", "chrony"]


# Where a node's data volume may be mounted: only below the node's own (overlaid) dirs, so
# creating the mount point never writes to the host's filesystem.
VOLUME_PARENTS = ("/srv/", "/var/", "/opt/", "/home/", "/root/")


class VolumeSpec(Strict):
    """A small size-limited filesystem of the node's own (tmpfs), never the host's disk."""

    path: str = Field(pattern=r"^/[A-Za-z0-9._/-]+$")
    size: str = Field(pattern=r"^[0-9]{1,4}[kmKM]$", description="tmpfs size, e.g. 16m (at most 9999m)")

    @field_validator("path")
    @classmethod
    def _private_path(cls, v: str) -> str:
        if ".." in v.split("/") or not v.startswith(VOLUME_PARENTS):
            raise ValueError(f"volume path {v!r} must lie below one of {', '.join(VOLUME_PARENTS)}")
        return v.rstrip("/")


class NodeSpec(Strict):
    name: Name
    role: Role
    image: str = "debian12"
    packages: list[str] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=lambda: list[Service](["ssh"]))
    volumes: list[VolumeSpec] = Field(default_factory=list)
    # a network device driven through its CLI with netmiko (config sets, never Ansible):
    # a netmiko device type (cisco_ios, vyos, juniper_junos...) or "frr" (FRR's vtysh)
    platform: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{1,40}$",
                                 description="network device type (netmiko device type, or frr); "
                                             "absent: a Linux host")
    # the node needs no kernel of its own and may run as a system container where the provider
    # offers it (Proxmox: an unprivileged LXC container); the grader guest is always a VM
    container: bool = Field(default=False,
                            description="needs no kernel of its own: may run as a system container "
                                        "(Proxmox LXC) where the provider offers it")


class Endpoint(Strict):
    node: Name
    iface: IfaceName

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        node, _, iface = text.partition(":")
        return cls(node=node, iface=iface)

    def __str__(self) -> str:
        return f"{self.node}:{self.iface}"


class LinkSpec(Strict):
    """A point-to-point cable: one veth pair between two node interfaces."""

    name: Name
    endpoints: tuple[str, str]

    @field_validator("endpoints")
    @classmethod
    def _endpoints_syntax(cls, v: tuple[str, str]) -> tuple[str, str]:
        for e in v:
            if ":" not in e:
                raise ValueError(f"endpoint {e!r} must be written NODE:IFACE")
        return v

    def parsed(self) -> tuple[Endpoint, Endpoint]:
        a, b = self.endpoints
        return Endpoint.parse(a), Endpoint.parse(b)


class SegmentSpec(Strict):
    """A LAN: a bridge in its own switch namespace with one port per member."""

    name: Name
    members: list[str] = Field(min_length=1)

    @field_validator("members")
    @classmethod
    def _members_syntax(cls, v: list[str]) -> list[str]:
        for e in v:
            if ":" not in e:
                raise ValueError(f"member {e!r} must be written NODE:IFACE")
        return v

    def parsed(self) -> list[Endpoint]:
        return [Endpoint.parse(m) for m in self.members]


class TopologySpec(Strict):
    id: Name
    title: I18n
    nodes: list[NodeSpec] = Field(min_length=1)
    segments: list[SegmentSpec] = Field(default_factory=list)
    links: list[LinkSpec] = Field(default_factory=list)

    def node(self, name: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.name == name), None)
