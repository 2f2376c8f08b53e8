"""The grader's places on the GNS3 host (host.py + the agent's host mode), made by labkit's agent
SSH server running INSIDE the GNS3 host's network namespace of the harness and reached through
its relay: bridges and veths appear in that namespace (never in the root namespace), the
vantage namespaces get their address, teardown removes everything from the instance name alone.
Nothing here moves lab packets (test_g3_ground.py does)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.gns3 import host
from labkit.errors import AgentError
from tests.adapters.gns3.g4lab import (
    AgentHost, bench_plan, bridges_for, ns_links, provider_stub, root_links, server_of, state_of, unique, vantage_ns,
)


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server, stopper = server_of(request)
    agent = AgentHost(server.namespace, tmp_path_factory.mktemp("g4host"), server.relay)
    try:
        agent.start()
        yield {"server": server, "agent": agent, "home": tmp_path_factory.mktemp("g4home")}
    finally:
        agent.stop()
        if stopper:
            stopper()


def _addr(ns: str) -> str:
    return subprocess.run(["ip", "-n", ns, "-o", "addr", "show", "dev", "eth0"], capture_output=True, text=True,
                          timeout=10, check=True).stdout


def test_setup_makes_places_in_the_gns3_host_namespace_and_teardown_removes_them(env: dict[str, Any]) -> None:
    server, agent = env["server"], env["agent"]
    prov = provider_stub(server, env["home"], agent)
    name = unique("g4h")
    plan = bench_plan(name)
    bridges = bridges_for(name, ["v1", "v2"])
    state = state_of(plan, {"bridges": bridges})
    before_root = root_links()
    try:
        out = host.setup(prov, state)
        assert out["bridges"] == bridges
        made = ns_links(server.namespace)
        for br in bridges.values():
            assert br in made and host.veth_name(br) in made
            assert br not in root_links() and host.veth_name(br) not in root_links()
        assert root_links() == before_root  # nothing in the root namespace
        for vp, addr in (("v1", "10.9.0.101/24"), ("v2", "10.9.0.102/24")):
            assert Path(f"/run/netns/{vantage_ns(name, vp)}").exists()
            assert addr in _addr(vantage_ns(name, vp))
        assert sorted(out["made"]) == sorted([f"bridge {b}" for b in bridges.values()]
                                             + [f"veth {host.veth_name(b)}" for b in bridges.values()]
                                             + [f"namespace {vantage_ns(name, v)}" for v in ("v1", "v2")])
        again = host.setup(prov, state)  # idempotent: nothing new
        assert again["made"] == []
        assert len(host.leftovers(prov, name)) == 6
    finally:
        removed = host.teardown(prov, name)
    assert len(removed) >= 4
    assert host.leftovers(prov, name) == []
    left = ns_links(server.namespace)
    assert not any(b in left or host.veth_name(b) in left for b in bridges.values())
    assert not any(Path(f"/run/netns/{vantage_ns(name, vp)}").exists() for vp in ("v1", "v2"))
    assert host.teardown(prov, name) == []  # idempotent, from the name alone
    assert not (agent.state_dir / f"{host.host_instance('g4test00', name)}.json").exists()


def test_teardown_from_the_name_alone_after_the_record_is_lost(env: dict[str, Any]) -> None:
    """The agent's record gone (a crash before it was written, a wiped disk): the aliases on
    the bridges and veths still let teardown find them; the namespaces come with their veths."""
    server, agent = env["server"], env["agent"]
    prov = provider_stub(server, env["home"], agent)
    name = unique("g4r")
    bridges = bridges_for(name, ["v1"])
    plan = bench_plan(name).model_copy(update={"vantage": bench_plan(name).vantage[:1]})
    host.setup(prov, state_of(plan, {"bridges": bridges}))
    (agent.state_dir / f"{host.host_instance('g4test00', name)}.json").unlink()
    try:
        left = host.leftovers(prov, name)
        assert sorted(left) == sorted(f"gns3 host link {d}" for d in (bridges["v1"], host.veth_name(bridges["v1"])))
    finally:
        host.teardown(prov, name)
        subprocess.run(["ip", "netns", "del", vantage_ns(name, "v1")], capture_output=True, timeout=10)
    assert host.leftovers(prov, name) == []
    assert bridges["v1"] not in ns_links(server.namespace)


def test_refusals(env: dict[str, Any]) -> None:
    """Another instance's name in a request, a bridge name outside labkit's, a wrong host key,
    host ops in an agent that is not in host mode: one-sentence refusals, nothing made."""
    server, agent = env["server"], env["agent"]
    prov = provider_stub(server, env["home"], agent)
    name = unique("g4x")
    session = host.open_session(prov, name)
    try:
        with pytest.raises(AgentError, match="serves instance"):
            session.request({"op": "host_teardown", "instance": "someone-else"}, 10)
        with pytest.raises(AgentError, match="not a labkit host bridge"):
            session.request({"op": "host_setup", "vantage": [{"name": "v1", "address": "10.0.0.1/24",
                                                              "bridge": "eth0"}]}, 10)
        with pytest.raises(AgentError, match="outside"):
            session.request({"op": "host_setup", "vantage": [{"name": "v1", "address": "10.0.0.1/24",
                                                              "gateway": "10.9.9.9", "bridge": "lkb0123456789ab"}]},
                            10)
    finally:
        session.close()
    assert "lkb0123456789ab" not in ns_links(server.namespace)
    # a bridge of that name that is not this instance's (another home's, or made by hand) is refused
    foreign = bridges_for(name, ["v1"])["v1"]
    subprocess.run(["ip", "-n", server.namespace, "link", "add", foreign, "type", "bridge"], check=True, timeout=10)
    try:
        plan = bench_plan(name).model_copy(update={"vantage": bench_plan(name).vantage[:1]})
        with pytest.raises(AgentError, match="is not .*'s"):
            host.setup(prov, state_of(plan, {"bridges": {"v1": foreign}}))
        assert host.leftovers(prov, name) == []  # nothing made, the foreign bridge not counted as ours
    finally:
        subprocess.run(["ip", "-n", server.namespace, "link", "del", foreign], check=True, timeout=10)
        host.teardown(prov, name)
    wrong = provider_stub(server, env["home"], agent)
    wrong.g3.grader.host_key = f"ssh-ed25519 {_other_key()}"
    with pytest.raises(AgentError, match="not the pinned"):
        host.open_session(wrong, name)


def _other_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                 serialization.PublicFormat.OpenSSH)
    return pub.decode().split()[1]


def test_host_ops_refused_outside_host_mode() -> None:
    from labkit.agent.server import Places, RequestError, handle

    with pytest.raises(RequestError, match="host mode"):
        handle({"op": "host_setup", "vantage": []}, Places("abc"))


def test_relay_of_a_host_mode_session_follows_its_instance_setup(env: dict[str, Any]) -> None:
    """The relay (Ansible's way to the nodes) of a host-mode connection allows what the
    instance's host_setup wrote: port 22 to the plan's node addresses, nothing else; before the
    setup, nothing at all."""
    server, agent = env["server"], env["agent"]
    prov = provider_stub(server, env["home"], agent)
    name = unique("g4y")
    plan = bench_plan(name)
    session = host.open_session(prov, name)
    try:
        with pytest.raises(AgentError, match="not allowed"):
            session.open_relay("10.9.0.10", 22)  # no setup yet: no port at all
        host.setup(prov, state_of(plan, {"bridges": bridges_for(name, ["v1", "v2"])}))
        with pytest.raises(AgentError, match="port 80 is not allowed"):
            session.open_relay("10.9.0.10", 80)
        with pytest.raises(AgentError, match="not an address of this lab's nodes"):
            session.open_relay("10.9.0.99", 22)
        relay = (agent.state_dir / f"{host.host_instance('g4test00', name)}.relay.json").read_text()
        assert '"10.9.0.10": "lk-g4test00-' in relay and ".v.v1" in relay
    finally:
        session.close()
        host.teardown(prov, name)
    assert not (agent.state_dir / f"{host.host_instance('g4test00', name)}.relay.json").exists()
