"""Container nodes (LXC) on the Proxmox provider, against fakepve (its own process; its lxc
routes: clone, config, start, interfaces, snapshot, rollback, destroy; it has no lxc termproxy).

routing-multisite's topology (three-sites) marks every node ``container: true``: its six nodes
are linked clones of the CT template ``lk-tpl-ct-three-sites``, the grader guest stays a VM.
Also here: MTU in a VXLAN zone vs a simple zone, and ``segment_port``."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.proxmox import naming
from labkit.adapters.proxmox.provider import ProxmoxProvider
from labkit.adapters.proxmox.settings import ct_key_path
from labkit.errors import ProviderError, UserError
from labkit.usecases import lifecycle
from tests.adapters.proxmox.conftest import LAB_ID, PROJECT, FakePveServer, kill_up_midway

LAB = "routing-multisite"
CT_TPL = "lk-tpl-ct-three-sites"
NODES = ("r-hq", "r-br1", "r-br2", "pc-hq", "pc-br1", "pc-br2")


@pytest.fixture
def ms_ctx(fakepve: FakePveServer, pve_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Context on the real project (lab routing-multisite), fakepve with the CT template of
    three-sites; grader guests' management addresses on loopback with a closed port."""
    from labkit.settings import Settings
    from labkit.usecases.lifecycle import Context

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    fakepve.write_config(pve_home, mgmt_cidr="127.88.0.0/16", agent_port=closed_port)
    fakepve.control("add_ct_template", name=CT_TPL)
    monkeypatch.setenv("LABKIT_PROJECT", str(PROJECT))
    return Context(Settings(home=pve_home, run_dir=tmp_path / "run", project=PROJECT))


def _cts_of(fakepve: FakePveServer, name: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in fakepve.state()["cts"] if c["name"].startswith(f"lk-{name}-")}


def _vms_of(fakepve: FakePveServer, name: str) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in fakepve.state()["vms"] if v["name"].startswith(f"lk-{name}-")}


def _props(text: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in text.split(",") if "=" in p)


def _places_json(fakepve: FakePveServer, name: str) -> dict[str, Any]:
    agent = fakepve.control("agent_requests")[f"lk-{name}-grader"]
    [content] = [a["content"] for c, a in agent if c == "file-write" and a["file"].endswith("places.json")]
    return json.loads(base64.b64decode(content))  # type: ignore[no-any-return]


def test_lifecycle_with_container_nodes(fakepve: FakePveServer, ms_ctx: Any) -> None:
    """up: the six nodes are linked clones of the CT template (lxc), the grader a VM; their
    NICs carry address and gateway (no cloud-init); readiness from the host's interfaces;
    snapshot labkitbase; status; exec refused in one sentence; Ansible's key is the home's
    container key; reset rolls the containers back; down leaves nothing."""
    name = "pv-ct"
    fakepve.control("requests", clear=True)
    state = lifecycle.up(ms_ctx, LAB, instance=name, seed=31, provider="proxmox")
    plan = state.plan
    cts, vms = _cts_of(fakepve, name), _vms_of(fakepve, name)
    assert set(cts) == {f"lk-{name}-{n}" for n in NODES}
    assert set(vms) == {f"lk-{name}-grader"}  # the grader guest stays a VM
    block = state.provider_data["vmid_block"]
    home_tag = "lkh." + naming.home_id(socket.gethostname(), str(ms_ctx.settings.home.resolve()))
    tpl = next(c for c in fakepve.state()["cts"] if c["name"] == CT_TPL)
    for node in NODES:
        ct = cts[f"lk-{name}-{node}"]
        rec = state.provider_data["vms"][node]
        assert rec == {"vmid": ct["vmid"], "node": ct["node"], "kind": "lxc"}
        assert block < ct["vmid"] < block + 50 and ct["pool"] == f"lk-{name}"
        assert ct["status"] == "running" and "labkitbase" in ct["snapshots"]
        assert ct["config"]["tags"] == f"lk.{name};{home_tag}"
        assert ct["config"]["unprivileged"] == 1 and ct["node"] == tpl["node"]  # local storage: the template's node
        n = plan.node(node)
        assert n is not None
        for iface in n.interfaces:
            props = _props(ct["config"][f"net{iface.name[3:]}"])
            assert props["name"] == iface.name and props["type"] == "veth" and "mtu" not in props
            assert props["ip"] == iface.addresses[0]
        assert "sshkeys" not in ct["config"] and not any(k.startswith("ipconfig") for k in ct["config"])
    # linked clones (full=0: fakepve refuses that unless the template's rootfs is a base volume)
    clones = [t for t in fakepve.state()["tasks"] if t["type"] == "vzclone" and f":{tpl['vmid']}:" in t["upid"]]
    assert len(clones) >= 6 and all(t["exitstatus"] == "OK" for t in clones)
    vnets = state.provider_data["vnets"]
    pc = _props(cts[f"lk-{name}-pc-hq"]["config"]["net0"])
    assert pc["bridge"] == vnets[naming.segment_vnet("lan-hq", "pc-hq:eth0")]
    assert pc["gw"] == plan.node("r-hq").first_address("lan-hq")  # type: ignore[union-attr]
    wan = _props(cts[f"lk-{name}-r-br1"]["config"]["net1"])
    assert wan["bridge"] == vnets[naming.link_vnets("wan-a")[1]] and "gw" not in wan
    # readiness was read by the host (lxc interfaces), never through a guest agent
    reqs = fakepve.control("requests")
    for node in NODES:
        vmid = state.provider_data["vms"][node]["vmid"]
        assert any(m == "GET" and p.endswith(f"/lxc/{vmid}/interfaces") for m, p in reqs)
        assert not any(f"/qemu/{vmid}/" in p for _m, p in reqs)
    assert [v["config"]["net0"] for v in vms.values()] == [vms[f"lk-{name}-grader"]["config"]["net0"]]

    st = lifecycle.status(ms_ctx, name)
    assert {n.name: n.present for n in st.nodes} == dict.fromkeys(NODES, True)
    prov = ms_ctx.provider("proxmox")
    with pytest.raises(ProviderError) as err:
        prov.exec(state, "r-hq", ["true"])
    msg = str(err.value)
    assert "node r-hq" in msg and "is a container" in msg and "container: false" in msg and msg.count(". ") == 0
    hv = prov.ansible_host_vars(state, "r-hq")
    assert hv["ansible_ssh_private_key_file"] == str(ct_key_path(ms_ctx.settings.home))
    assert hv["ansible_host"] == plan.node("r-hq").first_address()  # type: ignore[union-attr]
    assert "agent-proxy" in hv["ansible_ssh_common_args"]
    assert prov.ansible_host_vars(state, "r-hq") != prov.ansible_host_vars(state, "pc-hq")

    # reset: every container rolled back to labkitbase and started again, the grader VM too
    fakepve.control("requests", clear=True)
    prov.reset(state)
    reqs = fakepve.control("requests")
    for node in NODES:
        vmid = state.provider_data["vms"][node]["vmid"]
        assert ["POST", f"/api2/json/nodes/{tpl['node']}/lxc/{vmid}/snapshot/labkitbase/rollback"] in reqs
    rolled = [t for t in fakepve.state()["tasks"] if t["type"] == "vzrollback"]
    assert len(rolled) >= 6 and all(t["exitstatus"] == "OK" for t in rolled)
    assert all(c["status"] == "running" for c in _cts_of(fakepve, name).values())

    removed = lifecycle.down(ms_ctx, name)
    assert len([r for r in removed if r.startswith("ct ")]) == 6
    assert len([r for r in removed if r.startswith("vm ")]) == 1
    assert fakepve.leftovers(name) == []


def test_ct_clone_failure_rolls_back(fakepve: FakePveServer, ms_ctx: Any) -> None:
    name = "pv-ctfail"
    fakepve.control("fail_clone", name_part=f"lk-{name}-r-br1", message="clone failed: storage full")
    with pytest.raises(ProviderError, match="storage full"):
        lifecycle.up(ms_ctx, LAB, instance=name, seed=32, provider="proxmox")
    assert fakepve.leftovers(name) == []  # the other clones, VNets and pool rolled back
    assert not (ms_ctx.settings.home / "instances" / name).exists()



def test_down_after_kill9_with_containers(fakepve: FakePveServer, ms_ctx: Any) -> None:
    """A labkit process is killed (SIGKILL) mid-up (the grader guest's agent never answers);
    its containers and VM are found from the name alone, with the state deleted, and removed
    by a new labkit process."""
    name = "pv-ctcrash"
    fakepve.control("no_agent", prefix=f"lk-{name}-grader")
    s = ms_ctx.settings
    def running() -> bool:
        cts = _cts_of(fakepve, name)
        return len(cts) == 6 and all(c["status"] == "running" for c in cts.values()) and bool(_vms_of(fakepve, name))

    env = kill_up_midway(s, LAB, name, 33, running, "its containers running")
    left = fakepve.leftovers(name)
    assert len([x for x in left if x.startswith("ct ")]) == 6 and any(x.startswith("pool ") for x in left)
    shutil.rmtree(s.home / "instances" / name)  # the state is lost too
    assert name in ProxmoxProvider(s).instances()  # 'down --all' lists it from the name alone
    res = subprocess.run([sys.executable, "-m", "labkit", "down", name], env=env, cwd=PROJECT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert fakepve.leftovers(name) == []
    assert ProxmoxProvider(s).leftovers(name) == []


def test_containers_off_makes_every_node_a_vm(fakepve: FakePveServer, ms_ctx: Any) -> None:
    """containers = false: routing-multisite's nodes are VMs; the VM template is then needed
    (missing here: refused before anything is made, naming it)."""
    fakepve.write_config(ms_ctx.settings.home, mgmt_cidr="127.88.0.0/16", containers=False)
    with pytest.raises(UserError, match="lk-tpl-three-sites are missing"):
        lifecycle.up(ms_ctx, LAB, instance="pv-ctoff", seed=34, provider="proxmox")
    assert fakepve.leftovers("pv-ctoff") == []


def test_missing_ct_template_refused(fakepve: FakePveServer, ms_ctx: Any) -> None:
    fakepve.write_config(ms_ctx.settings.home, mgmt_cidr="127.88.0.0/16", template_prefix="lk-none-",
                         grader_template="lk-tpl-grader")
    with pytest.raises(UserError, match="lk-none-ct-three-sites are missing; run 'labkit templates build"):
        lifecycle.up(ms_ctx, LAB, instance="pv-ctnone", seed=35, provider="proxmox")
    assert fakepve.leftovers("pv-ctnone") == []


def _with_checks(lab: Any, checks: list[dict[str, Any]]) -> Any:
    """``lab`` (a LoadedLab) with its checks replaced by ``checks`` (made-up ones)."""
    import dataclasses

    from labkit.models.lab import CheckSpec

    specs = [CheckSpec.model_validate({"title": {"fr": c["id"], "en": c["id"]}, "points": 1,
                                       "criteria": ["c"], **c}) for c in checks]
    return dataclasses.replace(lab, spec=lab.spec.model_copy(update={"checks": specs}))


def test_exec_checks_on_a_container_node_refused_before_anything(fakepve: FakePveServer, ms_ctx: Any) -> None:
    """A made-up lab on three-sites whose check runs commands in r-br1 and pc-hq (supervision.alert_fires
    needs node_exec, which Proxmox offers on VMs): ``check_provider_fits`` (what ``validate``,
    ``up`` and ``cohort up`` call first) refuses it in one sentence that names the check, the
    node and what to do, and ``up`` makes nothing. With the check on no node of the topology, or
    with containers off, that refusal does not come."""
    lab = lifecycle.load_lab_checked(ms_ctx, LAB)
    lifecycle.check_provider_fits(ms_ctx, lab, "proxmox")  # routing-multisite runs no command in its nodes
    bad = _with_checks(lab, [
        {"id": "reach", "grader": "routing.lan_reachability", "args": {"vantage": ["v-hq"], "hosts": {"pc-hq": "x"}}},
        {"id": "cron", "grader": "supervision.alert_fires", "args": {"node": "r-br1", "nested": [{"other": "pc-hq"}]}}])
    fakepve.control("requests", clear=True)
    with pytest.raises(UserError) as err:
        lifecycle.check_provider_fits(ms_ctx, bad, "proxmox")
    msg = str(err.value)
    assert msg.startswith("check 'cron' of lab routing-multisite needs command run in a node (node_exec) on node "
                          "pc-hq, which provider proxmox cannot offer there (and 1 more like it): it runs as a "
                          "container on Proxmox"), msg
    assert "container: false" in msg and "containers = false" in msg
    assert not [p for m, p in fakepve.control("requests") if m != "GET"]  # nothing made
    elsewhere = _with_checks(lab, [{"id": "cron", "grader": "supervision.alert_fires", "args": {"node": "elsewhere"}}])
    lifecycle.check_provider_fits(ms_ctx, elsewhere, "proxmox")  # no container node named: accepted
    one = _with_checks(lab, [{"id": "cron", "grader": "supervision.alert_fires", "args": {"node": "r-br1"}}])
    fakepve.write_config(ms_ctx.settings.home, mgmt_cidr="127.88.0.0/16", containers=False)
    lifecycle.check_provider_fits(ms_ctx, one, "proxmox")  # every node a VM: node_exec is offered
    # netns offers every capability on every node: the same lab fits there
    lifecycle.check_provider_fits(ms_ctx, bad, "netns")


def test_vxlan_mtu_on_every_nic_and_in_places(fakepve: FakePveServer, ms_ctx: Any) -> None:
    """In a VXLAN zone: container NICs mtu=1450, the grader VM's lab NICs mtu=1 (virtio takes
    its bridge's 1450), places.json says 1450 (the vantage veths and bridges); not the
    management NIC."""
    fakepve.write_config(ms_ctx.settings.home, mgmt_cidr="127.88.0.0/16", zone="labvx")
    name = "pv-ctvx"
    state = lifecycle.up(ms_ctx, LAB, instance=name, seed=37, provider="proxmox")
    try:
        assert state.provider_data["mtu"] == 1450
        for ct in _cts_of(fakepve, name).values():
            nets = [v for k, v in ct["config"].items() if k.startswith("net") and k[3:].isdigit()]
            assert nets and all(_props(v)["mtu"] == "1450" for v in nets)
        grader = _vms_of(fakepve, name)[f"lk-{name}-grader"]["config"]
        lab_nics = [v for k, v in grader.items() if k.startswith("net") and k[3:].isdigit() and k != "net0"]
        assert len(lab_nics) == ProxmoxProvider.grader_nic_count(state.plan) - 1
        assert all(_props(v)["mtu"] == "1" for v in lab_nics) and "mtu" not in grader["net0"]
        assert _places_json(fakepve, name)["mtu"] == 1450
    finally:
        lifecycle.down(ms_ctx, name)
    assert fakepve.leftovers(name) == []


def test_vxlan_mtu_on_vm_nodes_and_none_in_a_simple_zone(fakepve: FakePveServer, pv_ctx: Any) -> None:
    """VM nodes (pvdemo) in a VXLAN zone: every lab NIC mtu=1; in a simple zone: no mtu option
    anywhere and no mtu in places.json."""
    fakepve.write_config(pv_ctx.settings.home, mgmt_cidr="127.88.0.0/16", zone="labvx")
    state = lifecycle.up(pv_ctx, LAB_ID, instance="pv-vmvx", seed=38, provider="proxmox")
    try:
        for v in _vms_of(fakepve, "pv-vmvx").values():
            nets = {k: x for k, x in v["config"].items() if k.startswith("net") and k[3:].isdigit()}
            lab = [x for k, x in nets.items() if not (v["name"].endswith("-grader") and k == "net0")]
            assert lab and all(_props(x)["mtu"] == "1" for x in lab)
        assert _places_json(fakepve, "pv-vmvx")["mtu"] == 1450 and state.provider_data["mtu"] == 1450
    finally:
        lifecycle.down(pv_ctx, "pv-vmvx")
    fakepve.write_config(pv_ctx.settings.home, mgmt_cidr="127.88.0.0/16")
    state = lifecycle.up(pv_ctx, LAB_ID, instance="pv-vmsimple", seed=39, provider="proxmox")
    try:
        for v in _vms_of(fakepve, "pv-vmsimple").values():
            simple = [x for k, x in v["config"].items() if k.startswith("net") and k[3:].isdigit()]
            assert simple and not any("mtu" in _props(x) for x in simple)
        assert "mtu" not in _places_json(fakepve, "pv-vmsimple") and "mtu" not in state.provider_data
    finally:
        lifecycle.down(pv_ctx, "pv-vmsimple")
    assert fakepve.leftovers("pv-vmvx") == [] and fakepve.leftovers("pv-vmsimple") == []


def test_segment_port_follows_the_grader_wiring(ms_ctx: Any) -> None:
    """segment_port: p<i> for the i-th member of the segment, the port grader_places gives
    that member's grader NIC; None off the segment."""
    from labkit.adapters.proxmox.provider import grader_places
    from labkit.domain.labs import instantiate
    from labkit.models.instance import InstanceState

    lab = lifecycle.load_lab_checked(ms_ctx, LAB)
    plan = instantiate(lab, "pv-ports", 40, None)
    state = InstanceState(name="pv-ports", provider="proxmox", phase="up", created_at=lifecycle.utcnow(),
                          updated_at=lifecycle.utcnow(), plan=plan, ssh_key="/nonexistent")
    prov = ProxmoxProvider(ms_ctx.settings)
    assert prov.segment_port(state, "lan-hq", "r-hq:eth0") == "p1"
    assert prov.segment_port(state, "lan-hq", "pc-hq:eth0") == "p2"
    assert prov.segment_port(state, "lan-br2", "pc-br2:eth0") == "p2"
    assert prov.segment_port(state, "lan-hq", "pc-br1:eth0") is None
    assert prov.segment_port(state, "nope", "r-hq:eth0") is None
    vnets = {net: f"v{i}" for i, net in enumerate(ProxmoxProvider._nets(plan))}
    for entry in grader_places("pv-ports", plan, vnets):
        for port in entry.get("ports", []):
            seg = entry["place"].split(".s-", 1)[1]
            assert prov.segment_port(state, seg, port["member"]) == port["name"]
    assert "port_map" in prov.capabilities


def test_console_of_a_container_asks_lxc_termproxy(fakepve: FakePveServer, ms_ctx: Any) -> None:
    """The console bridge finds a container node as lxc and asks /lxc/{id}/termproxy (no serial
    option); fakepve 0.5.0 answers that POST but has no lxc vncwebsocket, so here it ends in
    one error line, rc 1, no traceback (the websocket bridge is tested on VMs: test_pve_provider)."""
    name = "pv-ctcon"
    state = lifecycle.up(ms_ctx, LAB, instance=name, seed=41, provider="proxmox")
    try:
        argv = lifecycle.console_argv(ms_ctx, name, "r-hq")
        fakepve.control("requests", clear=True)
        res = subprocess.run(argv, input=b"", capture_output=True, timeout=120, env=dict(os.environ))
        vmid = state.provider_data["vms"]["r-hq"]["vmid"]
        node = state.provider_data["vms"]["r-hq"]["node"]
        assert ["POST", f"/api2/json/nodes/{node}/lxc/{vmid}/termproxy"] in fakepve.control("requests")
        err = res.stderr.decode()
        assert res.returncode == 1 and err.startswith(f"labkit: error: Proxmox refused the console websocket of "
                                                      f"CT {vmid}") and "Traceback" not in err
    finally:
        lifecycle.down(ms_ctx, name)
    assert fakepve.leftovers(name) == []
