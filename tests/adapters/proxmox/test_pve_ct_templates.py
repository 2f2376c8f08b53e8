"""CT templates (LXC) built by ``labkit templates build --provider proxmox`` against fakepve's lxc
routes, with a provisioner that records what would run over SSH in the build container; and
doctor's check of the system container archive (``ct_ostemplate``)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from labkit.adapters.proxmox import doctor
from labkit.adapters.proxmox import templates as tpl
from labkit.adapters.proxmox.client import PveClient
from labkit.adapters.proxmox.settings import ct_key_path, load_proxmox_settings
from labkit.errors import LabkitError, UserError
from labkit.models.instance import InstancePlan, NodePlan
from tests.adapters.proxmox.pvx import pvx, pvx_home, write_config  # noqa: F401
from tests.adapters.proxmox.test_pve_templates import Recorder, _opts

ARCHIVE = "vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
OSTEMPLATE = f"local:{ARCHIVE}"


def _with_archive(pvx) -> None:  # noqa: F811
    pvx.control("storage", name="local", options={
        "content": "iso,vztmpl,backup,import",
        "volumes": {ARCHIVE: {"content": "vztmpl", "format": "tzst", "size": 130 << 20, "ctime": 0}}})


@pytest.fixture
def ct_env(pvx, pvx_home: Path):  # noqa: F811
    _with_archive(pvx)
    write_config(pvx, pvx_home, mgmt_bridge="vmbr0", nodes=["pve1"], ct_ostemplate=OSTEMPLATE)
    settings = load_proxmox_settings(pvx_home)
    api = PveClient(settings)
    yield api, settings
    for c in pvx.state()["cts"]:  # what a test built
        if c["name"].startswith("lk-tpl-pxct"):
            api.wait_task("pve1", api.call("DELETE", f"/nodes/{c['node']}/lxc/{c['vmid']}", purge=1))


def _ct(pvx, name: str) -> dict | None:  # noqa: F811
    return next((c for c in pvx.state()["cts"] if c["name"] == name), None)


def test_ct_template_build_then_keep(pvx, ct_env, pvx_home: Path) -> None:  # noqa: F811
    api, settings = ct_env
    spec = tpl.TemplateSpec("lk-tpl-pxct1", ("frr", "openssh-server", "snmpd"), container=True)
    rec = Recorder()
    pvx.control("bodies", clear=True)
    assert tpl.build_template(api, settings, spec, _opts(), rec) == "built"
    key = ct_key_path(pvx_home)
    assert key.stat().st_mode & 0o777 == 0o600 and "OPENSSH PRIVATE KEY" in key.read_text()
    ct_pub, fingerprint = tpl.ensure_ct_key(pvx_home)
    ct = _ct(pvx, "lk-tpl-pxct1")
    assert ct is not None and ct["template"] and ct["status"] == "stopped"
    cfg = ct["config"]
    marked = tpl.TemplateSpec(spec.name, spec.packages, container=True, ct_key=fingerprint)
    assert cfg["description"] == marked.mark and marked.digest != spec.digest  # the key counts
    assert cfg["unprivileged"] == 1 and cfg["features"] == "nesting=1" and cfg["ostype"] == "debian"
    net0 = dict(p.split("=", 1) for p in cfg["net0"].split(","))
    assert net0["bridge"] == "vmbr0" and "ip" not in net0 and "gw" not in net0  # the build's address is gone
    assert "base-" in cfg["rootfs"]  # a template: its rootfs is a base volume (linked clones)
    [create] = [b for m, p, b in pvx.control("bodies") if m == "POST" and p == "/api2/json/nodes/pve1/lxc"]
    form = urllib.parse.parse_qs(create)
    assert form["ostemplate"] == [OSTEMPLATE] and form["unprivileged"] == ["1"]
    assert form["net0"] == ["name=eth0,bridge=vmbr0,ip=10.250.255.2/16,type=veth,gw=10.250.0.1"]
    keys = form["ssh-public-keys"][0].strip().splitlines()
    assert len(keys) == 2 and keys[0].endswith(" labkit-template-build") and keys[1] == ct_pub
    [(host, port, user, pem, script, _t)] = rec.calls
    assert (host, port, user) == ("10.250.255.2", 22, "root") and "OPENSSH PRIVATE KEY" in pem
    assert "apt-get install -y -q --no-install-recommends frr openssh-server snmpd" in script
    assert "cloud-init" not in script and "qemu-guest-agent" not in script
    assert "sed -i '/ labkit-template-build$/d' /root/.ssh/authorized_keys" in script  # the build key goes
    assert "systemctl enable labkit-ssh-hostkeys.service" in script and "rm -f /etc/ssh/ssh_host_*" in script
    tasks = {t["type"] for t in pvx.state()["tasks"] if t["exitstatus"]}
    assert {"vzcreate", "vzstart", "vzshutdown", "vztemplate"} <= tasks

    pvx.control("bodies", clear=True)
    assert tpl.build_template(api, settings, spec, _opts(), rec) == "kept"
    assert not [p for m, p, _b in pvx.control("bodies") if m != "GET"]  # nothing written
    assert len(rec.calls) == 1 and tpl.ensure_ct_key(pvx_home) == (ct_pub, fingerprint)  # the same key

    # another container key (the home's key replaced): not this template any more
    key.unlink()
    key.with_name(key.name + ".pub").unlink()
    with pytest.raises(UserError, match="already exists but is not this template .packages or container key"):
        tpl.build_template(api, settings, spec, _opts(), rec)


def test_ct_build_needs_the_archive_named(pvx, ct_env, pvx_home: Path) -> None:  # noqa: F811
    api, _settings = ct_env
    write_config(pvx, pvx_home, ct_ostemplate="")
    settings = load_proxmox_settings(pvx_home)
    pvx.control("bodies", clear=True)
    spec = tpl.TemplateSpec("lk-tpl-pxct2", ("openssh-server",), container=True)
    with pytest.raises(UserError, match=r"needs a Debian 12 system container archive: download one .*ct_ostemplate"):
        tpl.build_template(api, settings, spec, _opts(), Recorder())
    assert not [p for m, p, _b in pvx.control("bodies") if m != "GET"]


def test_ct_failed_provisioning_removes_the_container(pvx, ct_env) -> None:  # noqa: F811
    api, settings = ct_env
    spec = tpl.TemplateSpec("lk-tpl-pxct3", ("openssh-server",), container=True)
    with pytest.raises(LabkitError, match="apt-get failed"):
        tpl.build_template(api, settings, spec, _opts(), Recorder(fail=True))
    assert _ct(pvx, "lk-tpl-pxct3") is None


def test_wanted_templates_with_container_nodes(pvx_home: Path) -> None:  # noqa: F811
    def plan(topo: str, *nodes: NodePlan) -> InstancePlan:
        return InstancePlan(name="t", lab_id="l", lab_dir="", topology_id=topo, seed=0, params={},
                            nodes=list(nodes), segments={}, links={})

    plans = [
        plan("tri", NodePlan(name="r", role="router", services=["frr"], container=True),
             NodePlan(name="pc", role="workstation", services=["ssh"], container=True)),
        plan("mixed", NodePlan(name="dc", role="server", services=[], packages=["samba"]),
             NodePlan(name="pc", role="workstation", services=[], packages=["curl"], container=True)),
    ]
    settings = load_proxmox_settings(pvx_home)
    by = {s.name: s for s in tpl.wanted_templates(settings, plans)}
    assert list(by) == ["lk-tpl-mixed", "lk-tpl-ct-mixed", "lk-tpl-ct-tri", "lk-tpl-grader"]
    assert by["lk-tpl-ct-tri"].container and by["lk-tpl-ct-tri"].packages == ("frr", "openssh-server")
    assert by["lk-tpl-ct-mixed"].packages == ("curl", "openssh-server")
    assert by["lk-tpl-mixed"].packages == ("cloud-init", "openssh-server", "qemu-guest-agent", "samba")
    assert "lk-tpl-tri" not in by  # no VM node in tri: no VM template
    off = {s.name for s in tpl.wanted_templates(settings.model_copy(update={"containers": False}), plans)}
    assert off == {"lk-tpl-tri", "lk-tpl-mixed", "lk-tpl-grader"}


def test_doctor_checks_the_archive(pvx, pvx_home: Path) -> None:  # noqa: F811
    _with_archive(pvx)
    settings = load_proxmox_settings(pvx_home)
    names = sorted(v["name"] for v in pvx.state()["vms"] if v["template"])
    args = dict(token_id=settings.token_id, storage=settings.storage, zone=settings.zone,
                mgmt_bridge=settings.mgmt_bridge, nodes=settings.nodes)
    # no CT template wanted: no container line
    lines = doctor.run(PveClient(settings), templates=names, **args)  # type: ignore[arg-type]
    assert "containers" not in {line.check for line in lines}
    wanted = [*names, "lk-tpl-ct-three-sites"]
    lines = doctor.run(PveClient(settings), templates=wanted, ct_ostemplate=OSTEMPLATE, **args)  # type: ignore[arg-type]
    [ok] = [line for line in lines if line.check == "containers"]
    assert ok.ok and ok.message == f"system container archive {OSTEMPLATE} on pve1"
    [missing_tpl] = [line for line in lines if line.check == "templates" and not line.ok]
    assert "template lk-tpl-ct-three-sites is missing" in missing_tpl.message
    lines = doctor.run(PveClient(settings), templates=wanted, ct_ostemplate="local:vztmpl/nope.tar.zst",
                       **args)  # type: ignore[arg-type]
    [bad] = [line for line in lines if line.check == "containers"]
    assert not bad.ok and "pveam update && pveam download local nope.tar.zst" in bad.message
    # from the client's settings when not given: none named there
    lines = doctor.run(PveClient(settings), templates=wanted, **args)  # type: ignore[arg-type]
    [unset] = [line for line in lines if line.check == "containers"]
    assert not unset.ok and "names no ct_ostemplate" in unset.message
