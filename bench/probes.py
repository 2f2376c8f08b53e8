"""Probe cost, side by side in one run: an ICMP echo (answered by whoever owns the address)
against the grader-to-grader nonce echo (answered only by the far probe, HMAC-verified),
between two namespaces of this script's own (``lkb-probe-<pid>-a`` / ``-b``, joined by one
veth pair created inside them; nothing in the root namespace). Bounded: ROUNDS exchanges of
each kind, interleaved so that machine noise hits both alike. Prints JSON and writes
out/bench-probes.json. Asserts nothing about time.

    python bench/probes.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes import ping
from labkit.adapters.probes.echo import EchoPair

PROJECT = Path(__file__).resolve().parents[1]
A, B = f"lkb-probe-{os.getpid()}-a", f"lkb-probe-{os.getpid()}-b"
A_IP, B_IP = "10.251.0.1", "10.251.0.2"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def up() -> None:
    for ns in (A, B):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "name", "eth0", "netns", A, "type", "veth", "peer", "name", "eth0", "netns", B)
    for ns, ip in ((A, A_IP), (B, B_IP)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")


def down() -> None:
    for ns in (A, B):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_ms": round(statistics.median(xs), 3), "p95_ms": round(xs[int(0.95 * (len(xs) - 1))], 3),
            "max_ms": round(xs[-1], 3)}


def main() -> None:
    rounds = max(1, min(int(sys.argv[1]) if len(sys.argv) > 1 else 200, 2000))
    up()
    try:
        icmp_ms: list[float] = []
        echo_ms: list[float] = []  # one whole call: open both sockets, exchange, close
        for i in range(rounds):
            t0 = time.perf_counter()
            ev = run_in_netns(A, lambda i=i: ping(B_IP, ev_id=f"p{i}", source="a", check="bench", count=1,
                                              interval=0.01, timeout=1.0))
            icmp_ms.append((time.perf_counter() - t0) * 1000)
            assert ev.parsed["reachable"], ev.error
            t0 = time.perf_counter()
            with EchoPair.open(lambda where, fn: run_in_netns(where, fn, 5), A, B, B_IP) as pair:
                res = pair.exchange(count=1, timeout=1.0)
            echo_ms.append((time.perf_counter() - t0) * 1000)
            assert res["verified"] == 1, res
        out = {"rounds": rounds, "icmp_ping_count1": summary(icmp_ms), "nonce_echo_count1": summary(echo_ms),
               "cpus": os.cpu_count()}
    finally:
        down()
    text = json.dumps(out, indent=2)
    print(text)
    (PROJECT / "out").mkdir(exist_ok=True)
    (PROJECT / "out" / "bench-probes.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
