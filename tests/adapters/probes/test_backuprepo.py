"""The grader's own restic and borg on a local repository: snapshots, a file of a snapshot,
raw files searched, old snapshots added in a private mount namespace, and the retention rules
as each tool applies them (checked against the tools' own dry runs)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from labkit.adapters.probes import backuprepo as br

pytestmark = [pytest.mark.root]
PW = "mot-de-passe-du-depot"


def _init(kind: str, repo: Path, env: dict[str, str]) -> None:
    argv = [br.RESTIC, "-r", str(repo), "init"] if kind == "restic" else [br.BORG, "init", "-e", "repokey", str(repo)]
    assert br.run_tool(argv, env).returncode == 0


@pytest.mark.parametrize("kind", ["restic", "borg"])
def test_grader_tool_reads_and_seeds_a_repository(kind: str, tmp_path: Path) -> None:
    if not Path(br.RESTIC if kind == "restic" else br.BORG).is_file() or os.geteuid() != 0:
        pytest.skip(f"{kind} or root missing")
    repo = tmp_path / "repo"
    env = br.clean_env(tmp_path, PW)
    assert "LABKIT_HOME" not in env and env["PATH"] == "/usr/bin:/bin"
    _init(kind, repo, env)
    assert br.kind_of(repo) == kind and br.snapshots(kind, repo, env) == []
    now = datetime.now()
    times = [now - timedelta(days=d) for d in (1, 2, 3, 4, 9, 16, 23)]
    br.add_old_snapshots(kind, repo, env, data_dir="/srv/donnees", host="srv1", times=times, tag="labkit-retention")
    snaps = br.snapshots(kind, repo, env)
    assert len(snaps) == 7 and snaps[0]["time"] < snaps[-1]["time"]
    assert not Path("/srv/donnees/labkit-retention.txt").exists()  # made on a private tmpfs only
    assert br.dump(kind, repo, env, snaps[-1], "/srv/donnees/labkit-retention.txt") == b"labkit retention probe\n"
    assert br.dump(kind, repo, env, snaps[-1], "/srv/donnees/absent") is None
    assert br.raw_hits(repo, [b"labkit retention probe"]) == []  # encrypted at rest
    # the retention rules as the tool itself applies them
    expected = br.kept_by_policy(kind, snaps, 2, 2)
    if kind == "restic":
        res = br.run_tool([br.RESTIC, "-r", str(repo), "--no-cache", "--json", "forget", "--dry-run",
                           "--keep-daily", "2", "--keep-weekly", "2"], env)
        kept = {k["id"] for g in json.loads(res.stdout) for k in g["keep"]}
    else:
        res = br.run_tool([br.BORG, "prune", "--dry-run", "--list", "--keep-daily", "2", "--keep-weekly", "2",
                           str(repo)], env)
        names = {s["name"]: s["id"] for s in snaps}
        kept = {names[ln.split()[5]] for ln in res.stderr.decode().splitlines() if ln.startswith("Keeping")}
    assert expected == kept and 0 < len(kept) < 7
    br.forget(kind, repo, env, snaps[:2])
    assert len(br.snapshots(kind, repo, env)) == 5
    # the wrong password: a ToolError, never a listing
    with pytest.raises(br.ToolError):
        br.snapshots(kind, repo, br.clean_env(tmp_path, "wrong"))


def test_layout_alone_is_not_a_repository(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    for d in ("keys", "data/3f", "snapshots"):
        (fake / d).mkdir(parents=True)
    (fake / "config").write_bytes(os.urandom(155))
    assert br.kind_of(fake) == "restic"  # shaped like one...
    if not Path(br.RESTIC).is_file():
        pytest.skip("restic missing")
    with pytest.raises(br.ToolError):  # ...but the grader's restic cannot open it
        br.snapshots("restic", fake, br.clean_env(tmp_path, PW))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("CONFIDENTIEL-x")
    assert br.kind_of(plain) == "other" and br.raw_hits(plain, [b"CONFIDENTIEL-x"]) == [{"marker": 0, "file": "a.txt"}]
    shutil.rmtree(plain)
    assert br.kind_of(plain) == "missing"


def test_borg_keeps_the_oldest_when_a_rule_falls_short() -> None:
    snaps = [{"id": f"a{i}", "time": f"2026-11-30T0{i}:00:00"} for i in range(1, 4)]  # three on one day
    assert br.kept_by_policy("borg", snaps, 1, 4) == {"a3", "a1"}  # daily: the newest; weekly: short, the oldest
    assert br.kept_by_policy("restic", snaps, 1, 4) == {"a3"}
