"""The VPN probes and the capture probe together, in namespaces of this test's own
(``lkt-vpn-<pid>-*``): a switch namespace with a bridge ``br0`` and two hosts on it. A UDP
marker sent from one host to the other is counted where it arrives and seen by the capture;
an OpenVPN session opening to a port where nothing listens gets no TLS answer, nor does the
grader's OpenVPN client; a process holding a TUN device in a test namespace is found from
the host's /proc and killed by pid. Nothing is added to the host's root namespace;
teardown deletes exactly these namespaces."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes import capture, vpn

pytestmark = [pytest.mark.root]

STEM = f"lkt-vpn-{os.getpid()}"
SW, A, B = f"{STEM}-sw", f"{STEM}-a", f"{STEM}-b"
A_IP, B_IP = "10.251.7.1", "10.251.7.2"


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def lan() -> Iterator[None]:
    made: list[str] = []
    try:
        for ns in (SW, A, B):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("-n", SW, "link", "add", "br0", "type", "bridge")
        _ip("-n", SW, "link", "set", "br0", "up")
        for i, (ns, addr) in enumerate(((A, A_IP), (B, B_IP))):
            _ip("link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", f"p{i}", "netns", SW)
            _ip("-n", SW, "link", "set", f"p{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        assert not [p for p in Path("/run/netns").glob(f"{STEM}-*")]


def test_marker_is_received_and_seen_in_clear_by_the_capture(lan: None) -> None:
    marker = "LABKIT-MARK-test-0001"
    ready, rx_ready, stop = threading.Event(), threading.Event(), threading.Event()
    box: dict[str, object] = {}

    def cap() -> None:
        box["cap"] = run_in_netns(SW, lambda: capture.capture(markers=[marker], ev_id="c", source="sw",
                                                               duration_s=10, ready=ready, stop=stop), timeout=15)

    def rx() -> None:
        box["rx"] = run_in_netns(B, lambda: vpn.udp_receive(45678, marker=marker, ev_id="r", source="b",
                                                             duration_s=8, expect=3, ready=rx_ready), timeout=15)

    threads = [threading.Thread(target=cap), threading.Thread(target=rx)]
    for t in threads:
        t.start()
    assert ready.wait(5) and rx_ready.wait(5)
    sent = run_in_netns(A, lambda: vpn.udp_send(B_IP, 45678, marker=marker, ev_id="s", source="a", count=3),
                        timeout=10)
    for t in threads[1:]:
        t.join(10)
    stop.set()
    threads[0].join(10)
    assert sent.ok and sent.parsed["sent"] == 3 and marker not in sent.raw
    got = box["rx"]
    assert got.ok and got.parsed["received"] == 3 and got.parsed["senders"] == [A_IP]  # type: ignore[attr-defined]
    seen = box["cap"]
    assert seen.ok and seen.parsed["stopped_by"] == "stop"  # type: ignore[attr-defined]
    assert seen.parsed["marker_hits"] and marker not in seen.raw  # type: ignore[attr-defined]
    flows = {(f["proto"], f["dport"]) for f in seen.parsed["flows"]}  # type: ignore[attr-defined]
    assert ("udp", 45678) in flows


def test_capture_without_the_marker_sees_no_hit(lan: None) -> None:
    stop = threading.Event()
    ready = threading.Event()
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.update(cap=run_in_netns(SW, lambda: capture.capture(
        markers=["LABKIT-MARK-never-sent"], ev_id="c", source="sw", duration_s=5, ready=ready, stop=stop),
        timeout=10)))
    t.start()
    assert ready.wait(5)
    run_in_netns(A, lambda: vpn.udp_send(B_IP, 45679, marker="something else", ev_id="s", source="a", count=2),
                 timeout=10)
    stop.set()
    t.join(10)
    seen = box["cap"]
    assert seen.ok and seen.parsed["marker_hits"] == [] and seen.parsed["frames"] >= 2  # type: ignore[attr-defined]


def test_openvpn_hard_reset_to_a_closed_port_gets_no_tls_answer(lan: None) -> None:
    ev = run_in_netns(A, lambda: vpn.openvpn_hard_reset(B_IP, 1194, ev_id="o", source="a", timeout=0.5, tries=1),
                      timeout=10)
    assert ev.ok and ev.parsed["answered"] is False and ev.parsed["port_unreachable"] is True


def test_probes_refuse_to_run_outside_a_lab_namespace() -> None:
    from labkit.errors import NamespaceSafetyError

    with pytest.raises(NamespaceSafetyError):
        vpn.udp_send(B_IP, 9, marker="x", ev_id="s", source="host")
    with pytest.raises(NamespaceSafetyError):
        vpn.openvpn_impostor(B_IP, 1194, ca_pem="", ev_id="i", source="host")
    with pytest.raises(NamespaceSafetyError):
        vpn.route_oif(B_IP, ev_id="r", source="host")
    with pytest.raises(NamespaceSafetyError):
        vpn.run_bounded_ip(["route", "replace", "10.251.9.0/24", "dev", "lo"])


def _pki(d: Path) -> tuple[str, str, str]:
    """A CA, a client certificate it signed, and an unrelated CA (PEM texts)."""
    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], cwd=d, check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other"):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "1", "-subj", f"/CN={ca}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("req", *ec, "-keyout", "c.key", "-out", "c.csr", "-subj", "/CN=laptop")
    (d / "c.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    run("x509", "-req", "-in", "c.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
        "-extfile", "c.ext", "-out", "c.crt")
    return (d / "ca.crt").read_text(), (d / "c.crt").read_text(), (d / "other.crt").read_text()


def test_cert_issued_by_tells_the_signing_ca_from_an_unrelated_one(tmp_path: Path) -> None:
    ca, cert, other = _pki(tmp_path)
    assert vpn.cert_issued_by(cert, ca)[0] is True
    ok, line = vpn.cert_issued_by(cert, other)
    assert ok is False and line


def test_grader_client_to_a_closed_port_sees_no_server_and_is_killed(lan: None, tmp_path: Path) -> None:
    ca, _, _ = _pki(tmp_path)
    client = vpn.OpenvpnClient()
    ev = run_in_netns(A, lambda: client.start(B_IP, 1194, ca_pem=ca, cert_pem=None, key_pem=None, ev_id="c",
                                              source="a", wait_s=2), timeout=30)
    assert ev.ok and ev.parsed["server_answered"] is False and ev.parsed["accepted"] is False
    assert client.proc is not None and client.proc.poll() is not None  # ended, by its pid
    assert client.dir is None  # its folder (the fresh key) is gone


def test_route_oif_reads_the_kernel_route(lan: None) -> None:
    ev = run_in_netns(A, lambda: vpn.route_oif(B_IP, ev_id="r", source="a"), timeout=10)
    assert ev.ok and ev.parsed["oif"] == "eth0"
    ev = run_in_netns(A, lambda: vpn.route_oif("10.99.0.1", ev_id="r", source="a"), timeout=10)
    assert ev.ok and ev.parsed["oif"] is None
    # as forwarded from B's side (A does not forward, the kernel says so: no route, no oif)
    ev = run_in_netns(A, lambda: vpn.route_oif("10.99.0.1", ev_id="r", source="a", from_addr=B_IP), timeout=10)
    assert ev.ok and ev.parsed["oif"] is None and ev.parsed["iif"] == "eth0"


HOLD_TUN = """
import fcntl, os, struct, sys, time
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"lkt0", 0x0001 | 0x1000))  # TUNSETIFF, IFF_TUN | IFF_NO_PI
print("ready", flush=True)
time.sleep(60)
"""


def test_tun_holders_are_found_from_the_host_proc_and_killed_by_pid(lan: None) -> None:
    init = subprocess.Popen(["ip", "netns", "exec", A, "sleep", "60"])
    holder = subprocess.Popen(["ip", "netns", "exec", A, "python3", "-c", HOLD_TUN], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        found = vpn.tun_holders(init.pid)
        assert [(h["pid"], h["iff"]) for h in found] == [(holder.pid, ["lkt0"])]
        res = vpn.kill_pids([holder.pid], wait_s=5)
        assert res == {"killed": [holder.pid], "gone": True, "errors": []}
        assert holder.wait(5) == -9
        assert vpn.tun_holders(init.pid) == []
    finally:
        for p in (holder, init):
            if p.poll() is None:
                p.kill()
            p.wait(5)


def _icmp_echo_with(payload: bytes) -> None:
    """One ICMP echo request carrying ``payload`` from the calling thread's namespace."""
    import socket
    import struct

    header = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1)
    data = header + payload + b"\0" * (len(payload) % 2)
    csum = sum(struct.unpack(f"!{len(data) // 2}H", data))
    csum = (csum >> 16) + (csum & 0xFFFF)
    csum = ~(csum + (csum >> 16)) & 0xFFFF
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.sendto(struct.pack("!BBHHH", 8, 0, csum, 0x4242, 1) + payload, (B_IP, 0))


def test_capture_counts_other_ip_protocols_and_finds_markers_in_them(lan: None) -> None:
    marker = "LABKIT-MARK-icmp-0002"
    stop, ready = threading.Event(), threading.Event()
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.update(cap=run_in_netns(SW, lambda: capture.capture(
        markers=[marker], ev_id="c", source="sw", duration_s=5, ready=ready, stop=stop), timeout=10)))
    t.start()
    assert ready.wait(5)
    run_in_netns(A, lambda: _icmp_echo_with(marker.encode()), timeout=10)
    time.sleep(0.3)
    stop.set()
    t.join(10)
    seen = box["cap"]
    assert seen.ok and seen.parsed["ip_other"].get("1", 0) >= 1  # type: ignore[attr-defined]
    assert any(h["flow"].startswith("ip-proto-1 ") for h in seen.parsed["marker_hits"])  # type: ignore[attr-defined]


def _by_name(ns: str, probe: str, *args: object, **kwargs: object) -> Any:
    """Run a registered probe as the grader's ground does: by name, with JSON arguments."""
    from labkit.adapters.probes import registry
    from labkit.models.probe import ProbeCall

    call = ProbeCall.model_validate_json(ProbeCall(probe=probe, args=list(args), kwargs=kwargs).model_dump_json())
    return run_in_netns(ns, registry.resolve(call, "x"), timeout=30)


def test_sender_waits_for_named_signals_then_stops_the_capture(lan: None) -> None:
    """The wire-confidentiality sender as data: it sends once the capture and the receiver
    signal (by name) that they listen, and stops the capture one second after."""
    from labkit.adapters.probes import rendezvous

    marker = "LABKIT-MARK-test-0002"
    cap_ready, rx_ready, stop = (rendezvous.new_name(p) for p in ("cap", "rx", "stop"))
    box: dict[str, Any] = {}
    threads = [
        threading.Thread(target=lambda: box.update(cap=_by_name(SW, "capture.capture", markers=[marker], source="sw",
                                                                duration_s=15, ready=cap_ready, stop=stop))),
        threading.Thread(target=lambda: box.update(rx=_by_name(B, "vpn.udp_receive", 45679, marker=marker,
                                                               source="b", duration_s=10, expect=3, ready=rx_ready))),
    ]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    sent = _by_name(A, "vpn.udp_send_when_ready", B_IP, 45679, marker=marker, source="a", count=3,
                    wait_for=[cap_ready, rx_ready], stop=stop, ready_wait_s=5)
    for t in threads:
        t.join(20)
    assert sent.ok and sent.parsed["sent"] == 3
    assert box["rx"].parsed["received"] == 3
    assert box["cap"].parsed["stopped_by"] == "stop" and time.monotonic() - t0 < 10
    assert box["cap"].parsed["marker_hits"]
    # nothing ever signals: the sender gives up, and still stops the capture
    never, stop2 = rendezvous.new_name("never"), rendezvous.new_name("stop")
    with pytest.raises(TimeoutError, match="not ready"):
        _by_name(A, "vpn.udp_send_when_ready", B_IP, 45679, marker=marker, source="a", wait_for=[never],
                 stop=stop2, ready_wait_s=0.2)
    assert rendezvous.event(stop2).is_set()  # type: ignore[union-attr]


def test_grader_client_by_handle_is_started_then_stopped(lan: None, tmp_path: Path) -> None:
    from labkit.adapters.probes import rendezvous

    ca, _, _ = _pki(tmp_path)
    handle = rendezvous.new_name("openvpn")
    ev = _by_name(A, "vpn.client_start", B_IP, 1194, handle=handle, ca_pem=ca, cert_pem=None, key_pem=None,
                  source="a", wait_s=2)
    assert ev.ok and ev.parsed["accepted"] is False
    client = rendezvous.get(handle)
    assert isinstance(client, vpn.OpenvpnClient)
    assert _by_name(B, "vpn.client_stop", handle, source="b").parsed == {"stopped": True}
    assert client.proc is not None and client.proc.poll() is not None and client.dir is None
    assert _by_name(B, "vpn.client_stop", handle, source="b").parsed == {"stopped": False}
