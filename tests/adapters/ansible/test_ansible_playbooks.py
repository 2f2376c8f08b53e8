"""The routing-multisite playbooks: they parse, and with sample parameters the reference renders
the expected frr.conf / snmpd.conf while each variant differs from it by exactly its one fault.

Rendering goes through Ansible itself (in a subprocess, so its global config stays out of
this process): the playbook is loaded, the play vars merged with the variant's import vars
by Ansible, and the templates rendered with the template lookup, as the template module does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit.adapters.ansible.inventory import write_inventory
from labkit.adapters.ansible.runner import ansible_env

PROJECT = Path(__file__).resolve().parents[3]
BOOKS = PROJECT / "playbooks" / "routing-multisite"
LAB = PROJECT / "labs" / "routing-multisite" / "lab.yaml"
VARIANTS = ["missing-lan-network", "wrong-area", "static-routes", "snmp-v2c-open", "snmp-authnopriv", "default-timers"]
ROUTERS = ["r-hq", "r-br1", "r-br2"]

P = {
    "lan_hq": "10.1.1.0/24",
    "lan_br1": "10.1.2.0/24",
    "lan_br2": "10.1.3.0/24",
    "wan_a": "172.16.0.0/30",
    "wan_b": "172.16.0.4/30",
    "wan_c": "172.16.0.8/30",
    "snmp_user": "supervision-abcdefgh",
    "snmp_auth_pass": 'Auth"Pass\\7xyzAB',  # a quote and a backslash: must stay one token
    "snmp_priv_pass": "PrivPass8xyzABCD",
}
AUTH_QUOTED = '"Auth\\"Pass\\\\7xyzAB"'

RENDER = r"""
import json, sys
from pathlib import Path
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.playbook import Playbook
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template
from ansible.vars.manager import VariableManager

init_plugin_loader()
inventory, templates, frr_tasks, *books = sys.argv[1:]
ospfd_line = next(t["ansible.builtin.lineinfile"]["line"] for t in yaml.safe_load(Path(frr_tasks).read_text())
                  if "ansible.builtin.lineinfile" in t)
out = {}
for book in books:
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[inventory])
    vm = VariableManager(loader=loader, inventory=inv)
    play = Playbook.load(book, variable_manager=vm, loader=loader).get_plays()[0]
    out[book] = {}
    for host in inv.get_hosts(play.hosts):
        templar = Templar(loader=loader, variables=vm.get_vars(play=play, host=host))
        files = {}
        for name in ("frr.conf", "snmpd.conf", "snmpd.default"):
            expr = "{{ lookup('ansible.builtin.template', '%s') }}" % Path(templates, name + ".j2")
            files[name] = templar.template(trust_as_template(expr))
        files["daemons"] = templar.template(trust_as_template(ospfd_line))
        out[book][host.name] = files
print(json.dumps(out))
"""


def _inventory(tmp: Path) -> Path:
    hosts = {h: {"ansible_connection": "labkit_netns", "labkit_netns": f"/run/netns/lk-t.n.{h}",
                 "labkit_mnt": f"/run/labkit/t/{h}.mnt", "labkit_uts": f"/run/labkit/t/{h}.uts",
                 "labkit_pid": f"/run/labkit/t/{h}.pid"}
             for h in ROUTERS}
    inv = {"all": {"vars": {"lab": {"instance": "t", "id": "routing-multisite"}, "p": P},
                   "children": {"routers": {"hosts": hosts},
                                "workstations": {"hosts": {"pc-hq": {"ansible_connection": "labkit_netns"}}}}}}
    return write_inventory(tmp / "inventory.yml", inv)


def _book(variant: str | None) -> Path:
    return BOOKS / "reference.yml" if variant is None else BOOKS / "variants" / f"{variant}.yml"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str | None, dict[str, dict[str, list[str]]]]:
    tmp = tmp_path_factory.mktemp("render")
    inv = _inventory(tmp)
    books = [_book(v) for v in (None, *VARIANTS)]
    env = {**ansible_env(tmp), "HOME": str(tmp)}
    proc = subprocess.run([sys.executable, "-c", RENDER, str(inv), str(BOOKS / "templates"),
                           str(BOOKS / "tasks" / "frr.yml"), *map(str, books)],
                          check=False, env=env, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return {
        v: {h: {f: text.splitlines() for f, text in files.items()} for h, files in data[str(_book(v))].items()}
        for v in (None, *VARIANTS)
    }


def _diff(a: list[str], b: list[str]) -> tuple[list[str], list[str]]:
    """(lines only in a, lines only in b), ignoring comments."""
    def keep(lines: list[str]) -> list[str]:
        return [x for x in lines if x.strip() and not x.lstrip().startswith(("#", "!"))]
    ka, kb = keep(a), keep(b)
    return [x for x in ka if x not in kb], [x for x in kb if x not in ka]


def _block(lines: list[str], head: str) -> list[str]:
    """Lines of the FRR block that starts with ``head``, up to its 'exit'."""
    i = lines.index(head)
    j = lines.index("exit", i)
    return lines[i + 1:j]


# ---------------------------------------------------------------------------------- parsing


def test_lab_points_at_these_playbooks() -> None:
    lab = yaml.safe_load(LAB.read_text())
    assert lab["solution"]["playbook"] == "routing-multisite/reference.yml"
    assert sorted(v["id"] for v in lab["variants"]) == sorted(VARIANTS)
    for v in lab["variants"]:
        assert (PROJECT / "playbooks" / v["playbook"]) == _book(v["id"])
        assert _book(v["id"]).is_file()


@pytest.mark.parametrize("variant", [None, *VARIANTS], ids=["reference", *VARIANTS])
def test_syntax_check(variant: str | None, tmp_path: Path) -> None:
    inv = _inventory(tmp_path)
    env = {**ansible_env(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "--syntax-check", "-i", str(inv),
                           str(_book(variant))], check=False, env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_variants_reuse_the_reference() -> None:
    """A variant is the reference plus variables: no tasks or templates of its own."""
    for v in VARIANTS:
        doc = yaml.safe_load(_book(v).read_text())
        assert len(doc) == 1
        assert doc[0]["ansible.builtin.import_playbook"] == "../reference.yml"
        assert set(doc[0]) <= {"name", "ansible.builtin.import_playbook", "vars"}
        assert doc[0]["vars"]


# ------------------------------------------------------------------------------- reference

SITES = {
    "r-hq": ("10.1.1", {"eth1": "172.16.0.0/30", "eth2": "172.16.0.4/30"}),
    "r-br1": ("10.1.2", {"eth1": "172.16.0.0/30", "eth2": "172.16.0.8/30"}),
    "r-br2": ("10.1.3", {"eth1": "172.16.0.4/30", "eth2": "172.16.0.8/30"}),
}


@pytest.mark.parametrize("router", ROUTERS)
def test_reference_frr(rendered: dict[Any, Any], router: str) -> None:
    frr = rendered[None][router]["frr.conf"]
    lan, wans = SITES[router]
    assert rendered[None][router]["daemons"] == ["ospfd=yes"]
    assert "frr defaults traditional" in frr
    assert f"hostname {router}" in frr
    assert "service integrated-vtysh-config" in frr
    assert "ip forwarding" in frr
    assert not [x for x in frr if x.startswith("ip route")]
    assert _block(frr, "interface eth0") == [" ip ospf passive"]
    for wan in ("eth1", "eth2"):
        assert _block(frr, f"interface {wan}") == [
            " ip ospf network point-to-point", " ip ospf hello-interval 1", " ip ospf dead-interval 4"]
    assert _block(frr, "router ospf") == [
        f" ospf router-id {lan}.1",
        f" network {lan}.0/24 area 0",
        f" network {wans['eth1']} area 0",
        f" network {wans['eth2']} area 0",
    ]


@pytest.mark.parametrize("router", ROUTERS)
def test_reference_snmpd(rendered: dict[Any, Any], router: str) -> None:
    conf = [x for x in rendered[None][router]["snmpd.conf"] if x.strip() and not x.startswith("#")]
    assert conf == [
        "agentaddress udp:161",
        f"sysName {router}",
        f'createUser supervision-abcdefgh SHA {AUTH_QUOTED} AES "PrivPass8xyzABCD"',
        "rouser supervision-abcdefgh authpriv",
    ]
    assert not [x for x in conf if "community" in x]
    default = rendered[None][router]["snmpd.default"]
    assert "do_stop_cmd_override() {" in default
    assert any("--pidfile" in x for x in default)


# -------------------------------------------------------------------------------- variants

def _changes(rendered: dict[Any, Any], variant: str) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    """{(router, file): (removed, added)} for every file the variant renders differently."""
    out = {}
    for router in ROUTERS:
        for f in ("frr.conf", "snmpd.conf", "snmpd.default", "daemons"):
            removed, added = _diff(rendered[None][router][f], rendered[variant][router][f])
            if removed or added:
                out[(router, f)] = (removed, added)
    return out


def test_missing_lan_network(rendered: dict[Any, Any]) -> None:
    assert _changes(rendered, "missing-lan-network") == {
        ("r-br2", "frr.conf"): ([" network 10.1.3.0/24 area 0"], []),
    }


def test_wrong_area(rendered: dict[Any, Any]) -> None:
    assert _changes(rendered, "wrong-area") == {
        ("r-br2", "frr.conf"): ([" network 172.16.0.8/30 area 0"], [" network 172.16.0.8/30 area 1"]),
    }


def test_default_timers(rendered: dict[Any, Any]) -> None:
    changes = _changes(rendered, "default-timers")
    assert set(changes) == {(r, "frr.conf") for r in ROUTERS}
    for router in ROUTERS:
        removed, added = changes[(router, "frr.conf")]
        assert sorted(set(removed)) == [" ip ospf dead-interval 4", " ip ospf hello-interval 1"]
        assert sorted(set(added)) == [" ip ospf dead-interval 40", " ip ospf hello-interval 10"]


def test_static_routes(rendered: dict[Any, Any]) -> None:
    changes = _changes(rendered, "static-routes")
    assert changes[("r-hq", "frr.conf")] == ([], ["ip route 10.1.3.0/24 172.16.0.6"])
    assert changes[("r-br1", "frr.conf")] == ([], ["ip route 10.1.3.0/24 172.16.0.10"])
    assert changes[("r-br2", "daemons")] == (["ospfd=yes"], ["ospfd=no"])
    removed, added = changes[("r-br2", "frr.conf")]
    assert sorted(added) == ["ip route 10.1.1.0/24 172.16.0.5", "ip route 10.1.2.0/24 172.16.0.9"]
    br2 = rendered["static-routes"]["r-br2"]["frr.conf"]
    assert not [x for x in br2 if "ospf" in x]  # no OSPF at all on r-br2
    assert "router ospf" in removed
    assert set(changes) == {("r-hq", "frr.conf"), ("r-br1", "frr.conf"), ("r-br2", "frr.conf"),
                            ("r-br2", "daemons")}


def test_snmp_v2c_open(rendered: dict[Any, Any]) -> None:
    changes = _changes(rendered, "snmp-v2c-open")
    assert set(changes) == {(r, "snmpd.conf") for r in ROUTERS}
    for router in ROUTERS:
        assert changes[(router, "snmpd.conf")] == ([], [
            "rocommunity public 10.1.1.0/24", "rocommunity public 10.1.2.0/24", "rocommunity public 10.1.3.0/24"])


def test_snmp_authnopriv(rendered: dict[Any, Any]) -> None:
    changes = _changes(rendered, "snmp-authnopriv")
    assert set(changes) == {(r, "snmpd.conf") for r in ROUTERS}
    for router in ROUTERS:
        assert changes[(router, "snmpd.conf")] == (
            [f'createUser supervision-abcdefgh SHA {AUTH_QUOTED} AES "PrivPass8xyzABCD"',
             "rouser supervision-abcdefgh authpriv"],
            [f"createUser supervision-abcdefgh SHA {AUTH_QUOTED}", "rouser supervision-abcdefgh auth"],
        )
