"""Benchmark of `labkit bundle`: one candidate with one graded routing-multisite run.

Brings up routing-multisite as ``bench-bundle`` in its own LABKIT_HOME (a fresh temporary
one unless LABKIT_HOME is set) with its own centre key, applies the reference solution,
grades, brings it down, then makes the candidate's bundle ``--repeat`` times and prints, per
repetition and as the median: reports in HTML (4), PDFs (4 reports + index.pdf), zip +
signature, and the total; with the zip's size and entry count. Nothing is asserted: compare
figures taken side by side on one machine.

    python bench/bundle.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import zipfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
_OWN_HOME = "LABKIT_HOME" not in os.environ  # a fresh home each time: one run of one candidate
os.environ.setdefault("LABKIT_HOME", tempfile.mkdtemp(prefix="labkit-bench-bundle-", dir="/var/tmp"))
os.environ.setdefault("LABKIT_RUN_DIR", "/run/labkit-bench-bundle")
os.environ.setdefault("LABKIT_PROJECT", str(PROJECT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import timed  # noqa: E402
from labkit.adapters.security.keyring import Keyring  # noqa: E402
from labkit.settings import load_settings  # noqa: E402
from labkit.usecases import lifecycle  # noqa: E402
from labkit.usecases.bundle import bundle_candidate  # noqa: E402
from labkit.usecases.grade import grade  # noqa: E402
from labkit.usecases.solve import solve  # noqa: E402

NAME = "bench-bundle"
CANDIDATE = "Bench Candidate"


def main() -> int:
    ap = argparse.ArgumentParser(description="Benchmark labkit bundle on one graded routing run.")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out-dir", default=str(PROJECT / "out"))
    a = ap.parse_args()
    if not 1 <= a.repeat <= 50:
        print("bench/bundle.py: --repeat must be between 1 and 50.", file=sys.stderr)
        return 2
    ctx = lifecycle.Context(load_settings())
    kr = Keyring(ctx.settings.home / "keys")
    if kr.signer() is None:
        kr.init("Bench centre")
    res: dict[str, object] = {"lab": "routing-multisite"}
    if NAME in ctx.store.names():
        lifecycle.down(ctx, NAME)
    try:
        _, res["up_s"] = timed(lambda: lifecycle.up(ctx, "routing-multisite", instance=NAME, seed=a.seed,
                                                     candidate=CANDIDATE))
        _, res["solve_s"] = timed(lambda: solve(ctx, NAME, wait=60))
        summary, res["grade_s"] = timed(lambda: grade(ctx, NAME))
        res["score"] = f"{summary.score}/{summary.max_score}"
    finally:
        lifecycle.down(ctx, NAME)
    rows = []
    out = Path(tempfile.mkdtemp(prefix="labkit-bench-bundle-"))
    try:
        for i in range(a.repeat):
            path = out / f"b{i}.zip"
            r = bundle_candidate(ctx, CANDIDATE, path)
            with zipfile.ZipFile(path) as zf:
                entries = len(zf.namelist())
            rows.append({**r.timings, "zip_bytes": path.stat().st_size, "entries": entries})
    finally:
        shutil.rmtree(out)
        if _OWN_HOME:
            shutil.rmtree(ctx.settings.home, ignore_errors=True)
    res["bundles"] = rows
    res["median_s"] = {k: statistics.median(float(x[k]) for x in rows)
                       for k in ("reports_html", "pdf", "zip_sign", "total")}
    Path(a.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(a.out_dir) / "bench-bundle.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
