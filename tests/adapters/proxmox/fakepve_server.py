"""Serve fakepve for labkit's Proxmox provider tests. TEST-ONLY; run with the fakepve venv's
python (scripts/fakepve-venv.sh), never imported by labkit nor by pytest's process
(fakepve is AGPL-3.0: it stays in its own process).

    <venv>/bin/python fakepve_server.py --dir TMPDIR [--nodes pve1,pve2,pve3]

On start it prints one JSON line on stdout: url, cafile, token_id, token_secret, control (the
path of a unix socket). It stops when its stdin closes (the test process died) or on SIGTERM.

What is ours here (fakepve checks SDN requests against the schema but stores nothing):
- SDN zones and VNets, pending vs applied, ``PUT /cluster/sdn`` (a task), the optional global
  lock (``/cluster/sdn/lock``), and the per-node zone status, which a test can hold at
  "pending" for a node or for the next N polls. Requests still go through fakepve's schema
  and permission checks first (our handlers are registered as fakepve "stateful routes").
- Node memory that follows the VMs placed on each node (so placement by free memory means
  something).
- Guest agents that answer for every started clone (unless told otherwise), with
  ``network-get-interfaces`` built from the VM's ``ipconfigN``, and exec answers by argv.
- Clone failures chosen by the new VM's name or container's hostname (a task ending with an
  error exitstatus); clone requests held a while (``clone_hold``) and counted in flight
  (``clone_stats``: the most at once).
- CT templates (``add_ct_template``: a container template with a base rootfs volume, as
  ``pct template`` leaves it); containers are listed in ``state``'s ``cts``. fakepve's own lxc
  routes do the rest (clone, config, start, interfaces, snapshot, rollback, destroy); it has no
  lxc termproxy.

Control channel: JSON lines ``{"op": ..., ...}`` -> ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``; ops: see ``Control.handle``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import secrets
import signal
import sys

from fakepve import FakePve, PveError, TaskError
from fakepve.certs import make_cert

GIB = 1024 ** 3
TOKEN_ID = "labkit@pve!tests"
TEMPLATES = {"lk-tpl-grader": 9000, "lk-tpl-two-sites": 9001}


class LabPve(FakePve):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.zones: dict[str, dict] = {}
        self.vnets: dict[str, dict] = {}  # id -> config, with our "state": new/applied/deleted
        self.applied_zones: set[str] = set()
        self.sdn_lock: str | None = None
        self.sdn_lock_supported = True
        self.sdn_stuck: set[str] = set()  # nodes whose zone status stays "pending"
        self.sdn_pending_polls = 0  # the next N per-node polls answer "pending"
        self.applies = 0
        self.auto_agent = True
        self.no_agent: set[str] = set()  # VM name prefixes whose agent never answers
        self.exec_answers: dict[str, dict] = {}  # " ".join(argv) -> exec-status fields
        self.clone_failures: dict[str, str] = {}  # VM name substring -> task error message
        self.node_maxmem = 64 * GIB
        self.clone_hold = 0.0  # real seconds a clone request is held (so clones overlap)
        self.clones_in_flight = 0
        self.clones_max = 0  # the most clone requests in flight at once since the last reset
        self.clones_seen = 0

    # ------------------------------------------------------------------ nodes

    async def _nodes(self, request):
        from aiohttp import web
        data = []
        for n, s in sorted(self.nodes.items()):
            used = 2 * GIB + sum(int(str(vm.config.get("memory", 512))) * 1024 ** 2
                                 for vm in self.vms if vm.node == n and not vm.template)
            item = {"node": n, "id": "node/" + n, "type": "node", "level": "",
                    "status": "online" if s.get("online", True) else "offline"}
            if s.get("online", True):
                item.update(cpu=0.02, maxcpu=16, mem=used, maxmem=self.node_maxmem, uptime=3600)
            data.append(item)
        return web.json_response({"data": data})

    # ------------------------------------------------------------------ SDN

    def _routes_sdn(self):
        return [
            ("GET", "/cluster/sdn/zones", self._sdn_zones),
            ("POST", "/cluster/sdn/zones", self._sdn_zone_create),
            ("GET", "/cluster/sdn/vnets", self._sdn_vnets),
            ("POST", "/cluster/sdn/vnets", self._sdn_vnet_create),
            ("GET", "/cluster/sdn/vnets/{vnet}", self._sdn_vnet_get),
            ("DELETE", "/cluster/sdn/vnets/{vnet}", self._sdn_vnet_delete),
            ("PUT", "/cluster/sdn", self._sdn_apply),
            ("POST", "/cluster/sdn/lock", self._sdn_lock_take),
            ("DELETE", "/cluster/sdn/lock", self._sdn_lock_release),
            ("GET", "/nodes/{node}/sdn/zones", self._sdn_node_zones),
        ]

    def _sdn_check_token(self, v):
        if self.sdn_lock is not None and v.get("lock-token") != self.sdn_lock:
            raise PveError(500, "invalid lock token provided!")

    async def _sdn_zones(self, v, user):
        return [dict(cfg, zone=z) for z, cfg in sorted(self.zones.items())]

    async def _sdn_zone_create(self, v, user):
        self._sdn_check_token(v)
        if v["zone"] in self.zones:
            raise PveError(500, "zone ID '{}' already defined".format(v["zone"]))
        self.zones[v["zone"]] = {"type": v["type"]}
        return None

    async def _sdn_vnets(self, v, user):
        out = []
        for vid, cfg in sorted(self.vnets.items()):
            state = cfg["state"]
            if v.get("running") and state == "new":
                continue
            if not v.get("pending") and not v.get("running") and state == "deleted":
                continue
            item = {k: val for k, val in cfg.items() if k != "state"}
            item.update(vnet=vid, type="vnet")
            if v.get("pending") and state != "applied":
                item["state"] = state
            out.append(item)
        return out

    async def _sdn_vnet_get(self, v, user):
        cfg = self.vnets.get(v["vnet"])
        if cfg is None or cfg["state"] == "deleted":
            raise PveError(500, "sdn '{}' does not exist".format(v["vnet"]))
        return dict({k: val for k, val in cfg.items() if k != "state"}, vnet=v["vnet"], type="vnet")

    async def _sdn_vnet_create(self, v, user):
        self._sdn_check_token(v)
        vid = v["vnet"]
        if v["zone"] not in self.zones:
            raise PveError(500, "zone '{}' does not exist".format(v["zone"]))
        if vid in self.vnets and self.vnets[vid]["state"] != "deleted":
            raise PveError(500, f"vnet ID '{vid}' already defined")
        # the zone plugins' vnet_update_hook (PVE's SDN Zones/{Simple,Vxlan}Plugin.pm)
        ztype, tag = self.zones[v["zone"]].get("type"), v.get("tag")
        if ztype == "simple" and tag is not None:
            raise PveError(400, "Parameter verification failed.", {"tag": "vlan tag is not allowed on simple zone"})
        if ztype == "vxlan":
            if tag is None:
                raise PveError(400, "Parameter verification failed.", {"tag": "missing vxlan tag"})
            for other, c in self.vnets.items():
                if (c["state"] != "deleted" and c.get("tag") is not None and str(c["tag"]) == str(tag)
                        and self.zones.get(c["zone"], {}).get("type") in ("vxlan", "evpn")):
                    raise PveError(400, "Parameter verification failed.", {
                        "tag": f"vxlan tag {tag} already exist in vnet {other} in zone {c['zone']} "})
        cfg = {k: v[k] for k in ("zone", "alias", "tag", "vlanaware", "isolate-ports") if k in v}
        cfg["state"] = "new"
        self.vnets[vid] = cfg
        return None

    async def _sdn_vnet_delete(self, v, user):
        self._sdn_check_token(v)
        cfg = self.vnets.get(v["vnet"])
        if cfg is None or cfg["state"] == "deleted":
            raise PveError(500, "sdn '{}' does not exist".format(v["vnet"]))
        in_use = [vm.vmid for vm in self.vms for k, val in vm.config.items()
                  if k.startswith("net") and "bridge={}".format(v["vnet"]) in str(val)]
        if in_use:
            raise PveError(500, "cannot delete vnet '{}', it is used by VM {}".format(v["vnet"], in_use[0]))
        if cfg["state"] == "new":
            del self.vnets[v["vnet"]]
        else:
            cfg["state"] = "deleted"
        return None

    async def _sdn_apply(self, v, user):
        self._sdn_check_token(v)
        if self.sdn_lock is not None and v.get("release-lock", 1) in (1, "1", True):
            self.sdn_lock = None
        self.applies += 1
        node = sorted(self.nodes)[0]

        async def body():
            for vid in [k for k, c in self.vnets.items() if c["state"] == "deleted"]:
                del self.vnets[vid]
            for c in self.vnets.values():
                c["state"] = "applied"
            self.applied_zones = set(self.zones)
            return None
        return await self.task(node, "reloadnetworkall", "", user or "root@pam", body)

    async def _sdn_lock_take(self, v, user):
        if not self.sdn_lock_supported:
            raise PveError(501, "Method 'POST /cluster/sdn/lock' not implemented")
        if self.sdn_lock is not None:
            raise PveError(500, "could not acquire lock for SDN config")
        self.sdn_lock = secrets.token_hex(8)
        return self.sdn_lock

    async def _sdn_lock_release(self, v, user):
        self.sdn_lock = None
        return None

    async def _sdn_node_zones(self, v, user):
        node = v["node"]
        out = []
        held = False  # one answer held pending per poll (however many zones there are)
        if node not in self.sdn_stuck and self.sdn_pending_polls > 0:
            self.sdn_pending_polls -= 1
            held = True
        for z in sorted(self.zones):
            status = "available" if z in self.applied_zones else "pending"
            if node in self.sdn_stuck or held:
                status = "pending"
            out.append({"zone": z, "status": status})
        return out

    # ------------------------------------------------------------------ clones

    async def _qm_clone(self, v, user):
        self.clones_in_flight += 1
        self.clones_seen += 1
        self.clones_max = max(self.clones_max, self.clones_in_flight)
        try:
            if self.clone_hold:
                await asyncio.sleep(self.clone_hold)
            return await self._qm_clone_now(v, user)
        finally:
            self.clones_in_flight -= 1

    async def _lxc_clone(self, user, v):
        self.clones_in_flight += 1
        self.clones_seen += 1
        self.clones_max = max(self.clones_max, self.clones_in_flight)
        try:
            if self.clone_hold:
                await asyncio.sleep(self.clone_hold)
            for part, message in self.clone_failures.items():
                if part in str(v.get("hostname", "")):
                    async def body(message=message):
                        raise TaskError(message)
                    return await self.task(v["node"], "vzclone", v["vmid"], user, body)
            return await super()._lxc_clone(user, v)
        finally:
            self.clones_in_flight -= 1

    async def _qm_clone_now(self, v, user):
        for part, message in self.clone_failures.items():
            if part in str(v.get("name", "")):
                node = v["node"]

                async def body(message=message):
                    raise TaskError(message)
                return await self.task(node, "qmclone", v["vmid"], user, body)
        return await super()._qm_clone(v, user)

    # ------------------------------------------------------------------ agent

    async def _agent_call(self, match, values):
        vm = self.find(values["node"], values["vmid"])
        if vm.agent is None and self.auto_agent and not vm.template \
                and not any(vm.name.startswith(p) for p in self.no_agent):
            vm.agent = {"exec": self.exec_answers}
        if vm.agent is not None and match.template.endswith("network-get-interfaces"):
            vm.agent["interfaces"] = self._interfaces(vm)
        return await super()._agent_call(match, values)

    @staticmethod
    def _interfaces(vm):
        out = [{"name": "lo", "hardware-address": "00:00:00:00:00:00",
                "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]}]
        for key in sorted(vm.config):
            if not key.startswith("ipconfig"):
                continue
            n = key[len("ipconfig"):]
            addrs = []
            for part in str(vm.config[key]).split(","):
                if part.startswith("ip=") and "/" in part:
                    iface = ipaddress.ip_interface(part[3:])
                    addrs.append({"ip-address": str(iface.ip), "ip-address-type": "ipv4",
                                  "prefix": iface.network.prefixlen})
            out.append({"name": "eth" + n, "hardware-address": f"bc:24:11:00:00:{int(n):02x}",
                        "ip-addresses": addrs})
        return out


def add_template(pve, name, vmid):
    pve.add_vm(vmid, name, node="pve1", template=True, config={
            "memory": "1024", "cores": "1", "scsi0": f"local-lvm:base-{vmid}-disk-0,size=4G",
            "ide2": f"local-lvm:vm-{vmid}-cloudinit,media=cdrom", "agent": "1",
            "net0": "virtio=BC:24:11:00:00:00,bridge=vmbr0", "ostype": "l26"})


def add_ct_template(pve, name, vmid, storage="local-lvm"):
    """A CT template as labkit's build leaves it: unprivileged, nesting, its rootfs a base volume."""
    pve.add_ct(vmid, name, node="pve1", template=True, config={
        "hostname": name, "ostype": "debian", "arch": "amd64", "memory": 512, "swap": 512, "cores": 1,
        "rootfs": f"{storage}:base-{vmid}-disk-0,size=8G", "unprivileged": 1, "features": "nesting=1",
        "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:01:00,type=veth",
        "description": "labkit-template packages=test"})


def add_templates(pve):
    for name, vmid in TEMPLATES.items():
        add_template(pve, name, vmid)


class Control:
    def __init__(self, pve: LabPve, secret: str):
        self.pve = pve
        self.secret = secret

    def handle(self, req: dict):
        pve, op = self.pve, req.get("op")
        if op == "fail":
            pve.fail(req["method"], req["suffix"], status=req.get("status"), message=req.get("message"),
                     error=req.get("error"), times=req.get("times"))
            return None
        if op == "clear_failures":
            pve.failures.clear()
            pve.clone_failures.clear()
            pve.sdn_stuck.clear()
            pve.sdn_pending_polls = 0
            pve.no_agent.clear()
            pve.acl = None
            pve.sdn_lock_supported = True
            pve.time_scale = 0
            pve.clone_hold = 0.0
            return None
        if op == "clone_hold":  # {"secs"}: hold each clone request that long (clones in flight overlap)
            pve.clone_hold = float(req["secs"])
            return None
        if op == "clone_stats":  # {"reset"}: clone requests seen, the most in flight at once, in flight now
            out = {"seen": pve.clones_seen, "max": pve.clones_max, "now": pve.clones_in_flight}
            if req.get("reset"):
                pve.clones_seen = pve.clones_max = 0
            return out
        if op == "fail_clone":  # {"name_part", "message"}
            pve.clone_failures[req["name_part"]] = req["message"]
            return None
        if op == "revoke_token":
            pve.apitokens.pop(TOKEN_ID, None)
            return None
        if op == "restore_token":
            pve.apitokens[TOKEN_ID] = self.secret
            return None
        if op == "sdn_stuck":  # {"node", "on"}
            (pve.sdn_stuck.add if req.get("on", True) else pve.sdn_stuck.discard)(req["node"])
            return None
        if op == "sdn_pending_polls":
            pve.sdn_pending_polls = int(req["n"])
            return None
        if op == "sdn_lock_supported":
            pve.sdn_lock_supported = bool(req["on"])
            return None
        if op == "acl":  # {"entries": {userid-or-token: [[path, [privs]], ...]}} or null: all allowed
            entries = req.get("entries")
            pve.acl = None if entries is None else {k: [(p, set(ps)) for p, ps in v] for k, v in entries.items()}
            return None
        if op == "time_scale":  # real seconds per PVE second (0: tasks end before the request returns)
            pve.time_scale = float(req["value"])
            return None
        if op == "add_vm":  # {"vmid", "name", "start_secs"}: a stopped VM whose start task takes a while
            vm = pve.add_vm(int(req["vmid"]), req["name"], node="pve1")
            vm.start_secs = float(req.get("start_secs", 0))
            return None
        if op == "remove_vm":
            pve.vms = [vm for vm in pve.vms if vm.vmid != int(req["vmid"])]
            return None
        if op == "no_agent":
            pve.no_agent.add(req["prefix"])
            return None
        if op == "exec_answer":  # {"argv": [...], "answer": {"exitcode", "out-data", ...}}
            pve.exec_answers[" ".join(req["argv"])] = req["answer"]
            return None
        if op == "add_template":  # {"name"}: a template on pve1 (idempotent)
            if not any(vm.name == req["name"] for vm in pve.vms):
                add_template(pve, req["name"], max(vm.vmid for vm in pve.vms if vm.vmid < 100000) + 1)
            return None
        if op == "add_ct_template":  # {"name", "storage"}: a CT template on pve1 (idempotent)
            if not any(ct.name == req["name"] for ct in pve.cts):
                taken = [g.vmid for g in [*pve.vms, *pve.cts] if g.vmid < 100000]
                add_ct_template(pve, req["name"], max(taken) + 1, req.get("storage", "local-lvm"))
            return None
        if op == "requests":
            out = [[m, p] for m, p, _b in pve.requests]
            if req.get("clear"):
                pve.requests.clear()
            return out
        if op == "agent_requests":
            return {vm.name: [list(r) for r in vm.agent_requests] for vm in pve.vms if vm.agent_requests}
        if op == "state":
            return {
                "vms": [{"vmid": vm.vmid, "name": vm.name, "node": vm.node, "status": vm.status,
                         "pool": vm.pool, "template": bool(vm.template), "config": vm.config,
                         "snapshots": sorted(vm.snapshots)} for vm in pve.vms],
                "cts": [{"vmid": ct.vmid, "name": ct.name, "node": ct.node, "status": ct.status,
                         "pool": next((p for p, ids in pve.pools.items() if ct.vmid in ids), None),
                         "template": bool(ct.template), "config": ct.config, "snapshots": sorted(ct.snapshots)}
                        for ct in pve.cts],
                "pools": {k: sorted(v) for k, v in pve.pools.items()},
                "vnets": pve.vnets, "zones": pve.zones, "applies": pve.applies,
                "sdn_lock": pve.sdn_lock,
                "tasks": [{k: t.get(k) for k in ("upid", "type", "status", "exitstatus")}
                          for t in pve.tasklog],
            }
        raise ValueError(f"unknown op {op!r}")

    async def serve(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    answer = {"ok": True, "result": self.handle(json.loads(line))}
                except Exception as exc:  # noqa: BLE001 - reported to the test as data
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write((json.dumps(answer, default=sorted) + "\n").encode())
                await writer.drain()
        finally:
            writer.close()


async def main(args):
    os.makedirs(args.dir, mode=0o700, exist_ok=True)
    certfile, keyfile, _der = make_cert(args.dir, hosts=("127.0.0.1",))
    pve = LabPve(host="127.0.0.1", port=0)
    pve.time_scale = 0
    pve.max_requests = 200000
    for n in args.nodes.split(","):
        pve.add_node(n)
    secret = secrets.token_hex(16)
    pve.apitokens[TOKEN_ID] = secret
    pve.zones["labkit"] = {"type": "simple"}
    pve.zones["labvx"] = {"type": "vxlan"}  # a cluster's zone: every VNet needs a VNI
    pve.applied_zones.update({"labkit", "labvx"})
    add_templates(pve)
    await pve.start(certfile, keyfile)
    control_path = os.path.join(args.dir, "control.sock")
    control = Control(pve, secret)
    server = await asyncio.start_unix_server(control.serve, path=control_path)
    os.chmod(control_path, 0o600)
    print(json.dumps({"url": pve.url, "cafile": certfile, "token_id": TOKEN_ID, "token_secret": secret,
                      "control": control_path, "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 4096) else None)
    await stop.wait()
    server.close()
    await pve.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--nodes", default="pve1,pve2,pve3")
    asyncio.run(main(parser.parse_args()))
