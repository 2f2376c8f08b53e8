"""Device pieces without a lab: FRR config replace, netns preflight of device nodes, commit platforms."""

from __future__ import annotations

from labkit.adapters.devices.frr import parse, removals

RUNNING = """Building configuration...

Current configuration:
!
frr version 8.4.4
frr defaults traditional
hostname r-br2
service integrated-vtysh-config
!
ip route 10.1.0.0/24 172.16.0.5
ip route 10.2.0.0/24 172.16.0.9
!
interface eth0
 ip ospf passive
exit
!
interface eth2
 ip ospf dead-interval 40
 ip ospf network point-to-point
exit
!
router ospf
 ospf router-id 10.3.0.1
 network 10.3.0.0/24 area 0
 network 172.16.0.8/30 area 1
exit
!
end
"""


def test_parse_keeps_blocks_and_top_level_lines() -> None:
    top, blocks = parse(RUNNING)
    assert "ip route 10.1.0.0/24 172.16.0.5" in top and "hostname r-br2" in top
    assert blocks["interface eth2"] == ["ip ospf dead-interval 40", "ip ospf network point-to-point"]
    assert blocks["router ospf"][-1] == "network 172.16.0.8/30 area 1"


def test_removals_undo_what_the_config_set_lacks() -> None:
    wanted = ["ip route 10.2.0.0/24 172.16.0.9", "interface eth0", " ip ospf passive", "exit",
              "interface eth2", " ip ospf network point-to-point", "exit",
              "router ospf", " ospf router-id 10.3.0.1", " network 10.3.0.0/24 area 0",
              " network 172.16.0.8/30 area 0", "exit"]
    assert removals(RUNNING, wanted) == [
        "no ip route 10.1.0.0/24 172.16.0.5",
        "interface eth2", " no ip ospf dead-interval 40", "exit",
        "router ospf", " no network 172.16.0.8/30 area 1", "exit",
    ]


def test_a_router_block_the_set_lacks_goes_whole_and_base_lines_stay() -> None:
    out = removals(RUNNING, ["ip route 10.1.0.0/24 172.16.0.5", "ip route 10.2.0.0/24 172.16.0.9"])
    assert "no router ospf" in out and not any(ln.strip().startswith("no network") for ln in out)
    assert " no ip ospf network point-to-point" in out  # interfaces keep no OSPF setting either
    assert not any(w in ln for ln in out for w in ("hostname", "service", "frr defaults"))
    assert removals(RUNNING, RUNNING.splitlines()) == []


def test_netns_refuses_devices_it_cannot_host_before_making_anything(tmp_path) -> None:  # noqa: ANN001
    import pytest

    from labkit.adapters.netns.provider import NetnsProvider
    from labkit.domain.labs import instantiate, load_lab
    from labkit.errors import UserError
    from labkit.settings import Settings
    from tests.conftest import PROJECT

    settings = Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT)
    lab = load_lab(PROJECT / "labs" / "routing-multisite-devices" / "lab.yaml", settings)
    plan = instantiate(lab, "devpf", 3, None)
    assert [n.platform for n in plan.nodes] == ["frr"] * 3 + [None] * 3
    plan.nodes[0].platform = "cisco_ios"
    with pytest.raises(UserError, match=r"'frr' network devices only .* r-hq \(cisco_ios\)"):
        NetnsProvider(settings).preflight(plan)
    plan.nodes[0].platform = "frr"
    plan.nodes[0].services = ["frr"]
    with pytest.raises(UserError, match="must list the frr and ssh services"):
        NetnsProvider(settings).preflight(plan)
    assert not (tmp_path / "run").exists()


def test_commit_is_used_only_by_candidate_configuration_platforms() -> None:
    from netmiko.cisco.cisco_ios import CiscoIosSSH
    from netmiko.juniper.juniper import JuniperSSH
    from netmiko.vyos.vyos_ssh import VyOSSSH

    from labkit.adapters.devices.netmiko_driver import FrrVtyshSSH, has_commit

    bare = {cls: cls.__new__(cls) for cls in (FrrVtyshSSH, CiscoIosSSH, VyOSSSH, JuniperSSH)}
    assert {cls.__name__: has_commit(obj) for cls, obj in bare.items()} == {
        "FrrVtyshSSH": False, "CiscoIosSSH": False, "VyOSSSH": True, "JuniperSSH": True}
