"""The GNS3 v3 provider: one GNS3 project per lab instance, nodes from templates by role, one
switch per LAN segment, one link per point-to-point link, and a cloud node ``grader`` whose
ethernet ports are the per-vantage-point host bridges on the GNS3 host (made by labkit's agent
there, :mod:`labkit.adapters.gns3.host`).

Every name comes from the instance name and this labkit home's mark (naming.py): the project
``<prefix><homeid>-<instance>``, the candidate's user and pool (access.py) likewise, so that
``destroy``/``leftovers`` work from the name alone after a crash, and two labkit homes sharing
one server never see each other's instances (``instances()`` lists this home's only).

What ``provider_data`` holds (the grader's ground, G4, reads the link ids):
- ``project_id``, ``project``: the project;
- ``nodes``: ``{node: {"node_id", "ports": [[adapter, port], ...]}}`` for lab nodes, switches
  (``sw-<segment>``) and the cloud ``grader``;
- ``links``: ``{link: link_id}`` (point-to-point links of the plan);
- ``segment_links``: ``{segment: {"node:iface": link_id}}`` (a member <-> its segment's switch);
- ``vantage_links``: ``{vantage point: link_id}`` (the cloud's port <-> the segment's switch);
- ``bridges``: ``{vantage point: host bridge}``;
- ``consoles``: ``{node: {"host", "port", "type"}}`` (after start);
- ``snapshot_id``: the project snapshot ``labkitbase`` (made after create; ``reset`` restores it);
- ``base_config``: ``{node: [lines]}`` pushed to each ``platform: frr`` device (see below).

Base addresses: on netns labkit sets every node's addresses itself; on GNS3 it does so for
``platform: frr`` devices only: after the nodes are started (``start``, hence also after
``reset``, whose snapshot predates the push), their hostname and the plan's interface
addresses (adapters/devices/base_config.py) go through each device's telnet console with
netmiko, then ``write memory``. A rejected line fails the ``up`` (rolled back). A node of
another platform is refused at preflight: labkit writes no other CLI's base configuration, and
one template serves every node of a role, so it cannot hold per-node addresses either.

Work on the server is bounded: node and link creations of every instance of this process go
through one semaphore per server of ``parallel`` slots (a cohort brings several instances up
at once). A failed ``create`` rolls back through ``destroy``.

One UDP-port-allocating call at a time per server (:meth:`Gns3Provider.allocating_ports`).
gns3-server 3.0.6's compute hands out UDP ports in ``PortManager.get_free_udp_port``: a check
(bind a probe socket), then an add to a set, with no lock. Its route ``POST /v3/compute/
projects/{id}/ports/udp`` (what the controller calls twice per link) is a plain ``def``, which
FastAPI runs in a thread pool, so two link creations, or one beside a node start (whose local
UDP tunnels are allocated in the event loop), can both get the same port. Seen with
``--debug`` under a loaded cohort: "UDP port 20031 has been allocated" twice with no release
between, then a uBridge or emulator of one node could not bind it and that node stayed
stopped (reloads keep its ports, so they do not cure it). So link creations, link resets,
project and node starts, reloads and snapshot restores hold one lock per server, a ``flock``ed
file in the home's ``locks`` (adapters/hostlocks.py): every labkit process of the home, the
portal, the CLI and a cohort alike, takes its turn. Anyone else driving the same server (its
web UI) is outside that lock.

Not offered: ``node_exec``, ``node_fs``, ``node_kernel`` (nothing runs commands in a GNS3 node
or reads its files from outside; devices are reached through their consoles).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from labkit.adapters import hostlocks
from labkit.adapters.gns3 import naming
from labkit.adapters.gns3.client import Gns3ApiError, Gns3Client
from labkit.adapters.gns3.settings import Gns3Settings, configured, load_gns3_settings
from labkit.adapters.providers.base import GraderGround, NodeFiles
from labkit.adapters.storage.state import INSTANCE_RE
from labkit.errors import AgentError, LabkitError, ProviderError, UnknownNodeError, UserError
from labkit.models.capabilities import Capability
from labkit.models.instance import ExecResult, InstancePlan, InstanceState, InstanceStatus, NodeStatus
from labkit.settings import Settings, load_settings

T = TypeVar("T")
log = logging.getLogger(__name__)

# Creations in flight per server (url), shared by every provider object of this process.
_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()

# canvas layout (GNS3 scene coordinates: x right, y down)
COL = 260  # between two segments' columns
ROW = 170  # between the rows: routers, switches, hosts, grader cloud
HOST_GAP = 120  # between the hosts of one segment
START_ATTEMPTS = 3  # POST nodes/start, see start(); and a node's own start, see _wait_started()
RESTART_AFTER_S = 5.0  # a lab node still stopped this long after a start is reloaded
PORTS_LOCK = "gns3-ports"  # the lock files of allocating_ports(), in the home's locks


def _slots(url: str, parallel: int) -> threading.BoundedSemaphore:
    with _SLOTS_LOCK:
        key = f"{url}#{parallel}"
        if key not in _SLOTS:
            _SLOTS[key] = threading.BoundedSemaphore(parallel)
        return _SLOTS[key]


def _iface_index(name: str) -> int | None:
    return int(name[3:]) if name.startswith("eth") and name[3:].isdigit() else None


def layout(plan: InstancePlan) -> dict[str, tuple[int, int]]:
    """Canvas positions: one column per LAN segment (its router on top, its switch under it,
    the segment's other members under the switch), nodes on no segment in further columns,
    the grader's cloud apart, under everything, at the left."""
    pos: dict[str, tuple[int, int]] = {}
    roles = {n.name: n.role for n in plan.nodes}
    col = 0
    for seg, members in plan.segments.items():
        x = col * COL
        nodes = [m.split(":", 1)[0] for m in members]
        head = next((n for n in nodes if roles.get(n) == "router"), None)
        if head is not None and head not in pos:
            pos[head] = (x, 0)
        pos[naming.switch_name(seg)] = (x, ROW)
        rest = [n for n in nodes if n not in pos]
        for i, n in enumerate(rest):
            pos[n] = (x + int((i - (len(rest) - 1) / 2) * HOST_GAP), 2 * ROW)
        col += max(1, -(-len(rest) * HOST_GAP // COL))  # columns wide enough for its hosts
    for node in plan.nodes:
        if node.name not in pos:
            pos[node.name] = (col * COL, 0)
            col += 1
    pos[naming.GRADER_NODE] = (-COL, 3 * ROW)
    return pos


class Gns3Provider:
    name = "gns3"
    capabilities: frozenset[Capability] = frozenset({
        "vantage", "grader_echo", "capture", "link_cut", "silent_cut", "console", "snapshot_reset",
    })
    vantage_modes = ("agent",)

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load_settings()
        self._g3: Gns3Settings | None = None
        self._client: Gns3Client | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ plumbing
    @property
    def g3(self) -> Gns3Settings:
        if self._g3 is None:
            self._g3 = load_gns3_settings(self.settings.home)
        return self._g3

    @property
    def client(self) -> Gns3Client:
        with self._lock:
            if self._client is None:
                self._client = Gns3Client(self.g3)
            return self._client

    @contextlib.contextmanager
    def allocating_ports(self, what: str) -> Iterator[None]:
        """Hold this server's UDP-port lock (see the module's doc) for a call that makes the
        compute allocate UDP ports; waits up to 10 x ``start_timeout`` for another holder."""
        timeout = 10 * self.g3.start_timeout
        try:
            with hostlocks.held_slot(self.settings.home / "locks", PORTS_LOCK, self.g3.url, 1, timeout=timeout):
                yield
        except hostlocks.SlotTimeout:
            raise ProviderError(
                f"{what} waited {timeout:g} s for the port lock of the GNS3 server {self.g3.url}, held by another "
                "labkit process of this home the whole time; wait for it to finish (or end it) and retry.") from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def home_id(self) -> str:
        return naming.home_id(self.settings.home)

    def project_name(self, instance: str) -> str:
        return naming.project_name(self.g3.project_prefix, self.home_id(), instance)

    def _bounded(self, fn: Callable[[Any], T], items: list[Any]) -> list[T]:
        """``fn`` on every item, at most ``parallel`` at once (and at most ``parallel`` on this
        server from this whole process); the first error is raised once all have finished."""
        slots = _slots(self.g3.url, self.g3.parallel)

        def slotted(item: Any) -> T:
            with slots:
                return fn(item)

        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.g3.parallel, len(items)), thread_name_prefix="g3") as pool:
            futures = [pool.submit(slotted, it) for it in items]
            results, first = [], None
            for f in futures:
                try:
                    results.append(f.result())
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    first = first or exc
        if first is not None:
            raise first
        return results

    def _templates(self) -> dict[str, dict[str, Any]]:
        return {str(t.get("name")): t for t in self.client.get("/templates") or []}

    # ------------------------------------------------------------ preflight
    def server_version(self) -> str:
        """The server's version; a UserError unless it is 3.x (the v3 API)."""
        try:
            info = self.client.get("/version") or {}
        except Gns3ApiError as exc:
            if exc.status == 404:
                raise UserError(f"the server at {self.g3.url} has no v3 API (GNS3 2.x?); labkit needs GNS3 "
                                "server 3.x: upgrade it or fix url in gns3.toml.") from None
            raise
        version = str(info.get("version", ""))
        if not version.startswith("3."):
            raise UserError(f"the GNS3 server at {self.g3.url} is version {version or 'unknown'}; labkit needs "
                            "3.x: upgrade it or fix url in gns3.toml.")
        return version

    def template_problems(self, plan: InstancePlan, templates: dict[str, dict[str, Any]]) -> list[str]:
        """One sentence per missing template (a role with none configured, a template absent)."""
        out: list[str] = []
        path = "gns3.toml"
        for role in sorted({n.role for n in plan.nodes}):
            name = self.g3.templates.get(role)
            if not name:
                out.append(f"lab {plan.lab_id} has nodes of role {role!r} and {path} names no template for it; "
                           f"add '{role} = \"<template name>\"' under [templates].")
            elif name not in templates:
                out.append(f"the GNS3 template {name!r} (role {role!r}) does not exist on {self.g3.url}; create "
                           f"it in GNS3 or fix [templates] in {path}.")
        if plan.segments and self.g3.switch_template not in templates:
            out.append(f"the GNS3 switch template {self.g3.switch_template!r} does not exist on {self.g3.url}; "
                       f"enable the built-in templates or fix switch_template in {path}.")
        return out

    def preflight(self, plan: InstancePlan) -> None:
        from labkit.adapters.devices.base_config import BASE_CONFIG_PLATFORMS

        for n in plan.nodes:
            if n.platform is not None and n.platform not in BASE_CONFIG_PLATFORMS:
                raise UserError(f"node {n.name} of lab {plan.lab_id} is a {n.platform} device: on GNS3 labkit sets "
                                "base addresses for frr devices only (the template would have to set them for "
                                "others, and one template serves every node of a role); use platform: frr or the "
                                "netns provider.")
            bad = [i.name for i in n.interfaces if _iface_index(i.name) is None]
            if bad:
                raise UserError(f"node {n.name} of lab {plan.lab_id} has interface {bad[0]}: on GNS3 a node's "
                                "interfaces must be named eth0, eth1... (ethN is the node's N-th port); rename it.")
        self.server_version()
        problems = self.template_problems(plan, self._templates())
        if problems:
            raise UserError(problems[0])
        self.check_compute()

    def check_compute(self) -> None:
        """The configured compute exists (``local``: the controller's own, never listed)."""
        if self.g3.compute_id == "local":
            return
        computes = {str(c.get("compute_id")) for c in self.client.get("/computes") or []}
        if self.g3.compute_id not in computes:
            raise UserError(f"the GNS3 compute {self.g3.compute_id!r} named in gns3.toml does not exist (the "
                            f"server has: {', '.join(sorted(computes)) or 'none'}); fix compute_id.")

    # ------------------------------------------------------------ create
    def create(self, state: InstanceState) -> None:
        """Project, nodes, switches, cloud, links, snapshot. A failure rolls everything back."""
        try:
            self._create(state)
        except BaseException:
            try:
                self.destroy(state.name, state)
            except LabkitError:
                pass  # the original error matters more; 'labkit down' retries
            raise

    def _find_project(self, instance: str) -> dict[str, Any] | None:
        pname = self.project_name(instance)
        return next((p for p in self.client.get("/projects") or [] if p.get("name") == pname), None)

    def _create(self, state: InstanceState) -> None:
        plan, g3, name = state.plan, self.g3, state.name
        data = state.provider_data
        pname = self.project_name(name)
        if self._find_project(name) is not None:
            raise ProviderError(f"the GNS3 project {pname} already exists; run 'labkit down {name}' first.")
        proj = self.client.post("/projects", {"name": pname, "auto_close": False, "auto_open": False,
                                              "auto_start": False, "show_interface_labels": True})
        pid = str(proj["project_id"])
        data.update(project=pname, project_id=pid, nodes={}, links={}, segment_links={}, vantage_links={},
                    bridges={})
        templates = self._templates()
        pos = layout(plan)
        base = f"/projects/{pid}"

        def from_template(job: tuple[str, str]) -> tuple[str, dict[str, Any]]:
            node, tname = job
            x, y = pos[node]
            made = self.client.post(f"{base}/templates/{templates[tname]['template_id']}",
                                    {"x": x, "y": y, "compute_id": g3.compute_id})
            nid = str(made["node_id"])
            made = self.client.put(f"{base}/nodes/{nid}", {"name": node})
            return node, {"node_id": nid, "type": made.get("node_type"), "ports": _ports(made)}

        jobs = [(n.name, g3.templates[n.role]) for n in plan.nodes]
        jobs += [(naming.switch_name(s), g3.switch_template) for s in plan.segments]
        for node, rec in self._bounded(from_template, jobs):
            data["nodes"][node] = rec
        self._size_switches(state)
        if plan.vantage and self.g3.grader is not None:
            # no grader host, no vantage points: the cloud would name host bridges nobody
            # makes (GNS3 then refuses to start it); ground() says what is missing
            self._grader_cloud(state, pos[naming.GRADER_NODE])
        self._links(state)
        self._pool(state)
        if plan.candidate:
            self._candidate_access(state)
        snap = self.client.post(f"{base}/snapshots", {"name": naming.BASE_SNAPSHOT})
        data["snapshot_id"] = str(snap["snapshot_id"])

    def _size_switches(self, state: InstanceState) -> None:
        """A switch with fewer ports than its segment needs (members + vantage points) gets more
        (an ``ethernet_switch``: access ports in VLAN 1, as the built-in one has 8 of)."""
        plan, data = state.plan, state.provider_data
        base = f"/projects/{data['project_id']}"
        for seg, members in plan.segments.items():
            rec = data["nodes"][naming.switch_name(seg)]
            need = len(members) + sum(1 for v in plan.vantage if v.segment == seg)
            if len(rec["ports"]) >= need:
                continue
            if rec.get("type") != "ethernet_switch":
                raise ProviderError(f"the switch template {self.g3.switch_template!r} has {len(rec['ports'])} ports "
                                    f"and segment {seg} needs {need}; give it more ports in GNS3.")
            mapping = [{"name": f"Ethernet{i}", "port_number": i, "type": "access", "vlan": 1, "ethertype": "0x8100"}
                       for i in range(need)]
            made = self.client.put(f"{base}/nodes/{rec['node_id']}", {"properties": {"ports_mapping": mapping}})
            rec["ports"] = _ports(made)

    def _grader_cloud(self, state: InstanceState, xy: tuple[int, int]) -> None:
        """The cloud node ``grader``: one ethernet port per vantage point, on that vantage
        point's host bridge (made first on the GNS3 host by labkit's agent when a grader host
        is configured: the cloud plugs a tap into an existing bridge only)."""
        plan, data = state.plan, state.provider_data
        hid = self.home_id()
        bridges = {v.name: naming.host_bridge(hid, state.name, v.name) for v in plan.vantage}
        data["bridges"] = bridges
        self._host_setup(state)
        mapping = [{"interface": bridges[v.name], "name": v.name, "port_number": i, "type": "ethernet"}
                   for i, v in enumerate(plan.vantage)]
        made = self.client.post(f"/projects/{data['project_id']}/nodes", {
            "name": naming.GRADER_NODE, "node_type": "cloud", "compute_id": self.g3.compute_id,
            "x": xy[0], "y": xy[1], "symbol": ":/symbols/cloud.svg",
            "properties": {"ports_mapping": mapping}})
        data["nodes"][naming.GRADER_NODE] = {"node_id": str(made["node_id"]), "type": "cloud",
                                             "ports": _ports(made)}

    def _port(self, state: InstanceState, node: str, index: int, what: str) -> dict[str, Any]:
        rec = state.provider_data["nodes"][node]
        ports = rec["ports"]
        if index >= len(ports):
            n = state.plan.node(node)
            tpl = self.g3.templates.get(n.role, "") if n else self.g3.switch_template
            raise ProviderError(f"node {node} needs {what} but its GNS3 template {tpl!r} gives it {len(ports)} "
                                "port(s); raise the template's adapters in GNS3.")
        adapter, port = ports[index]
        return {"node_id": rec["node_id"], "adapter_number": adapter, "port_number": port}

    def _links(self, state: InstanceState) -> None:
        plan, data = state.plan, state.provider_data
        jobs: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
        for seg, members in plan.segments.items():
            sw = naming.switch_name(seg)
            for k, member in enumerate(members):
                node, _, iface = member.partition(":")
                idx = _iface_index(iface)
                assert idx is not None  # preflight checked
                jobs.append(("segment", f"{seg}|{member}", self._port(state, node, idx, iface),
                             self._port(state, sw, k, f"port {k}")))
            k = len(members)
            cloud = naming.GRADER_NODE in data["nodes"]
            for i, vp in enumerate(v for v in plan.vantage if v.segment == seg and cloud):
                cloud_port = [v.name for v in plan.vantage].index(vp.name)
                jobs.append(("vantage", vp.name, self._port(state, naming.GRADER_NODE, cloud_port, vp.name),
                             self._port(state, sw, k + i, f"port {k + i}")))
        for link, (a, b) in plan.links.items():
            ends = []
            for ep in (a, b):
                node, _, iface = ep.partition(":")
                idx = _iface_index(iface)
                assert idx is not None
                ends.append(self._port(state, node, idx, iface))
            jobs.append(("link", link, ends[0], ends[1]))
        base = f"/projects/{data['project_id']}/links"

        def one(job: tuple[str, str, dict[str, Any], dict[str, Any]]) -> tuple[str, str, str]:
            kind, key, a_end, b_end = job
            with self.allocating_ports(f"a link of {state.name}"):
                made = self.client.post(base, {"nodes": [a_end, b_end]})
            return kind, key, str(made["link_id"])

        for kind, key, lid in self._bounded(one, jobs):
            if kind == "segment":
                seg, _, member = key.partition("|")
                data["segment_links"].setdefault(seg, {})[member] = lid
            elif kind == "vantage":
                data["vantage_links"][key] = lid
            else:
                data["links"][key] = lid

    # ------------------------------------------------------------ collaborators (lazy)
    def candidate_name(self, instance: str) -> str:
        """The instance's candidate user and pool (access.py): ``lk-<homeid>-<instance>``."""
        from labkit.adapters.gns3 import access

        return access.candidate_name(self.home_id(), instance)

    def _password_file(self, instance: str) -> Path:
        return self.settings.instances / instance / "gns3-candidate.txt"

    def _pool(self, state: InstanceState) -> None:
        """Every labkit project in a pool of its own (access.py says why), candidate or not."""
        from labkit.adapters.gns3 import access

        name = self.candidate_name(state.name)
        state.provider_data["pool"] = name
        state.provider_data["pool_id"] = access.ensure_pool(self.client, name, state.provider_data["project_id"])

    def _candidate_access(self, state: InstanceState) -> None:
        """The candidate's own GNS3 account and its ACE on the pool (access.py); the password
        goes to a 0600 file of the instance, not to the state."""
        from labkit.adapters.gns3 import access

        granted = access.grant(self.client, self.g3, state.name, state.provider_data["project_id"],
                               self._password_file(state.name), name=self.candidate_name(state.name),
                               candidate=state.plan.candidate or "")
        state.provider_data.update(granted.provider_data())

    def _remove_access(self, name: str) -> list[str]:
        from labkit.adapters.gns3 import access

        return list(access.remove(self.client, self.candidate_name(name), password_file=self._password_file(name)))

    def _host_setup(self, state: InstanceState) -> None:
        """The vantage points' host bridges and namespaces on the GNS3 host (host.py, G4)."""
        from labkit.adapters.gns3 import host

        host.setup(self, state)

    def _host_teardown(self, name: str) -> list[str]:
        if self.g3.grader is None:
            return []
        from labkit.adapters.gns3 import host

        return list(host.teardown(self, name) or [])

    # ------------------------------------------------------------ start / stop / status
    def _nodes(self, pid: str) -> list[dict[str, Any]]:
        return list(self.client.get(f"/projects/{pid}/nodes") or [])

    def start(self, state: InstanceState) -> None:
        """Start every node of the project; wait (``start_timeout``) until the lab nodes are
        started; record their consoles."""
        pid = state.provider_data["project_id"]
        for attempt in range(1, START_ATTEMPTS + 1):
            # a node's start can fail for a moment on a loaded compute (an emulator's console
            # not yet listening when GNS3 connects to it, its version check timing out: seen
            # with 50 nodes starting at once); starting started nodes is harmless, so again,
            # bounded, before the instance is given up and rolled back
            try:
                with self.allocating_ports(f"the start of {state.name}"):
                    self.client.post(f"/projects/{pid}/nodes/start", timeout=self.g3.start_timeout)
                break
            except Gns3ApiError as exc:
                if exc.status != 409 or attempt == START_ATTEMPTS:
                    raise
                time.sleep(attempt)
        self._wait_started(state)
        self._push_base_configs(state)

    def _push_base_configs(self, state: InstanceState) -> None:
        """Hostname and plan addresses to every ``platform: frr`` device, through its telnet
        console with netmiko (bounded parallelism); the first rejected line fails the start."""
        from labkit.adapters.devices.base_config import BASE_CONFIG_PLATFORMS, base_config_lines
        from labkit.adapters.devices.netmiko_driver import push_config

        devices = [n for n in state.plan.nodes if n.platform in BASE_CONFIG_PLATFORMS]
        if not devices:
            return
        pushed: dict[str, list[str]] = {}

        def one(n: Any) -> tuple[str, list[str]]:
            lines = base_config_lines(n)
            push_config(self.device_endpoint(state, n.name), lines, save=True)
            return n.name, lines

        for node, lines in self._bounded(one, devices):
            pushed[node] = lines
        state.provider_data["base_config"] = pushed

    def _wait_started(self, state: InstanceState) -> None:
        """Wait until every lab node is started. A node still "stopped" a while after the
        project's start is reloaded on its own (stop, then start), at most ``START_ATTEMPTS -
        1`` times, ``RESTART_AFTER_S`` apart; past ``start_timeout`` the instance fails as
        before. Seen in loaded CI runs: the project's start answered 204 and one node stayed
        "stopped" for 60 s. The cause found later was a UDP port gns3-server had given out twice
        (its emulator or uBridge could not bind it and ended at once); ``allocating_ports``
        prevents that among labkit's own calls, and a reload keeps the node's ports, so it does
        not cure that case. The reload stays for an emulator that ends for a passing reason
        (another client of the server holding a port for a moment): it is bounded and cheap."""
        pid = state.provider_data["project_id"]
        want = {n.name for n in state.plan.nodes}
        deadline = time.monotonic() + self.g3.start_timeout
        delay = 0.1
        since = time.monotonic()
        restarts: dict[str, int] = {}
        while True:
            nodes = self._nodes(pid)
            down = sorted(want - {str(n.get("name")) for n in nodes if n.get("status") == "started"})
            if not down:
                break
            if time.monotonic() - since >= RESTART_AFTER_S:
                for n in nodes:
                    name = str(n.get("name"))
                    if name in down and n.get("status") == "stopped" and restarts.get(name, 0) < START_ATTEMPTS - 1:
                        restarts[name] = restarts.get(name, 0) + 1
                        log.warning("node %s of %s is still stopped after the project's start: reloading it (%d)",
                                    name, state.name, restarts[name])
                        try:
                            with self.allocating_ports(f"the reload of {name} of {state.name}"):
                                self.client.post(f"/projects/{pid}/nodes/{n['node_id']}/reload",
                                                 timeout=max(5.0, deadline - time.monotonic()))
                        except Gns3ApiError as exc:
                            log.warning("reloading node %s of %s failed: %s", name, state.name, exc)
                since = time.monotonic()
            if time.monotonic() > deadline:
                raise ProviderError(f"node(s) {', '.join(down)} of {state.name} did not start within "
                                    f"{self.g3.start_timeout:.0f} s; look at the project in GNS3 (images, "
                                    "compute) and raise start_timeout in gns3.toml if it is only slow.")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        state.provider_data["consoles"] = self._consoles(state, nodes)

    def _consoles(self, state: InstanceState, nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        want = {n.name for n in state.plan.nodes}
        out: dict[str, dict[str, Any]] = {}
        for n in nodes:
            if n.get("name") in want and n.get("console") and n.get("console_type") not in (None, "none"):
                host = self.g3.console_host or str(n.get("console_host") or "")
                if host in ("", "0.0.0.0", "::", "0:0:0:0:0:0:0:0"):
                    host = self.g3.host
                out[str(n["name"])] = {"host": host, "port": int(n["console"]), "type": str(n["console_type"])}
        return out

    def stop(self, state: InstanceState) -> None:
        pid = state.provider_data["project_id"]
        self.client.post(f"/projects/{pid}/nodes/stop", timeout=self.g3.start_timeout)

    def status(self, state: InstanceState) -> InstanceStatus:
        pid = state.provider_data.get("project_id")
        by_name: dict[str, dict[str, Any]] = {}
        if pid:
            try:
                by_name = {str(n.get("name")): n for n in self._nodes(pid)}
            except Gns3ApiError as exc:
                if exc.status != 404:
                    raise
        nodes = [NodeStatus(name=n.name, present=by_name.get(n.name, {}).get("status") == "started", processes=0)
                 for n in state.plan.nodes]
        return InstanceStatus(name=state.name, lab_id=state.plan.lab_id, provider=self.name,
                              phase=state.phase, created_at=state.created_at, nodes=nodes)

    def reset(self, state: InstanceState) -> None:
        """The project back to its ``labkitbase`` snapshot (nodes' disks and config as made),
        then started again."""
        data = state.provider_data
        pid = data["project_id"]
        sid = data.get("snapshot_id") or next(
            (str(s["snapshot_id"]) for s in self.client.get(f"/projects/{pid}/snapshots") or []
             if s.get("name") == naming.BASE_SNAPSHOT), None)
        if not sid:
            raise ProviderError(f"the GNS3 project of {state.name} has no snapshot {naming.BASE_SNAPSHOT}; bring "
                                "the instance down and up again.")
        with self.allocating_ports(f"the reset of {state.name}"):
            self.client.post(f"/projects/{pid}/snapshots/{sid}/restore", timeout=self.g3.start_timeout)
        self.start(state)

    # ------------------------------------------------------------ nodes
    def _node(self, state: InstanceState, node: str) -> None:
        if state.plan.node(node) is None:
            names = ", ".join(n.name for n in state.plan.nodes)
            raise UnknownNodeError(f"instance {state.name!r} has no node {node!r}; its nodes are: {names}.")

    def console(self, state: InstanceState, node: str) -> dict[str, Any]:
        """The node's console ``{host, port, type}`` (recorded at start, else asked)."""
        self._node(state, node)
        con = state.provider_data.get("consoles", {}).get(node)
        if con is None:
            con = self._consoles(state, self._nodes(state.provider_data["project_id"])).get(node)
        if con is None:
            raise ProviderError(f"node {node!r} of {state.name} has no console in GNS3; give its template a "
                                "telnet console.")
        return dict(con)

    def exec(self, state: InstanceState, node: str, argv: list[str], *, input: str | None = None,
             timeout: float = 60.0) -> ExecResult:
        self._node(state, node)
        raise UserError("on GNS3 labkit runs no command in a node (capability node_exec); use the node's "
                        f"console ('labkit console {state.name} {node}').")

    def console_argv(self, state: InstanceState, node: str) -> list[str]:
        con = self.console(state, node)
        if con["type"] != "telnet":
            raise UserError(f"node {node!r} has a {con['type']} console; labkit opens telnet consoles only: open "
                            "it from the GNS3 client.")
        return [sys.executable, "-m", "labkit.adapters.gns3.console", con["host"], str(con["port"])]

    def access_lines(self, state: InstanceState) -> list[str]:
        """What the trainer hands the candidate: server, user, where the password is, their
        project (no secret: the password stays in its 0600 file); empty without a candidate."""
        from labkit.adapters.gns3 import access

        return access.access_lines(self.g3.url, state.provider_data)

    def device_endpoint(self, state: InstanceState, node: str) -> Any:
        """A device's CLI on GNS3: its telnet console (no SSH path to a GNS3 node)."""
        from labkit.models.device import DeviceEndpoint

        n = state.plan.node(node)
        con = self.console(state, node)
        if n is None or n.platform is None:
            raise UserError(f"node {node!r} of {state.name} is not a network device (its topology node has no "
                            "platform:); open its console with 'labkit console' instead.")
        if con["type"] != "telnet":
            raise UserError(f"node {node!r} has a {con['type']} console; a device is driven through a telnet "
                            "console: set its template's console type to telnet.")
        return DeviceEndpoint(node=node, platform=n.platform, transport="telnet", host=con["host"],
                              port=int(con["port"]))

    def device_socket(self, state: InstanceState, node: str, timeout: float = 10.0) -> Any:
        return None  # the console is reached directly, not from a grader place

    def node_fs(self, state: InstanceState, node: str) -> NodeFiles:
        raise UserError("on GNS3 nothing reads a node's files from outside it (capability node_fs); this check "
                        "needs the netns provider.")

    def ansible_host_vars(self, state: InstanceState, node: str) -> dict[str, str]:
        """What the inventory records of a node (its address); Ansible does not reach GNS3 nodes
        (no set-up playbook on GNS3: devices get config sets through their consoles)."""
        n = state.plan.node(node)
        if n is None:
            raise UnknownNodeError(f"instance {state.name!r} has no node {node!r}.")
        return {"ansible_host": n.first_address() or node}

    # ------------------------------------------------------------ grading
    def ground(self, state: InstanceState, mode: str | None = None) -> GraderGround:
        mode = mode or state.vantage
        if mode != "agent":
            raise UserError(f"the gns3 provider grades only through the grader agent (vantage 'agent'), not "
                            f"{mode!r}; leave --vantage out.")
        if self.g3.grader is None:
            raise AgentError("gns3.toml has no [grader] (labkit's agent on the GNS3 host, which owns the vantage "
                             "points): add it, then bring the instance up again to grade it.")
        try:
            from labkit.adapters.gns3 import ground
        except ImportError:
            raise AgentError("the GNS3 grader ground is not installed in this labkit; update labkit.") from None
        return ground.ground(self, state)  # type: ignore[no-any-return]

    def run_attachments(self, state: InstanceState, workdir: Path) -> list[tuple[str, Path]]:
        """What a grading run keeps of the instance: the project's export (export.py, G3)."""
        from labkit.adapters.gns3 import export

        dest = Path(workdir) / "project.gns3project"
        path = export.export_project(self.client, state.provider_data["project_id"], dest,
                                     self.g3.export_max_mb * 1024 * 1024)
        return [("project.gns3project", Path(path))]

    # ------------------------------------------------------------ destroy
    def instances(self) -> list[str]:
        """The instances of THIS labkit home on the configured server, from the names alone
        (so also those whose state is gone): projects named ``<prefix><homeid>-<instance>``,
        candidate users and pools named ``lk-<homeid>-<instance>``. Another home's are never
        listed. Empty when GNS3 is not configured."""
        if not configured(self.settings.home):
            return []
        from labkit.adapters.gns3 import access

        hid = self.home_id()
        found = {naming.instance_of(self.g3.project_prefix, hid, str(p.get("name", "")))
                 for p in self.client.get("/projects") or []}
        found |= {naming.instance_of(access.USER_PREFIX, hid, str(u.get("username", "")))
                  for u in self.client.get("/access/users") or []}
        found |= {naming.instance_of(access.USER_PREFIX, hid, str(p.get("name", "")))
                  for p in self.client.get("/pools") or []}
        return sorted(n for n in found if n and INSTANCE_RE.fullmatch(n))

    def leftovers(self, name: str) -> list[str]:
        if not configured(self.settings.home):
            return []
        from labkit.adapters.gns3 import access

        wanted = self.project_name(name)
        out = [f"gns3 project {p['name']}" for p in self.client.get("/projects") or [] if p.get("name") == wanted]
        out += access.leftovers(self.client, self.candidate_name(name))
        if self.g3.grader is not None:
            from labkit.adapters.gns3 import host

            out += host.leftovers(self, name)
        return out

    def destroy(self, name: str, state: InstanceState | None) -> list[str]:
        """Delete the project (GNS3 stops and deletes its nodes), the candidate's user, pool and
        ACE, the host bridges. Idempotent; from the name alone."""
        if not configured(self.settings.home):
            return []
        removed: list[str] = []
        pname = self.project_name(name)
        for p in [p for p in self.client.get("/projects") or [] if p.get("name") == pname]:
            try:
                self.client.delete(f"/projects/{p['project_id']}", timeout=self.g3.start_timeout)
            except Gns3ApiError as exc:
                if exc.status != 404:
                    raise
            removed.append(f"gns3 project {pname}")
        removed += self._remove_access(name)
        removed += self._host_teardown(name)
        left = self.leftovers(name)
        if left:
            raise ProviderError(f"could not remove {', '.join(left)}; run 'labkit down {name}' again.")
        return removed


def _ports(node: dict[str, Any]) -> list[list[int]]:
    """A node's ports as [adapter, port] pairs, in GNS3's order (ethN is the N-th)."""
    return [[int(p["adapter_number"]), int(p["port_number"])] for p in node.get("ports") or []]
