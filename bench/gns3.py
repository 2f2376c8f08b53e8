"""Benchmark of the GNS3 provider against the REAL gns3-server 3.0.6 (GPL, test-only: run by
tests/adapters/gns3/g3server.py in its own network namespace from the venv of
scripts/gns3-venv.sh, with the project's stand-in uBridge/Dynamips/VPCS): ``up`` and ``down``
of one lab, and of a cohort of N (default 10), side by side: wall time and the API requests
labkit made (total, and by kind).

The lab is the tests' g3demo (topology two-sites: 2 routers from the harness's QEMU template,
2 VPCS workstations, 2 LAN segments, a WAN link; a candidate account per instance). No guest
OS boots (stand-ins): the figures are labkit's own work and GNS3's, not a guest's boot.

Uses private LABKIT_HOMEs in a temporary folder; everything it makes is brought down, also
on error; the server is stopped (namespace and scratch removed) at the end.

    python bench/gns3.py              # one lab + a cohort of 10
    python bench/gns3.py -n 20 --parallel 8 --json
    python bench/gns3.py --port-lock both   # the cohort with the server's port lock, then without

``--port-lock both`` measures what the provider's port lock (one UDP-port-allocating call at a
time per server, see adapters/gns3/provider.py) costs: the same cohort up and down with it and
with it made a no-op, one after the other in one run, with the seats that came up and the
UDP binds the stand-ins could not make (a port gns3-server gave out twice).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
from labkit.adapters.gns3.client import Gns3Client  # noqa: E402
from labkit.adapters.gns3.provider import Gns3Provider  # noqa: E402
from labkit.usecases import cohort as cohorts  # noqa: E402
from labkit.usecases import lifecycle  # noqa: E402
from tests.adapters.gns3.conftest import Gns3TestServer  # noqa: E402
from tests.adapters.gns3.g2lab import LAB_ID, admin_client, ensure_templates, make_ctx  # noqa: E402
from tests.adapters.gns3.g3server import G3Server, venv_dir  # noqa: E402

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LOG: list[tuple[str, str]] = []
_LOG_LOCK = threading.Lock()


def _count_requests() -> None:
    """Every request of every Gns3Client of this process is logged (method, path)."""
    real = Gns3Client._send

    def send(self: Gns3Client, method: str, path: str, **kw: Any) -> Any:
        with _LOG_LOCK:
            _LOG.append((method, path))
        return real(self, method, path, **kw)

    Gns3Client._send = send  # type: ignore[method-assign]
    real_login = Gns3Client._login

    def login(self: Gns3Client) -> str:
        with _LOG_LOCK:
            _LOG.append(("POST", "/access/users/authenticate"))
        return real_login(self)

    Gns3Client._login = login  # type: ignore[method-assign]


def kind(method: str, path: str) -> str:
    p = _UUID.sub("ID", path)
    if p.endswith("/authenticate"):
        return "login"
    if p.startswith("/access") or p.startswith("/pools"):
        return "access+pool"
    if "/snapshots" in p:
        return "snapshot"
    if "/links" in p:
        return "links"
    if p.endswith("/nodes/start") or p.endswith("/nodes/stop"):
        return "start/stop"
    if method == "POST" and ("/templates/ID" in p or p.endswith("/nodes")):
        return "node create"
    if method == "PUT" and "/nodes/" in p:
        return "node rename/ports"
    if method == "GET" and p.endswith("/nodes"):
        return "node status"
    if method == "DELETE" and p.startswith("/projects/ID"):
        return "project delete"
    return "lists+other"


def _no_lock(self: Any, what: str) -> Any:
    """The provider's port lock made a no-op (``--port-lock off``)."""
    return contextlib.nullcontext()


def measure(what: str, fn: Any) -> dict[str, Any]:
    with _LOG_LOCK:
        _LOG.clear()
    t0 = time.monotonic()
    result = fn()
    wall = time.monotonic() - t0
    with _LOG_LOCK:
        reqs = list(_LOG)
    by = collections.Counter(kind(m, p) for m, p in reqs)
    return {"what": what, "wall_s": round(wall, 2), "requests": len(reqs), "by_kind": dict(sorted(by.items())),
            "result": result}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--seats", type=int, default=10, help="cohort size (default 10)")
    ap.add_argument("--parallel", type=int, default=5, help="seats brought up at once (default 5)")
    ap.add_argument("--api-parallel", type=int, default=4, help="gns3.toml parallel (default 4)")
    ap.add_argument("--port-lock", choices=("on", "off", "both"), default="on",
                    help="the cohort with the provider's port lock, without it, or both in turn (default on)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/gns3.py needs root (the GNS3 host is a network namespace it makes).", file=sys.stderr)
        return 1
    _count_requests()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="labkit-bench-gns3-") as tmp, G3Server(venv_dir()) as raw:
        server = Gns3TestServer(raw)
        server.make_templates()  # the harness's role templates: QEMU (stand-in qemu) when shipped
        with admin_client(server) as admin:
            templates = ensure_templates(admin, server)
        ctx = make_ctx(server, Path(tmp), templates, parallel=args.api_parallel)
        os.environ["LABKIT_PROJECT"] = str(ctx.settings.project)
        roster = Path(tmp) / "roster.txt"
        roster.write_text("".join(f"Candidate {i:02d}\n" for i in range(1, args.seats + 1)), encoding="utf-8")
        try:
            rows.append(measure("up (1 lab)", lambda: lifecycle.up(ctx, LAB_ID, instance="bench-one", seed=1,
                                                                  provider="gns3", candidate="Ada").phase))
            rows.append(measure("down (1 lab)", lambda: len(lifecycle.down(ctx, "bench-one"))))
            locked = Gns3Provider.allocating_ports
            for mode in (("on", "off") if args.port_lock == "both" else (args.port_lock,)):
                if mode == "off":
                    Gns3Provider.allocating_ports = _no_lock  # type: ignore[method-assign,assignment]
                binds = len(raw.binds_log())
                tag = "" if args.port_lock == "on" else f", lock {mode}"
                try:
                    rows.append(measure(f"cohort up ({args.seats}{tag})", lambda: collections.Counter(
                        s.status for s in cohorts.cohort_up(ctx, LAB_ID, roster, name="bench", seed=2,
                                                            parallel=args.parallel, provider="gns3").seats)))
                    rows[-1]["port_taken"] = len(raw.binds_log()) - binds
                    rows.append(measure(f"cohort down ({args.seats}{tag})", lambda: collections.Counter(
                        s.status for s in cohorts.cohort_down(ctx, "bench").seats)))
                finally:
                    Gns3Provider.allocating_ports = locked  # type: ignore[method-assign]
        finally:
            for name in ctx.store.names():
                lifecycle.down(ctx, name)
    for r in rows:
        r["result"] = dict(r["result"]) if isinstance(r["result"], collections.Counter) else r["result"]
    meta = {"host": platform.node(), "cpus": os.cpu_count(), "seats": args.seats, "parallel": args.parallel,
            "api_parallel": args.api_parallel,
            "gns3_server": f"3.0.6 with stand-ins, routers {server.template_type}, workstations vpcs",
            "templates": templates}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=1))
        return 0
    print(f"GNS3 provider bench: {meta['gns3_server']}, {meta['cpus']} CPUs, cohort of {args.seats} "
          f"({args.parallel} seats at once, gns3.toml parallel = {args.api_parallel})")
    kinds_all = sorted({k for r in rows for k in r["by_kind"]})
    head = f"{'':30}{'wall s':>8}{'requests':>10}{'req/seat':>10}  " + "  ".join(f"{k:>12}" for k in kinds_all)
    print(head)
    for r in rows:
        per = 1 if "1 lab" in r["what"] else args.seats
        taken = f", ports taken: {r['port_taken']}" if "port_taken" in r else ""
        print(f"{r['what']:30}{r['wall_s']:>8.2f}{r['requests']:>10}{r['requests'] / per:>10.1f}  "
              + "  ".join(f"{r['by_kind'].get(k, 0):>12}" for k in kinds_all) + f"   -> {r['result']}{taken}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
