"""Network devices driven through their CLI (netmiko, config sets) against Linux routers driven
by Ansible playbooks, side by side in one run on the netns provider:

- ``routing-multisite`` (FRR on Linux nodes, the reference and a variant as Ansible playbooks)
- ``routing-multisite-devices`` (the same FRR routers as devices: vtysh over SSH with netmiko,
  the reference and the variant as config sets)

Both instances are up at once; each step runs for one lab then the other (so machine noise
hits both alike): ``solve`` of the reference (push + wait for convergence), ``solve`` of the
same reference again (the push alone, nothing changes), the variant ``default-timers``, and
one grading each. Bounded: two instances, four solves and one grading each. Uses its own
LABKIT_HOME and run dir, brings its instances down (also on error), asserts nothing about time.
Prints a table and writes out/bench-devices.json.

    python bench/devices.py
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HOME = tempfile.mkdtemp(prefix="labkit-bench-devices-", dir="/var/tmp")
os.environ["LABKIT_HOME"] = _HOME
os.environ.setdefault("LABKIT_RUN_DIR", f"/run/labkit-bench-devices-{os.getpid()}")

from labkit.settings import load_settings  # noqa: E402
from labkit.usecases.grade import grade  # noqa: E402
from labkit.usecases.lifecycle import Context, down, up  # noqa: E402
from labkit.usecases.solve import solve  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
LABS = {"ansible": ("routing-multisite", "bda"), "netmiko": ("routing-multisite-devices", "bdn")}
VARIANT = "default-timers"
SEED = 21


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.monotonic()
    out = fn()
    return round(time.monotonic() - t0, 2), out


def main() -> int:
    ctx = Context(load_settings())
    rows: dict[str, dict[str, Any]] = {k: {"lab": lab} for k, (lab, _) in LABS.items()}
    made: list[str] = []
    try:
        for key, (lab, name) in LABS.items():
            rows[key]["up_s"], _ = _timed(lambda lab=lab, name=name: up(ctx, lab, instance=name, seed=SEED))
            made.append(name)
        steps = [("solve_reference", None), ("solve_reference_again", None), (f"solve_{VARIANT}", VARIANT)]
        for step, variant in steps:
            for key, (_lab, name) in LABS.items():
                took, out = _timed(lambda name=name, variant=variant: solve(ctx, name, variant=variant, wait=60))
                rows[key][f"{step}_s"] = took
                rows[key][f"{step}_converged_after_s"] = (round(out.converged_after, 2)
                                                          if out.converged_after is not None else None)
        for key, (_lab, name) in LABS.items():
            took, summary = _timed(lambda name=name: grade(ctx, name))
            rows[key]["grade_s"] = took
            rows[key]["grade_failed"] = sorted(c.id for c in summary.checks if c.status != "pass")
    finally:
        for name in made:
            down(ctx, name)
        shutil.rmtree(_HOME, ignore_errors=True)
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "variant": VARIANT,
              "results": rows}
    cols = ["up_s", "solve_reference_s", "solve_reference_again_s", f"solve_{VARIANT}_s", "grade_s"]
    print(f"{'':10}" + "".join(f"{c:>28}" for c in cols))
    for key, row in rows.items():
        print(f"{key:10}" + "".join(f"{row.get(c, '-')!s:>28}" for c in cols))
    for key, row in rows.items():
        print(f"{key}: {VARIANT} fails {row.get('grade_failed')}")
    out_dir = PROJECT / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bench-devices.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
