"""A lab instance: the plan rendered from a lab and a seed, and the state persisted on disk."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class IfacePlan(BaseModel):
    name: str
    addresses: list[str] = Field(default_factory=list)  # "10.1.2.1/24"
    link: str | None = None  # p2p link name
    segment: str | None = None  # LAN segment name
    peer: str | None = None  # "node:iface" on the other end of a p2p link


class RoutePlan(BaseModel):
    to: str
    via: str


class VolumePlan(BaseModel):
    path: str
    size: str  # tmpfs size, e.g. "16m"


class NodePlan(BaseModel):
    name: str
    role: str
    services: list[str]
    packages: list[str] = Field(default_factory=list)
    volumes: list[VolumePlan] = Field(default_factory=list)
    interfaces: list[IfacePlan] = Field(default_factory=list)
    routes: list[RoutePlan] = Field(default_factory=list)
    # a network device's platform (netmiko device type or labkit alias such as "frr"), driven
    # through its CLI (models.device); None: a Linux host
    platform: str | None = None
    # may run as a system container where the provider offers it (topology ``container: true``)
    container: bool = False

    def iface(self, name: str) -> IfacePlan | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def first_address(self, segment: str | None = None) -> str | None:
        for i in self.interfaces:
            if (segment is None or i.segment == segment) and i.addresses:
                return i.addresses[0].split("/")[0]
        return None


class VantagePlan(BaseModel):
    name: str
    segment: str
    address: str
    gateway: str | None = None

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


class InstancePlan(BaseModel):
    """Everything a provider needs to build one instance; no provider-specific names."""

    name: str
    lab_id: str
    lab_dir: str
    topology_id: str
    seed: int
    params: dict[str, Any]
    secret_params: list[str] = Field(default_factory=list)
    nodes: list[NodePlan]
    segments: dict[str, list[str]]  # segment -> ["node:iface", ...] (vantage ports added)
    links: dict[str, tuple[str, str]]  # link -> ("node:iface", "node:iface")
    vantage: list[VantagePlan] = Field(default_factory=list)
    candidate: str | None = None

    def node(self, name: str) -> NodePlan | None:
        return next((n for n in self.nodes if n.name == name), None)

    def vantage_point(self, name: str) -> VantagePlan | None:
        return next((v for v in self.vantage if v.name == name), None)


InstancePhase = Literal["creating", "up", "failed", "destroying"]


class InstanceState(BaseModel):
    """Persisted in ``<home>/instances/<name>/state.json``; lets a new process act on it."""

    name: str
    provider: str
    phase: InstancePhase
    created_at: datetime
    updated_at: datetime
    plan: InstancePlan
    ssh_key: str  # private key the grader uses to log in to nodes
    inventory: str | None = None  # generated Ansible inventory
    provider_data: dict[str, Any] = Field(default_factory=dict)
    # where the grader's probes run: in labkit's process (netns only) or in the grader agent
    vantage: Literal["inprocess", "agent"] = "inprocess"
    applied: list[str] = Field(default_factory=list)  # playbooks applied, in order


class NodeStatus(BaseModel):
    name: str
    present: bool
    processes: int
    services: dict[str, bool] = Field(default_factory=dict)


class InstanceStatus(BaseModel):
    name: str
    lab_id: str
    provider: str
    phase: str
    created_at: datetime
    nodes: list[NodeStatus]

    @property
    def healthy(self) -> bool:
        return all(n.present for n in self.nodes)


class ExecResult(BaseModel):
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    duration: float
    # Who ran the command and reported its result: "host" (labkit's own code entered the node
    # from outside, as netns does) or "guest-agent" (an agent inside the node's own system, as
    # the QEMU guest agent on Proxmox: what it reports is only as trustworthy as that system).
    via: Literal["host", "guest-agent"] = "host"
