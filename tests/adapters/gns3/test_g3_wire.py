"""wire.py: the pcap reader (pure), and link faults and captures against the real gns3-server
3.0.6 with the stand-in uBridge.

What moves packets here: the test writes crafted Ethernet frames (ICMP, UDP with a marker) on
the TAP of the cloud node's port, inside the GNS3 host namespace; the stand-in uBridge reads
them from the TAP, forwards them (through its filters) and writes them into the capture file
that gns3-server streams to ``wire.capture``, which hands them to the capture probe's own
decoder. The commands the stand-in received are read from its log."""

from __future__ import annotations

import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from labkit.adapters.gns3 import wire
from labkit.adapters.probes.capture import CaptureDecoder
from tests.adapters.gns3.g4lab import delete_project, provider_stub, server_of, unique

TAP = "gns3tapg4w"


def _header(endian: str = "<", nano: bool = False, linktype: int = 1) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    return struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)


def _record(frame: bytes, sec: int, frac: int, endian: str = "<") -> bytes:
    return struct.pack(endian + "IIII", sec, frac, len(frame), len(frame)) + frame


def test_pcap_reader_both_byte_orders_micro_and_nano_in_any_chunks() -> None:
    frames = [b"\x01" * 60, b"\x02" * 1514, b"\x03" * 42]
    for endian, nano in (("<", False), (">", False), ("<", True), (">", True)):
        data = _header(endian, nano) + b"".join(_record(f, 100 + i, 500, endian) for i, f in enumerate(frames))
        for size in (1, 7, 4096):
            r = wire.PcapReader()
            got = [x for i in range(0, len(data), size) for x in r.feed(data[i:i + size])]
            assert [f for _, f in got] == frames
            assert got[0][0] == pytest.approx(100 + 500 * (1e-9 if nano else 1e-6))
            assert r.header == {"version": "2.4", "snaplen": 65535, "linktype": 1}


def test_pcap_reader_refuses_what_is_not_an_ethernet_pcap() -> None:
    with pytest.raises(wire.PcapError, match="not a pcap"):
        wire.PcapReader().feed(b"GIF89a" + b"\x00" * 30)
    with pytest.raises(wire.PcapError, match="link type 113"):
        wire.PcapReader().feed(_header(linktype=113))
    with pytest.raises(wire.PcapError, match="corrupt"):
        wire.PcapReader().feed(_header() + struct.pack("<IIII", 0, 0, 1 << 20, 1 << 20))
    assert wire.PcapReader().feed(_header()[:10]) == []  # an incomplete header: wait for more


def _csum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(proto: int, payload: bytes, src: str = "10.8.0.1", dst: str = "10.8.0.2") -> bytes:
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 7, 0, 64, proto, 0, socket.inet_aton(src),
                      socket.inet_aton(dst))
    iph = iph[:10] + struct.pack("!H", _csum(iph)) + iph[12:]
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + iph + payload


@pytest.fixture(scope="module")
def wired(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A started project: cloud ``c`` (one TAP port) -- switch -- VPCS ``pc1``."""
    server, stopper = server_of(request)
    prov = provider_stub(server, tmp_path_factory.mktemp("g4wire"), None)
    client = prov.client
    pid = ""
    try:
        pid = str(client.post("/projects", {"name": unique("g4w")})["project_id"])
        base = f"/projects/{pid}"
        sw = client.post(f"{base}/nodes", {"name": "sw", "node_type": "ethernet_switch", "compute_id": "local"})
        pc = client.post(f"{base}/nodes", {"name": "pc1", "node_type": "vpcs", "compute_id": "local",
                                           "properties": {"startup_script": "ip 10.8.0.2/24\n"}})
        cloud = client.post(f"{base}/nodes", {"name": "c", "node_type": "cloud", "compute_id": "local", "properties": {
            "ports_mapping": [{"interface": TAP, "name": TAP, "port_number": 0, "type": "tap"}]}})

        def link(a: dict[str, Any], b: dict[str, Any], bport: int) -> str:
            return str(client.post(f"{base}/links", {"nodes": [
                {"node_id": a["node_id"], "adapter_number": 0, "port_number": 0},
                {"node_id": b["node_id"], "adapter_number": 0, "port_number": bport}]})["link_id"])

        ids = {"cloud": link(cloud, sw, 0), "pc1": link(pc, sw, 1)}
        client.post(f"{base}/nodes/start", timeout=60)
        yield {"server": server, "client": client, "pid": pid, "links": ids, "cloud_id": cloud["node_id"],
               "pc_id": pc["node_id"]}
    finally:
        if pid:
            delete_project(client, pid)
        client.close()
        if stopper:
            stopper()


def _send_on_tap(server: Any, frames: list[bytes]) -> None:
    from tests.adapters.gns3.g3server import in_netns

    def send() -> None:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        try:
            s.bind((TAP, 0))
            for f in frames:
                s.send(f)
                time.sleep(0.05)
        finally:
            s.close()

    in_netns(server.namespace, send, timeout=15)


def test_capture_streams_what_the_stand_in_writes_and_the_shared_decoder_reads_it(wired: dict[str, Any]) -> None:
    server, client, pid = wired["server"], wired["client"], wired["pid"]
    lid = wired["links"]["cloud"]
    marker = f"LABKIT-MARK-{secrets.token_hex(6)}"
    udp = struct.pack("!HHHH", 40000, 5000, 8 + len(marker) + 4, 0) + b"abcd" + marker.encode()
    icmp = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"x" * 16
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    frames = [_ipv4(17, udp)] * 3 + [_ipv4(1, icmp)] * 2
    dec = CaptureDecoder([marker, "never-there"], 1 << 20)
    ready, stop = threading.Event(), threading.Event()
    box: list[wire.CaptureRun] = []
    t = threading.Thread(target=lambda: box.append(wire.capture(
        client, pid, [lid], dec.feed, duration_s=20, max_bytes=1 << 20, ready=ready, stop=stop, label="lkt")))
    t.start()
    assert ready.wait(20)
    _send_on_tap(server, frames)
    time.sleep(1.5)
    stop.set()
    t.join(30)
    (run,) = box
    assert run.stopped_by == "stop" and run.frames >= 5 and not run.stop_errors
    parsed = dec.parsed(run.stopped_by)
    flows = [f for f in parsed["flows"] if f["dport"] == 5000]
    assert [(f["src"], f["dst"], f["packets"]) for f in flows] == [("10.8.0.1", "10.8.0.2", 3)]
    assert parsed["ip_other"].get("1") == 2
    assert [h["marker"] for h in parsed["marker_hits"]] == [0]
    cloud_bridge = f"{wired['cloud_id']}-0"
    log = server.ubridge_log()
    (start,) = [line for line in log if line.startswith(f"bridge start_capture {cloud_bridge} ")]
    assert run.files[lid] in start
    assert f"bridge stop_capture {cloud_bridge}" in log
    assert client.get(f"/projects/{pid}/links/{lid}")["capturing"] is False


def test_capture_respects_its_byte_bound_and_refuses_a_link_without_a_running_node(wired: dict[str, Any]) -> None:
    server, client, pid = wired["server"], wired["client"], wired["pid"]
    lid = wired["links"]["cloud"]
    dec = CaptureDecoder([], 300)  # two 150-byte frames reach the bound
    ready = threading.Event()
    box: list[wire.CaptureRun] = []
    t = threading.Thread(target=lambda: box.append(wire.capture(client, pid, [lid], dec.feed, duration_s=20,
                                                                max_bytes=300, ready=ready)))
    t.start()
    assert ready.wait(20)
    _send_on_tap(server, [_ipv4(17, struct.pack("!HHHH", 1, 2, 8 + 108, 0) + b"y" * 108)] * 4)
    t.join(30)
    (run,) = box
    # the bound stops it at the frame that reaches 300 bytes: before the last of the four 150-byte
    # frames (the TAP's own IPv6 chatter, if any, counts too)
    assert run.stopped_by == "limit" and 300 <= dec.total < 300 + 150 and run.elapsed < 15, (run, dec.total)
    with pytest.raises(Exception, match="no running device|not found|404"):
        wire.capture(client, pid, ["00000000-0000-0000-0000-000000000000"], dec.feed, duration_s=2, max_bytes=10)


def test_suspend_and_filters_reach_the_right_bridge(wired: dict[str, Any]) -> None:
    server, client, pid = wired["server"], wired["client"], wired["pid"]
    lid, bridge = wired["links"]["pc1"], f"VPCS-{wired['pc_id']}"

    def lines(needle: str) -> int:
        return sum(1 for line in server.ubridge_log() if line.startswith(f"bridge add_packet_filter {bridge} ")
                   and needle in line)

    n_drop, n_loss, n_neutral = lines("frequency_drop -1"), lines("packet_loss 100"), lines('bpf "less 1"')
    got = wire.set_suspend(client, pid, lid, True)
    assert got["suspend"] is True and lines("frequency_drop -1") == n_drop + 1
    got = wire.set_suspend(client, pid, lid, False)
    assert got["suspend"] is False and got["labkit_reset"] is False  # no qemu end: no reset
    assert lines('bpf "less 1"') == n_neutral + 1  # the drop is replaced, not left in place
    got = wire.set_drop(client, pid, lid, True)
    assert got["filters"] == {"packet_loss": [100]} and lines("packet_loss 100") == n_loss + 1
    got = wire.set_drop(client, pid, lid, False)
    assert got["filters"] == wire.NEUTRAL and lines('bpf "less 1"') == n_neutral + 2
    other = f"{wired['cloud_id']}-0"  # the cloud's link was never touched
    assert not any(line.startswith(f"bridge add_packet_filter {other} ") for line in server.ubridge_log())


def test_a_capture_ended_by_gns3_is_started_again_and_says_so(wired: dict[str, Any]) -> None:
    """GNS3 ends a link's stream when the capture stops on the compute (a link reset after a
    resume does that to a qemu link on 3.0.6); the capture starts it again, records the restart,
    and frames sent after it are captured. Here the stop comes from the API, mid-capture."""
    server, client, pid = wired["server"], wired["client"], wired["pid"]
    lid = wired["links"]["cloud"]
    marker = f"LABKIT-MARK-{secrets.token_hex(6)}"
    udp = struct.pack("!HHHH", 40001, 5001, 8 + len(marker), 0) + marker.encode()
    dec = CaptureDecoder([marker], 1 << 20)
    ready, stop = threading.Event(), threading.Event()
    box: list[wire.CaptureRun] = []
    t = threading.Thread(target=lambda: box.append(wire.capture(client, pid, [lid], dec.feed, duration_s=20,
                                                                max_bytes=1 << 20, ready=ready, stop=stop)))
    t.start()
    assert ready.wait(20)
    starts = sum(1 for line in server.ubridge_log() if line.startswith("bridge start_capture"))
    client.post(f"/projects/{pid}/links/{lid}/capture/stop")  # ended under the capture's feet
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(
            1 for line in server.ubridge_log() if line.startswith("bridge start_capture")) == starts:
        time.sleep(0.1)
    time.sleep(0.5)
    _send_on_tap(server, [_ipv4(17, udp)] * 2)
    time.sleep(1.5)
    stop.set()
    t.join(30)
    (run,) = box
    assert run.stopped_by == "stop" and len(run.restarts) == 1 and run.restarts[0]["link"] == lid
    assert run.files[lid].endswith("-r1.pcap")
    assert [h["marker"] for h in dec.parsed("stop")["marker_hits"]] == [0]
