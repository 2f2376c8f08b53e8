"""Template builds against fakepve (its tasks, configs and templates), with a provisioner that
records what would run over SSH in the build guest (no guest runs in fakepve)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.adapters.proxmox import templates as tpl
from labkit.adapters.proxmox.client import PveClient, PveTaskError
from labkit.adapters.proxmox.settings import load_proxmox_settings
from labkit.errors import LabkitError, UserError
from tests.adapters.proxmox.pvx import pvx, pvx_home  # noqa: F401

URL = "https://mirror.example.org/debian-12-genericcloud-amd64.qcow2"


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, int, str, str, str, float]] = []
        self.files: list[dict[str, tuple[bytes, int]]] = []
        self.fail = fail

    def __call__(self, host: str, port: int, user: str, key: str, script: str, timeout: float,
                 files: dict[str, tuple[bytes, int]]) -> None:
        self.calls.append((host, port, user, key, script, timeout))
        self.files.append(files)
        if self.fail:
            raise LabkitError("apt-get failed in the build guest")


@pytest.fixture
def env(pvx, pvx_home: Path):  # noqa: F811
    pvx.control("storage", name="local", options={"content": "iso,vztmpl,backup,import"})
    settings = load_proxmox_settings(pvx_home)
    yield PveClient(settings), settings
    for v in pvx.state()["vms"]:  # remove what a test built (the harness' own templates stay)
        if v["name"].startswith("lk-tpl-px"):
            PveClient(settings).call("DELETE", f"/nodes/{v['node']}/qemu/{v['vmid']}")


def _opts(**kw: object) -> tpl.BuildOptions:
    args: dict[str, object] = dict(image=URL, node="pve1", build_ip="10.250.255.2/16", build_gw="10.250.0.1")
    args.update(kw)
    return tpl.BuildOptions(**args)  # type: ignore[arg-type]


def _vm(pvx, name: str) -> dict | None:  # noqa: F811
    return next((v for v in pvx.state()["vms"] if v["name"] == name), None)


def test_build_then_keep(pvx, env) -> None:  # noqa: F811
    api, settings = env
    spec = tpl.TemplateSpec("lk-tpl-px1", ("cloud-init", "frr", "openssh-server", "qemu-guest-agent"))
    rec = Recorder()
    assert tpl.build_template(api, settings, spec, _opts(), rec) == "built"
    vm = _vm(pvx, "lk-tpl-px1")
    assert vm is not None and vm["template"] and vm["status"] == "stopped"
    cfg = vm["config"]
    assert cfg["description"] == f"labkit-template packages={spec.digest}"
    assert cfg["serial0"] == "socket" and cfg["vga"] == "serial0" and cfg["agent"] == "enabled=1"
    assert "cloudinit" in cfg["ide2"] or "media=cdrom" in cfg["ide2"]
    assert "import-from=local:import/debian-12-genericcloud-amd64.qcow2" in cfg["scsi0"]
    assert not {"ipconfig0", "sshkeys", "ciuser"} & set(cfg)  # the build's address and key are gone
    assert cfg["net0"].endswith("bridge=vmbr0")
    [(host, port, user, key, script, _t)] = rec.calls
    assert (host, port, user) == ("10.250.255.2", 22, "labkit") and "OPENSSH PRIVATE KEY" in key
    assert "apt-get install -y -q --no-install-recommends cloud-init frr openssh-server qemu-guest-agent" in script
    assert "cloud-init clean --logs --machine-id" in script and "systemctl enable qemu-guest-agent" in script
    tasks = [t for t in pvx.state()["tasks"] if t["type"] in ("download", "qmcreate", "qmstart", "qmshutdown",
                                                              "qmtemplate")]
    assert {t["type"] for t in tasks} >= {"download", "qmcreate", "qmstart", "qmshutdown"}
    assert all(t["exitstatus"] == "OK" for t in tasks)

    pvx.control("bodies", clear=True)
    assert tpl.build_template(api, settings, spec, _opts(), rec) == "kept"
    assert not [p for m, p, _b in pvx.control("bodies") if m != "GET"]  # nothing written
    assert len(rec.calls) == 1

    other = tpl.TemplateSpec("lk-tpl-px1", ("cloud-init", "snmpd"))
    with pytest.raises(UserError, match="already exists but is not this template"):
        tpl.build_template(api, settings, other, _opts(), rec)


def test_image_downloaded_once(pvx, env) -> None:  # noqa: F811
    api, settings = env
    url = "https://mirror.example.org/debian-12-once.qcow2"
    tpl.build_template(api, settings, tpl.TemplateSpec("lk-tpl-px2a", ("qemu-guest-agent",)), _opts(image=url),
                       Recorder())
    assert [p for m, p, _b in pvx.control("bodies") if p.endswith("/download-url")]
    pvx.control("bodies", clear=True)
    tpl.build_template(api, settings, tpl.TemplateSpec("lk-tpl-px2b", ("qemu-guest-agent",)), _opts(image=url),
                       Recorder())
    assert not [p for m, p, _b in pvx.control("bodies") if p.endswith("/download-url")]
    made = _vm(pvx, "lk-tpl-px2b")
    assert made is not None and made["template"]


def test_failed_provisioning_removes_the_vm(pvx, env) -> None:  # noqa: F811
    api, settings = env
    spec = tpl.TemplateSpec("lk-tpl-px3", ("qemu-guest-agent",))
    with pytest.raises(LabkitError, match="apt-get failed"):
        tpl.build_template(api, settings, spec, _opts(), Recorder(fail=True))
    assert _vm(pvx, "lk-tpl-px3") is None


def test_task_error_exitstatus_is_checked(pvx, env) -> None:  # noqa: F811
    api, settings = env
    spec = tpl.TemplateSpec("lk-tpl-px4", ("qemu-guest-agent",))
    pvx.control("fail", method="POST", suffix="/status/shutdown", error="quit_powerdown_failed_got_timeout",
                times=1)
    with pytest.raises(PveTaskError, match="shutting lk-tpl-px4 down on pve1 failed"):
        tpl.build_template(api, settings, spec, _opts(), Recorder())
    assert _vm(pvx, "lk-tpl-px4") is None


def test_failed_download_makes_nothing(pvx, env) -> None:  # noqa: F811
    api, settings = env
    spec = tpl.TemplateSpec("lk-tpl-px5", ("qemu-guest-agent",))
    url = "https://mirror.example.org/other-image.qcow2"
    pvx.control("fail", method="POST", suffix="/download-url", error="decompression_not_supported", times=1)
    before = len(pvx.state()["vms"])
    with pytest.raises(PveTaskError, match="getting the image other-image.qcow2"):
        tpl.build_template(api, settings, spec, _opts(image=url), Recorder())
    assert len(pvx.state()["vms"]) == before


def test_half_built_leftover_is_replaced(pvx, env) -> None:  # noqa: F811
    api, settings = env
    upid = api.call("POST", "/nodes/pve1/qemu", vmid=int(api.call("GET", "/cluster/nextid")), name="lk-tpl-px6",
                    memory=512, description=tpl.BUILDING)
    api.wait_task("pve1", upid)
    spec = tpl.TemplateSpec("lk-tpl-px6", ("qemu-guest-agent",))
    assert tpl.build_template(api, settings, spec, _opts(), Recorder()) == "built"
    [vm] = [v for v in pvx.state()["vms"] if v["name"] == "lk-tpl-px6"]
    assert vm["template"]


@pytest.mark.parametrize(("kw", "msg"), [
    ({"build_ip": "dhcp"}, "is not an address with its prefix"),
    ({"build_ip": "10.0.0.2"}, "has no prefix"),
    ({"build_gw": "gateway"}, "is not an IP address"),
    ({"image": "debian.iso"}, "is not a .qcow2, .raw or .vmdk disk image"),
    ({"image": "/nonexistent/debian.qcow2"}, "does not exist"),
])
def test_bad_options_refused_before_anything(pvx, env, kw: dict, msg: str) -> None:  # noqa: F811
    api, settings = env
    pvx.control("bodies", clear=True)
    with pytest.raises(UserError, match=msg):
        tpl.build_template(api, settings, tpl.TemplateSpec("lk-tpl-px7", ("x",)), _opts(**kw), Recorder())
    assert not [p for m, p, _b in pvx.control("bodies") if m != "GET"]


def test_wanted_templates_per_topology(pvx_home: Path) -> None:  # noqa: F811
    from labkit.models.instance import InstancePlan, NodePlan

    settings = load_proxmox_settings(pvx_home)

    def plan(topo: str, *nodes: NodePlan) -> InstancePlan:
        return InstancePlan(name="t", lab_id="l", lab_dir="", topology_id=topo, seed=0, params={},
                            nodes=list(nodes), segments={}, links={})

    specs = tpl.wanted_templates(settings, [
        plan("two-sites", NodePlan(name="r1", role="router", services=["frr", "ssh"]),
             NodePlan(name="pc", role="host", services=[], packages=["curl"])),
        plan("two-sites", NodePlan(name="r2", role="router", services=["snmpd"])),
        plan("ad", NodePlan(name="dc", role="server", services=["ssh"], packages=["samba"])),
    ])
    by = {s.name: s.packages for s in specs}
    assert list(by) == ["lk-tpl-ad", "lk-tpl-two-sites", "lk-tpl-grader"]
    assert by["lk-tpl-two-sites"] == ("cloud-init", "curl", "frr", "openssh-server", "qemu-guest-agent", "snmpd")
    assert by["lk-tpl-ad"] == ("cloud-init", "openssh-server", "qemu-guest-agent", "samba")
    assert "tcpdump" in by["lk-tpl-grader"] and "python3" in by["lk-tpl-grader"]
    assert specs[0].digest != specs[1].digest


def test_image_storage_without_import_content(pvx, env) -> None:  # noqa: F811
    api, settings = env
    pvx.control("storage", name="local", options={"content": "iso,vztmpl,backup"})
    pvx.control("bodies", clear=True)
    with pytest.raises(UserError, match="the image storage local on pve1 does not take content 'import'"):
        tpl.build_template(api, settings, tpl.TemplateSpec("lk-tpl-px8", ("x",)), _opts(), Recorder())
    with pytest.raises(UserError, match="the image storage nostore on pve1 does not exist"):
        tpl.build_template(api, settings, tpl.TemplateSpec("lk-tpl-px8", ("x",)), _opts(image_storage="nostore"),
                           Recorder())
    assert not [p for m, p, _b in pvx.control("bodies") if m != "GET"]


def test_grader_template_gets_labkit_and_the_setup(pvx, env, tmp_path: Path) -> None:  # noqa: F811
    api, settings = env
    spec = tpl.TemplateSpec("lk-tpl-px9", ("python3", "python3-venv", "qemu-guest-agent"), grader=True)
    with pytest.raises(UserError, match="needs labkit's wheel"):
        tpl.build_template(api, settings, spec, _opts(), Recorder())
    assert _vm(pvx, "lk-tpl-px9") is None
    wheel = tmp_path / "labkit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK-not-a-real-wheel")
    rec = Recorder()
    assert tpl.build_template(api, settings, spec, _opts(labkit_wheel=str(wheel), apt_proxy="http://p:3142"),
                              rec) == "built"
    [files] = rec.files
    assert files["labkit-0.1.0-py3-none-any.whl"] == (b"PK-not-a-real-wheel", 0o644)
    assert files["labkit-agent-setup"][1] == 0o755 and b"places.json" in files["labkit-agent-setup"][0]
    assert b"exec /opt/labkit/bin/python -I -m labkit.agent" in files["labkit-agent"][0]
    script = rec.calls[0][4]
    assert "/opt/labkit/bin/pip install -q /tmp/labkit-build/labkit-0.1.0-py3-none-any.whl" in script
    assert "install -m 0755 /tmp/labkit-build/labkit-agent-setup /usr/local/sbin/labkit-agent-setup" in script
    assert "export http_proxy=http://p:3142" in script and script.rstrip().endswith("rm -rf /tmp/labkit-build")
    assert spec.digest != tpl.TemplateSpec(spec.name, spec.packages).digest  # labkit's version counts
    assert tpl.is_current(api, spec)
