"""``labkit doctor --provider proxmox``: is this cluster ready for labkit? One line per check.

The privileges labkit's API token needs are listed once, in :data:`REQUIRED`, with the path
they are checked on and why. Each entry was read from the API schema Proxmox publishes
(``pve-docs/api-viewer/apidoc.js``, the ``permissions`` of each method; PVE 9.0):

- clone ``POST /nodes/{n}/qemu/{id}/clone``: VM.Clone on the template, VM.Allocate on the new
  VM or on its pool;
- config ``PUT .../config``: one of VM.Config.{Disk,CDROM,CPU,Memory,Network,HWType,Options,
  Cloudinit} per option set (labkit sets disks, NICs, memory/CPU, cloud-init and options);
- ``.../status/start|stop``: VM.PowerMgmt; ``.../snapshot``: VM.Snapshot;
  ``.../snapshot/{s}/rollback``: VM.Snapshot or VM.Snapshot.Rollback; ``.../status/current``
  and ``.../config`` (read): VM.Audit; ``.../termproxy`` + ``vncwebsocket``: VM.Console;
- guest agent: ``agent/exec`` + ``exec-status`` need VM.GuestAgent.Unrestricted and
  ``agent/network-get-interfaces`` VM.GuestAgent.Audit since PVE 9 (qemu-server 9.0.3);
  PVE 8 asked VM.Monitor for both (:func:`agent_privileges` picks by version);
- ``POST|PUT|DELETE /pools``: Pool.Allocate on ``/pool/{poolid}`` (``lk-<instance>``: granted
  on ``/pool`` so it propagates to pools labkit makes);
- disks on the storage: Datastore.AllocateSpace; ``storage/{s}/status``: Datastore.Audit (or
  AllocateSpace); ``templates build`` uploads the cloud image (content ``import``):
  Datastore.AllocateTemplate;
- SDN: ``POST /cluster/sdn/vnets``: SDN.Allocate on ``/sdn/zones/{zone}``; ``PUT /cluster/sdn``
  (apply) and ``/cluster/sdn/lock``: SDN.Allocate on ``/sdn``; a NIC on a VNet: SDN.Use on the
  zone; reading the zones' state: SDN.Audit;
- ``GET /nodes``, node status and network: Sys.Audit on ``/``;
- candidate users (``POST|DELETE /access/users``): Realm.AllocateUser on ``/access/realm/pve``
  and User.Modify on ``/access/groups``; their ACL on ``/pool/lk-<instance>`` (``PUT
  /access/acl``, check ``perm-modify``): Permissions.Modify on the pool's path (PVE also takes
  Pool.Allocate there, but then only for roles whose privileges the token holds, propagated, on
  that path: pve-access-control ``RPCEnvironment::check_perm_modify`` and ``API2/ACL.pm``); their role
  ``LabkitCandidate`` (``POST /access/roles``: Sys.Modify on ``/access``) is checked apart
  (:func:`check_candidate_role`): a centre may make it once by hand instead.

Containers (LXC: nodes marked ``container: true``) need no privilege more: their clone, config,
power, snapshot, rollback and console ask the same VM.* privileges on ``/vms/{id}`` (pve-container
``API2/LXC*.pm``); the NICs' VNets SDN.Use; the rootfs Datastore.AllocateSpace on the storage;
building a CT template reads the system container archive (``ct_ostemplate``), which asks
Datastore.AllocateSpace or Datastore.Audit on its storage (:func:`check_ct_ostemplate` lists it,
which asks the same). Unprivileged containers only: no Sys.Modify.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from labkit.errors import LabkitError


class Api(Protocol):
    """What doctor needs of :class:`labkit.adapters.proxmox.client.PveClient`."""

    def call(self, method: str, path: str, /, **params: Any) -> Any: ...


@dataclass(frozen=True)
class Need:
    privilege: str
    path: str  # with {storage} / {zone} filled from the settings
    why: str
    group: str = "core"  # "core": up/down/grade; "templates": templates build; "candidates": candidate users


# The exact privileges labkit's token needs (path: where doctor asks /access/permissions).
REQUIRED: tuple[Need, ...] = (
    Need("VM.Allocate", "/vms", "create VMs (clone into the instance's pool), destroy them, convert a template"),
    Need("VM.Clone", "/vms", "linked-clone the templates"),
    Need("VM.Config.Disk", "/vms", "import the cloud image's disk, add the cloud-init drive"),
    Need("VM.Config.CDROM", "/vms", "the cloud-init drive is a CD-ROM"),
    Need("VM.Config.CPU", "/vms", "set the nodes' vCPUs"),
    Need("VM.Config.Memory", "/vms", "set the nodes' memory"),
    Need("VM.Config.Network", "/vms", "plug NICs into the lab's VNets, cut links (link_down)"),
    Need("VM.Config.HWType", "/vms", "serial console, SCSI controller"),
    Need("VM.Config.Options", "/vms", "name, guest agent, boot order"),
    Need("VM.Config.Cloudinit", "/vms", "addresses and SSH keys by cloud-init"),
    Need("VM.PowerMgmt", "/vms", "start and stop VMs"),
    Need("VM.Snapshot", "/vms", "snapshot labkit-base after up"),
    Need("VM.Snapshot.Rollback", "/vms", "reset = roll back to labkit-base"),
    Need("VM.Audit", "/vms", "read VM status and config"),
    Need("VM.Console", "/vms", "the bastion/portal serial console (termproxy)"),
    Need("Pool.Allocate", "/pool", "create and delete each instance's pool lk-<instance>"),
    Need("Datastore.AllocateSpace", "/storage/{storage}", "the clones' disks"),
    Need("Datastore.Audit", "/storage/{storage}", "read the storage's free space and content"),
    Need("SDN.Allocate", "/sdn/zones/{zone}", "create and delete the lab's VNets in the zone"),
    Need("SDN.Allocate", "/sdn", "apply the SDN configuration (PUT /cluster/sdn, SDN lock)"),
    Need("SDN.Use", "/sdn/zones/{zone}", "plug VM NICs into the zone's VNets"),
    Need("SDN.Audit", "/sdn", "read zones and per-node SDN status"),
    Need("Sys.Audit", "/", "list nodes, their memory and network"),
    Need("Datastore.AllocateTemplate", "/storage/{image_storage}", "put the Debian cloud image on the image "
         "storage (upload or download-url)", "templates"),
    Need("Datastore.Audit", "/storage/{image_storage}", "import the template's disk from the image "
         "(import-from an 'import' volume: pve-storage check_volume_access)", "templates"),
    Need("Realm.AllocateUser", "/access/realm/pve", "create/delete per-candidate users in realm pve", "candidates"),
    Need("User.Modify", "/access/groups", "create/delete per-candidate users", "candidates"),
    Need("Permissions.Modify", "/pool", "give a candidate console access to their pool only", "candidates"),
)


def agent_privileges(version: str) -> tuple[Need, ...]:
    """Guest-agent privileges by PVE version: VM.GuestAgent.* since 9, VM.Monitor before."""
    try:
        major = int(version.split(".", 1)[0])
    except ValueError:
        major = 9
    if major >= 9:
        return (Need("VM.GuestAgent.Unrestricted", "/vms", "run commands in guests (agent exec, exec-status)"),
                Need("VM.GuestAgent.Audit", "/vms", "readiness: the guests' addresses (network-get-interfaces)"))
    return (Need("VM.Monitor", "/vms", "guest agent exec and network-get-interfaces (PVE 8)"),)


@dataclass(frozen=True)
class Line:
    check: str
    ok: bool
    message: str  # on a problem: what is wrong and what to do, in one sentence


def _held(api: Api, path: str) -> set[str]:
    """Privileges the token holds on ``path`` (propagated from a parent path included)."""
    answer = api.call("GET", "/access/permissions", path=path) or {}
    held: set[str] = set()
    for granted, privs in answer.items():
        if granted == path or granted == "/" or path.startswith(granted.rstrip("/") + "/"):
            held.update(privs)
    return held


def check_privileges(api: Api, version: str, storage: str, zone: str, token_id: str,
                     image_storage: str = "local") -> list[Line]:
    needs = [*REQUIRED, *agent_privileges(version)]
    by_path: dict[str, set[str]] = {}
    missing: dict[str, list[Need]] = {}
    for need in needs:
        path = need.path.format(storage=storage, zone=zone, image_storage=image_storage)
        if path not in by_path:
            by_path[path] = _held(api, path)
        if need.privilege not in by_path[path]:
            missing.setdefault(path, []).append(need)
    if not missing:
        return [Line("privileges", True, f"token {token_id} holds the {len(needs)} privileges labkit needs")]
    lines = []
    for path, lacking in missing.items():
        for need in lacking:
            extra = "" if need.group == "core" else f" (only for {need.group})"
            lines.append(Line("privileges", False,
                              f"token {token_id} lacks {need.privilege} on {path}{extra}: needed to {need.why}; "
                              f"add it to the token's role, e.g. 'pveum acl modify {path} --tokens {token_id} "
                              f"--roles <role with {need.privilege}>'"))
    return lines


def check_storage(api: Api, nodes: list[str], storage: str, min_free: int) -> list[Line]:
    lines = []
    for node in nodes:
        stores = {s.get("storage"): s for s in api.call("GET", f"/nodes/{node}/storage") or []}
        s = stores.get(storage)
        if s is None:
            lines.append(Line("storage", False, f"storage {storage} does not exist on node {node}; create it or "
                                                f"set 'storage' in proxmox.toml to one of: "
                                                f"{', '.join(sorted(str(k) for k in stores)) or 'none'}"))
            continue
        if not s.get("active", 1) or not s.get("enabled", 1):
            lines.append(Line("storage", False, f"storage {storage} is not active on node {node}; enable it "
                                                "(Datacenter > Storage) or check its backing device"))
            continue
        content = set(str(s.get("content", "")).split(","))
        if "images" not in content:
            lines.append(Line("storage", False, f"storage {storage} on {node} does not hold VM disks (content: "
                                                f"{s.get('content')}); add content 'images' to it in "
                                                f"Datacenter > Storage"))
            continue
        avail = int(s.get("avail") or 0)
        if avail < min_free:
            lines.append(Line("storage", False, f"storage {storage} on {node} has {avail // 2**30} GiB free, "
                                                f"less than {min_free // 2**30} GiB; free space or pick "
                                                "another storage"))
            continue
        lines.append(Line("storage", True, f"storage {storage} on {node}: images, {avail // 2**30} GiB free"))
    return lines


def check_zone(api: Api, zone: str, nodes: list[str]) -> list[Line]:
    zones = {z.get("zone"): z for z in api.call("GET", "/cluster/sdn/zones") or []}
    z = zones.get(zone)
    if z is None:
        return [Line("sdn", False, f"SDN zone {zone} does not exist; create it (type simple on one node, vxlan "
                                   "on a cluster) in Datacenter > SDN > Zones, or set 'zone' in proxmox.toml")]
    kind = z.get("type")
    if kind not in ("simple", "vxlan"):
        return [Line("sdn", False, f"SDN zone {zone} is of type {kind}; labkit needs a zone of type simple "
                                   "(one node) or vxlan (several nodes)")]
    if kind == "simple" and len(nodes) > 1:
        return [Line("sdn", False, f"SDN zone {zone} is a simple zone (local to each node) but labkit may place "
                                   f"an instance's VMs on {len(nodes)} nodes; use a vxlan zone, or list one node "
                                   "in 'nodes' of proxmox.toml")]
    if kind == "vxlan" and not z.get("peers"):
        return [Line("sdn", False, f"SDN zone {zone} (vxlan) has no peers; list every node's address in it")]
    return [Line("sdn", True, f"SDN zone {zone}: {kind}")]


def check_bridge(api: Api, nodes: list[str], bridge: str) -> list[Line]:
    lines = []
    for node in nodes:
        ifaces = {i.get("iface") for i in api.call("GET", f"/nodes/{node}/network", type="any_bridge") or []}
        if bridge in ifaces:
            lines.append(Line("mgmt_bridge", True, f"management bridge {bridge} on {node}"))
        else:
            lines.append(Line("mgmt_bridge", False, f"node {node} has no bridge {bridge} (the grader guests' "
                                                    "management network); create it on every node or set "
                                                    "'mgmt_bridge' in proxmox.toml"))
    return lines


def check_templates(api: Api, wanted: list[str]) -> list[Line]:
    have = {str(r.get("name")) for r in api.call("GET", "/cluster/resources", type="vm") or []
            if r.get("template")}
    lines = []
    for name in wanted:
        if name in have:
            lines.append(Line("templates", True, f"template {name} present"))
        else:
            lines.append(Line("templates", False, f"template {name} is missing; run 'labkit templates build "
                                                  "--provider proxmox --image <Debian cloud image>'"))
    return lines


def check_ct_ostemplate(api: Api, nodes: list[str], ostemplate: str) -> list[Line]:
    """The Debian system container archive the CT templates are made from, on a live node."""
    if not ostemplate:
        return [Line("containers", False, "a topology has container nodes but proxmox.toml names no ct_ostemplate; "
                                          "run 'pveam download local debian-12-standard_12.7-1_amd64.tar.zst' and "
                                          "set ct_ostemplate = \"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\""
                                          " (or containers = false)")]
    sid = ostemplate.split(":", 1)[0]
    for node in nodes:
        stores = {s.get("storage") for s in api.call("GET", f"/nodes/{node}/storage") or []}
        if sid not in stores:
            continue
        have = {c.get("volid") for c in api.call("GET", f"/nodes/{node}/storage/{sid}/content", content="vztmpl")
                or []}
        if ostemplate in have:
            return [Line("containers", True, f"system container archive {ostemplate} on {node}")]
    return [Line("containers", False, f"the system container archive {ostemplate} (ct_ostemplate) is on no online "
                                      f"node; run 'pveam update && pveam download {sid} "
                                      f"{ostemplate.rsplit('/', 1)[-1]}' on the node that builds the templates")]


def check_candidate_role(api: Api) -> list[Line]:
    """The role of candidates' accounts (access.py): present with exactly its privileges, or the
    token may create it (Sys.Modify on /access)."""
    from labkit.adapters.proxmox.access import ROLE, ROLE_PRIVS

    roles = {r.get("roleid"): r for r in api.call("GET", "/access/roles") or []}
    if ROLE in roles:
        have = sorted(p for p in str(roles[ROLE].get("privs", "")).split(",") if p)
        if have == sorted(ROLE_PRIVS):
            return [Line("candidates", True, f"role {ROLE} = {', '.join(ROLE_PRIVS)}")]
        if "Sys.Modify" in _held(api, "/access"):
            return [Line("candidates", True, f"role {ROLE} has other privileges ({', '.join(have)}); labkit "
                                             f"sets it back to {', '.join(ROLE_PRIVS)} at the next candidate")]
        return [Line("candidates", False, f"role {ROLE} has privileges {', '.join(have)}, not exactly "
                                          f"{', '.join(ROLE_PRIVS)}; run 'pveum role modify {ROLE} --privs "
                                          f"{','.join(ROLE_PRIVS)}'")]
    if "Sys.Modify" in _held(api, "/access"):
        return [Line("candidates", True, f"role {ROLE} will be made at the first candidate")]
    return [Line("candidates", False, f"role {ROLE} does not exist and the token may not create it; run "
                                      f"'pveum role add {ROLE} --privs {','.join(ROLE_PRIVS)}' once")]


def online_nodes(api: Api, configured: list[str]) -> tuple[list[str], list[Line]]:
    found = {n.get("node"): n for n in api.call("GET", "/nodes") or []}
    names = configured or sorted(str(k) for k, n in found.items() if n.get("status") == "online")
    lines = []
    for n in names:
        if n not in found:
            lines.append(Line("nodes", False, f"node {n} named in proxmox.toml is not in the cluster; fix 'nodes'"))
        elif found[n].get("status") != "online":
            lines.append(Line("nodes", False, f"node {n} is {found[n].get('status')}; bring it online or "
                                              "remove it from 'nodes' in proxmox.toml"))
    if not names:
        lines.append(Line("nodes", False, "no online node in the cluster; check the cluster's state"))
    if not lines:
        lines.append(Line("nodes", True, f"nodes online: {', '.join(names)}"))
    return [n for n in names if n in found and found[n].get("status") == "online"], lines


def run(api: Api, *, token_id: str, storage: str, zone: str, mgmt_bridge: str, nodes: list[str],
        templates: list[str], min_free: int = 20 * 2**30, image_storage: str = "local",
        ct_ostemplate: str | None = None) -> list[Line]:
    """Every check, in order; a failing API call becomes one line (the next checks still run).
    When ``templates`` holds a CT template (``<prefix>ct-<topology>``), the system container
    archive ``ct_ostemplate`` is checked too (None: the client's settings' ``ct_ostemplate``)."""
    settings = getattr(api, "settings", None)
    prefix = f"{getattr(settings, 'template_prefix', 'lk-tpl-')}ct-"
    wants_ct = any(t.startswith(prefix) for t in templates)
    if ct_ostemplate is None:
        ct_ostemplate = str(getattr(settings, "ct_ostemplate", "") or "")
    try:
        version = str((api.call("GET", "/version") or {}).get("version", ""))
    except LabkitError as exc:
        return [Line("api", False, str(exc))]
    lines = [Line("api", True, f"Proxmox VE {version} answers")]
    steps: list[tuple[str, Any]] = [
        ("privileges", lambda: check_privileges(api, version, storage, zone, token_id, image_storage)),
    ]
    try:
        live, node_lines = online_nodes(api, nodes)
    except LabkitError as exc:
        live, node_lines = [], [Line("nodes", False, str(exc))]
    lines += node_lines
    steps += [
        ("storage", lambda: check_storage(api, live, storage, min_free)),
        ("sdn", lambda: check_zone(api, zone, live)),
        ("mgmt_bridge", lambda: check_bridge(api, live, mgmt_bridge)),
        ("templates", lambda: check_templates(api, templates)),
        *([("containers", lambda: check_ct_ostemplate(api, live, ct_ostemplate or ""))] if wants_ct else []),
        ("candidates", lambda: check_candidate_role(api)),
    ]
    for name, step in steps:
        try:
            lines += step()
        except LabkitError as exc:
            lines.append(Line(name, False, str(exc)))
    return lines
