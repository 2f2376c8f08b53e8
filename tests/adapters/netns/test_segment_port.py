"""netns's ``segment_port``: the port of a segment's bridge facing a member, from the
provider's own wiring order (one counter over every segment's members in plan order, then the
vantage points), never from the node. Pure: the plan of the real supervision-snmp lab. The
ports are matched against the real veths in tests/usecases/test_degraded_supervision.py."""

from __future__ import annotations

from pathlib import Path

from labkit.adapters.netns.provider import NetnsProvider, segment_ports
from labkit.domain.labs import instantiate
from labkit.models.capabilities import ALL_CAPABILITIES
from labkit.models.instance import InstanceState
from labkit.settings import Settings
from labkit.usecases.lifecycle import Context, load_lab_checked
from tests.conftest import PROJECT


def test_segment_ports_follow_the_wiring_order_of_create(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT)
    plan = instantiate(load_lab_checked(Context(settings), "supervision-snmp"), "segp", 5, None)
    ports = segment_ports(plan)
    # lan-a: r1, mon, logs, srv1; lan-b: r2, srv2, srv3; then the vantage points v-a, v-b, helpdesk
    assert ports == {
        ("lan-a", "r1:eth0"): "p1", ("lan-a", "mon:eth0"): "p2", ("lan-a", "logs:eth0"): "p3",
        ("lan-a", "srv1:eth0"): "p4", ("lan-b", "r2:eth0"): "p5", ("lan-b", "srv2:eth0"): "p6",
        ("lan-b", "srv3:eth0"): "p7", ("lan-a", "v-a:eth0"): "p8", ("lan-b", "v-b:eth0"): "p9",
        ("lan-a", "helpdesk:eth0"): "p10"}
    state = InstanceState.model_construct(name="segp", plan=plan)
    prov = NetnsProvider(settings)
    assert "port_map" in prov.capabilities and "port_map" in ALL_CAPABILITIES
    assert prov.segment_port(state, "lan-a", "mon:eth0") == "p2"
    # not on that segment, no such member, no such segment: None (the grader then says it is unknown)
    assert prov.segment_port(state, "lan-b", "mon:eth0") is None
    assert prov.segment_port(state, "lan-a", "mon:eth9") is None
    assert prov.segment_port(state, "lan-z", "mon:eth0") is None
