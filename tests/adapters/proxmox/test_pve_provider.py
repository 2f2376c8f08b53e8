"""The Proxmox provider against fakepve (its own process): a lab's whole lifecycle through
labkit's use cases, and the failures that must roll back (clone task error, revoked token,
SDN apply stuck pending), and down from a new process after a crash.

Every wait is bounded: fakepve finishes tasks at once (time_scale 0) and the provider's
timeouts are short in these tests' proxmox.toml (tasks 20 s, SDN 5 s, readiness 10 s)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.proxmox import naming
from labkit.adapters.proxmox.provider import ProxmoxProvider
from labkit.errors import AgentError, ProviderError, UserError
from labkit.usecases import lifecycle
from tests.adapters.proxmox.conftest import LAB_ID, PROJECT, FakePveServer, kill_up_midway


def _vms_of(fakepve: FakePveServer, name: str) -> list[dict[str, Any]]:
    return [v for v in fakepve.state()["vms"] if v["name"].startswith(f"lk-{name}-")]


def test_whole_lifecycle(fakepve: FakePveServer, pv_ctx: Any) -> None:
    name = "pv-life"
    fakepve.control("requests", clear=True)
    state = lifecycle.up(pv_ctx, LAB_ID, instance=name, seed=11, provider="proxmox", candidate="Alice")
    assert state.phase == "up" and state.vantage == "agent"
    # the candidate's own account (access.py): its password in a 0600 file, not in the state
    creds = pv_ctx.settings.instances / name / "proxmox-candidate.txt"
    assert creds.stat().st_mode & 0o777 == 0o600 and f"user lk-{name}@pve" in creds.read_text()
    assert "password" not in json.dumps(state.provider_data)

    st = fakepve.state()
    vms = {v["name"]: v for v in _vms_of(fakepve, name)}
    assert set(vms) == {f"lk-{name}-{n}" for n in ("r1", "r2", "pc1", "pc2", "grader")}
    assert all(v["status"] == "running" and v["pool"] == f"lk-{name}" for v in vms.values())
    home_tag = "lkh." + naming.home_id(socket.gethostname(), str(pv_ctx.settings.home.resolve()))
    assert all(v["config"]["tags"] == f"lk.{name};{home_tag}" and "labkitbase" in v["snapshots"] for v in vms.values())
    block = state.provider_data["vmid_block"]
    assert sorted(v["vmid"] for v in vms.values()) == list(range(block, block + 5))
    # VNets: one per segment member (the LANs are stars through the grader), and the WAN link
    # as two halves; compact ids, readable alias, applied
    vnets = {c["alias"]: (k, c) for k, c in st["vnets"].items() if c["alias"].startswith(f"lk-{name}:")}
    assert set(vnets) == {f"lk-{name}:{n}" for n in (
        "lan-a.r1.eth0", "lan-a.pc1.eth0", "lan-b.r2.eth0", "lan-b.pc2.eth0", "wan.a", "wan.b")}
    assert all(2 <= len(k) <= 8 and c["state"] == "applied" and c["zone"] == "labkit" for k, c in vnets.values())
    vid = {a.split(":")[1]: k for a, (k, _c) in vnets.items()}
    # nodes: ethN on netN, cloud-init addresses and gateway; r1's WAN end on wan.a, r2's on wan.b
    plan = state.plan
    r1 = vms[f"lk-{name}-r1"]["config"]
    assert f"bridge={vid['lan-a.r1.eth0']}" in r1["net0"] and f"bridge={vid['wan.a']}" in r1["net1"]
    assert r1["ipconfig0"] == f"ip={plan.node('r1').iface('eth0').addresses[0]}"  # type: ignore[union-attr]
    assert f"bridge={vid['wan.b']}" in vms[f"lk-{name}-r2"]["config"]["net1"]
    pc1 = vms[f"lk-{name}-pc1"]["config"]
    assert pc1["ipconfig0"].endswith(",gw=" + plan.node("r1").first_address("lan-a"))  # type: ignore[union-attr, operator]
    assert pc1["sshkeys"]
    # the grader guest: management NIC, 4 segment members (2 per LAN), 2 link halves; the
    # vantage points are veths inside it, not NICs
    grader = vms[f"lk-{name}-grader"]["config"]
    nets = sorted(k for k in grader if k.startswith("net") and k[3:].isdigit())
    assert len(nets) == 7 == ProxmoxProvider.grader_nic_count(plan) and "bridge=vmbr1" in grader["net0"]
    assert grader["ipconfig0"].startswith("ip=127.88.")
    agent = fakepve.control("agent_requests")[f"lk-{name}-grader"]
    written = {a["file"] for c, a in agent if c == "file-write"}
    assert written == {"/etc/labkit-agent/ssh_host_ed25519_key", "/etc/labkit-agent/authorized_keys",
                       "/etc/labkit-agent/places.json"}
    assert state.provider_data["agent_host_key"].startswith("SHA256:")
    hv = pv_ctx.provider("proxmox").ansible_host_vars(state, "r1")
    assert hv["ansible_host"] == plan.node("r1").first_address()  # type: ignore[union-attr]
    assert f"-m labkit agent-proxy {state.name} %h %p" in hv["ansible_ssh_common_args"]
    assert "labkit-jump" not in hv["ansible_ssh_common_args"]
    placefile = next(json.loads(base64.b64decode(a["content"])) for c, a in agent
                     if c == "file-write" and a["file"].endswith("places.json"))
    places = placefile["places"]
    assert placefile["nodes"] == sorted({n.first_address() for n in plan.nodes})  # type: ignore[misc]
    assert [p["place"] for p in places] == [f"lk-{name}.{x}" for x in (
        "s-lan-a", "s-lan-b", "l-wan-a", "l-wan-b", "v-v1", "v-v2")]
    # each segment's ports: the grader NICs on its members' VNets, p1..pN in the members' order
    grader_nic = {grader[f"net{i}"].split(",")[0].split("=")[1]: grader[f"net{i}"].split("bridge=")[1]
                  for i in range(1, 7)}
    assert len(grader_nic) == 6 and all(grader_nic)
    for seg_place, seg in (("s-lan-a", "lan-a"), ("s-lan-b", "lan-b")):
        ports = next(p["ports"] for p in places if p["place"] == f"lk-{name}.{seg_place}")
        assert [p["name"] for p in ports] == ["p1", "p2"] and [p["member"] for p in ports] == plan.segments[seg]
        assert [grader_nic[p["mac"]] for p in ports] == [p["vnet"] for p in ports] == [
            vid[f"{seg}.{m.replace(':', '.')}"] for m in plan.segments[seg]]
    for half in ("a", "b"):
        entry = next(p for p in places if p["place"] == f"lk-{name}.l-wan-{half}")
        assert grader_nic[entry["mac"]] == entry["vnet"] == vid[f"wan.{half}"]
    v1 = places[4]
    assert (v1["segment"], v1["address"], v1["gateway"]) == (
        f"lk-{name}.s-{plan.vantage[0].segment}", plan.vantage[0].address, plan.vantage[0].gateway)
    assert "mac" not in v1
    # one SDN apply for the instance, and every task checked
    reqs = fakepve.control("requests")
    assert sum(1 for m, p in reqs if m == "PUT" and p.endswith("/cluster/sdn")) == 1
    assert sum(1 for m, p in reqs if p.endswith("/sdn/zones") and "/nodes/" in p) >= 3  # per-node poll
    assert sum(1 for m, p in reqs if "/tasks/" in p) >= 15  # 5 clones + 5 starts + 5 snapshots

    status = lifecycle.status(pv_ctx, name)
    assert status.healthy and {n.name for n in status.nodes} == {"r1", "r2", "pc1", "pc2"}

    fakepve.control("exec_answer", argv=["ip", "-br", "addr"], answer={"exitcode": 3, "out-data": "eth0 UP\n"})
    res = lifecycle.exec_in(pv_ctx, name, "r1", ["ip", "-br", "addr"], timeout=10)
    assert (res.rc, res.stdout) == (3, "eth0 UP\n")
    assert res.via == "guest-agent"  # ran by the node's own guest agent, inside the candidate's system
    # ... and the evidence of a check's node command says so
    from labkit.domain.grading import CheckContext
    from labkit.models.lab import CheckSpec

    spec = CheckSpec(id="addr", title={"fr": "a", "en": "a"}, points=1, grader="x.y", criteria=["c"])
    ev = CheckContext(state=pv_ctx.store.load(name), provider=pv_ctx.provider("proxmox"),
                      check=spec).node_exec("r1", ["ip", "-br", "addr"], timeout=10)
    assert ev.ok and ev.parsed["rc"] == 3
    assert ev.meta["reported_by"] == "the node's own guest agent (inside the candidate's system)"

    prov = pv_ctx.provider("proxmox")
    assert isinstance(prov, ProxmoxProvider)
    fakepve.control("requests", clear=True)
    prov.reset(pv_ctx.store.load(name))
    assert sum(1 for m, p in fakepve.control("requests") if p.endswith("/snapshot/labkitbase/rollback")) == 5
    with pytest.raises(AgentError, match="not reachable"):
        prov.ground(state)
    assert prov.leftovers(name)

    fakepve.control("requests", clear=True)
    lifecycle.down(pv_ctx, name)
    assert prov.leftovers(name) == []
    assert fakepve.leftovers(name) == []
    assert not pv_ctx.store.exists(name)
    assert ["DELETE", f"/api2/json/access/users/lk-{name}@pve"] in fakepve.control("requests")


def test_no_two_lab_vms_share_a_vnet(fakepve: FakePveServer, pv_ctx: Any) -> None:
    """The grader owns every LAN's layer 2: each of the instance's VNets holds exactly one lab
    VM's NIC and one grader NIC, so traffic between two candidate VMs always crosses the
    grader guest (a Proxmox bridge learns MACs: a grader NIC on a shared VNet would miss it)."""
    name = "pv-star"
    lifecycle.up(pv_ctx, LAB_ID, instance=name, seed=19, provider="proxmox")
    try:
        vnet_ids = {k for k, c in fakepve.state()["vnets"].items() if c["alias"].startswith(f"lk-{name}:")}
        on: dict[str, list[str]] = {k: [] for k in vnet_ids}
        for vm in _vms_of(fakepve, name):
            for key, val in vm["config"].items():
                if key.startswith("net") and key[3:].isdigit() and "bridge=" in val:
                    bridge = val.split("bridge=")[1].split(",")[0]
                    if bridge in on:
                        on[bridge].append(vm["name"])
                    else:
                        assert vm["name"] == f"lk-{name}-grader" and key == "net0"  # management
        assert len(on) == 6
        for vnet, vms in on.items():
            lab_vms = [v for v in vms if v != f"lk-{name}-grader"]
            assert len(lab_vms) == 1 and vms.count(f"lk-{name}-grader") == 1, (vnet, vms)
        # every member NIC of every lab VM is on a VNet of its own
        members = [v for vms in on.values() for v in vms if v != f"lk-{name}-grader"]
        assert sorted(members) == sorted(f"lk-{name}-{n}" for n in ("r1", "pc1", "r2", "pc2", "r1", "r2"))
    finally:
        lifecycle.down(pv_ctx, name)
    assert fakepve.leftovers(name) == []


def test_vxlan_zone_gets_a_unique_vni_per_vnet(fakepve: FakePveServer, pv_ctx: Any) -> None:
    """In a vxlan zone (a cluster's) PVE requires a VNI per VNet, unique among the vxlan VNets:
    each VNet gets one from a hash; one another VNet already holds is skipped (next attempt).
    A simple zone refuses a tag: the other tests' VNets carry none."""
    from labkit.adapters.proxmox.client import PveClient

    name = "pv-vx"
    fakepve.write_config(pv_ctx.settings.home, mgmt_cidr="127.88.0.0/16", zone="labvx")
    prov = pv_ctx.provider("proxmox")
    first = naming.segment_vnet("lan-a", "r1:eth0")  # the first VNet pvdemo's instance makes
    clash = naming.vxlan_tag(name, first, 0)
    client: PveClient = prov.client
    client.call("POST", "/cluster/sdn/vnets", vnet="zzclash", zone="labvx", tag=clash, alias="someone-else")
    try:
        state = lifecycle.up(pv_ctx, LAB_ID, instance=name, seed=21, provider="proxmox")
        vnets = {c["alias"]: c for c in fakepve.state()["vnets"].values() if c["alias"].startswith(f"lk-{name}:")}
        assert len(vnets) == 6 and all(c["zone"] == "labvx" for c in vnets.values())
        tags = [int(c["tag"]) for c in vnets.values()]
        assert len(set(tags)) == 6 and clash not in tags and all(100000 <= t <= 16777215 for t in tags)
        assert int(vnets[f"lk-{name}:{first}"]["tag"]) == naming.vxlan_tag(name, first, 1)
        assert state.provider_data["vnets"][first] == naming.vnet_id(name, first, 1)
        lifecycle.down(pv_ctx, name)
        assert fakepve.leftovers(name) == []
    finally:
        client.call("DELETE", "/cluster/sdn/vnets/zzclash")
        client.call("PUT", "/cluster/sdn")
    assert all(c.get("tag") is None for c in fakepve.state()["vnets"].values() if c["zone"] == "labkit")


def test_nic_budget_refused_with_the_count(fakepve: FakePveServer, pv_ctx: Any) -> None:
    """1 management + one per segment member + 2 per link must fit a VM's 32 NICs: a lab that
    needs more is refused before anything is made, the count named."""
    from labkit.models.instance import IfacePlan, InstancePlan, NodePlan

    nodes = [NodePlan(name=f"h{i}", role="workstation", services=[], interfaces=[IfacePlan(name="eth0", segment="big")])
             for i in range(25)]
    nodes += [NodePlan(name="ra", role="router", services=[], interfaces=[IfacePlan(name=f"eth{i}", link=f"w{i}")
                                                              for i in range(3)]),
              NodePlan(name="rb", role="router", services=[], interfaces=[IfacePlan(name=f"eth{i}", link=f"w{i}")
                                                              for i in range(3)])]
    plan = InstancePlan(name="pv-big", lab_id="big", lab_dir="", topology_id="big", seed=1, params={}, nodes=nodes,
                        segments={"big": [f"h{i}:eth0" for i in range(25)]},
                        links={f"w{i}": (f"ra:eth{i}", f"rb:eth{i}") for i in range(3)})
    assert ProxmoxProvider.grader_nic_count(plan) == 1 + 25 + 6
    prov = pv_ctx.provider("proxmox")
    with pytest.raises(UserError, match="lk-tpl-big are missing"):
        prov.preflight(plan)  # 32 NICs fit: refused only further on, for its missing template
    plan.segments["big"].append("h0:eth1")
    with pytest.raises(UserError) as err:
        prov.preflight(plan)
    msg = str(err.value)
    assert "needs 33 NICs on its grader guest (1 management + 26 segment members + 2 x 3 links)" in msg
    assert "at most 32" in msg and "\n" not in msg


def test_shipped_labs_fit_the_nic_budget_as_documented() -> None:
    """Every shipped lab's grader guest fits a VM's 32 NICs, and docs/proxmox-centre.md's table
    gives the counts the provider computes."""
    import re

    from labkit.domain.labs import instantiate, load_lab
    from labkit.settings import Settings

    settings = Settings(home=PROJECT / "no-home", run_dir=PROJECT / "no-run", project=PROJECT)
    doc = (PROJECT / "docs" / "proxmox-centre.md").read_text(encoding="utf-8")
    table = {m[1]: (int(m[2]), int(m[3])) for m in re.finditer(r"^  \| ([a-z0-9-]+) \|.*\| (\d+) \| (\d+) \|$",
                                                                 doc, re.M)}
    # labs with network devices are refused on Proxmox (no device_endpoint): not in the table
    labs = sorted(p.parent for p in (PROJECT / "labs").glob("*/lab.yaml")
                  if not any(n.platform for n in load_lab(p.parent, settings).topology.nodes))
    assert labs and set(table) == {d.name for d in labs}
    for d in labs:
        plan = instantiate(load_lab(d, settings), "nic-count", 1, None)
        nics = ProxmoxProvider.grader_nic_count(plan)
        assert nics == 1 + sum(len(m) for m in plan.segments.values()) + 2 * len(plan.links) <= 32
        assert table[d.name] == (nics, len(ProxmoxProvider._nets(plan))), d.name


def test_sdn_pending_is_polled(fakepve: FakePveServer, pv_ctx: Any) -> None:
    name = "pv-poll"
    fakepve.control("sdn_pending_polls", n=4)
    fakepve.control("requests", clear=True)
    lifecycle.up(pv_ctx, LAB_ID, instance=name, seed=3, provider="proxmox")
    polls = [p for m, p in fakepve.control("requests") if p.endswith("/sdn/zones") and "/nodes/" in p]
    assert len(polls) >= 4 + 3  # the pending answers, then one 'available' per node
    lifecycle.down(pv_ctx, name)
    assert fakepve.leftovers(name) == []


def test_sdn_stuck_pending_times_out_and_rolls_back(fakepve: FakePveServer, pv_ctx: Any) -> None:
    name = "pv-stuck"
    fakepve.control("sdn_stuck", node="pve2", on=True)
    t0 = time.monotonic()
    with pytest.raises(ProviderError) as err:
        lifecycle.up(pv_ctx, LAB_ID, instance=name, seed=4, provider="proxmox")
    assert time.monotonic() - t0 < 30
    msg = str(err.value)
    assert "pve2" in msg and "still pending" in msg and "rolled back" in msg and "\n" not in msg
    assert fakepve.leftovers(name) == []
    assert not pv_ctx.store.exists(name)


def test_clone_task_error_rolls_back(fakepve: FakePveServer, pv_ctx: Any) -> None:
    name = "pv-clone"
    fakepve.control("fail_clone", name_part=f"lk-{name}-pc2", message="clone failed: no space left on device")
    with pytest.raises(ProviderError, match="failed: clone failed: no space left on device"):
        lifecycle.up(pv_ctx, LAB_ID, instance=name, seed=5, provider="proxmox")
    st = fakepve.state()
    assert any(t["exitstatus"] == "clone failed: no space left on device" for t in st["tasks"])
    assert fakepve.leftovers(name) == []
    assert not pv_ctx.store.exists(name)


def test_revoked_token_one_sentence_nothing_made(fakepve: FakePveServer, pv_ctx: Any) -> None:
    name = "pv-token"
    fakepve.control("revoke_token")
    with pytest.raises(UserError) as err:
        lifecycle.up(pv_ctx, LAB_ID, instance=name, seed=6, provider="proxmox")
    msg = str(err.value)
    assert msg.count(". ") == 0 and msg.endswith(".") and "expired or revoked" in msg
    fakepve.control("restore_token")
    assert fakepve.leftovers(name) == []


def test_missing_template_refused_before_anything(fakepve: FakePveServer, pv_ctx: Any) -> None:
    fakepve.write_config(pv_ctx.settings.home, template_prefix="lk-none-")
    with pytest.raises(UserError, match="lk-none-two-sites are missing; run 'labkit templates build"):
        lifecycle.up(pv_ctx, LAB_ID, instance="pv-notpl", seed=7, provider="proxmox")
    assert fakepve.leftovers("pv-notpl") == []



def test_down_from_new_process_after_crash(fakepve: FakePveServer, pv_ctx: Any) -> None:
    """A labkit process is killed (SIGKILL) while bringing a lab up (the grader guest's agent
    never answers, so it waits); another process brings it down from the name alone."""
    name = "pv-crash"
    fakepve.control("no_agent", prefix=f"lk-{name}-grader")
    s = pv_ctx.settings
    def running() -> bool:
        vms = _vms_of(fakepve, name)
        return len(vms) == 5 and all(v["status"] == "running" for v in vms)

    kill_up_midway(s, LAB_ID, name, 8, running, "its VMs running")
    left = fakepve.leftovers(name)
    assert len([x for x in left if x.startswith("vm ")]) == 5 and any(x.startswith("pool ") for x in left)
    state_file = s.home / "instances" / name / "state.json"
    assert json.loads(state_file.read_text())["phase"] == "creating"
    shutil.rmtree(s.home / "instances" / name)  # the state is lost too: down from the name alone
    removed = lifecycle.down(pv_ctx, name)
    assert any(r.startswith("vnet ") for r in removed) and any(r.startswith("pool ") for r in removed)
    assert fakepve.leftovers(name) == []
    # and from nothing at all (state gone too): nothing left, nothing to do
    again = ProxmoxProvider(s).destroy(name, None)
    assert not [r for r in again if r.split()[0] in ("vm", "vnet", "pool")]


def test_capabilities_and_vantage() -> None:
    prov = ProxmoxProvider.__new__(ProxmoxProvider)
    assert "node_fs" not in prov.capabilities and "node_kernel" not in prov.capabilities
    assert {"vantage", "grader_echo", "capture", "link_cut", "silent_cut", "node_exec", "console",
            "snapshot_reset", "port_map"} == set(prov.capabilities)
    assert prov.vantage_modes == ("agent",)


def test_leftovers_empty_when_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.settings import Settings

    monkeypatch.delenv("LABKIT_PROXMOX_CONFIG", raising=False)
    prov = ProxmoxProvider(Settings(home=tmp_path, run_dir=tmp_path / "run", project=PROJECT))
    assert prov.leftovers("anything") == [] and prov.destroy("anything", None) == []


def test_without_sdn_lock_and_with_a_vmid_clash(fakepve: FakePveServer, pv_ctx: Any) -> None:
    """An older PVE without the SDN lock (POST /cluster/sdn/lock: 501): VNets and the apply go
    without a lock token. A clone whose VMID another client took meanwhile ("config file already
    exists") is retried with another VMID of the block."""
    name = "pv-old"
    fakepve.control("sdn_lock_supported", on=False)
    fakepve.control("fail", method="POST", suffix="/qemu/9001/clone", status=500,
                    message="unable to create VM 100001: config file already exists", times=1)
    fakepve.control("requests", clear=True)
    state = lifecycle.up(pv_ctx, LAB_ID, instance=name, seed=9, provider="proxmox")
    block = state.provider_data["vmid_block"]
    ids = sorted(r["vmid"] for r in state.provider_data["vms"].values())
    assert len(ids) == 5 and any(i >= block + 50 for i in ids) and all(block <= i < block + 100 for i in ids)
    reqs = fakepve.control("requests")
    assert sum(1 for m, p in reqs if m == "PUT" and p.endswith("/cluster/sdn")) == 1
    lifecycle.down(pv_ctx, name)
    assert fakepve.leftovers(name) == []


def test_down_all_finds_an_instance_without_state(fakepve: FakePveServer, pv_ctx: Any) -> None:
    """An instance whose state is gone is found on the cluster by its pool/tags/VNet aliases and
    removed by 'down --all'; a netns instance of the same home (its run dir) is removed too."""
    name = "pv-nostate"
    lifecycle.up(pv_ctx, LAB_ID, instance=name, seed=13, provider="proxmox")
    prov = pv_ctx.provider("proxmox")
    assert name in prov.instances()
    shutil.rmtree(pv_ctx.settings.home / "instances" / name)
    assert not pv_ctx.store.exists(name) and fakepve.leftovers(name)
    orphan = pv_ctx.settings.run_dir / "pv-netns-orphan"
    orphan.mkdir(parents=True)
    done = lifecycle.down_all(pv_ctx)
    assert set(done) == {name, "pv-netns-orphan"}
    assert any(r.startswith("pool ") for r in done[name]) and any(r.startswith("vm ") for r in done[name])
    assert fakepve.leftovers(name) == [] and not orphan.exists()
    assert name not in prov.instances()


def test_console_argv_runs_the_serial_bridge(fakepve: FakePveServer, pv_ctx: Any) -> None:
    """What the bastion/portal runs for a node (lifecycle.console_argv -> the provider -> PX's
    console.py bridge): a real termproxy + vncwebsocket session with fakepve, whose serial
    terminal echoes what it is sent."""
    from labkit.errors import UnknownNodeError

    name = "pv-con"
    lifecycle.up(pv_ctx, LAB_ID, instance=name, seed=17, provider="proxmox")
    try:
        argv = lifecycle.console_argv(pv_ctx, name, "r1")
        assert argv[1:] == ["-m", "labkit.adapters.proxmox.console", "--instance", name, "--node", "r1",
                            "--config", str(pv_ctx.settings.home / "proxmox.toml")]
        # --trace: each step's time on stderr, so a slow run says where it waited. The bridge's own
        # waits are bounded (API calls, websocket open and login, drain, close: about 65 s at
        # most), so the test waits longer than that: a stall then ends in the bridge's own error.
        try:
            res = subprocess.run([*argv, "--trace"], input=b"hello console\n", capture_output=True, timeout=120,
                                 env=dict(os.environ))
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"the console bridge hung; its trace: {exc.stderr!r}; its output: {exc.stdout!r}")
        assert res.returncode == 0, res.stderr
        assert b"starting serial terminal on interface serial0" in res.stdout
        assert res.stdout.endswith(b"hello console\n")
        with pytest.raises(UnknownNodeError, match="has no node 'nope'"):
            lifecycle.console_argv(pv_ctx, name, "nope")
    finally:
        lifecycle.down(pv_ctx, name)
    assert fakepve.leftovers(name) == []


def test_down_all_leaves_another_homes_instances(fakepve: FakePveServer, pv_ctx: Any, tmp_path: Path) -> None:
    """Two labkit homes share one cluster: 'down --all' of one never lists nor removes the
    other's instances (its pools and VMs carry their own home's mark), state or not."""
    from labkit.settings import Settings
    from labkit.usecases.lifecycle import Context

    other_home = tmp_path / "other-home"
    fakepve.write_config(other_home, mgmt_cidr="127.89.0.0/16")
    other = Context(Settings(home=other_home, run_dir=tmp_path / "other-run", project=pv_ctx.settings.project))
    lifecycle.up(other, LAB_ID, instance="pv-theirs", seed=31, provider="proxmox")
    try:
        lifecycle.up(pv_ctx, LAB_ID, instance="pv-mine", seed=32, provider="proxmox")
        shutil.rmtree(pv_ctx.settings.home / "instances" / "pv-mine")  # crashed: no state here
        shutil.rmtree(other_home / "instances" / "pv-theirs")  # not even the other home's state
        assert pv_ctx.provider("proxmox").instances() == ["pv-mine"]
        assert other.provider("proxmox").instances() == ["pv-theirs"]
        done = lifecycle.down_all(pv_ctx)
        assert set(done) == {"pv-mine"}
        assert fakepve.leftovers("pv-mine") == [] and fakepve.leftovers("pv-theirs")
    finally:
        lifecycle.down(other, "pv-theirs")
    assert fakepve.leftovers("pv-theirs") == []
