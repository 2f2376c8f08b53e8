"""The Ansible inventory built from an instance plan: valid YAML, groups by role, the vars."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labkit.adapters.ansible.inventory import build_inventory, group_name, write_inventory
from labkit.adapters.ansible.runner import ansible_env
from labkit.models.instance import IfacePlan, InstancePlan, NodePlan, RoutePlan

PARAMS = {
    "lan_hq": "10.1.1.0/24",
    "lan_br1": "10.1.2.0/24",
    "wan_a": "172.16.0.0/30",
    "snmp_user": "supervision-abcdefgh",
    "snmp_auth_pass": "Secret1Secret2xy",
}


def make_plan() -> InstancePlan:
    return InstancePlan(
        name="t9",
        lab_id="routing-multisite",
        lab_dir="/nonexistent/labs/routing-multisite",
        topology_id="three-sites",
        seed=42,
        params=PARAMS,
        secret_params=["snmp_auth_pass"],
        nodes=[
            NodePlan(
                name="r-hq", role="router", services=["ssh", "frr", "snmpd"],
                interfaces=[
                    IfacePlan(name="eth0", addresses=["10.1.1.1/24"], segment="lan-hq"),
                    IfacePlan(name="eth1", addresses=["172.16.0.1/30"], link="wan-a", peer="r-br1:eth1"),
                ],
            ),
            NodePlan(
                name="r-br1", role="router", services=["ssh", "frr", "snmpd"],
                interfaces=[
                    IfacePlan(name="eth0", addresses=["10.1.2.1/24"], segment="lan-br1"),
                    IfacePlan(name="eth1", addresses=["172.16.0.2/30"], link="wan-a", peer="r-hq:eth1"),
                ],
            ),
            NodePlan(
                name="pc-hq", role="workstation", services=["ssh"],
                interfaces=[IfacePlan(name="eth0", addresses=["10.1.1.10/24"], segment="lan-hq")],
                routes=[RoutePlan(to="default", via="10.1.1.1")],
            ),
        ],
        segments={"lan-hq": ["r-hq:eth0", "pc-hq:eth0"], "lan-br1": ["r-br1:eth0"]},
        links={"wan-a": ("r-hq:eth1", "r-br1:eth1")},
    )


def ns_paths(plan: InstancePlan) -> dict[str, dict[str, str]]:
    """The netns provider's ansible_host_vars, as it gives them."""
    return {
        n.name: {"labkit_netns": f"/run/netns/lk-{plan.name}.n.{n.name}",
                 "labkit_mnt": f"/run/labkit/{plan.name}/{n.name}.mnt",
                 "labkit_uts": f"/run/labkit/{plan.name}/{n.name}.uts",
                 "labkit_ipc": f"/run/labkit/{plan.name}/{n.name}.ipc",
                 "labkit_pid": f"/run/labkit/{plan.name}/{n.name}.pid"}
        for n in plan.nodes
    }


def test_groups_hosts_and_vars() -> None:
    plan = make_plan()
    inv = build_inventory(plan, ns_paths(plan))
    all_ = inv["all"]
    assert all_["vars"]["lab"] == {"instance": "t9", "id": "routing-multisite", "topology": "three-sites",
                                   "seed": 42}
    assert all_["vars"]["p"] == PARAMS
    assert set(all_["children"]) == {"routers", "workstations"}
    assert set(all_["children"]["routers"]["hosts"]) == {"r-hq", "r-br1"}
    assert set(all_["children"]["workstations"]["hosts"]) == {"pc-hq"}
    hq = all_["children"]["routers"]["hosts"]["r-hq"]
    assert hq["ansible_connection"] == "labkit_netns"
    assert hq["labkit_netns"] == "/run/netns/lk-t9.n.r-hq"
    assert hq["labkit_mnt"] == "/run/labkit/t9/r-hq.mnt"
    assert hq["labkit_uts"] == "/run/labkit/t9/r-hq.uts"
    assert hq["labkit_ipc"] == "/run/labkit/t9/r-hq.ipc"
    assert hq["labkit_pid"] == "/run/labkit/t9/r-hq.pid"
    assert hq["ansible_python_interpreter"] == "/usr/bin/python3"
    assert hq["labkit_addresses"] == {"eth0": ["10.1.1.1/24"], "eth1": ["172.16.0.1/30"]}
    assert hq["labkit_interfaces"][1] == {"name": "eth1", "addresses": ["172.16.0.1/30"], "link": "wan-a",
                                          "peer": "r-br1:eth1"}
    pc = all_["children"]["workstations"]["hosts"]["pc-hq"]
    assert pc["labkit_routes"] == [{"to": "default", "via": "10.1.1.1"}]


def test_group_names() -> None:
    assert group_name("router") == "routers"
    assert group_name("workstation") == "workstations"
    assert group_name("switch") == "switches"


def test_every_node_needs_its_connection_vars() -> None:
    plan = make_plan()
    paths = ns_paths(plan)
    del paths["pc-hq"]
    with pytest.raises(ValueError, match="pc-hq"):
        build_inventory(plan, paths)
    paths = ns_paths(plan)
    paths["r-hq"]["labkit_mnt"] = ""
    with pytest.raises(ValueError, match="mnt"):
        build_inventory(plan, paths)
    paths = ns_paths(plan)
    paths["r-hq"]["labkit_uts"] = "relative/r-hq.uts"
    with pytest.raises(ValueError, match="uts"):
        build_inventory(plan, paths)
    paths = ns_paths(plan)
    del paths["r-hq"]["labkit_pid"]
    with pytest.raises(ValueError, match="pid"):
        build_inventory(plan, paths)
    paths = ns_paths(plan)
    paths["ghost"] = {"labkit_netns": "/a"}
    with pytest.raises(ValueError, match="ghost"):
        build_inventory(plan, paths)
    paths = ns_paths(plan)
    paths["pc-hq"] = {}
    with pytest.raises(ValueError, match="pc-hq"):
        build_inventory(plan, paths)


def test_provider_vars_are_taken_as_they_are() -> None:
    """A remote provider's ssh variables go into the inventory unchanged, beside labkit's own."""
    plan = make_plan()
    ssh = {n.name: {"ansible_connection": "ssh", "ansible_host": f"10.99.0.{i + 1}", "ansible_user": "root",
                    "ansible_ssh_common_args": "-o ProxyJump=root@192.0.2.7"}
           for i, n in enumerate(plan.nodes)}
    inv = build_inventory(plan, ssh)
    hq = inv["all"]["children"]["routers"]["hosts"]["r-hq"]
    assert {k: hq[k] for k in ssh["r-hq"]} == ssh["r-hq"]
    assert not any(k.startswith("labkit_netns") or k in ("labkit_mnt", "labkit_pid") for k in hq)
    assert hq["labkit_role"] == "router" and hq["ansible_python_interpreter"] == "/usr/bin/python3"


def test_provider_vars_cannot_change_labkits_own() -> None:
    plan = make_plan()
    paths = ns_paths(plan)
    paths["r-hq"]["labkit_role"] = "workstation"
    with pytest.raises(ValueError, match="labkit_role"):
        build_inventory(plan, paths)


def test_written_yaml_is_private_and_round_trips(tmp_path: Path) -> None:
    plan = make_plan()
    inv = build_inventory(plan, ns_paths(plan))
    path = write_inventory(tmp_path / "inv" / "t9.yml", inv)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the secret parameters
    text = path.read_text()
    assert "&id" not in text and "*id" not in text  # no YAML aliases
    assert yaml.safe_load(text) == inv
    assert not list(path.parent.glob(".*.tmp"))


def test_ansible_reads_it(tmp_path: Path) -> None:
    """ansible-inventory (the real parser) sees the groups, host vars and group vars."""
    plan = make_plan()
    path = write_inventory(tmp_path / "t9.yml", build_inventory(plan, ns_paths(plan)))
    bindir = Path(sys.executable).parent
    env = {**ansible_env(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run([str(bindir / "ansible-inventory"), "-i", str(path), "--list"], check=False, env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert sorted(data["routers"]["hosts"]) == ["r-br1", "r-hq"]
    assert data["workstations"]["hosts"] == ["pc-hq"]
    hostvars = data["_meta"]["hostvars"]["r-br1"]
    assert hostvars["ansible_connection"] == "labkit_netns"
    assert hostvars["p"]["lan_br1"] == "10.1.2.0/24"
    assert hostvars["lab"]["instance"] == "t9"
