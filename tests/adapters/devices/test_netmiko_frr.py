"""The netmiko driver against a real FRR vtysh: the device user's login shell on a netns router,
reached from the vantage namespace of the router's LAN (never from the host's namespace)."""

from __future__ import annotations

import functools
import socket

import pytest

from labkit.adapters.devices.netmiko_driver import connect, push_config, show
from labkit.adapters.probes import device as device_probe
from labkit.errors import ProviderError, UserError
from labkit.models.device import DEVICE_USER, DeviceEndpoint
from labkit.usecases.lifecycle import exec_in
from tests.adapters.devices.conftest import DeviceLab

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _router(lab: DeviceLab, node: str = "r-br1") -> tuple[DeviceEndpoint, socket.socket]:
    prov = lab.provider
    return prov.device_endpoint(lab.state, node), prov.device_socket(lab.state, node)


def test_endpoint_is_the_routers_lan_address_from_its_vantage_point(device_lab: DeviceLab) -> None:
    ep, sock = _router(device_lab)
    try:
        plan = device_lab.state.plan
        vp = plan.vantage_point("v-br1")
        assert vp is not None
        assert (ep.platform, ep.transport, ep.host, ep.port, ep.username, ep.via) == \
            ("frr", "ssh", plan.node("r-br1").first_address("lan-br1"), 22, DEVICE_USER, "v-br1")
        # the socket was made in the vantage namespace: its own address is the vantage point's,
        # an address the host's root namespace does not have
        assert sock.getsockname()[0] == vp.ip
        assert sock.getpeername() == (ep.host, 22)
    finally:
        sock.close()


def test_show_reads_the_device_cli(device_lab: DeviceLab) -> None:
    ep, sock = _router(device_lab)
    out = show(ep, "show version", sock=sock)
    assert "FRRouting" in out and "(r-br1)" in out
    # the login shell is vtysh: a shell command is not a command of the device
    ep, sock = _router(device_lab)
    assert "Unknown command" in show(ep, "id", sock=sock)


def test_push_config_applies_and_saves(device_lab: DeviceLab) -> None:
    ep, sock = _router(device_lab)
    lines = ["! a comment line, skipped", "", "interface eth1", " ip ospf hello-interval 3", "exit",
             "router ospf", " ospf router-id 192.0.2.77", "exit"]
    push_config(ep, lines, sock=sock)
    ep, sock = _router(device_lab)
    running = show(ep, "show running-config", sock=sock)
    assert " ip ospf hello-interval 3" in running and " ospf router-id 192.0.2.77" in running
    saved = exec_in(device_lab.ctx, device_lab.state.name, "r-br1", ["cat", "/etc/frr/frr.conf"]).stdout
    assert "ospf router-id 192.0.2.77" in saved  # write memory, by the device user
    # one session for several steps: the driver's connection object
    ep, sock = _router(device_lab)
    conn = connect(ep, sock)
    try:
        push_config(ep, ["no router ospf", "interface eth1", " no ip ospf hello-interval", "exit"], conn=conn)
        running = show(ep, "show running-config", conn=conn)
    finally:
        conn.disconnect()
    assert "router ospf" not in running and "hello-interval" not in running


def test_a_rejected_line_stops_the_push_and_is_named(device_lab: DeviceLab) -> None:
    ep, sock = _router(device_lab)
    with pytest.raises(ProviderError) as err:
        push_config(ep, ["interface eth2", " ip ospf cost 17", " ip ospf frobnicate 3", " ip ospf priority 9",
                         "exit"], sock=sock)
    msg = str(err.value)
    assert "rejected the config line 'ip ospf frobnicate 3'" in msg and "r-br1" in msg and "nothing after" in msg
    ep, sock = _router(device_lab)
    running = show(ep, "show running-config", sock=sock)
    assert " ip ospf cost 17" in running      # the line before was applied
    assert "priority 9" not in running         # nothing after the rejected one was sent


def test_a_wrong_key_is_refused_with_a_clear_message(device_lab: DeviceLab, tmp_path) -> None:  # noqa: ANN001
    import subprocess

    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ep, sock = _router(device_lab)
    with pytest.raises(ProviderError, match="refused the login as 'labkit'"):
        connect(ep.model_copy(update={"key_file": str(key)}), sock)


def test_an_unknown_platform_is_a_user_error() -> None:
    ep = DeviceEndpoint(node="x", platform="no_such_os", host="192.0.2.1")
    with pytest.raises(UserError, match="not a netmiko device type"):
        connect(ep)


def test_device_show_probe_runs_in_the_vantage_namespace(device_lab: DeviceLab) -> None:
    prov, state = device_lab.provider, device_lab.state
    ep = prov.device_endpoint(state, "r-hq")
    call = functools.partial(device_probe.show, ep.host, ["show version", "show interface brief"], node="r-hq",
                             platform="frr", user=DEVICE_USER, key_file=state.ssh_key, ev_id="t1", source="v-hq")
    ev = prov.run_at(state, "v-hq", call, timeout=30)
    assert ev.ok, ev.error
    assert ev.meta["supporting_only"] is True and ev.meta["netns"].endswith("v.v-hq")
    assert "FRRouting" in ev.parsed[0]["output"] and "eth0" in ev.parsed[1]["output"]
    # from a place that cannot reach the device: ok=False with the reason, never a raise
    bad = functools.partial(device_probe.show, "192.0.2.1", ["show version"], node="r-hq", platform="frr",
                            user=DEVICE_USER, key_file=state.ssh_key, ev_id="t2", source="v-hq", timeout=2)
    ev = prov.run_at(state, "v-hq", bad, timeout=30)
    assert not ev.ok and "cannot connect" in ev.error
