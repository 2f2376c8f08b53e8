"""labkit doctor's Proxmox checks against fakepve (separate process; its /access/permissions
answers from the grants once any is set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.adapters.proxmox import doctor
from labkit.adapters.proxmox.client import PveClient
from labkit.adapters.proxmox.settings import load_proxmox_settings
from tests.adapters.proxmox.pvx import TOKEN_USER, pvx, pvx_home, write_config  # noqa: F401

TOKEN = "labkit@pve!tests"


_TEMPLATES: list[str] = []


@pytest.fixture(autouse=True)
def _templates(pvx) -> None:  # noqa: F811
    """The templates the harness starts with (PV's fakepve_server.TEMPLATES)."""
    _TEMPLATES[:] = sorted(v["name"] for v in pvx.state()["vms"] if v["template"])
    assert "lk-tpl-grader" in _TEMPLATES


def _run(home: Path, **kw: object) -> list[doctor.Line]:
    s = load_proxmox_settings(home)
    args = dict(token_id=s.token_id, storage=s.storage, zone=s.zone, mgmt_bridge=s.mgmt_bridge,
                nodes=s.nodes, templates=list(_TEMPLATES))
    args.update(kw)
    return doctor.run(PveClient(s), **args)  # type: ignore[arg-type]


def _grant_all_but(pvx, missing: set[tuple[str, str]], version: str = "9.0.10") -> None:  # noqa: F811
    needs = [*doctor.REQUIRED, *doctor.agent_privileges(version)]
    for need in needs:
        path = need.path.format(storage="local-lvm", zone="labkit", image_storage="local")
        if (need.privilege, path) not in missing:
            pvx.control("grant", user=TOKEN, path=path, privs=[need.privilege])
    # the candidates' role: the token may create it (else the centre makes it once by hand)
    pvx.control("grant", user=TOKEN, path="/access", privs=["Sys.Modify"])


def test_all_well(pvx_home: Path) -> None:  # noqa: F811
    lines = _run(pvx_home)
    assert [line for line in lines if not line.ok] == []
    assert {line.check for line in lines} == {"api", "nodes", "privileges", "storage", "sdn", "mgmt_bridge",
                                              "templates", "candidates"}
    assert lines[0].message == "Proxmox VE 9.0.10 answers"


def test_required_list_is_exact_and_explained() -> None:
    keys = [(n.privilege, n.path) for n in doctor.REQUIRED]
    assert len(keys) == len(set(keys))
    assert all(n.why and n.path.startswith("/") for n in doctor.REQUIRED)
    assert {"VM.Allocate", "VM.Clone", "VM.PowerMgmt", "VM.Snapshot", "VM.Snapshot.Rollback", "VM.Audit",
            "VM.Console", "Datastore.AllocateSpace", "Datastore.Audit", "Pool.Allocate", "SDN.Allocate",
            "SDN.Use", "SDN.Audit", "Sys.Audit"} <= {n.privilege for n in doctor.REQUIRED}
    assert [n.privilege for n in doctor.agent_privileges("9.0.3")] == ["VM.GuestAgent.Unrestricted",
                                                                      "VM.GuestAgent.Audit"]
    assert [n.privilege for n in doctor.agent_privileges("8.4.1")] == ["VM.Monitor"]


def test_granted_everything_needed_is_enough(pvx, pvx_home: Path) -> None:  # noqa: F811
    _grant_all_but(pvx, set())
    lines = _run(pvx_home)
    assert [line.message for line in lines if not line.ok] == []
    assert any(line.check == "privileges" and line.ok for line in lines)


def test_role_missing_and_not_creatable(pvx, pvx_home: Path) -> None:  # noqa: F811
    _grant_all_but(pvx, set())
    pvx.control("acl_off")
    for need in [*doctor.REQUIRED, *doctor.agent_privileges("9.0.10")]:
        path = need.path.format(storage="local-lvm", zone="labkit", image_storage="local")
        pvx.control("grant", user=TOKEN, path=path, privs=[need.privilege])
    bad = [line for line in _run(pvx_home) if not line.ok]
    assert [line.check for line in bad] == ["candidates"]
    assert "pveum role add LabkitCandidate --privs VM.Audit,VM.Console" in bad[0].message


def test_missing_privileges_one_line_each(pvx, pvx_home: Path) -> None:  # noqa: F811
    _grant_all_but(pvx, {("VM.Snapshot.Rollback", "/vms"), ("SDN.Use", "/sdn/zones/labkit")})
    bad = [line for line in _run(pvx_home) if not line.ok]
    assert [line.check for line in bad] == ["privileges", "privileges"]
    assert "lacks VM.Snapshot.Rollback on /vms" in bad[0].message
    assert "roll back" in bad[0].message and "pveum acl modify /vms --tokens labkit@pve!tests" in bad[0].message
    assert "lacks SDN.Use on /sdn/zones/labkit" in bad[1].message


def test_pve8_needs_vm_monitor(pvx, pvx_home: Path) -> None:  # noqa: F811
    pvx.control("version", version="8.4.1")
    try:
        _grant_all_but(pvx, {("VM.Monitor", "/vms")}, version="8.4.1")
        bad = [line for line in _run(pvx_home) if not line.ok]
        assert len(bad) == 1 and "lacks VM.Monitor on /vms" in bad[0].message
    finally:
        pvx.control("version", version="9.0.10")


def test_grant_on_parent_path_propagates(pvx, pvx_home: Path) -> None:  # noqa: F811
    needs = {n.privilege for n in [*doctor.REQUIRED, *doctor.agent_privileges("9.0")]} | {"Sys.Modify"}
    pvx.control("grant", user=TOKEN_USER, path="/", privs=sorted(needs))  # on the user, at the root
    assert [line.message for line in _run(pvx_home) if not line.ok] == []


def test_storage_zone_bridge_templates_problems(pvx, pvx_home: Path) -> None:  # noqa: F811
    pvx.control("storage", name="local-lvm", options={"content": "rootdir"})
    pvx.control("bridges", node="pve1", ifaces=["vmbr0"])
    try:
        lines = _run(pvx_home, zone="nozone", mgmt_bridge="vmbr9", templates=["lk-tpl-grader", "lk-tpl-x"])
    finally:
        pvx.control("storage", name="local-lvm", options={"content": "images,rootdir"})
    bad = {line.check: line.message for line in lines if not line.ok}
    assert set(bad) == {"storage", "sdn", "mgmt_bridge", "templates"}
    assert "does not hold VM disks" in bad["storage"] and "content 'images'" in bad["storage"]
    assert "SDN zone nozone does not exist" in bad["sdn"]
    assert "node pve1 has no bridge vmbr9" in bad["mgmt_bridge"]
    assert "template lk-tpl-x is missing" in bad["templates"] and "labkit templates build" in bad["templates"]


def test_simple_zone_on_several_nodes_and_low_space(pvx, pvx_home: Path) -> None:  # noqa: F811
    bad = [line.message for line in _run(pvx_home, nodes=[], min_free=10**15) if not line.ok]
    # the pvx server has one node; a simple zone is fine there, so only the space is short
    assert len(bad) == 1 and "GiB free, less than" in bad[0]
    pvx.control("storage", name="local-lvm", options={"avail": 1})
    try:
        bad = [line.message for line in _run(pvx_home) if not line.ok]
    finally:
        pvx.control("storage", name="local-lvm", options={"avail": 100 * 2**30})
    assert len(bad) == 1 and "storage local-lvm on pve1 has 0 GiB free" in bad[0]
    pvx.control("storage", name="local-lvm", options={"active": 0})
    try:
        bad = [line.message for line in _run(pvx_home) if not line.ok]
    finally:
        pvx.control("storage", name="local-lvm", options={"active": 1})
    assert bad == ["storage local-lvm is not active on node pve1; enable it (Datacenter > Storage) or check its "
                   "backing device"]


def test_simple_zone_refused_with_several_nodes() -> None:
    class Api:
        def call(self, method: str, path: str, **params: object) -> object:
            return [{"zone": "labkit", "type": "simple"}]

    lines = doctor.check_zone(Api(), "labkit", ["pve1", "pve2"])
    assert not lines[0].ok and "use a vxlan zone" in lines[0].message


def test_revoked_token_is_one_clear_line(pvx, pvx_home: Path) -> None:  # noqa: F811
    pvx.control("revoke_token")
    lines = _run(pvx_home)
    assert len(lines) == 1 and not lines[0].ok
    assert "token labkit@pve!tests was refused" in lines[0].message


def test_unreachable_api(pvx_home: Path) -> None:  # noqa: F811
    write_config_home = pvx_home
    text = (write_config_home / "proxmox.toml").read_text()
    import re

    (write_config_home / "proxmox.toml").write_text(re.sub(r'url = ".*"', 'url = "https://127.0.0.1:9"', text))
    lines = _run(write_config_home)
    assert len(lines) == 1 and not lines[0].ok and "did not answer" in lines[0].message


@pytest.mark.parametrize("version", ["9.0.10"])
def test_doctor_asks_permissions_per_path(pvx, pvx_home: Path, version: str) -> None:  # noqa: F811
    _run(pvx_home)
    asked = [p for m, p, _b in pvx.control("bodies") if p == "/api2/json/access/permissions"]
    # one per path of the list, and /access for the candidates' role (fakepve lists only built-in roles)
    assert len(asked) == len({n.path for n in [*doctor.REQUIRED, *doctor.agent_privileges(version)]}) + 1


def test_candidate_role_check() -> None:
    class Api:
        def __init__(self, roles: list[dict[str, str]], held: dict[str, dict[str, int]]) -> None:
            self.roles, self.held = roles, held

        def call(self, method: str, path: str, /, **params: object) -> object:
            return self.roles if path == "/access/roles" else self.held

    exact = [{"roleid": "LabkitCandidate", "privs": "VM.Console,VM.Audit"}]
    wider = [{"roleid": "LabkitCandidate", "privs": "VM.Console,VM.Audit,VM.PowerMgmt"}]
    admin = {"/access": {"Sys.Modify": 1}}
    assert doctor.check_candidate_role(Api(exact, {}))[0].ok
    assert doctor.check_candidate_role(Api([], admin))[0].ok
    assert doctor.check_candidate_role(Api(wider, admin))[0].ok
    line = doctor.check_candidate_role(Api([], {}))[0]
    assert not line.ok and "pveum role add LabkitCandidate --privs VM.Audit,VM.Console" in line.message
    line = doctor.check_candidate_role(Api(wider, {}))[0]
    assert not line.ok and "pveum role modify LabkitCandidate" in line.message


def test_zone_types() -> None:
    class Api:
        def __init__(self, zone: dict[str, str]) -> None:
            self.zone = zone

        def call(self, method: str, path: str, /, **params: object) -> object:
            return [self.zone]

    ok = doctor.check_zone(Api({"zone": "lk", "type": "vxlan", "peers": "10.0.0.1,10.0.0.2"}), "lk", ["a", "b"])
    assert ok == [doctor.Line("sdn", True, "SDN zone lk: vxlan")]
    [line] = doctor.check_zone(Api({"zone": "lk", "type": "vxlan"}), "lk", ["a", "b"])
    assert not line.ok and "has no peers" in line.message
    [line] = doctor.check_zone(Api({"zone": "lk", "type": "vlan"}), "lk", ["a"])
    assert not line.ok and "is of type vlan; labkit needs a zone of type simple" in line.message
