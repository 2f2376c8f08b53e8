"""The grader's places on the GNS3 host, made and removed by labkit's agent there.

Per instance and per vantage point of its plan:

- a Linux bridge ``lkb`` + 12 hex digits (:func:`labkit.adapters.gns3.naming.host_bridge`,
  from home mark, instance and vantage point: 15 characters, known before anything exists)
  that the project's cloud node ``grader`` uses for that vantage point's ethernet port (GNS3
  then ``brctl addif``s its tap into it); the provider records it in
  ``provider_data["bridges"]``;
- a network namespace :func:`vantage_namespace` = ``lk-<homeid>-<instance>.v.<vp>`` with
  ``eth0`` (the address of the plan, a default route via the plan's gateway), the peer of a
  veth :func:`veth_name` (``lkv`` + the bridge's 12 hex digits) plugged into the bridge.

On the GNS3 host an instance is known as ``<homeid>-<instance>`` (:func:`host_instance`), so
two labkit homes sharing one GNS3 host never touch each other's places.

:func:`setup` and :func:`teardown` send the agent ops ``host_setup`` / ``host_teardown``
(:mod:`labkit.agent.host`, served only by an agent in host mode, for the session's own
instance). Teardown works from the instance name alone (the agent keeps a record of what it
made, and marks its bridges and veths with the alias ``labkit:<instance>:<vp>``).

How the agent runs on a GNS3 host (as root, in the host's network namespace, where
gns3-server and its uBridge run)::

    python3 -I -m labkit.agent.sshd --host-mode --listen 0.0.0.0:2222 \\
        --host-key /etc/labkit-agent/ssh_host_ed25519_key \\
        --authorized-keys /etc/labkit-agent/authorized_keys

As a systemd unit (``/etc/systemd/system/labkit-agent-host.service``; labkit installed in
/opt/labkit, the keys made once: ``ssh-keygen -t ed25519 -N '' -f
/etc/labkit-agent/ssh_host_ed25519_key``, labkit's ``keys/gns3-grader.pub`` appended to
``/etc/labkit-agent/authorized_keys``; pin ``ssh_host_ed25519_key.pub`` as ``[grader] host_key``)::

    [Unit]
    Description=labkit grader agent (GNS3 host mode)
    After=network-online.target gns3-server.service

    [Service]
    ExecStart=/opt/labkit/.venv/bin/python -I -m labkit.agent.sshd --host-mode \
        --listen 0.0.0.0:2222 --host-key /etc/labkit-agent/ssh_host_ed25519_key \
        --authorized-keys /etc/labkit-agent/authorized_keys
    Restart=on-failure

    [Install]
    WantedBy=multi-user.target

It must run as root in the same network namespace as gns3-server (the cloud node's TAPs go into
its bridges). Its records are under /var/lib/labkit-agent/host (``LABKIT_AGENT_HOST_STATE``).
The SSH user name of a session is the instance it serves (``host_instance``); its client key
is ``[grader] client_key_file`` (default ``<LABKIT_HOME>/keys/gns3-grader``, made on first use:
add its ``.pub`` to the agent's authorized_keys); the agent's host key is pinned by
``[grader] host_key`` (the public key line, or its ``SHA256:`` fingerprint).
``settings.grader`` (gns3.toml ``[grader]``) names host, port and the pinned host key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import AgentError, UserError

if TYPE_CHECKING:
    from labkit.adapters.agent.client import AgentSession
    from labkit.models.instance import InstancePlan, InstanceState

VETH_PREFIX = "lkv"
ALIAS_PREFIX = "labkit:"
BRIDGE_RE = re.compile(r"^lkb[0-9a-f]{12}$")
MAX_VANTAGE = 32
OP_TIMEOUT = 60.0
CLIENT_KEY = "gns3-grader"


def host_instance(hid: str, instance: str) -> str:
    """The name of ``instance`` of the labkit home ``hid`` on the GNS3 host (its agent's instance)."""
    return f"{hid}-{instance}"


def vantage_namespace(host_inst: str, vantage: str) -> str:
    return f"lk-{host_inst}.v.{vantage}"


def veth_name(bridge: str) -> str:
    """The host end of the vantage point's veth on ``bridge`` (its peer is ``eth0``)."""
    return VETH_PREFIX + bridge[3:]


def alias(host_inst: str, vantage: str) -> str:
    return f"{ALIAS_PREFIX}{host_inst}:{vantage}"


def places_of(plan: InstancePlan, bridges: dict[str, str]) -> list[dict[str, Any]]:
    """What :func:`setup` asks for: one entry per vantage point (name, address, gateway, bridge)."""
    missing = [v.name for v in plan.vantage if v.name not in bridges]
    if missing:
        raise AgentError(f"no host bridge recorded for vantage point(s) {', '.join(missing)}; bring the instance "
                         "up again.")
    return [{"name": v.name, "address": v.address, "gateway": v.gateway, "bridge": bridges[v.name]}
            for v in plan.vantage]


def relay_targets(plan: InstancePlan, host_inst: str) -> dict[str, str]:
    """node address -> the vantage namespace whose LAN holds it (the relay's destinations)."""
    nets = [(ipaddress.ip_interface(v.address).network, vantage_namespace(host_inst, v.name)) for v in plan.vantage]
    out: dict[str, str] = {}
    for node in plan.nodes:
        for iface in node.interfaces:
            for a in iface.addresses:
                ip = ipaddress.ip_interface(a).ip
                place = next((p for net, p in nets if ip in net), None)
                if place and str(ip) not in out:
                    out[str(ip)] = place
    return out


def client_key_path(provider: Any) -> Path:
    grader = provider.g3.grader
    if grader is not None and grader.client_key_file:
        return Path(grader.client_key_file)
    return Path(provider.settings.home) / "keys" / CLIENT_KEY


def client_key(provider: Any) -> Any:
    """labkit's key for the GNS3 host's agent (an ed25519 key made on first use, mode 0600)."""
    import paramiko

    path = client_key_path(provider)
    if not path.is_file():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        raw = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = raw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(text)
        pub = raw.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        Path(f"{path}.pub").write_bytes(pub + b" labkit-gns3-grader\n")
    try:
        return paramiko.Ed25519Key.from_private_key_file(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise UserError(f"cannot read labkit's key for the GNS3 grader host {path} ({exc}); fix client_key_file "
                        "in gns3.toml's [grader].") from None


def pinned_fingerprint(host_key: str) -> str:
    """``SHA256:...`` of the pinned host key (gns3.toml ``[grader] host_key``: a public key
    line ``ssh-ed25519 AAAA...`` or the fingerprint itself)."""
    import base64

    import paramiko

    from labkit.adapters.agent.client import fingerprint

    key = host_key.strip()
    if key.startswith("SHA256:"):
        return key
    parts = key.split()
    try:
        return fingerprint(paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1])))
    except (IndexError, ValueError, paramiko.SSHException) as exc:
        raise UserError(f"gns3.toml's [grader] host_key is not an SSH public key line ({exc}); write the agent's "
                        "host key as 'ssh-ed25519 AAAA...'.") from None


def open_session(provider: Any, instance: str) -> AgentSession:
    """An agent session on the GNS3 host for ``instance`` of this labkit home (SSH user name =
    :func:`host_instance`; host key pinned)."""
    from labkit.adapters.agent.client import AgentSession

    grader = provider.g3.grader
    if grader is None:
        raise UserError("gns3.toml has no [grader] section: labkit's agent on the GNS3 host (host, port, host_key) "
                        "is needed for vantage points and echoes; add it.")
    if not grader.host_key:
        raise UserError("gns3.toml's [grader] host_key is empty; pin the agent's host key (printed by its setup).")
    fp = pinned_fingerprint(grader.host_key)
    key = client_key(provider)
    try:
        sock = socket.create_connection((grader.host, grader.port), timeout=10)
    except OSError as exc:
        raise AgentError(f"labkit's agent on the GNS3 host is not reachable at {grader.host}:{grader.port} "
                         f"({exc.strerror or exc}); start it there (python3 -I -m labkit.agent.sshd --host-mode ...) "
                         "or fix [grader] in gns3.toml.") from None
    return AgentSession(sock, host_key_fingerprint=fp, client_key=key,
                        username=host_instance(provider.home_id(), instance),
                        label=f"labkit's agent on the GNS3 host ({grader.host}:{grader.port})")


def _ask(provider: Any, instance: str, req: dict[str, Any]) -> dict[str, Any]:
    session = open_session(provider, instance)
    try:
        return session.request(req, OP_TIMEOUT)
    finally:
        session.close()


def setup(provider: Any, state: InstanceState) -> dict[str, Any]:
    """Make (idempotently) the host bridges and vantage namespaces of ``state``'s vantage
    points on the GNS3 host; the bridges are ``provider_data["bridges"]``. Returns
    ``{"bridges": {vp: bridge}, "namespaces": [...], "made": [...]}``."""
    plan = state.plan
    if len(plan.vantage) > MAX_VANTAGE:
        raise UserError(f"instance {state.name!r} has {len(plan.vantage)} vantage points; at most {MAX_VANTAGE} "
                        "on GNS3.")
    hinst = host_instance(provider.home_id(), state.name)
    places = places_of(plan, dict(state.provider_data.get("bridges") or {}))
    answer = _ask(provider, state.name, {"op": "host_setup", "instance": hinst, "vantage": places,
                                         "relay": relay_targets(plan, hinst)})
    return {k: answer.get(k) for k in ("bridges", "namespaces", "made")}


def teardown(provider: Any, name: str) -> list[str]:
    """Remove every host bridge, veth and vantage namespace of instance ``name`` of this home
    (from the name alone; idempotent); returns what was removed."""
    answer = _ask(provider, name, {"op": "host_teardown", "instance": host_instance(provider.home_id(), name)})
    return [f"gns3 host {x}" for x in answer.get("removed") or []]


def leftovers(provider: Any, name: str) -> list[str]:
    """What of instance ``name`` is still on the GNS3 host (bridges, veths, namespaces)."""
    answer = _ask(provider, name, {"op": "host_leftovers", "instance": host_instance(provider.home_id(), name)})
    return [f"gns3 host {x}" for x in answer.get("left") or []]
