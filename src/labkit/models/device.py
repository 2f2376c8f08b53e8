"""Network devices: nodes with no Python on them, driven through their CLI (netmiko).

A topology node with ``platform:`` (``frr``, ``cisco_ios``, ``vyos``... a netmiko device type or
a labkit alias) is a network device; ``platform`` None is a Linux host, as before. Reference
solutions and faulty variants reach a device as *config sets* (CLI lines), never Ansible; graders
read its state through the CLI only as supporting evidence (the check's ``doc`` says so).

A provider that hosts devices offers two optional methods (see :class:`DeviceAccess`):

- ``device_endpoint(state, node) -> DeviceEndpoint``: how to reach the device's CLI (SSH to the
  node's plan address from a vantage point on netns; its telnet console on GNS3);
- ``device_socket(state, node, timeout) -> socket-like``: a connected stream to that endpoint
  opened from the grader's own place (netns: a TCP socket created inside the vantage
  namespace of the node's LAN, never in the host's root namespace), handed to netmiko as
  ``sock``. None when the endpoint is reached directly (a console on a remote server).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from labkit.models.instance import InstanceState

# labkit's own names for platforms netmiko has no device type for; the driver maps them.
PLATFORM_ALIASES = ("frr",)
# The device user every netns device gets (its login shell is the device's CLI).
DEVICE_USER = "labkit"


class DeviceEndpoint(BaseModel):
    """Where and how the device's CLI is reached."""

    node: str
    platform: str  # netmiko device type or a labkit alias (frr)
    transport: Literal["ssh", "telnet"] = "ssh"
    host: str
    port: int = 22
    username: str | None = None
    password: str | None = None
    key_file: str | None = None  # SSH private key (the instance's key on netns)
    # the grader place the connection starts from (a vantage point), None: from labkit's host
    via: str | None = None

    def label(self) -> str:
        return f"{self.node} ({self.platform}, {self.transport} {self.host}:{self.port})"


@runtime_checkable
class DeviceAccess(Protocol):
    """The optional provider methods for device nodes."""

    def device_endpoint(self, state: InstanceState, node: str) -> DeviceEndpoint: ...

    def device_socket(self, state: InstanceState, node: str, timeout: float = 10.0) -> Any: ...


def is_device(state: InstanceState, node: str) -> bool:
    n = state.plan.node(node)
    return n is not None and n.platform is not None
