"""The LAN capture probe on a real bridge: a switch namespace with ``br0`` and two hosts
plugged into it, all in this module's own ``lkt-cap-<pid>-*`` namespaces (veth ends created
directly inside them; nothing touches the host's root namespace). The traffic comes from
in-process sockets created inside the host namespaces; no daemon is started."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes.capture import capture
from labkit.errors import NamespaceSafetyError
from labkit.models.evidence import Evidence

IS_ROOT = os.geteuid() == 0
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not IS_ROOT or shutil.which("ip") is None, reason="needs root and iproute2")]
PREFIX = f"lkt-cap-{os.getpid()}-"
MARKER = "CONFIDENTIEL-zyxwvutsrqpo"
A_IP, B_IP = "10.251.7.1", "10.251.7.2"


def sh(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=30).stdout


@dataclass
class CapLab:
    switch: str = PREFIX + "s"
    a: str = PREFIX + "a"
    b: str = PREFIX + "b"

    def up(self) -> CapLab:
        for ns in (self.switch, self.a, self.b):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")
        for host, ip, port in ((self.a, A_IP, "pa"), (self.b, B_IP, "pb")):
            sh("ip", "link", "add", "name", "eth0", "netns", host, "type", "veth", "peer", "name", port,
               "netns", self.switch)
            sh("ip", "-n", self.switch, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", host, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", host, "link", "set", "eth0", "up")
        return self

    def down(self) -> None:
        for ns in (self.switch, self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def lab() -> Iterator[CapLab]:
    lab = CapLab()
    try:
        yield lab.up()
    finally:
        lab.down()


def _listener(ip: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(4)
    s.settimeout(5)
    return s


def _talk(lab: CapLab, port: int, chunks: list[bytes], greeting: bytes = b"") -> None:
    """A TCP exchange a → b: b greets, a sends ``chunks`` as separate segments."""
    srv = run_in_netns(lab.b, lambda: _listener(B_IP, port))
    got = bytearray()

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            if greeting:
                conn.sendall(greeting)
            conn.settimeout(5)
            while data := conn.recv(65536):
                got.extend(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    def client() -> None:
        with socket.create_connection((B_IP, port), timeout=5) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if greeting:
                c.recv(256)
            for chunk in chunks:
                c.sendall(chunk)
                time.sleep(0.05)  # separate segments

    run_in_netns(lab.a, client, timeout=10)
    t.join(5)
    srv.close()
    assert bytes(got) == b"".join(chunks)


def _capture_while(lab: CapLab, traffic, **kw) -> Evidence:  # type: ignore[no-untyped-def]
    ready, stop = threading.Event(), threading.Event()
    box: dict[str, Evidence] = {}

    def run() -> None:
        box["ev"] = run_in_netns(lab.switch, lambda: capture(
            markers=[MARKER, "ABSENT-MARKER"], ev_id="cap", source="segment:test", ready=ready, stop=stop, **kw),
            timeout=30)

    t = threading.Thread(target=run)
    t.start()
    assert ready.wait(5)
    try:
        traffic()
        time.sleep(0.2)
    finally:
        stop.set()
        t.join(30)
    return box["ev"]


@pytest.mark.parametrize("chunks", [
    [b"hello ", MARKER.encode(), b" bye"],
    [b"head " + MARKER[:9].encode(), MARKER[9:].encode() + b" tail"],  # split across two segments
], ids=["whole", "split"])
def test_sees_bridged_traffic_and_the_marker(lab: CapLab, chunks: list[bytes]) -> None:
    port = 5001 if len(chunks) == 3 else 5002
    ev = _capture_while(lab, lambda: _talk(lab, port, chunks, greeting=b"SSH-2.0-Test_1.0\r\n"))
    assert ev.ok, ev.error
    assert ev.kind == "capture" and ev.parsed["stopped_by"] == "stop"
    flows = {(f["src"], f["dport"]): f for f in ev.parsed["flows"]}
    assert (A_IP, port) in flows and flows[(A_IP, port)]["payload_bytes"] == sum(map(len, chunks))
    back = next(f for f in ev.parsed["flows"] if f["src"] == B_IP and f["sport"] == port)
    assert back["greeting"] == "SSH-2.0-Test_1.0"
    assert ev.parsed["marker_hits"] == [{"marker": 0, "flow": f"tcp {A_IP}:{flows[(A_IP, port)]['sport']} → "
                                                             f"{B_IP}:{port}"}]
    assert MARKER not in json.dumps(ev.model_dump(mode="json"))  # markers are never recorded


def test_no_hit_without_the_marker_and_deadline_bound(lab: CapLab) -> None:
    ev = _capture_while(lab, lambda: _talk(lab, 5003, [b"nothing to see"]), duration_s=30)
    assert ev.ok and ev.parsed["marker_hits"] == []
    t0 = time.monotonic()
    ev = run_in_netns(lab.switch, lambda: capture(markers=[MARKER], ev_id="d", source="s", duration_s=0.5), timeout=10)
    assert ev.ok and ev.parsed["stopped_by"] == "deadline" and time.monotonic() - t0 < 3


def test_max_bytes_bound(lab: CapLab) -> None:
    ev = _capture_while(lab, lambda: _talk(lab, 5004, [b"x" * 1000] * 5), max_bytes=300)
    assert ev.ok and ev.parsed["stopped_by"] == "max_bytes" and ev.parsed["bytes"] >= 300


def test_bridge_is_not_left_promiscuous(lab: CapLab) -> None:
    run_in_netns(lab.switch, lambda: capture(markers=[], ev_id="p", source="s", duration_s=0.2), timeout=10)
    link = json.loads(sh("ip", "-n", lab.switch, "-d", "-j", "link", "show", "br0"))[0]
    assert link["promiscuity"] == 0


def test_bad_bounds_are_evidence_not_a_crash(lab: CapLab) -> None:
    ev = run_in_netns(lab.switch, lambda: capture(markers=[], ev_id="b", source="s", duration_s=0), timeout=10)
    assert not ev.ok and "duration" in (ev.error or "")


def test_refuses_outside_a_lab_namespace() -> None:
    with pytest.raises(NamespaceSafetyError):
        capture(markers=[MARKER], ev_id="x", source="host", duration_s=0.1)


def test_zz_namespaces_removed(lab: CapLab) -> None:
    lab.down()
    left = [ln.split()[0] for ln in sh("ip", "netns", "list").splitlines() if ln.startswith(PREFIX)]
    assert left == []
    addrs = json.loads(sh("ip", "-j", "addr"))
    assert not [a for i in addrs for a in i.get("addr_info", []) if a.get("local", "").startswith("10.251.7.")]
