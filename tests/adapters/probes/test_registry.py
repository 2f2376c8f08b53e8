"""The probe registry: the allowlist of what the grader's ground may run, and the conversion of
a grader's ``partial`` into a :class:`ProbeCall` that crosses a process boundary as JSON."""

from __future__ import annotations

import ast
import functools
import importlib
import threading
from pathlib import Path

import pytest

from labkit.adapters.probes import registry, rendezvous
from labkit.adapters.probes.icmp import ping
from labkit.adapters.probes.netlink import routes, set_link_state
from labkit.errors import ProbeNotAllowedError
from labkit.models.probe import ProbeCall

PROBES_DIR = Path(registry.__file__).parent


def _decorated_names() -> list[str]:
    """Every name given to @probe(...) in the source of adapters/probes, read from the AST."""
    found = []
    for path in sorted(PROBES_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for dec in node.decorator_list:
                    if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "probe":
                        found.append((path.stem, node.name, dec.args[0].value))  # type: ignore[attr-defined]
    return found


def test_every_name_is_unique_is_module_dot_function_and_resolves() -> None:
    registry.load_all()
    decorated = _decorated_names()
    names = [n for _, _, n in decorated]
    assert len(names) == len(set(names)), "two probes share a name"
    assert sorted(names) == registry.names()
    for module, fn, name in decorated:
        assert name == f"{module}.{fn}"
        target = getattr(importlib.import_module(f"labkit.adapters.probes.{module}"), fn)
        resolved = registry.resolve(ProbeCall(probe=name), ev_id="x")
        assert isinstance(resolved, functools.partial) and resolved.func is target
    # the probes the graders hand to the ground are all there
    assert {"icmp.ping", "netlink.routes", "netlink.addresses", "netlink.set_link_state", "netlink.source_address",
            "netlink.veth_ends", "capture.capture", "capture.bridge_block", "ospf.capture_ospf", "snmp.raw_exchange",
            "snmp.snmp_get_v3", "vpn.client_start", "vpn.client_stop", "vpn.udp_send_when_ready",
            "http.webhook_start", "http.webhook_wait", "http.webhook_finish", "rendezvous.set_event",
            "rendezvous.wait_event", "tcpspan.tcp_span", "sshauth.password_login"} <= set(names)


def test_a_second_function_under_a_taken_name_is_refused() -> None:
    def other(*, ev_id: str) -> None: ...

    with pytest.raises(ValueError, match="icmp.ping"):
        registry.probe("icmp.ping")(other)
    assert registry.resolve(ProbeCall(probe="icmp.ping"), "x").func is ping  # type: ignore[attr-defined]


def test_call_of_a_partial_gives_plain_json_and_tuples_become_lists() -> None:
    call = registry.call_of(functools.partial(ping, "10.0.0.1", source="v1", check="c", count=(1, 2),
                                              ev_id="dropped"))
    assert call == ProbeCall(probe="icmp.ping", args=["10.0.0.1"], kwargs={"source": "v1", "check": "c",
                                                                          "count": [1, 2]})
    assert ProbeCall.model_validate_json(call.model_dump_json()) == call
    assert registry.call_of(routes) == ProbeCall(probe="netlink.routes")
    same = ProbeCall(probe="netlink.set_link_state", args=["p1", False], kwargs={"source": "link:a"})
    assert registry.call_of(same) == same
    assert registry.call_of(functools.partial(set_link_state, "p1", False, source="link:a")) == same


@pytest.mark.parametrize("fn,message", [
    (lambda ev_id: None, "not a registered probe"),
    (functools.partial(lambda host, ev_id: None, "10.0.0.1"), "not a registered probe"),
    (print, "not a registered probe"),
    (functools.partial(ping, "10.0.0.1", source="v", stop=threading.Event()), "not plain JSON"),
    (functools.partial(ping, b"\x01", source="v"), "not plain JSON"),
    (functools.partial(ping, "10.0.0.1", source="v", meta={1, 2}), "not plain JSON"),
    (functools.partial(ping, "10.0.0.1", source="v", deadline=float("nan")), "not plain JSON"),
    (functools.partial(ping, "x" * (1 << 20), source="v"), "bytes; at most"),
])
def test_call_of_refuses_what_cannot_cross_as_data(fn: object, message: str) -> None:
    with pytest.raises(ProbeNotAllowedError, match=message):
        registry.call_of(fn)  # type: ignore[arg-type]


def test_an_unregistered_name_never_runs() -> None:
    with pytest.raises(ProbeNotAllowedError, match="not registered"):
        registry.resolve(ProbeCall(probe="os.system", args=["true"]), "x")
    with pytest.raises(ProbeNotAllowedError):
        registry.call_of(ProbeCall(probe="icmp.ping", kwargs={"x": object()}))


def test_named_signals_and_handles_are_shared_by_name_and_bounded() -> None:
    name = rendezvous.new_name("t")
    assert rendezvous.event(name) is rendezvous.event(name) and not rendezvous.event(name).is_set()  # type: ignore[union-attr]
    ev = rendezvous.set_event(name, ev_id="e1", source="here")
    assert ev.ok and rendezvous.event(name).is_set()  # type: ignore[union-attr]
    waited = rendezvous.wait_event(name, ev_id="e2", source="here", timeout=0.1)
    assert waited.parsed == {"set": True}
    other = rendezvous.wait_event(rendezvous.new_name("t"), ev_id="e3", source="here", timeout=0.05)
    assert other.ok and other.parsed == {"set": False}
    rendezvous.put(name, "obj")
    assert rendezvous.get(name) == "obj" and rendezvous.take(name) == "obj" and rendezvous.take(name) is None
    with pytest.raises(KeyError, match="never made"):
        rendezvous.get(name)
    plain = threading.Event()
    assert rendezvous.event(plain) is plain and rendezvous.event(None) is None
