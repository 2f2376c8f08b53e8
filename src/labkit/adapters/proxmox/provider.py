"""The Proxmox VE provider: a lab instance as linked clones in a pool, joined by SDN VNets, with
a grader guest per instance that runs the grader agent.

What an instance is made of (every name derived from the instance name, see naming.py):
- a pool ``lk-<instance>`` (its comment records the instance's VMID block);
- VNets in the configured SDN zone, none shared by two lab VMs: one per member of each LAN
  segment (that node's NIC <-> one grader NIC) and two per point-to-point link (endpoint a <->
  grader, endpoint b <-> grader). The grader guest owns every LAN's layer 2, as on netns: a
  Proxmox bridge learns MACs, so a grader NIC merely sitting on a shared LAN VNet would not
  see unicast between two candidate VMs (a capture there would be incomplete, and a check
  relying on it could pass for the wrong reason); here all of a LAN's traffic crosses the
  grader's bridge, and a WAN link is bridged by the grader too (watch, cut, silently drop).
  No subnet and no gateway (the node would route between the candidate's LANs); in a vxlan
  zone each VNet gets a VNI (``naming.vxlan_tag``); all created, then ONE apply, then each
  node's zone status polled;
- one linked clone per lab node (template ``lk-tpl-<topology>``) and one grader guest
  (``lk-tpl-grader``): explicit VMIDs in the instance's block, placed on the nodes with the most
  free memory, at most ``parallel`` at once, every task's exitstatus checked; netN on the VNet
  of the node's ethN, cloud-init ipconfigN + the grader's public key, agent enabled, tag
  ``lk.<instance>``;
- the grader guest: net0 on ``mgmt_bridge`` (a management address from ``mgmt_cidr``), then one
  NIC per segment member and two per link (``grader_nic_count``: at most 32); inside it,
  ``labkit-agent-setup`` (grader_setup.py) makes the places from places.json: per segment a
  namespace ``lk-<instance>.s-<segment>`` whose ``br0`` bridges the segment's grader NICs
  (ports p1..pN in the order of the segment's members), per vantage point a namespace with a
  veth plugged into its segment's ``br0`` (its address and gateway), per link a namespace
  bridging its two halves (ports p1, p2, as on netns); the guest's SSH server (labkit's own,
  host key made here and pinned) runs the grader agent, provisioned through the guest agent;
- readiness by the guest agent (``network-get-interfaces`` shows the planned addresses), then
  a snapshot ``labkitbase`` of every VM (``reset`` rolls back to it);
- container nodes: a node the topology marks ``container: true`` (with ``containers`` on) is an
  unprivileged LXC container, a linked clone of ``naming.ct_template`` (``POST .../lxc/{id}/clone``,
  same VMID block, placement, bound and rollback; on local storage it stays on its template's
  node), its NICs ``netX: name=ethX,bridge=<vnet>,ip=..,gw=..,type=veth`` (Proxmox writes them
  in; no cloud-init), ready when the host's ``GET .../lxc/{id}/interfaces`` shows the planned
  addresses, snapshot/rollback/stop/destroy/console on the lxc paths; its keys are the CT
  template's (the home's container key, ``settings.ct_key_path``); no command runs in it
  (``exec`` refuses; ``node_limits`` says so, and validate/up refuse a lab whose ``node_exec``
  checks name it);
- in a VXLAN zone (VNets of 1450 bytes) the VM NICs get ``mtu=1`` (virtio: the bridge's MTU), the
  container NICs ``mtu=1450``, and places.json ``"mtu": 1450`` (the grader's bridges and veths).

Destroy works from the name alone (pool members and VMs/containers tagged ``lk.<instance>``, VNets whose
alias starts with ``lk-<instance>:``, the pool), so it works after a crash; a failed create
rolls back the same way.

Not offered: ``node_fs`` and ``node_kernel`` (nothing reads a VM's files or kernel state from
outside the VM; commands in a node go through the guest agent: ``node_exec``).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from labkit.adapters.providers.base import GraderGround, NodeFiles
from labkit.adapters.proxmox import naming
from labkit.adapters.proxmox.client import PveApiError, PveClient
from labkit.adapters.proxmox.settings import ProxmoxSettings, configured, ct_key_path, load_proxmox_settings
from labkit.adapters.proxmox.slots import clone_slot
from labkit.adapters.storage.state import INSTANCE_RE
from labkit.errors import AgentError, LabkitError, ProviderError, UnknownNodeError, UserError
from labkit.models.capabilities import Capability
from labkit.models.instance import ExecResult, InstancePlan, InstanceState, InstanceStatus, NodeStatus
from labkit.settings import Settings, load_settings

T = TypeVar("T")
MAX_NICS = 32
VXLAN_MTU = 1450  # a VXLAN zone's VNets: 1500 less the 50 bytes of VXLAN over IPv4
EXEC_OUTPUT_LIMIT = 1 << 20
AGENT_DIR = "/etc/labkit-agent"

class ProxmoxProvider:
    name = "proxmox"
    capabilities: frozenset[Capability] = frozenset({
        "vantage", "grader_echo", "capture", "link_cut", "silent_cut", "node_exec", "console",
        "snapshot_reset", "port_map",
    })
    vantage_modes = ("agent",)

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load_settings()
        self._pve: ProxmoxSettings | None = None
        self._client: PveClient | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ plumbing
    @property
    def pve(self) -> ProxmoxSettings:
        if self._pve is None:
            self._pve = load_proxmox_settings(self.settings.home)
        return self._pve

    @property
    def client(self) -> PveClient:
        with self._lock:
            if self._client is None:
                self._client = PveClient(self.pve)
            return self._client

    def _vms(self) -> list[dict[str, Any]]:
        return list(self.client.call("GET", "/cluster/resources", type="vm") or [])

    # ------------------------------------------------------------ planning
    @staticmethod
    def _nets(plan: InstancePlan) -> list[str]:
        """The instance's nets, each one VNet: one per segment member, then both halves of
        every link (each holds one lab VM's NIC and one grader NIC)."""
        return [net for _place, net in ProxmoxProvider._grader_nics(plan)]

    @staticmethod
    def _node_nics(plan: InstancePlan, node: str) -> dict[int, str]:
        """netN index -> net name for a node: its ethN's own net on a segment, or its half of a link."""
        out: dict[int, str] = {}
        n = plan.node(node)
        assert n is not None
        for iface in n.interfaces:
            idx = int(iface.name[3:])
            if iface.segment:
                out[idx] = naming.segment_vnet(iface.segment, f"{node}:{iface.name}")
            elif iface.link:
                a, b = naming.link_vnets(iface.link)
                out[idx] = a if plan.links[iface.link][0] == f"{node}:{iface.name}" else b
        return out

    @staticmethod
    def _grader_nics(plan: InstancePlan) -> list[tuple[str, str]]:
        """(place, net) of the grader guest's NICs after net0 (management), in order: every
        segment's members (the ports p1..pN of its bridge, in the plan's order), then both
        halves of every link. Vantage points are no NICs: veths inside the guest."""
        nics = [(f"segment:{s}", naming.segment_vnet(s, m)) for s, members in plan.segments.items()
                for m in members]
        for link in plan.links:
            a, b = naming.link_vnets(link)
            nics += [(f"link:{link}:a", a), (f"link:{link}:b", b)]
        return nics

    @staticmethod
    def grader_nic_count(plan: InstancePlan) -> int:
        """NICs of the instance's grader guest: 1 management + one per segment member + 2 per link."""
        return 1 + len(ProxmoxProvider._grader_nics(plan))

    def preflight(self, plan: InstancePlan) -> None:
        pve = self.pve
        for n in plan.nodes:
            bad = [i.name for i in n.interfaces if not (i.name.startswith("eth") and i.name[3:].isdigit()
                                                        and int(i.name[3:]) < MAX_NICS)]
            if bad:
                raise UserError(f"node {n.name} of lab {plan.lab_id} has interface {bad[0]}: on Proxmox a "
                                f"node's interfaces must be eth0..eth{MAX_NICS - 1} (netN is ethN); rename it.")
        if len(plan.nodes) + 1 > self.pve.vmid_block // 2:
            raise UserError(f"lab {plan.lab_id} has {len(plan.nodes)} nodes and a VMID block holds "
                            f"{self.pve.vmid_block // 2 - 1}; raise vmid_block in proxmox.toml.")
        nics = self.grader_nic_count(plan)
        if nics > MAX_NICS:
            members = sum(len(m) for m in plan.segments.values())
            raise UserError(f"lab {plan.lab_id} needs {nics} NICs on its grader guest (1 management + {members} "
                            f"segment members + 2 x {len(plan.links)} links) and a Proxmox VM has at most "
                            f"{MAX_NICS}; split the lab or use the netns provider.")
        cts = self._ct_nodes(plan)
        vms = self._vms()
        names = {str(v.get("name")) for v in vms if v.get("template")}
        need = [pve.grader_template]
        if len(cts) < len(plan.nodes):
            need.insert(0, naming.node_template(pve.template_prefix, plan.topology_id))
        if cts:
            need.insert(0, naming.ct_template(pve.template_prefix, plan.topology_id))
        missing = [t for t in need if t not in names]
        if missing:
            raise UserError(f"the Proxmox template(s) {', '.join(missing)} are missing; run 'labkit templates "
                            f"build --provider proxmox --lab {plan.lab_id} --image ...' and retry.")
        zones = {z.get("zone") for z in self.client.call("GET", "/cluster/sdn/zones") or []}
        if pve.zone not in zones:
            raise UserError(f"the SDN zone {pve.zone!r} named in proxmox.toml does not exist; create it (type "
                            "simple or vxlan) or fix 'zone', then run 'labkit doctor --provider proxmox'.")

    def _ct_nodes(self, plan: InstancePlan) -> set[str]:
        """The nodes that run as LXC containers: those the topology marks ``container: true``,
        when the settings allow containers (``containers = false``: every node is a VM)."""
        if not self.pve.containers:
            return set()
        return {n.name for n in plan.nodes if n.container}

    def node_limits(self, node: Any) -> tuple[frozenset[str], str] | None:
        """What this provider cannot offer on topology node ``node`` (a NodeSpec or NodePlan),
        and why: a container node runs no command from labkit (Proxmox's API has no guest
        agent and no exec for containers). ``labkit validate``, ``up`` and ``cohort up`` refuse
        a check that needs or wants one of them on that node (lifecycle.check_provider_fits)."""
        if not getattr(node, "container", False):
            return None
        # validate runs before Proxmox is configured: then the default (containers on) holds
        if configured(self.settings.home) and not self.pve.containers:
            return None
        return (frozenset({"node_exec"}),
                "it runs as a container on Proxmox, where labkit cannot run a command in a container; mark it "
                "'container: false' in the topology or set 'containers = false' in proxmox.toml")

    # ------------------------------------------------------------ create
    def create(self, state: InstanceState) -> None:
        """Pool, VNets (one apply), clones, config, NICs. A failure rolls everything back."""
        try:
            self._create(state)
        except BaseException:
            try:
                self.destroy(state.name, state)
            except LabkitError:
                pass  # the original error matters more; 'labkit down' retries
            raise

    def _create(self, state: InstanceState) -> None:
        plan, pve, name = state.plan, self.pve, state.name
        data = state.provider_data
        vms = self._vms()
        block = self._claim_block(name, vms)
        data.update(pool=naming.pool_id(name), vmid_block=block, vms={}, vnets={})
        data["mgmt_address"] = self._mgmt_address(block)
        ztype = self._zone_type()
        if ztype == "vxlan":
            data["mtu"] = VXLAN_MTU  # every lab NIC, and the grader's bridges and vantage veths
        data["vnets"] = self._make_vnets(name, self._nets(plan), ztype)
        templates = {str(v["name"]): v for v in vms if v.get("template")}
        cts = self._ct_nodes(plan)
        node_tpl = templates.get(naming.node_template(pve.template_prefix, plan.topology_id), {})
        ct_tpl = templates.get(naming.ct_template(pve.template_prefix, plan.topology_id), {})
        grader_tpl = templates[pve.grader_template]
        jobs: list[tuple[str, dict[str, Any], int]] = []
        for i, n in enumerate(plan.nodes):
            jobs.append((n.name, ct_tpl if n.name in cts else node_tpl, block + 1 + i))
        jobs.append((naming.GRADER_NODE, grader_tpl, block))
        placement = self._place([(j[0], int(j[1].get("maxmem", 0))) for j in jobs])
        if cts and not self._storage_shared():
            # a linked clone of a container on local storage stays on its template's node
            placement.update({node: str(ct_tpl["node"]) for node in cts})
        pubkey = Path(state.ssh_key + ".pub").read_text(encoding="utf-8").strip()

        def one(job: tuple[str, dict[str, Any], int]) -> tuple[str, dict[str, Any]]:
            node, tpl, vmid = job
            target = placement[node]
            vmid = self._clone(name, node, tpl, vmid, target)
            if _kind(tpl) == "lxc":
                self._configure_ct(state, node, target, vmid)
                return node, {"vmid": vmid, "node": target, "kind": "lxc"}
            self._configure(state, node, target, vmid, pubkey)
            return node, {"vmid": vmid, "node": target}

        for node, rec in self._bounded(one, jobs):
            data["vms"][node] = rec
        if plan.candidate:
            self._candidate_access(state)

    def _candidate_access(self, state: InstanceState) -> None:
        """The candidate's own Proxmox account (consoles of the pool's VMs: access.py); its
        password goes to a 0600 file of the instance, not to the state."""
        from labkit.adapters.proxmox import access

        creds = access.create_candidate_access(cast(Any, self.client), state.name, state.plan.candidate or "")
        d = self.settings.instances / state.name
        d.mkdir(parents=True, exist_ok=True)
        path = d / "proxmox-candidate.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"user {creds.userid}\npassword {creds.password}\nexpires {creds.expires}\n")
        state.provider_data["candidate_user"] = creds.userid

    def _bounded(self, fn: Callable[[Any], T], items: list[Any]) -> list[T]:
        """Run ``fn`` on every item, at most ``parallel`` at once; the first error is raised
        once all have finished (so nothing is half-made behind our back)."""
        with ThreadPoolExecutor(max_workers=self.pve.parallel, thread_name_prefix="pve") as pool:
            futures = [pool.submit(fn, it) for it in items]
            results, first = [], None
            for f in futures:
                try:
                    results.append(f.result())
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    first = first or exc
        if first is not None:
            raise first
        return results

    def _claim_block(self, name: str, vms: list[dict[str, Any]]) -> int:
        """Create the pool, then claim a VMID block in its comment: the first block (from a hash
        of the name) that no VM uses and no other labkit pool claims. Two instances created at
        once may pick the same block: after writing its claim, each reads the pools again and
        keeps the block only if nobody else claims it; otherwise it picks again."""
        pve, pool = self.pve, naming.pool_id(name)
        used_ids = {int(v["vmid"]) for v in vms}
        try:
            self.client.call("POST", "/pools", poolid=pool, comment=f"labkit vmids (claiming) {self._home_mark()}")
        except PveApiError as exc:
            if "already exists" in exc.text:
                raise ProviderError(f"the Proxmox pool {pool} already exists; run 'labkit down {name}' "
                                    "first.") from None
            raise
        for _round in range(20):
            claims = self._claims(pool)
            start = next((b for b in naming.vmid_block_candidates(name, pve.vmid_base, pve.vmid_block,
                                                                 pve.vmid_blocks)
                          if b not in claims and not any(b <= i < b + pve.vmid_block for i in used_ids)), None)
            if start is None:
                raise ProviderError(f"no free block of {pve.vmid_block} VMIDs from {pve.vmid_base}; raise "
                                    "vmid_blocks in proxmox.toml or remove old instances.")
            self.client.call("PUT", "/pools", poolid=pool,
                             comment=f"labkit vmids {start}-{start + pve.vmid_block - 1} {self._home_mark()}")
            # Keep the block only if no other pool claims it once ours is written. Two writers
            # never both keep it: the later of the two writes is seen by the other's read. Both
            # may yield (each saw the other): each then picks again after a random pause.
            # (Keeping it for "the smaller pool id" was not safe: the smaller one could write
            # last, see the other's claim, and keep it too: two instances in one block, and
            # the same management address for their grader guests.)
            if not self._claims(pool).get(start):
                return start
            time.sleep(random.uniform(0.02, 0.3))
        raise ProviderError(f"could not claim a VMID block for {name} (too many instances created at once); retry.")

    def _claims(self, mine: str) -> dict[int, list[str]]:
        """VMID block start -> the other labkit pools claiming it (from the pools' comments)."""
        out: dict[int, list[str]] = {}
        for p in self.client.call("GET", "/pools") or []:
            comment, pid = str(p.get("comment") or ""), str(p.get("poolid"))
            if pid == mine or not comment.startswith("labkit vmids ") or "-" not in comment:
                continue
            try:
                start = int(comment.split()[2].split("-")[0])
            except (IndexError, ValueError):
                continue
            out.setdefault(start, []).append(pid)
        return out

    def _mgmt_address(self, block: int) -> str:
        net = ipaddress.ip_network(self.pve.mgmt_cidr)
        index = (block - self.pve.vmid_base) // self.pve.vmid_block
        if index + 10 >= net.num_addresses - 1:
            raise ProviderError(f"mgmt_cidr {net} is too small for {self.pve.vmid_blocks} instances; widen it.")
        return f"{net.network_address + 10 + index}/{net.prefixlen}"

    def _place(self, jobs: list[tuple[str, int]]) -> dict[str, str]:
        """Each VM on the node with the most free memory left after the ones placed before it."""
        free = dict(self.client.nodes_by_free_memory(self.pve.nodes or None))
        out = {}
        for vm, mem in sorted(jobs, key=lambda j: -j[1]):
            node = max(sorted(free), key=lambda n: free[n])
            out[vm] = node
            free[node] -= max(mem, 1)
        return out

    def _storage_shared(self) -> bool:
        """True when the clones' storage is shared by the cluster's nodes (a linked clone may
        then be made on another node than its template's)."""
        for st in self.client.call("GET", "/storage") or []:
            if st.get("storage") == self.pve.storage:
                return bool(st.get("shared"))
        return False

    def _clone(self, name: str, node: str, tpl: dict[str, Any], vmid: int, target: str) -> int:
        """A linked clone (a VM's, or a container's for a CT template) with an explicit VMID; on
        "already exists" the next free id of the block."""
        tnode, kind = str(tpl["node"]), _kind(tpl)
        naming_param: dict[str, Any] = {"hostname" if kind == "lxc" else "name": naming.vm_name(name, node)}
        what = "CT" if kind == "lxc" else "VM"
        for _attempt in range(3):
            try:
                # at most ``parallel`` clones on this cluster, across every labkit process of
                # this home (slots.py: flock on lock files; a crashed holder frees its slot)
                with clone_slot(self.settings.home / "locks", self.pve.url, self.pve.parallel,
                                timeout=4 * self.pve.task_timeout, what=f"the clone of {what} {vmid}"):
                    self.client.run_task(
                        "POST", f"/nodes/{tnode}/{kind}/{tpl['vmid']}/clone", tnode,
                        what=f"clone of {tpl['name']} to {what} {vmid} ({naming.vm_name(name, node)})",
                        newid=vmid, pool=naming.pool_id(name), full=0,
                        target=None if target == tnode else target, **naming_param)
                return vmid
            except PveApiError as exc:
                if "already exists" not in exc.text:
                    raise
                vmid += self.pve.vmid_block // 2  # the upper half of the block is for such retries
        raise ProviderError(f"could not find a free VMID for {naming.vm_name(name, node)}; retry.")

    def _configure(self, state: InstanceState, node: str, target: str, vmid: int, pubkey: str) -> None:
        plan, data = state.plan, state.provider_data
        vnets: dict[str, str] = data["vnets"]
        cfg: dict[str, Any] = {
            "agent": "1", "tags": f"{naming.vm_tag(state.name)};{naming.home_tag(self._home_id())}",
            "sshkeys": urllib.parse.quote(pubkey + "\n", safe=""),
        }
        # in a VXLAN zone a virtio NIC takes its bridge's MTU (mtu=1: 1450 there)
        mtu = ",mtu=1" if data.get("mtu") else ""
        if node == naming.GRADER_NODE:
            cfg["net0"] = f"virtio,bridge={self.pve.mgmt_bridge}"
            cfg["ipconfig0"] = f"ip={data['mgmt_address']}"
            for i, (_place, net) in enumerate(self._grader_nics(plan), start=1):
                cfg[f"net{i}"] = f"virtio={naming.grader_mac(state.name, i)},bridge={vnets[net]}{mtu}"
        else:
            n = plan.node(node)
            assert n is not None
            for idx, net in self._node_nics(plan, node).items():
                cfg[f"net{idx}"] = f"virtio,bridge={vnets[net]}{mtu}"
                ip_gw = _ip_gw(n, idx)
                if ip_gw:
                    cfg[f"ipconfig{idx}"] = ip_gw
        self.client.call("PUT", f"/nodes/{target}/qemu/{vmid}/config", **cfg)

    def _configure_ct(self, state: InstanceState, node: str, target: str, vmid: int) -> None:
        """A container clone's tags and NICs: ``netX`` on the VNet of its ethX, with its planned
        address and gateway (Proxmox writes them into the container's network configuration; no
        cloud-init), ``mtu=1450`` in a VXLAN zone. Its keys are the CT template's (the per-home
        container key: a linked clone copies the template's authorized_keys)."""
        plan, data = state.plan, state.provider_data
        vnets: dict[str, str] = data["vnets"]
        n = plan.node(node)
        assert n is not None
        cfg: dict[str, Any] = {"tags": f"{naming.vm_tag(state.name)};{naming.home_tag(self._home_id())}"}
        nics = self._node_nics(plan, node)
        for idx, net in nics.items():
            ip_gw = _ip_gw(n, idx)
            parts = [f"name=eth{idx}", f"bridge={vnets[net]}", "type=veth", *(ip_gw.split(",") if ip_gw else [])]
            if data.get("mtu"):
                parts.append(f"mtu={data['mtu']}")
            cfg[f"net{idx}"] = ",".join(parts)
        if 0 not in nics:
            cfg["delete"] = "net0"  # the template's build NIC
        self.client.call("PUT", f"/nodes/{target}/lxc/{vmid}/config", **cfg)

    # ------------------------------------------------------------ SDN
    def _make_vnets(self, name: str, nets: list[str], ztype: str) -> dict[str, str]:
        """Create every VNet of the instance (compact ids, readable alias), then apply once."""
        out: dict[str, str] = {}
        # a vxlan zone needs a VNI per VNet, unique on the cluster; a simple zone refuses one
        token = self._sdn_lock()
        try:
            for net in nets:
                for attempt in range(5):
                    vid = naming.vnet_id(name, net, attempt)
                    extra: dict[str, Any] = {"lock-token": token}
                    if ztype == "vxlan":
                        extra["tag"] = naming.vxlan_tag(name, net, attempt)
                    try:
                        self.client.call("POST", "/cluster/sdn/vnets", vnet=vid, zone=self.pve.zone,
                                         alias=naming.alias(name, net), **extra)
                        out[net] = vid
                        break
                    except PveApiError as exc:
                        if "already defined" not in exc.text and "already exist" not in exc.text:
                            raise
                else:
                    raise ProviderError(f"could not find a free VNet id for {naming.alias(name, net)}; retry.")
        except BaseException:
            self._sdn_unlock(token)
            raise
        self._sdn_apply(token)
        return out

    def _zone_type(self) -> str:
        """The configured SDN zone's type (simple, vxlan, ...)."""
        return next((str(z.get("type")) for z in self.client.call("GET", "/cluster/sdn/zones") or []
                     if z.get("zone") == self.pve.zone), "simple")

    def _sdn_lock(self) -> str | None:
        """The SDN global lock (PVE 8.4+/9), retried while another apply holds it; None when the
        server has no lock (older PVE)."""
        deadline = time.monotonic() + self.pve.sdn_timeout
        while True:
            try:
                return str(self.client.call("POST", "/cluster/sdn/lock"))
            except PveApiError as exc:
                if exc.status in (404, 501):
                    return None
                if "lock" not in exc.text or time.monotonic() > deadline:
                    raise ProviderError(f"could not take the Proxmox SDN lock within {self.pve.sdn_timeout:.0f} "
                                        f"s ({exc.text}); retry later.") from None
            time.sleep(self.pve.poll_interval)

    def _sdn_unlock(self, token: str | None) -> None:
        if token is not None:
            try:
                self.client.call("DELETE", "/cluster/sdn/lock")
            except LabkitError:
                pass

    def _sdn_apply(self, token: str | None, poll: bool = True) -> None:
        """One apply (releasing the lock), its task checked, then every node's zone status polled:
        the apply forks per-node reloads it does not wait for."""
        try:
            upid = self.client.call("PUT", "/cluster/sdn", **({"lock-token": token, "release-lock": 1}
                                                              if token else {}))
        except BaseException:
            self._sdn_unlock(token)
            raise
        if isinstance(upid, str) and upid.startswith("UPID:"):
            self.client.wait_task(upid.split(":")[1], upid, self.pve.sdn_timeout, "SDN apply")
        if not poll:
            return
        deadline = time.monotonic() + self.pve.sdn_timeout
        nodes = [n for n, _ in self.client.nodes_by_free_memory(self.pve.nodes or None)]
        pending = set(nodes)
        while pending:
            for node in sorted(pending):
                zones = self.client.call("GET", f"/nodes/{node}/sdn/zones") or []
                status = {z.get("zone"): z.get("status") for z in zones}
                if status.get(self.pve.zone) == "available":
                    pending.discard(node)
                elif status.get(self.pve.zone) == "error":
                    raise ProviderError(f"the SDN zone {self.pve.zone} is in error on node {node} after the apply; "
                                        f"look at 'pvesh get /nodes/{node}/sdn/zones' and the node's syslog.")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"the SDN apply has not reached node(s) {', '.join(sorted(pending))} within "
                    f"{self.pve.sdn_timeout:.0f} s (zone {self.pve.zone} still pending); the instance was rolled "
                    "back: check the nodes' network (ifreload) and retry.")
            time.sleep(self.pve.poll_interval)

    # ------------------------------------------------------------ start
    def start(self, state: InstanceState) -> None:
        """Start every VM, wait for the guest agents to show the planned addresses, provision the
        grader guest's agent, snapshot everything as ``labkitbase``."""
        vms = state.provider_data["vms"]
        items = list(vms.items())

        def boot(item: tuple[str, dict[str, Any]]) -> None:
            node, rec = item
            self.client.run_task("POST", f"{_path(rec)}/status/start", rec["node"],
                                 what=f"start of {_what(rec)} ({node})")
            self._wait_ready(state, node)

        self._bounded(boot, items)
        self._provision_grader(state)
        self._bounded(lambda item: self.client.run_task(
            "POST", f"{_path(item[1])}/snapshot", item[1]["node"],
            what=f"snapshot of {_what(item[1])} ({item[0]})", snapname=naming.BASE_SNAPSHOT,
            description="labkit: the instance as it came up"), items)

    def _expected_addresses(self, state: InstanceState, node: str) -> set[str]:
        if node == naming.GRADER_NODE:
            return {state.provider_data["mgmt_address"].split("/")[0]}
        n = state.plan.node(node)
        assert n is not None
        return {i.addresses[0].split("/")[0] for i in n.interfaces if i.addresses}

    def _wait_ready(self, state: InstanceState, node: str) -> None:
        """Until the node shows its planned addresses: a VM through its guest agent, a container
        through the host (``GET .../lxc/{vmid}/interfaces``: read by Proxmox, not by the guest)."""
        rec = state.provider_data["vms"][node]
        ct = _kind(rec) == "lxc"
        want = self._expected_addresses(state, node)
        deadline = time.monotonic() + self.pve.ready_timeout
        last = "the host listed no interface" if ct else "the guest agent did not answer"
        while True:
            try:
                if ct:
                    got = self.client.call("GET", f"{_path(rec)}/interfaces") or []
                else:
                    answer = self.client.call("GET", f"{_path(rec)}/agent/network-get-interfaces") or {}
                    got = answer.get("result", [])
                have = {a.get("ip-address") for i in got for a in i.get("ip-addresses", [])}
                if want <= have:
                    return
                shown = ", ".join(sorted(str(h) for h in have)) or "no address"
                last = f"the {'container' if ct else 'guest'} shows {shown}"
            except PveApiError as exc:
                last = exc.text
            if time.monotonic() > deadline:
                check = ("its CT template's network configuration (ifupdown) and that it starts" if ct
                         else "its template has qemu-guest-agent and cloud-init")
                raise ProviderError(f"{_what(rec)} ({node}) of {state.name} was not ready within "
                                    f"{self.pve.ready_timeout:.0f} s ({last}); check {check}.")
            time.sleep(self.pve.poll_interval)

    def _provision_grader(self, state: InstanceState) -> None:
        """The grader guest's agent: a host key made here (pinned), the grader's key allowed,
        and places.json (``grader_places``: which NIC is which port of which segment bridge or
        which link half; the vantage points). Written through the guest agent's file-write
        (< 60 KiB each), then ``labkit-agent-setup`` run in the guest."""
        from labkit.adapters.agent.client import fingerprint

        rec = state.provider_data["vms"][naming.GRADER_NODE]
        key = _new_host_key()
        state.provider_data["agent_host_key"] = fingerprint(key[1])
        places = grader_places(state.name, state.plan, state.provider_data["vnets"])
        pubkey = Path(state.ssh_key + ".pub").read_text(encoding="utf-8").strip()
        files = {
            f"{AGENT_DIR}/ssh_host_ed25519_key": key[0],
            f"{AGENT_DIR}/authorized_keys": f'restrict,command="labkit-agent --instance {state.name}" {pubkey}\n',
            # the nodes' addresses: the only destinations the agent's relay opens (port 22), for
            # Ansible's ProxyCommand (ansible_host_vars)
            f"{AGENT_DIR}/places.json": json.dumps({"instance": state.name, "places": places, "nodes": sorted(
                {n.first_address() or "" for n in state.plan.nodes} - {""}),
                **({"mtu": state.provider_data["mtu"]} if state.provider_data.get("mtu") else {})}, indent=1),
        }
        base = f"/nodes/{rec['node']}/qemu/{rec['vmid']}/agent"
        for path, content in files.items():
            self.client.call("POST", f"{base}/file-write", file=path,
                             content=base64.b64encode(content.encode()).decode(), encode=0)
        res = self._agent_exec(rec, ["/usr/local/sbin/labkit-agent-setup"], timeout=60.0, label="grader")
        if res.rc != 0:
            raise ProviderError(f"setting up the grader agent in VM {rec['vmid']} failed (status {res.rc}: "
                                f"{res.stderr.strip()[-200:]}); rebuild the grader template with 'labkit "
                                "templates build --provider proxmox'.")

    # ------------------------------------------------------------ status / exec
    def status(self, state: InstanceState) -> InstanceStatus:
        by_id = {int(v["vmid"]): v for v in self._vms()}
        nodes = []
        for n in state.plan.nodes:
            rec = state.provider_data.get("vms", {}).get(n.name)
            vm = by_id.get(int(rec["vmid"])) if rec else None
            running = bool(vm) and vm.get("status") == "running"  # type: ignore[union-attr]
            nodes.append(NodeStatus(name=n.name, present=running, processes=0))
        return InstanceStatus(name=state.name, lab_id=state.plan.lab_id, provider=self.name,
                              phase=state.phase, created_at=state.created_at, nodes=nodes)

    def _rec(self, state: InstanceState, node: str) -> dict[str, Any]:
        if state.plan.node(node) is None:
            names = ", ".join(n.name for n in state.plan.nodes)
            raise UnknownNodeError(f"instance {state.name!r} has no node {node!r}; its nodes are: {names}.")
        rec = state.provider_data.get("vms", {}).get(node)
        if not rec:
            raise ProviderError(f"node {node!r} of instance {state.name!r} has no VM; run 'labkit down "
                                f"{state.name}' and bring it up again.")
        return rec  # type: ignore[no-any-return]

    def exec(self, state: InstanceState, node: str, argv: list[str], *, input: str | None = None,
             timeout: float = 60.0) -> ExecResult:
        """``argv`` in the node through the guest agent (exec, then exec-status polled, bounded).
        A container node is refused: Proxmox's API runs no command in a container."""
        rec = self._rec(state, node)
        if _kind(rec) == "lxc":
            raise ProviderError(f"node {node} of instance {state.name} is a container on Proxmox, where labkit cannot "
                                "run a command (no guest agent in a container); mark it 'container: false' in the "
                                "topology or set 'containers = false' in proxmox.toml.")
        return self._agent_exec(rec, argv, input=input, timeout=timeout, label=node)

    def _agent_exec(self, rec: dict[str, Any], argv: list[str], *, input: str | None = None,
                    timeout: float = 60.0, label: str = "") -> ExecResult:
        base = f"/nodes/{rec['node']}/qemu/{rec['vmid']}/agent"
        t0 = time.monotonic()
        params: dict[str, Any] = {"command": argv}
        if input is not None:
            if len(input.encode()) > 64 * 1024:
                raise UserError("the input of a command run through the Proxmox guest agent is limited to 64 KiB; "
                                "send a smaller input.")
            params["input-data"] = input
        pid = self.client.call("POST", f"{base}/exec", **params)["pid"]
        delay = 0.02
        while True:
            st = self.client.call("GET", f"{base}/exec-status", pid=pid)
            if st.get("exited"):
                break
            if time.monotonic() - t0 > timeout:
                raise ProviderError(f"the command did not finish within {timeout} s in node {label or rec['vmid']!r}.")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        return ExecResult(argv=argv, rc=int(st.get("exitcode", -1)),
                          stdout=str(st.get("out-data", ""))[:EXEC_OUTPUT_LIMIT],
                          stderr=str(st.get("err-data", ""))[:EXEC_OUTPUT_LIMIT],
                          duration=time.monotonic() - t0, via="guest-agent")

    def reset(self, state: InstanceState) -> None:
        """Every VM back to its ``labkitbase`` snapshot, started, and ready again."""
        items = list(state.provider_data.get("vms", {}).items())

        def back(item: tuple[str, dict[str, Any]]) -> None:
            node, rec = item
            self.client.run_task("POST", f"{_path(rec)}/snapshot/{naming.BASE_SNAPSHOT}/rollback", rec["node"],
                                 what=f"rollback of {_what(rec)} ({node})", start=1)
            self._wait_ready(state, node)

        self._bounded(back, items)

    def console_argv(self, state: InstanceState, node: str) -> list[str]:
        """The node's serial console through console.py's bridge (termproxy + vncwebsocket), on
        stdin/stdout: what the bastion and the portal's terminal run, as on netns."""
        self._rec(state, node)
        from labkit.adapters.proxmox import console

        return console.console_argv(self, state, node)

    # ------------------------------------------------------------ grading
    def ground(self, state: InstanceState, mode: str | None = None) -> GraderGround:
        """The grader agent in the instance's grader guest, over SSH on TCP to its management
        address (host key pinned at up). Its places (vantage points, segments, links) are
        network namespaces inside the guest, made at up by ``labkit-agent-setup`` (grader_setup.py,
        installed in the grader template) from the places.json written here. Not exercised here:
        no real guest runs under fakepve (the tests check the unreachable path and the files)."""
        mode = mode or state.vantage
        if mode != "agent":
            raise UserError(f"the proxmox provider grades only through the grader agent (vantage 'agent'), "
                            f"not {mode!r}; leave --vantage out.")
        import paramiko

        from labkit.adapters.agent.client import AgentGround, AgentSession

        data = state.provider_data
        if "mgmt_address" not in data or "agent_host_key" not in data:
            raise AgentError(f"instance {state.name!r} has no grader guest; bring it up again.")
        host = data["mgmt_address"].split("/")[0]
        try:
            sock = socket.create_connection((host, self.pve.agent_port), timeout=10)
        except OSError as exc:
            raise AgentError(f"the grader guest's agent is not reachable at {host}:{self.pve.agent_port} "
                             f"({exc.strerror or exc}); check that this host has an address on "
                             f"{self.pve.mgmt_bridge} ({self.pve.mgmt_cidr}) and that the grader VM is "
                             "running.") from None
        key = paramiko.Ed25519Key.from_private_key_file(state.ssh_key)
        session = AgentSession(sock, host_key_fingerprint=data["agent_host_key"], client_key=key,
                               label=f"the grader agent of {state.name}")
        return AgentGround(session, lambda where: self.place_of(state, where))

    def place_of(self, state: InstanceState, where: str) -> str:
        """The agent's place (a namespace inside the grader guest) for a grader place."""
        plan = state.plan
        if where.startswith("segment:") and where[8:] in plan.segments:
            return _agent_place(state.name, where)
        if where.startswith("link:") and where[5:] in plan.links:
            return _agent_place(state.name, where)
        if plan.vantage_point(where):
            return _agent_place(state.name, f"vantage:{where}")
        if plan.node(where):
            raise UserError(f"on Proxmox the grader cannot read node {where!r}'s kernel from outside the VM "
                            "(capability node_kernel); the check needs the netns provider.")
        raise UnknownNodeError(f"instance {state.name!r} has no vantage point or node {where!r}.")

    def node_fs(self, state: InstanceState, node: str) -> NodeFiles:
        raise UserError("on Proxmox nothing reads a VM's files from outside the VM (capability node_fs); "
                        "this check needs the netns provider.")

    def ansible_host_vars(self, state: InstanceState, node: str) -> dict[str, str]:
        """ssh to the node's first address through the grader agent's relay: ProxyCommand
        ``labkit agent-proxy <instance> %h %p`` opens the instance's agent session (TCP to the
        grader guest's management address, host key pinned) and a ``direct-tcpip`` channel that
        the agent's SSH server opens from the vantage point (a namespace inside the grader guest)
        whose LAN holds the node: the lab NICs are only there, so a plain ``ssh -W`` jump could
        not reach them. The nodes' own host keys are learnt on first use (made by cloud-init)."""
        import shlex
        import sys

        n = state.plan.node(node)
        if n is None:
            raise UnknownNodeError(f"instance {state.name!r} has no node {node!r}.")
        key = state.ssh_key
        rec = state.provider_data.get("vms", {}).get(node) or {}
        if _kind(rec) == "lxc":
            # a container clone holds its CT template's authorized_keys: the home's container key
            key = str(ct_key_path(self.settings.home))
        proxy = f"{shlex.quote(sys.executable)} -m labkit agent-proxy {state.name} %h %p"
        return {
            "ansible_host": n.first_address() or node,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": key,
            "ansible_ssh_common_args": f'-o ProxyCommand="{proxy}" -o IdentitiesOnly=yes '
                                       f"-o StrictHostKeyChecking=accept-new "
                                       f"-o UserKnownHostsFile={key}.nodes_known_hosts",
        }

    def segment_port(self, state: InstanceState, segment: str, member: str) -> str | None:
        """The port of segment ``segment``'s bridge in the grader guest that faces ``member``
        (``node:iface``): ``p<i>`` for the i-th member of the segment in the plan (the order
        ``grader_places`` plugs the grader's NICs in), from labkit's own wiring; None when
        ``member`` is not on that segment."""
        members = state.plan.segments.get(segment) or []
        return f"p{members.index(member) + 1}" if member in members else None

    # ------------------------------------------------------------ destroy
    def _found(self, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        """VMs (pool members or tagged), VNets (alias prefix), pool present — from the name alone."""
        pool = naming.pool_id(name)
        tag = naming.vm_tag(name)
        vms = [v for v in self._vms() if not v.get("template") and (
            v.get("pool") == pool or tag in str(v.get("tags", "")).replace(",", ";").split(";"))]
        prefix = naming.alias_prefix(name)
        vnets = [v for v in self.client.call("GET", "/cluster/sdn/vnets", pending=1) or []
                 if str(v.get("alias", "")).startswith(prefix) and v.get("state") != "deleted"]
        pools = [p for p in self.client.call("GET", "/pools") or [] if p.get("poolid") == pool]
        return vms, vnets, bool(pools)

    def _home_id(self) -> str:
        """This labkit home on this host (several homes may share one cluster)."""
        return naming.home_id(socket.gethostname(), str(self.settings.home.resolve()))

    def _home_mark(self) -> str:
        return f"home={self._home_id()}"

    def instances(self) -> list[str]:
        """The instances of THIS labkit home on the configured cluster, from the names alone
        (so also those whose state is gone): labkit pools ``lk-<name>`` whose comment carries
        this home's mark, VMs tagged ``lk.<name>`` and this home's ``lkh.<id>``, and VNets
        aliased ``lk-<name>:<net>`` that no pool or VM claims (a crash's orphans, whoever made
        them). Another home's instances on a shared cluster are never listed. Empty when
        Proxmox is not configured."""
        if not configured(self.settings.home):
            return []
        mark, htag = self._home_mark(), naming.home_tag(self._home_id())
        claimed: set[str] = set()
        names: set[str] = set()
        for p in self.client.call("GET", "/pools") or []:
            pid, comment = str(p.get("poolid", "")), str(p.get("comment") or "")
            if pid.startswith(naming.POOL_PREFIX) and comment.startswith("labkit vmids"):
                claimed.add(pid[len(naming.POOL_PREFIX):])
                if mark in comment.split():
                    names.add(pid[len(naming.POOL_PREFIX):])
        for v in self._vms():
            if v.get("template"):
                continue
            tags = str(v.get("tags", "")).replace(",", ";").split(";")
            mine = {t[3:] for t in tags if t.startswith("lk.")}
            claimed |= mine
            if htag in tags:
                names |= mine
        for v in self.client.call("GET", "/cluster/sdn/vnets", pending=1) or []:
            alias = str(v.get("alias", ""))
            if alias.startswith("lk-") and ":" in alias and v.get("state") != "deleted":
                owner = alias[3:].split(":", 1)[0]
                if owner not in claimed:
                    names.add(owner)
        return sorted(n for n in names if INSTANCE_RE.fullmatch(n))  # others are not labkit's

    def leftovers(self, name: str) -> list[str]:
        if not configured(self.settings.home):
            return []
        vms, vnets, pool = self._found(name)
        out = [f"{'ct' if _kind(v) == 'lxc' else 'vm'} {v['vmid']} {v.get('name', '')}" for v in vms]
        out += [f"vnet {v['vnet']} {v.get('alias', '')}" for v in vnets]
        if pool:
            out.append(f"pool {naming.pool_id(name)}")
        return out

    def destroy(self, name: str, state: InstanceState | None) -> list[str]:
        """Stop and destroy the VMs, delete the VNets (one apply), delete the pool. Idempotent."""
        if not configured(self.settings.home):
            return []
        removed: list[str] = []
        vms, vnets, pool = self._found(name)

        def gone(vm: dict[str, Any]) -> str:
            node, vmid = vm["node"], vm["vmid"]
            rec = {"node": node, "vmid": vmid, "kind": _kind(vm)}
            if vm.get("status") == "running":
                self.client.run_task("POST", f"{_path(rec)}/status/stop", node, what=f"stop of {_what(rec)}")
            self.client.run_task("DELETE", _path(rec), node, what=f"destroy of {_what(rec)}",
                                 purge=1, **{"destroy-unreferenced-disks": 1})
            return f"{'ct' if rec['kind'] == 'lxc' else 'vm'} {vmid} {vm.get('name', '')}"

        removed += self._bounded(gone, vms)
        if vnets:
            token = self._sdn_lock()
            try:
                for v in vnets:
                    self.client.call("DELETE", f"/cluster/sdn/vnets/{v['vnet']}", **{"lock-token": token})
                    removed.append(f"vnet {v['vnet']} {v.get('alias', '')}")
            except BaseException:
                self._sdn_unlock(token)
                raise
            self._sdn_apply(token, poll=False)
        if pool:
            self.client.call("DELETE", "/pools", poolid=naming.pool_id(name))
            removed.append(f"pool {naming.pool_id(name)}")
        if state is None or state.provider_data.get("candidate_user") or state.plan.candidate:
            from labkit.adapters.proxmox import access

            removed += access.remove_candidate_access(cast(Any, self.client), name)
        left = self.leftovers(name)
        if left:
            raise ProviderError(f"could not remove {', '.join(left)}; run 'labkit down {name}' again.")
        return removed


def grader_places(instance: str, plan: InstancePlan, vnets: dict[str, str]) -> list[dict[str, Any]]:
    """The ``places`` of places.json, what labkit-agent-setup builds in the grader guest:
    - a segment: ``{"place", "ports": [{"name": "p1", "mac", "vnet", "member"}, ...]}``, its
      grader NICs in the order of the segment's members (bridged on the place's ``br0``);
    - a link half: ``{"place": "<p>.l-X-a", "mac", "vnet"}`` (both halves bridged in ``<p>.l-X``);
    - a vantage point: ``{"place", "segment": <segment place>, "address", "gateway"}``, a veth
      plugged into that segment's ``br0``.
    MACs are ``naming.grader_mac(instance, n)`` for the grader's netN (set at config)."""
    out: list[dict[str, Any]] = []
    nic = 0  # the grader's netN, in the order of ProxmoxProvider._grader_nics
    for seg, members in plan.segments.items():
        ports: list[dict[str, str]] = []
        for m in members:
            nic += 1
            ports.append({"name": f"p{len(ports) + 1}", "mac": naming.grader_mac(instance, nic),
                          "vnet": vnets[naming.segment_vnet(seg, m)], "member": m})
        out.append({"place": _agent_place(instance, f"segment:{seg}"), "ports": ports})
    for link in plan.links:
        for half, net in zip("ab", naming.link_vnets(link), strict=True):
            nic += 1
            out.append({"place": _agent_place(instance, f"link:{link}:{half}"),
                        "mac": naming.grader_mac(instance, nic), "vnet": vnets[net]})
    for vp in plan.vantage:
        out.append({"place": _agent_place(instance, f"vantage:{vp.name}"),
                    "segment": _agent_place(instance, f"segment:{vp.segment}"),
                    "address": vp.address, "gateway": vp.gateway})
    return out


def _agent_place(instance: str, place: str) -> str:
    """The namespace name of a grader place inside the grader guest (``lk-<instance>.`` prefix,
    as on netns, so the agent's own check of places holds)."""
    kind, _, rest = place.partition(":")
    short = {"vantage": "v", "segment": "s", "link": "l"}[kind]
    return f"lk-{instance}.{short}-{rest.replace(':', '-')}"


def _new_host_key() -> tuple[str, Any]:
    """A new ed25519 host key for the grader guest's sshd: (OpenSSH private key text, paramiko key)."""
    import io

    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.generate()
    text = raw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()
    return text, paramiko.Ed25519Key.from_private_key(io.StringIO(text))


def _kind(rec: dict[str, Any]) -> str:
    """``lxc`` for a container (a record of ours with kind lxc, or a resource of type lxc), else ``qemu``."""
    return "lxc" if rec.get("kind") == "lxc" or rec.get("type") == "lxc" else "qemu"


def _path(rec: dict[str, Any]) -> str:
    """The API path of a guest: ``/nodes/{node}/qemu|lxc/{vmid}``."""
    return f"/nodes/{rec['node']}/{_kind(rec)}/{rec['vmid']}"


def _what(rec: dict[str, Any]) -> str:
    return f"{'CT' if _kind(rec) == 'lxc' else 'VM'} {rec['vmid']}"


def _ip_gw(n: Any, idx: int) -> str:
    """``ip=<cidr>[,gw=<gateway>]`` of a node's ethN (its first planned address, and the default
    route's gateway when it is on that network); "" without an address."""
    iface = n.iface(f"eth{idx}")
    if not (iface and iface.addresses):
        return ""
    network = ipaddress.ip_interface(iface.addresses[0]).network
    gateways = {r.via for r in n.routes if r.to == "default"}
    gw = next((g for g in sorted(gateways) if ipaddress.ip_address(g) in network), None)
    return f"ip={iface.addresses[0]}" + (f",gw={gw}" if gw else "")
