"""The provider contract: what every backend (netns, Proxmox, GNS3, vSphere) implements.

A provider turns an :class:`InstancePlan` into running nodes and back. It keeps whatever it
needs to find its resources again in ``InstanceState.provider_data`` and in names derived
from the instance name, so that ``destroy`` works from a new process and after a crash,
even when the state file is missing.

Grading needs two more things from a provider: running code "at" a grader vantage point
(``run_at``) and cutting/restoring a link end (``set_link``), used for fault injection.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from labkit.adapters.netns.nodefs import NodeFS
from labkit.errors import UserError
from labkit.models.instance import ExecResult, InstancePlan, InstanceState, InstanceStatus

T = TypeVar("T")


@runtime_checkable
class Provider(Protocol):
    name: str

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

    def run_at(self, state: InstanceState, where: str, fn: Callable[[], T], timeout: float) -> T:
        """Run ``fn`` with its sockets opened at ``where``: a vantage point, a node, or
        ``segment:NAME`` (the LAN itself, for passive capture)."""

    def node_fs(self, state: InstanceState, node: str) -> NodeFS:
        """The node's files, read by the grader's own code with symlinks resolved inside the
        node (see :mod:`labkit.adapters.netns.nodefs`); nothing is executed in the node."""

    def ansible_host_vars(self, state: InstanceState, node: str) -> dict[str, str]:
        """Connection variables that let Ansible reach ``node``."""


# name -> "module:Class"; imported lazily so a missing optional SDK breaks only its provider.
PROVIDERS: dict[str, str] = {
    "netns": "labkit.adapters.netns.provider:NetnsProvider",
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
