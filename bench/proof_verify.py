"""Benchmark of the signed bundle container: sign + zip (finalize_bundle) and verify, for a
small bundle and a realistic one, side by side in one run.

The bundles are synthetic (no lab is brought up): runs sealed by RunWriter with a throwaway
centre key, with evidence of realistic size (command output of 1-3 KB), plus per run four
report files (two ~30 KB HTML, two ~80 KB incompressible "PDF" blobs) and an index. Sizes:

    small       1 run  x   2 evidence, 2 extra files     (the tests' bundle)
    realistic   5 runs x  60 evidence, 21 report files + index

Per round: finalize_bundle (SHA256SUMS, its signature, the signed zip, written atomically),
then verify the zip (read from disk, checked in memory), the unzipped folder, and the
folder with OpenSSH + coreutils as a jury would (ssh-keygen -Y verify, sha256sum -c). Prints
median and p95 per step, the zip size, entries and comment size. Nothing is asserted.

    python bench/proof_verify.py --rounds 9
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from labkit.adapters.bundle import finalize_bundle
from labkit.adapters.bundle.verify import verify_path
from labkit.adapters.security.keyring import KeyInfo, Trust
from labkit.adapters.security.signing import CentreSigner, generate_private_key
from labkit.adapters.storage.runs import RunWriter
from labkit.models.common import I18n
from labkit.models.criteria import Criterion
from labkit.models.evidence import Evidence
from labkit.models.results import CheckResult, GradeSummary, RunInfo

T0 = datetime(2026, 11, 28, 3, 44, 55, tzinfo=UTC)
SIZES = {"small": (1, 2, False), "realistic": (5, 60, True)}


def _text(rng: random.Random, size: int) -> str:
    words = ["10.1.2.0/24", "via", "dev", "eth0", "proto", "ospf", "metric", "20", "OK", "icmp_seq=1", "ttl=63",
             "time=0.05", "ms", "rtt", "min/avg/max", "ifOperStatus", "up(1)", "sysName.0", "STRING:", "r-hq"]
    out: list[str] = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        out.append(line)
        n += len(line) + 1
    return "\n".join(out)


def _run(runs_dir: Path, run_id: str, evidence: int, signer: CentreSigner, rng: random.Random) -> Path:
    info = RunInfo(run_id=run_id, mode="grade", lab_id="routing-multisite",
                   lab_title=I18n(fr="Routage multi-sites", en="Multi-site routing"), lab_version=1,
                   instance="bench", candidate="Bench Candidate", provider="netns", seed=7, params={},
                   started_at=T0, ended_at=T0 + timedelta(seconds=60), labkit_version="0.1.0",
                   checks=[{"id": "ping", "grader": "ping"}])
    ids = [f"probe-{i:03d}" for i in range(evidence)]
    summary = GradeSummary(run_id=run_id, lab_id=info.lab_id, instance="bench", candidate="Bench Candidate",
                           score=10, max_score=10, started_at=T0, ended_at=info.ended_at,
                           checks=[CheckResult(id="ping", title=I18n(fr="Ping", en="Ping"), grader="ping",
                                               status="pass", points=10, max_points=10, criteria=["tssr-2.3"],
                                               evidence=ids, message=I18n(fr="ok", en="ok"))])
    w = RunWriter(runs_dir, run_id)
    for ev_id in ids:
        w.add_evidence(Evidence.model_validate({
            "id": ev_id, "check": "ping", "kind": "exec", "source": "r-hq", "target": "10.1.2.10",
            "action": "ip route show", "started_at": T0, "ended_at": T0 + timedelta(seconds=1), "ok": True,
            "raw": _text(rng, rng.randint(1000, 3000)), "parsed": {"routes": rng.randint(3, 12)},
        }))
    w.add_artifact("addressing", [{"node": f"r{i}", "address": f"10.1.{i}.1/24"} for i in range(8)])
    w.seal(info, summary, [Criterion(id="tssr-2.3", certification="tssr", block="2.3", code="2.3",
                                     text="Les liens sont opérationnels.")], now=T0, signer=signer)
    return w.path


def _tree(root: Path, size: str, signer: CentreSigner) -> Path:
    runs, evidence, reports = SIZES[size]
    rng = random.Random(size)
    tree = root / f"bench-{size}"
    (tree / "runs").mkdir(parents=True)
    for r in range(runs):
        run_id = f"bench-20261128T0344{r:02d}Z-00{r:02d}"
        shutil.copytree(_run(root / "store", run_id, evidence, signer, rng), tree / "runs" / run_id)
        if reports:
            (tree / "reports").mkdir(exist_ok=True)
            for lang in ("fr", "en"):
                (tree / "reports" / f"{run_id}.{lang}.html").write_text(f"<html>{_text(rng, 30_000)}</html>")
                (tree / "reports" / f"{run_id}.{lang}.pdf").write_bytes(rng.randbytes(80_000))
    (tree / "index.html").write_text(f"<html>{_text(rng, 20_000 if reports else 200)}</html>")
    if reports:
        (tree / "index.pdf").write_bytes(rng.randbytes(120_000))
    (tree / "LISEZMOI.txt").write_text("ssh-keygen -Y verify -f allowed_signers -I centre -n labkit-bundle ...\n")
    for dirpath, _dirs, files in os.walk(tree):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    return tree


def _jury(folder: Path) -> None:
    with open(folder / "SHA256SUMS", "rb") as sums:
        subprocess.run(["ssh-keygen", "-Y", "verify", "-f", "allowed_signers", "-I", "centre", "-n", "labkit-bundle",
                        "-s", "SHA256SUMS.sig"], stdin=sums, cwd=folder, check=True, capture_output=True)
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=folder, check=True, capture_output=True)


def _ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def _stats(xs: list[float]) -> tuple[float, float]:
    p95 = statistics.quantiles(xs, n=20, method="inclusive")[18] if len(xs) > 1 else xs[0]
    return statistics.median(xs), p95


def main() -> int:
    ap = argparse.ArgumentParser(description="Benchmark bundle sign+zip and verify (zip vs folder).")
    ap.add_argument("--rounds", type=int, default=9)
    a = ap.parse_args()
    if not 1 <= a.rounds <= 100:
        print("--rounds must be between 1 and 100", file=sys.stderr)
        return 2
    signer = CentreSigner(generate_private_key(), "Bench centre")
    trust = Trust({signer.fingerprint: KeyInfo(signer.fingerprint, signer.public_line, "Bench centre", "", "active")})
    jury = bool(shutil.which("ssh-keygen") and shutil.which("sha256sum"))
    root = Path(tempfile.mkdtemp(prefix="labkit-bench-proof-", dir="/var/tmp"))
    try:
        rows = []
        for size in SIZES:
            tree = _tree(root / size, size, signer)
            out = root / size / f"bench-{size}.zip"
            times: dict[str, list[float]] = {"sign+zip": [], "verify zip": [], "verify folder": [], "jury folder": []}
            unzipped = root / size / "unzipped"
            for _ in range(a.rounds):
                times["sign+zip"].append(_ms(lambda: finalize_bundle(tree, out, signer, T0)))  # noqa: B023
                if not unzipped.exists():
                    with zipfile.ZipFile(out) as zf:
                        zf.extractall(unzipped)
                folder = unzipped / f"bench-{size}"
                rz = verify_path(out, trust)
                rf = verify_path(folder, trust)
                assert rz.ok and rf.ok, (rz.problems, rf.problems)
                times["verify zip"].append(_ms(lambda: verify_path(out, trust)))  # noqa: B023
                times["verify folder"].append(_ms(lambda: verify_path(folder, trust)))  # noqa: B023
                if jury:
                    times["jury folder"].append(_ms(lambda: _jury(folder)))  # noqa: B023
            with zipfile.ZipFile(out) as zf:
                infos = zf.infolist()
                comment = len(zf.comment)
            rows.append((size, out.stat().st_size, len(infos), sum(i.file_size for i in infos), comment,
                         rz.runs_checked, times))
        print(f"rounds: {a.rounds}; times in ms, median / p95")
        print(f"{'bundle':10} {'zip KB':>8} {'entries':>7} {'raw KB':>8} {'comment B':>9}  "
              f"{'sign+zip':>15} {'verify zip':>15} {'verify folder':>15} {'jury (ssh+sha)':>15}")
        for size, zsize, n, raw, comment, runs, times in rows:
            cells = []
            for key in ("sign+zip", "verify zip", "verify folder", "jury folder"):
                if times[key]:
                    med, p95 = _stats(times[key])
                    cells.append(f"{med:7.1f} / {p95:6.1f}")
                else:
                    cells.append(f"{'n/a':>15}")
            print(f"{size:10} {zsize / 1024:8.1f} {n:7d} {raw / 1024:8.1f} {comment:9d}  " + " ".join(cells)
                  + f"   ({len(runs)} runs)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
