"""TCP connect probe against an in-process listener living in the node namespace."""

from __future__ import annotations

import socket
import threading

import pytest
from probe_testlib import root_only

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes import tcp_connect

pytestmark = root_only

BANNER_PORT = 2222
SILENT_PORT = 2223
CLOSED_PORT = 2224


def _listener(addr: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(8)
    s.settimeout(0.2)
    return s


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab("tcp", 12)
    # Sockets are created inside the node namespace; serving them from any thread is fine.
    banner = run_in_netns(lab.n, lambda: _listener(lab.n_ip, BANNER_PORT))
    silent = run_in_netns(lab.n, lambda: _listener(lab.n_ip, SILENT_PORT))
    stop = threading.Event()

    def serve(srv: socket.socket, greeting: bytes) -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                if greeting:
                    conn.sendall(greeting)
                conn.settimeout(0.5)
                try:
                    conn.recv(16)
                except OSError:
                    pass

    threads = [threading.Thread(target=serve, args=(banner, b"HELLO-LKT 1.0\r\n"), daemon=True),
               threading.Thread(target=serve, args=(silent, b""), daemon=True)]
    for t in threads:
        t.start()
    yield lab
    stop.set()
    for t in threads:
        t.join(timeout=2)
    banner.close()
    silent.close()


def test_open_with_banner(lab):
    ev = run_in_netns(lab.v, lambda: tcp_connect(lab.n_ip, BANNER_PORT, ev_id="t1", source="v", check="c"))
    assert ev.ok and ev.kind == "tcp" and ev.target == f"{lab.n_ip}:{BANNER_PORT}"
    assert ev.parsed["state"] == "open"
    assert ev.parsed["banner"] == "HELLO-LKT 1.0"
    assert ev.meta["local"].startswith(lab.v_ip + ":")


def test_open_without_banner(lab):
    ev = run_in_netns(lab.v, lambda: tcp_connect(lab.n_ip, SILENT_PORT, ev_id="t2", source="v",
                                                 banner_timeout=0.3))
    assert ev.ok and ev.parsed["state"] == "open" and ev.parsed["banner"] is None


def test_open_no_banner_read(lab):
    ev = run_in_netns(lab.v, lambda: tcp_connect(lab.n_ip, BANNER_PORT, ev_id="t3", source="v",
                                                 read_banner=False))
    assert ev.parsed["state"] == "open" and ev.parsed["banner"] is None


def test_refused(lab):
    ev = run_in_netns(lab.v, lambda: tcp_connect(lab.n_ip, CLOSED_PORT, ev_id="t4", source="v"))
    assert ev.ok and ev.parsed["state"] == "refused"


def test_timeout(lab):
    ev = run_in_netns(lab.v, lambda: tcp_connect(f"10.250.{lab.subnet}.77", 80, ev_id="t5", source="v",
                                                 timeout=0.5))
    assert ev.ok and ev.parsed["state"] == "timeout"
    assert ev.duration < 1.5


def test_unreachable(lab):
    ev = run_in_netns(lab.v, lambda: tcp_connect("10.250.200.1", 80, ev_id="t6", source="v", timeout=0.5))
    assert ev.ok and ev.parsed["state"] == "unreachable"
    assert ev.parsed["errno"] == "ENETUNREACH"


def test_bad_port_is_not_ok(lab):
    ev = run_in_netns(lab.v, lambda: tcp_connect(lab.n_ip, 70000, ev_id="t7", source="v"))
    assert not ev.ok and "out of range" in ev.error
