"""What confinement costs, side by side in one run: a command in a node through labkit's
confined entry (``enter.py`` on the host's Python: setns, seccomp, bounding set, fork) and
through a plain ``nsenter`` into the same namespaces (how labkit entered nodes before issue
9), ROUNDS of each, interleaved so that machine noise hits both alike; plus the time to
bring up and down one routing-multisite instance (6 nodes on the nodes' image). Bounded,
cleans up after itself (a private LABKIT_HOME and run dir, the instance is brought down
also on error). Prints JSON and writes out/bench-enter.json. Asserts nothing about time.

    python bench/enter.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"median_ms": round(statistics.median(s) * 1000, 2), "p95_ms": round(s[int(len(s) * 0.95) - 1] * 1000, 2),
            "min_ms": round(s[0] * 1000, 2)}


def main(rounds: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="labkit-bench-enter-"))
    os.environ.update(LABKIT_HOME=str(tmp / "home"), LABKIT_RUN_DIR=f"/run/labkit-bench-enter-{os.getpid()}",
                      LABKIT_PROJECT=str(PROJECT))
    from labkit.adapters.netns.provider import NODE_ENV, NetnsProvider
    from labkit.settings import load_settings
    from labkit.usecases.lifecycle import Context, down, up

    ctx = Context(load_settings())
    name = f"bent{os.getpid() % 100000}"
    t0 = time.monotonic()
    up(ctx, "routing-multisite", instance=name, seed=11)
    up_s = time.monotonic() - t0
    try:
        prov = NetnsProvider(ctx.settings)
        ns = prov._ns_files(name, "r-hq")
        confined = [*prov.node_enter_argv(name, "r-hq"), "true"]
        plain = ["nsenter", f"--net={ns.net}", f"--mount={ns.mnt}", f"--uts={ns.uts}", f"--ipc={ns.ipc}",
                 f"--pid={ns.pid}", "--wd=/", "true"]
        times: dict[str, list[float]] = {"confined": [], "plain_nsenter": []}
        for _ in range(rounds):
            for label, argv in (("confined", confined), ("plain_nsenter", plain)):
                t = time.perf_counter()
                subprocess.run(argv, check=True, env=NODE_ENV, capture_output=True, timeout=30)
                times[label].append(time.perf_counter() - t)
    finally:
        t0 = time.monotonic()
        down(ctx, name)
        down_s = time.monotonic() - t0
    result = {"rounds": rounds, "exec_true_in_node": {k: _ms(v) for k, v in times.items()},
              "routing_up_s": round(up_s, 2), "routing_down_s": round(down_s, 2)}
    out = PROJECT / "out" / "bench-enter.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100), indent=2))
