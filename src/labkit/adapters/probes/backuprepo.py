"""The grader's own look into a candidate's backup repository (restic or borg).

The repository is copied out of the backup server with the grader's code
(:func:`labkit.adapters.probes.nodetree.copy_out`, nothing runs in the node) into a private
directory of the grader, and read there with the HOST's ``/usr/bin/restic`` or
``/usr/bin/borg`` (the candidate can replace the node's binaries, never the host's). The tool
gets a clean environment: a fixed ``PATH``, a private ``HOME``/cache, the repository password,
nothing of labkit's nor of the node's environment. The password is given in the environment,
never on a command line.

What it answers: the kind of repository, its snapshots (id, time, host, paths, tags), a file
of a snapshot (``restic dump`` / ``borg extract --stdout``), whether any raw file holds given
byte strings, and synthetic old snapshots made in a local copy (for the retention check).
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import time
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

RESTIC = "/usr/bin/restic"
BORG = "/usr/bin/borg"
UNSHARE = "/usr/bin/unshare"
TOOL_TIMEOUT = 120.0
BORG_README = b"This is a Borg Backup repository"


class ToolError(RuntimeError):
    """The grader's restic/borg could not do what was asked (wrong password, not a repository...)."""


def kind_of(repo: Path) -> str:
    """restic, borg, empty, other or missing (by the repository's layout; the tool decides
    whether it is real)."""
    if not repo.is_dir():
        return "missing"
    if (repo / "config").is_file() and (repo / "keys").is_dir() and (repo / "data").is_dir():
        return "restic"
    readme = repo / "README"
    if readme.is_file() and readme.read_bytes()[:64].startswith(BORG_README):
        return "borg"
    return "empty" if not any(repo.iterdir()) else "other"


def clean_env(work: Path, password: str) -> dict[str, str]:
    """The whole environment the grader's restic/borg gets."""
    home = work / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(home),
            "RESTIC_PASSWORD": password, "RESTIC_CACHE_DIR": str(home / "restic-cache"),
            "BORG_PASSPHRASE": password, "BORG_BASE_DIR": str(home), "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes", "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
            "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "NO"}


def run_tool(argv: list[str], env: dict[str, str], timeout: float = TOOL_TIMEOUT,
             stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    if not Path(argv[0]).is_file() and argv[0] != UNSHARE:
        raise ToolError(f"{argv[0]} is not installed on the grader's host")
    try:
        return subprocess.run(argv, env=env, input=stdin, capture_output=True, timeout=timeout, check=False,
                              cwd=env["HOME"])
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{posixpath.basename(argv[0])} did not finish within {timeout:g} s") from exc


def _last_line(b: bytes) -> str:
    lines = b.decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:200] if lines else ""


def snapshots(kind: str, repo: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """Snapshots as [{id, time, host, paths, tags, name}], oldest first; ToolError if the
    tool cannot open the repository with the password."""
    if kind == "restic":
        res = run_tool([RESTIC, "-r", str(repo), "--no-lock", "--no-cache", "--json", "snapshots"], env)
        if res.returncode != 0:
            raise ToolError(f"restic cannot read the repository: {_last_line(res.stderr)}")
        data = json.loads(res.stdout or b"[]") or []
        out = [{"id": s.get("id"), "time": s.get("time"), "host": s.get("hostname", ""),
                "paths": sorted(s.get("paths") or []), "tags": sorted(s.get("tags") or []), "name": s.get("id")}
               for s in data if isinstance(s, dict)]
    elif kind == "borg":
        res = run_tool([BORG, "list", "--json", "--bypass-lock", str(repo)], env)
        if res.returncode != 0:
            raise ToolError(f"borg cannot read the repository: {_last_line(res.stderr)}")
        data = json.loads(res.stdout or b"{}") or {}
        out = [{"id": a.get("id"), "time": a.get("time") or a.get("start"), "host": a.get("hostname", ""),
                "paths": [], "tags": [], "name": a.get("name") or a.get("archive")}
               for a in data.get("archives", []) if isinstance(a, dict)]
    else:
        raise ToolError(f"not a restic or borg repository ({kind})")
    return sorted(out, key=lambda s: str(s.get("time")))


def dump(kind: str, repo: Path, env: dict[str, str], snap: dict[str, Any], path: str,
         limit: int = 64 << 20) -> bytes | None:
    """The bytes of ``path`` (absolute, as on the backed-up machine) in snapshot ``snap``, or
    None if the snapshot does not hold it."""
    if kind == "restic":
        argv = [RESTIC, "-r", str(repo), "--no-lock", "--no-cache", "dump", str(snap["id"]), path]
    elif kind == "borg":
        argv = [BORG, "extract", "--stdout", "--bypass-lock", f"{repo}::{snap['name']}", path.lstrip("/")]
    else:
        raise ToolError(f"not a restic or borg repository ({kind})")
    res = run_tool(argv, env)
    if res.returncode != 0 or len(res.stdout) > limit:
        return None
    return res.stdout


def raw_hits(repo: Path, needles: Iterable[bytes], max_hits: int = 50) -> list[dict[str, Any]]:
    """Files of the repository copy whose raw bytes hold one of ``needles`` (read by the
    grader's own code): [{marker: index, file}]."""
    needles = [n for n in needles if n]
    hits: list[dict[str, Any]] = []
    for dirpath, _dirs, files in os.walk(repo):
        for f in sorted(files):
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                continue
            data = p.read_bytes()
            for i, n in enumerate(needles):
                if n in data and len(hits) < max_hits:
                    hits.append({"marker": i, "file": str(p.relative_to(repo))})
    return hits


def tree_digest(repo: Path) -> dict[str, tuple[int, int]]:
    """rel path: (size, mtime_ns) of every file of a local copy, to see what a tool changed."""
    out = {}
    for dirpath, _dirs, files in os.walk(repo):
        for f in files:
            p = Path(dirpath) / f
            st = p.lstat()
            out[str(p.relative_to(repo))] = (st.st_size, st.st_mtime_ns)
    return out


def add_old_snapshots(kind: str, repo: Path, env: dict[str, str], *, data_dir: str, host: str,
                      times: list[datetime], tag: str) -> None:
    """Make one tiny snapshot of ``data_dir`` per time in ``times`` in the LOCAL copy
    ``repo``, with the host name ``host`` and the tag/name prefix ``tag``: same host and paths
    as the candidate's snapshots, so they fall in the same retention group. ``data_dir`` is
    made on a tmpfs in a private mount namespace of the grader's own tool (``unshare``): the
    host's files are never touched."""
    top = "/" + data_dir.strip("/").split("/")[0]
    if top == "/" or not data_dir.startswith("/"):
        raise ToolError(f"cannot stand in for {data_dir}")
    stamps = [t.strftime("%Y-%m-%d %H:%M:%S") for t in times]
    if kind == "restic":
        loop = ('for t in "$@"; do /usr/bin/restic -r "$REPO" --no-cache --quiet backup --host "$HOSTN" '
                '--tag "$TAG" --time "$t" "$DATA" || exit 1; done')
    elif kind == "borg":
        loop = ('cd / && for t in "$@"; do /usr/bin/borg create --timestamp "$(echo "$t" | tr " " T)" '
                '"$REPO::$TAG-$(echo "$t" | tr " :" "T-")" "${DATA#/}" || exit 1; done')
    else:
        raise ToolError(f"not a restic or borg repository ({kind})")
    script = ('set -e; mount -t tmpfs -o size=1m,mode=0755 labkit "$TOP"; mkdir -p "$DATA"; '
              'echo "labkit retention probe" > "$DATA/labkit-retention.txt"; ' + loop)
    env2 = {**env, "REPO": str(repo), "DATA": data_dir, "TOP": top, "HOSTN": host, "TAG": tag}
    res = run_tool([UNSHARE, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", *stamps],
                   env2, timeout=TOOL_TIMEOUT + 5 * len(times))
    if res.returncode != 0:
        raise ToolError(f"the grader could not add its old snapshots: {_last_line(res.stderr)}")


def forget(kind: str, repo: Path, env: dict[str, str], snaps: list[dict[str, Any]]) -> None:
    """Remove these snapshots from the LOCAL copy (the grader's own, to clean up)."""
    if not snaps:
        return
    if kind == "restic":
        res = run_tool([RESTIC, "-r", str(repo), "--no-cache", "forget", *[str(s["id"]) for s in snaps]], env)
    else:
        res = run_tool([BORG, "delete", f"{repo}::{snaps[0]['name']}", *[str(s["name"]) for s in snaps[1:]]], env)
    if res.returncode != 0:
        raise ToolError(f"the grader could not remove its snapshots: {_last_line(res.stderr)}")


# --- retention policies, as the tools apply them -----------------------------------------

def parse_time(text: str) -> datetime | None:
    """restic (nanoseconds, offset) and borg (naive, local) timestamps; the offset is kept,
    since the tools bucket days in the time zone each snapshot carries."""
    import re

    m = re.match(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", str(text).strip())
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = m.group(3)
    tz = "+00:00" if tz == "Z" else (tz or "")
    return datetime.fromisoformat(m.group(1).replace(" ", "T") + frac + tz)


def _day(t: datetime) -> date:
    return t.date()


def _week(t: datetime) -> tuple[int, int]:
    iso = t.isocalendar()
    return (iso[0], iso[1])


def kept_by_policy(tool: str, snaps: list[dict[str, Any]], daily: int, weekly: int) -> set[str]:
    """Ids of the snapshots of ONE group that ``restic forget`` / ``borg prune`` keep with
    ``--keep-daily daily --keep-weekly weekly``.

    restic: newest first, each rule keeps a snapshot whose period differs from the last
    period that rule kept, while it has counts left; a snapshot may count for both rules.
    borg (1.2): rules apply one after the other (daily, then weekly); a rule skips archives
    an earlier rule kept, but still moves its period past them, and a rule that does not reach
    its count keeps the oldest archive too."""
    dated = [(parse_time(str(s["time"])), str(s["id"])) for s in snaps]
    items = sorted(((t, i) for t, i in dated if t is not None), key=lambda x: x[0], reverse=True)
    keep: set[str] = set()
    rules = [(daily, _day), (weekly, _week)]
    if tool == "restic":
        left = [n for n, _ in rules]
        last: list[Any] = [None, None]
        for t, sid in items:
            for r, (_n, period) in enumerate(rules):
                if left[r] > 0 and period(t) != last[r]:
                    keep.add(sid)
                    last[r] = period(t)
                    left[r] -= 1
        return keep
    for n, period in rules:
        if n <= 0:
            continue
        count, prev = 0, None
        for t, sid in items:
            p = period(t)
            if p != prev:
                prev = p
                if sid not in keep:
                    keep.add(sid)
                    count += 1
                    if count == n:
                        break
        else:
            # borg >= 1.2.2: a rule that did not reach its count also keeps the oldest archive
            if items and count < n:
                keep.add(items[-1][1])
    return keep


def elapsed(t0: float) -> float:
    return round(time.monotonic() - t0, 3)


__all__ = ["BORG", "RESTIC", "ToolError", "add_old_snapshots", "clean_env", "dump", "forget", "kept_by_policy",
           "kind_of", "parse_time", "raw_hits", "run_tool", "snapshots", "tree_digest"]
