"""The provider contract: what every backend (netns, Proxmox, GNS3, vSphere) implements.

A provider turns an :class:`InstancePlan` into running nodes and back. It keeps whatever it
needs to find its resources again in ``InstanceState.provider_data`` and in names derived
from the instance name, so that ``destroy`` works from a new process and after a crash,
even when the state file is missing.

Grading needs the grader's ground from a provider (``ground``): the places where the grader
runs its own probes (vantage points, grader-owned links and segments, node kernels where the
provider can read them), in labkit's process (netns, ``vantage: inprocess``) or in the grader
agent over SSH (``vantage: agent``; every remote provider). Probes cross as
:class:`ProbeCall` (registered name + JSON arguments) and come back as :class:`Evidence`.

What a provider can do for the grader is declared in ``capabilities``; checks declare what
they need (``Grader.needs``); ``validate`` and ``up`` compare the two.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from labkit.errors import UserError
from labkit.models.capabilities import Capability
from labkit.models.evidence import Evidence
from labkit.models.instance import ExecResult, InstancePlan, InstanceState, InstanceStatus
from labkit.models.probe import EchoCall, ProbeCall


VantageMode = str  # "inprocess" | "agent"


@runtime_checkable
class NodeFiles(Protocol):
    """A node's files as the grader's own code reads them, from outside the node (symlinks
    resolved inside the node's root). Use it as a context manager. The netns implementation
    is :class:`labkit.adapters.netns.nodefs.NodeFS`."""

    init_pid: int | None

    def __enter__(self) -> NodeFiles: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...

    def pristine(self, path: str) -> Any: ...

    def open(self, path: str, flags: int = ...) -> int: ...

    def exists(self, path: str) -> bool: ...

    def read_bytes(self, path: str, limit: int = ...) -> bytes: ...

    def read_text(self, path: str, limit: int = ...) -> str: ...

    def sha256(self, path: str) -> str: ...

    def listdir(self, path: str) -> list[str]: ...

    def walk_files(self, path: str, max_files: int = ...) -> Iterator[tuple[str, int]]: ...

    def hash_tree(self, path: str, max_files: int = ...) -> dict[str, Any]: ...

    def process_ids(self) -> list[int]: ...


@runtime_checkable
class GraderGround(Protocol):
    """Where the grader's probes run. ``where`` is a place of the instance: a vantage point,
    a node (its kernel, with ``node_kernel``), ``segment:NAME`` or ``link:NAME``."""

    mode: VantageMode

    def run(self, where: str, call: ProbeCall, ev_id: str, timeout: float) -> Evidence:
        """Run a registered probe at ``where``; raises if it cannot run (the caller turns that
        into evidence with ``ok=False``)."""

    def echo(self, src: str, dst: str, call: EchoCall, timeout: float) -> dict[str, Any]:
        """A grader-to-grader nonce echo from ``src`` to ``dst`` (two vantage points); returns
        the parsed result of ``EchoPair.exchange``/``wait``."""

    def close(self) -> None: ...


@runtime_checkable
class Provider(Protocol):
    name: str
    capabilities: frozenset[Capability]

    def preflight(self, plan: InstancePlan) -> None:
        """Raise a UserError/EnvironmentProblem before anything is created if it cannot work."""

    def create(self, state: InstanceState) -> None:
        """Create nodes, links and vantage points, recording progress in state.provider_data."""

    def start(self, state: InstanceState) -> None:
        """Start the nodes' base services (sshd, FRR, snmpd...)."""

    def status(self, state: InstanceState) -> InstanceStatus: ...

    def exec(
        self, state: InstanceState, node: str, argv: list[str], *, input: str | None = None,
        timeout: float = 60.0,
    ) -> ExecResult: ...

    def console_argv(self, state: InstanceState, node: str) -> list[str]:
        """The command line that opens an interactive root shell in the node."""

    def destroy(self, name: str, state: InstanceState | None) -> list[str]:
        """Remove everything of instance ``name``; idempotent; returns what was removed."""

    def leftovers(self, name: str) -> list[str]:
        """What of instance ``name`` still exists on this provider (namespaces, VMs, VNets...),
        found from the name alone; empty when nothing is left."""

    def ground(self, state: InstanceState, mode: VantageMode | None = None) -> GraderGround:
        """The grader's ground of this instance (``mode``: default ``state.vantage``)."""

    def node_fs(self, state: InstanceState, node: str) -> NodeFiles:
        """The node's files, read by the grader's own code with symlinks resolved inside the
        node; nothing is executed in the node (capability ``node_fs``)."""

    def ansible_host_vars(self, state: InstanceState, node: str) -> dict[str, str]:
        """Connection variables that let Ansible reach ``node``."""


# The vantage modes of a provider that declares none (netns): in labkit's process, or the
# grader agent. A provider declares ``vantage_modes`` (a class attribute, the first is its
# default) when it can do less: a remote provider runs its probes only in the agent
# (``vantage_modes = ("agent",)``). Optional, so it is read with :func:`vantage_modes`.
DEFAULT_VANTAGE_MODES: tuple[VantageMode, ...] = ("inprocess", "agent")


def vantage_modes(provider: object) -> tuple[VantageMode, ...]:
    """The vantage modes ``provider`` can grade with; the first one is its default."""
    modes = getattr(provider, "vantage_modes", None)
    return tuple(modes) if modes else DEFAULT_VANTAGE_MODES


# Optional provider method (read with ``getattr(provider, "segment_port", None)``: a provider
# without it cannot say, and a check that needs it then records the port as unknown):
#
#     def segment_port(self, state: InstanceState, segment: str, member: str) -> str | None:
#
# The name of the port of segment ``segment``'s grader-owned bridge (the bridge that the place
# ``segment:<segment>`` captures on) that faces ``member`` ("node:iface"), from the provider's
# own wiring record: never asked of the node. None when ``member`` is not on that segment.
# A provider that has it declares the capability ``port_map``.


# name -> "module:Class"; imported lazily so a missing optional SDK breaks only its provider.
PROVIDERS: dict[str, str] = {
    "netns": "labkit.adapters.netns.provider:NetnsProvider",
    "proxmox": "labkit.adapters.proxmox.provider:ProxmoxProvider",
    "gns3": "labkit.adapters.gns3.provider:Gns3Provider",
}


def get_provider(name: str) -> Provider:
    try:
        target = PROVIDERS[name]
    except KeyError:
        raise UserError(
            f"unknown provider {name!r}; choose one of: {', '.join(sorted(PROVIDERS))}."
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]
