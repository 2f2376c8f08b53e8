"""Test helpers of the grader's ground on GNS3 (engineer G4).

- :func:`server_of`: G1's session fixture ``gns3_server`` when the conftest offers it, else a
  :class:`G3Server` of this module's own (same harness, stopped by the caller);
- :class:`AgentHost`: labkit's agent SSH server in host mode, started INSIDE the GNS3 host's
  network namespace (``nsenter --net``: the network namespace only, so the namespaces it makes
  with ``ip netns add`` are ordinary named namespaces), reached through the harness' relay;
- :func:`provider_stub`: what Gns3Ground and host.py use of the provider (client, g3 settings
  with ``[grader]``, settings.home, home_id);
- :func:`make_bench_project`: a project whose wire really carries frames through the stand-ins:
  a switch ``sw-lan`` (stand-in Dynamips), a VPCS ``pc1`` (stand-in VPCS: answers ARP and ping)
  and the cloud ``grader`` with one ethernet port per vantage point on its host bridge.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labkit.adapters.gns3 import host
from labkit.adapters.gns3.client import Gns3Client
from labkit.adapters.gns3.provider import Gns3Provider
from labkit.adapters.gns3.settings import Gns3Settings, GraderHost
from labkit.models.instance import IfacePlan, InstancePlan, InstanceState, NodePlan, VantagePlan

AGENT_PORTS = itertools.count(2222)  # inside the GNS3 host namespace (only lo there): one per agent
HID = "g4test00"


def server_of(request: Any) -> tuple[Any, Any]:
    """(server, stopper): the harness's session fixture ``gns3_server`` (it fails, never skips,
    when gns3-server is missing); the stopper is None: the fixture stops it."""
    return request.getfixturevalue("gns3_server"), None


def _keypair(path: Path) -> str:
    raw = Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                   serialization.NoEncryption()))
    return raw.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@dataclass
class AgentHost:
    """labkit's agent sshd (host mode) in the GNS3 host namespace ``netns``."""

    netns: str
    workdir: Path
    relay: Any  # server.relay
    proc: subprocess.Popen[bytes] | None = None
    host_pub: str = ""
    client_key: Path = field(default_factory=Path)
    state_dir: Path = field(default_factory=Path)
    port: int = 0

    def start(self) -> AgentHost:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host_pub = _keypair(self.workdir / "host_key")
        self.client_key = self.workdir / "client_key"
        (self.workdir / "authorized_keys").write_text(_keypair(self.client_key) + " labkit\n")
        self.state_dir = self.workdir / "state"
        inner = next(AGENT_PORTS)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LABKIT_AGENT_HOST_STATE": str(self.state_dir)}
        log = open(self.workdir / "sshd.log", "wb")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", sys.executable, "-I", "-m", "labkit.agent.sshd",
             "--host-mode", "--listen", f"127.0.0.1:{inner}", "--host-key", str(self.workdir / "host_key"),
             "--authorized-keys", str(self.workdir / "authorized_keys"), "--max-sessions", "8"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.port = self.relay(inner)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent sshd exited: {(self.workdir / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-"):
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("agent sshd did not answer within 30 s")

    def stop(self) -> None:
        """The sshd and its agent sessions (its own process group, started here) end."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group of the sshd and its agents
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.proc.poll()
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                continue
            break
        self.proc.wait(5)
        self.proc = None


def provider_stub(server: Any, home: Path, agent: AgentHost | None) -> Any:
    grader = None
    if agent is not None:
        grader = GraderHost(host="127.0.0.1", port=agent.port, host_key=agent.host_pub,
                            client_key_file=str(agent.client_key))
    g3 = Gns3Settings(url=server.url, user=server.admin_user, password=server.admin_password, grader=grader,
                      api_timeout=60)
    stub = SimpleNamespace(client=Gns3Client(g3), g3=g3, settings=SimpleNamespace(home=home), home_id=lambda: HID)
    # the provider's own port lock (a link reset on resume allocates ports): the real method
    stub.allocating_ports = functools.partial(Gns3Provider.allocating_ports, stub)
    return stub


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def bench_plan(name: str) -> InstancePlan:
    """A plan whose places match :func:`make_bench_project`: segment ``lan`` (member pc1:eth0),
    vantage points v1 (.101) and v2 (.102) on it, and the plan link ``wan`` that the bench maps
    to pc1's link (the stand-ins have no router pair; the ground only uses the link's id)."""
    return InstancePlan(
        name=name, lab_id="g4bench", lab_dir="/nonexistent", topology_id="g4bench", seed=1, params={},
        nodes=[NodePlan(name="pc1", role="workstation", services=[],
                        interfaces=[IfacePlan(name="eth0", addresses=["10.9.0.10/24"], segment="lan")])],
        segments={"lan": ["pc1:eth0"]}, links={"wan": ("pc1:eth0", "sw-lan:0")},
        vantage=[VantagePlan(name="v1", segment="lan", address="10.9.0.101/24"),
                 VantagePlan(name="v2", segment="lan", address="10.9.0.102/24")])


def state_of(plan: InstancePlan, data: dict[str, Any]) -> InstanceState:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return InstanceState(name=plan.name, provider="gns3", phase="up", created_at=now, updated_at=now, plan=plan,
                         ssh_key="/nonexistent", provider_data=data, vantage="agent")


def make_bench_project(client: Gns3Client, name: str, bridges: dict[str, str]) -> dict[str, Any]:
    """The bench project (see the module's doc), started; returns provider_data as G2 records it."""
    pid = str(client.post("/projects", {"name": name})["project_id"])
    base = f"/projects/{pid}"
    sw = client.post(f"{base}/nodes", {"name": "sw-lan", "node_type": "ethernet_switch", "compute_id": "local",
                                       "x": 0, "y": 0})
    pc = client.post(f"{base}/nodes", {"name": "pc1", "node_type": "vpcs", "compute_id": "local", "x": 0, "y": 150,
                                       "properties": {"startup_script": "ip 10.9.0.10/24\n"}})
    mapping = [{"interface": br, "name": vp, "port_number": i, "type": "ethernet"}
               for i, (vp, br) in enumerate(bridges.items())]
    cloud = client.post(f"{base}/nodes", {"name": "grader", "node_type": "cloud", "compute_id": "local",
                                          "x": 200, "y": 0, "properties": {"ports_mapping": mapping}})

    def link(a: dict[str, Any], ap: tuple[int, int], b: dict[str, Any], bp: tuple[int, int]) -> str:
        made = client.post(f"{base}/links", {"nodes": [
            {"node_id": a["node_id"], "adapter_number": ap[0], "port_number": ap[1]},
            {"node_id": b["node_id"], "adapter_number": bp[0], "port_number": bp[1]}]})
        return str(made["link_id"])

    pc_link = link(pc, (0, 0), sw, (0, 0))
    vlinks = {vp: link(cloud, (0, i), sw, (0, i + 1)) for i, vp in enumerate(bridges)}
    client.post(f"{base}/nodes/start", timeout=60)
    return {"project_id": pid, "project": name, "links": {"wan": pc_link},
            "segment_links": {"lan": {"pc1:eth0": pc_link}}, "vantage_links": vlinks, "bridges": dict(bridges),
            "nodes": {"sw-lan": {"node_id": sw["node_id"]}, "pc1": {"node_id": pc["node_id"]},
                      "grader": {"node_id": cloud["node_id"]}}}


def delete_project(client: Gns3Client, pid: str) -> None:
    try:
        client.post(f"/projects/{pid}/nodes/stop", timeout=60)
    finally:
        client.delete(f"/projects/{pid}", timeout=60)


def root_links() -> set[str]:
    """Interface names of the root namespace (this test process's own)."""
    return set(os.listdir("/sys/class/net"))


def ns_links(netns: str) -> set[str]:
    out = subprocess.run(["ip", "-n", netns, "-o", "link", "show"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip()}


def bridges_for(instance: str, vantage: list[str]) -> dict[str, str]:
    from labkit.adapters.gns3 import naming

    return {vp: naming.host_bridge(HID, instance, vp) for vp in vantage}


def vantage_ns(instance: str, vp: str) -> str:
    return host.vantage_namespace(host.host_instance(HID, instance), vp)
