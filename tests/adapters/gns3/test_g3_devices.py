"""Base configuration of ``platform: frr`` devices on GNS3 (against the REAL gns3-server 3.0.6 of
G1's harness): ``up`` pushes each router's hostname and plan addresses through its telnet
console with netmiko (the project's FrrVtyshTelnet), and the stand-in QEMU started with
``-labkit-frr`` (a template's options) is the vtysh-like console that takes them and then
answers ARP and ping for the address on that adapter. Proved three ways: the stand-in's log of
vtysh lines, ``show running-config`` read back with netmiko through the GNS3 console, and a
ping from vantage point v1 (labkit's agent, in its namespace on the GNS3 host) to r1's planned
lan-a address across the GNS3 wire. A rejected line fails ``up`` in one sentence, rolled back.

Lab g3demo (topology two-sites) with r1 and r2 made ``platform: frr``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.devices import base_config
from labkit.adapters.devices.netmiko_driver import show
from labkit.adapters.gns3 import naming
from labkit.adapters.gns3.provider import Gns3Provider
from labkit.errors import LabkitError, UserError
from labkit.models.probe import ProbeCall
from labkit.usecases import lifecycle
from tests.adapters.gns3.g2lab import LAB_ID, admin_client, ensure_templates, home_objects, make_ctx
from tests.adapters.gns3.g4lab import AgentHost, server_of, unique

FRR_TEMPLATE = "g3d-frr-router"  # not "lk-...": the harness counts those as labkit's leftovers


def _frr_project(root: Path) -> None:
    """g3demo's project with the routers of topology two-sites made FRR devices."""
    from tests.adapters.gns3.g2lab import make_project

    project = make_project(root)
    topo = project / "topologies" / "two-sites.yaml"
    text = topo.read_text(encoding="utf-8")
    for r in ("r1", "r2"):
        text = text.replace(f"{{name: {r}, role: router,", f"{{name: {r}, role: router, platform: frr,")
    assert text.count("platform: frr") == 2
    topo.write_text(text, encoding="utf-8")
    # a lab with devices declares config sets (never pushed here: up only, no solve)
    lab = project / "labs" / LAB_ID
    (lab / "configs").mkdir()
    (lab / "configs" / "ref.cfg").write_text("[r1]\nhostname r1\n[r2]\nhostname r2\n", encoding="utf-8")
    doc = (lab / "lab.yaml").read_text(encoding="utf-8")
    doc = doc.replace("solution: {playbook: demo/reference.yml}",
                      "solution: {playbook: demo/reference.yml, config: configs/ref.cfg}")
    doc = doc.replace("    playbook: demo/variants/no-route.yml\n",
                      "    playbook: demo/variants/no-route.yml\n    config: configs/ref.cfg\n")
    assert doc.count("configs/ref.cfg") == 2
    (lab / "lab.yaml").write_text(doc, encoding="utf-8")


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server, stopper = server_of(request)
    agent = AgentHost(server.namespace, tmp_path_factory.mktemp("g3dagent"), server.relay)
    tid = None
    admin = admin_client(server)
    try:
        assert getattr(server, "template_type", "") == "qemu", "the harness has no stand-in QEMU template"
        router = next(t for t in admin.get("/templates") if t["name"] == server.templates["router"])
        made = admin.post("/templates", {
            "name": FRR_TEMPLATE, "template_type": "qemu", "compute_id": "local", "adapters": 8,
            "adapter_type": "virtio-net-pci", "ram": 256, "console_type": "telnet",
            "qemu_path": router["qemu_path"], "hda_disk_image": router["hda_disk_image"],
            "options": "-labkit-frr"})
        tid = made["template_id"]
        agent.start()
        templates = ensure_templates(admin, server) | {"router": FRR_TEMPLATE}
        root = tmp_path_factory.mktemp("g3dctx")
        _frr_project(root)
        ctx = make_ctx(server, root, templates, grader={
            "host": "127.0.0.1", "port": agent.port, "host_key": agent.host_pub,
            "client_key_file": str(agent.client_key)})
        yield {"server": server, "ctx": ctx, "admin": admin}
    finally:
        agent.stop()
        if tid is not None:
            admin.delete(f"/templates/{tid}")
        admin.close()
        if stopper:
            stopper()


@pytest.fixture
def relayed(lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Consoles live on 127.0.0.1 INSIDE the GNS3 host namespace: the provider's endpoints are
    sent through the harness' relay (only host/port change); the nodes reached are recorded."""
    reached: list[str] = []
    orig = Gns3Provider.device_endpoint

    def through_relay(self: Gns3Provider, state: Any, node: str) -> Any:
        ep = orig(self, state, node)
        reached.append(node)
        return ep.model_copy(update={"host": "127.0.0.1", "port": lab["server"].relay(ep.port)})

    monkeypatch.setattr(Gns3Provider, "device_endpoint", through_relay)
    monkeypatch.setenv("LABKIT_PROJECT", str(lab["ctx"].settings.project))
    return reached


def test_up_pushes_base_addresses_through_the_console(lab: dict[str, Any], relayed: list[str]) -> None:
    ctx, server = lab["ctx"], lab["server"]
    name = unique("g3d")[:20]
    state = lifecycle.up(ctx, LAB_ID, instance=name, seed=7, provider="gns3")
    prov = ctx.provider("gns3")
    try:
        r1 = state.plan.node("r1")
        assert r1 is not None and r1.platform == "frr"
        addr = {i.name: i.addresses[0] for i in r1.interfaces if i.addresses}
        assert set(addr) == {"eth0", "eth1"}
        assert sorted(relayed) == ["r1", "r2"]  # the devices only (pc1/pc2 are VPCS hosts)
        assert state.provider_data["base_config"]["r1"] == base_config.base_config_lines(r1)
        # the stand-in's console got the lines (from netmiko: config mode, the set, write memory)
        said = [ln.split(" vtysh ", 1)[1] for ln in server.qemu_log() if ln.startswith("r1 vtysh ")]
        for line in ("configure terminal", "hostname r1", "interface eth0", f"ip address {addr['eth0']}",
                     "interface eth1", f"ip address {addr['eth1']}", "end", "write memory"):
            assert line in said, (line, said)
        # read back with netmiko over the same telnet console
        run = show(prov.device_endpoint(state, "r1"), "show running-config")
        assert f"interface eth0\n ip address {addr['eth0']}" in run.replace("\r", ""), run
        assert "hostname r1" in run
        # and on the wire: v1 (lan-a, in labkit's agent on the GNS3 host) pings r1's lan-a address
        ground = prov.ground(state)
        try:
            target = addr["eth0"].split("/")[0]
            ping = ground.run("v1", ProbeCall(probe="icmp.ping", args=[target],
                                              kwargs={"source": "v1", "count": 3}), "g3d-ping", 15)
            assert ping.ok and ping.parsed["received"] >= 1, (ping.error, ping.raw)
            other = ground.run("v1", ProbeCall(probe="icmp.ping", args=[target.rsplit(".", 1)[0] + ".199"],
                                               kwargs={"source": "v1", "count": 1, "timeout": 1.0}), "g3d-no", 10)
            assert other.parsed["sent"] == 1 and other.parsed["received"] == 0, other.raw  # nobody has it
        finally:
            ground.close()
    finally:
        lifecycle.down(ctx, name)
    assert home_objects(lab["admin"], naming.home_id(ctx.settings.home)) == []


def test_a_rejected_line_fails_up_in_one_sentence_and_leaves_nothing(
        lab: dict[str, Any], relayed: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = lab["ctx"]
    real = base_config.base_config_lines
    monkeypatch.setattr(base_config, "base_config_lines", lambda node: [*real(node), "bogus line"])
    name = unique("g3r")[:20]
    with pytest.raises(LabkitError) as err:
        lifecycle.up(ctx, LAB_ID, instance=name, seed=8, provider="gns3")
    msg = str(err.value)
    assert "'bogus line'" in msg and ("'r1'" in msg or "'r2'" in msg), msg
    assert "% Unknown command." in msg and msg.count(". ") == 0 and "\n" not in msg, msg
    assert not ctx.store.exists(name)
    assert home_objects(lab["admin"], naming.home_id(ctx.settings.home)) == []


def test_other_device_platforms_are_refused_at_preflight(lab: dict[str, Any]) -> None:
    from labkit.models.instance import InstancePlan, NodePlan

    prov = lab["ctx"].provider("gns3")
    plan = InstancePlan.model_construct(lab_id="x", nodes=[
        NodePlan(name="sw1", role="router", services=[], platform="cisco_ios")], segments=[], vantage=[])
    with pytest.raises(UserError, match=r"^node sw1 of lab x is a cisco_ios device: on GNS3 labkit sets base "
                                        r"addresses for frr devices only .*\.$"):
        prov.preflight(plan)
