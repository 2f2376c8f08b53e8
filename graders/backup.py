"""Backup and restore checks, proven by effect: an encrypted repository that the grader
decrypts itself, a recent snapshot, a schedule that makes a new snapshot when run, a retention
policy seen in what the repository keeps, backups that travel inside the SSH session between
the file server and the backup server, a restore proven with data that can only have come from
the repository, and no password login on the backup server.

What is observed where:

- the grader's own code reads and writes node files through ``ctx.node_fs`` (openat2
  RESOLVE_IN_ROOT, nothing runs in the node): it plants fresh random "proof" files in the data
  before it runs the candidate's backup, damages the data for the restore test, hashes every
  restored file, reads the crontabs, and copies the repository out of the backup server;
- the repository copy is read by the HOST's ``/usr/bin/restic`` or ``/usr/bin/borg`` with a
  clean environment and the brief's password (never the node's binaries);
- the LAN capture (a raw packet socket on the segment's bridge, in the switch namespace) while
  the grader runs the candidate's backup, and the SSH password attempt from the grader's
  vantage point;
- the candidate's own scripts are run in the node, as cron would (that is the work graded).

``node_fs`` is a need of these checks, never a mere want: the proof files the grader plants,
the data it damages, the restored files it hashes and the repository it copies out are the
decisive evidence itself, and no packet on a grader-owned wire can stand in for them. Reading
them through the node's own commands instead (``node_exec``: inside the candidate's system)
would let the candidate answer for the grader, and a node's own answer may only take points
away, never give them. A provider without ``node_fs`` refuses the backup checks.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from labkit.domain.grading import NodeFiles as NodeFS
from labkit.adapters.probes import backuprepo as br
from labkit.adapters.probes import capture as capture_probe
from labkit.adapters.probes import nodetree, rendezvous, sshauth, tcpspan
from labkit.domain.grading import CheckContext, error_if_unrun, utcnow
from labkit.models.capabilities import Capability
from labkit.models.evidence import Evidence, EvidenceKind
from labkit.models.instance import InstancePlan
from labkit.models.results import Verdict

# The environment cron gives a job (cron(8)); the grader runs the candidate's scripts with it.
CRON_ENV = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
            "SHELL=/bin/sh", "LOGNAME=root", "USER=root", "LANG=C.UTF-8"]
OUTPUT_MAX = 16_000
PROOF_PREFIX = "labkit-preuve-"
PROOF_BYTES = 256 << 10  # random base64 text: incompressible enough that the wire must carry it
HOST_CRON = "/usr/sbin/cron"
# Share of the proof files' size the wire must carry, counted from TCP sequence numbers (so
# frames a packet socket drops do not matter): below 1 for a tool that compresses (zstd on
# base64 text); a cheat that moves no data moves a few kB.
WIRE_SHARE = 0.6


def proof_content() -> bytes:
    """A fresh proof file: random bytes as base64 text (so it can be searched as a marker)."""
    return base64.b64encode(os.urandom(PROOF_BYTES * 3 // 4)) + b"\n"


def proof_needles(content: bytes) -> list[str]:
    """Three 40-character pieces of a proof file, searched in raw repository files and on the wire."""
    n = len(content)
    return [content[i:i + 40].decode() for i in (0, n // 2, max(0, n - 60))]


# --- evidence helpers ------------------------------------------------------------------------

def _grader_step(ctx: CheckContext, label: str, action: str, target: str,
                 fn: Callable[[], tuple[dict[str, Any], str]], *, kind: EvidenceKind = "exec",
                 meta: dict[str, Any] | None = None) -> Evidence:
    """Something the grader does itself (its own code, its own tools); an exception (node gone,
    host tool missing) becomes evidence with ok=False."""
    started = utcnow()
    try:
        parsed, raw = fn()
    except Exception as exc:  # noqa: BLE001 - a step that cannot run is a result, not a crash
        return Evidence(id=ctx.eid(label), check=ctx.check.id, kind=kind, source="grader", target=target,
                        action=action, started_at=started, ended_at=utcnow(), ok=False,
                        error=f"{type(exc).__name__}: {exc}", meta=dict(meta or {}))
    return Evidence(id=ctx.eid(label), check=ctx.check.id, kind=kind, source="grader", target=target, action=action,
                    started_at=started, ended_at=utcnow(), ok=True, raw=raw, parsed=parsed, meta=dict(meta or {}))


def _run_script(ctx: CheckContext, node: str, command: str, timeout: float, *,
                meta: dict[str, Any] | None = None, label: str = "run") -> Evidence:
    """Run a candidate command in its node as cron would (``/bin/sh -c``, cron's environment),
    bounded by ``timeout`` seconds (then TERM to its process group, KILL 5 s later)."""
    argv = [*CRON_ENV, "timeout", "-k", "5", f"{timeout:g}", "/bin/sh", "-c", command]
    ev = ctx.node_exec(node, argv, action=f"{command} (as cron would, at most {timeout:g} s)", timeout=timeout + 20,
                       meta={"timeout_s": timeout, **(meta or {})}, label=label, output_max=OUTPUT_MAX)
    if ev.ok and ev.parsed["rc"] in (124, 137):
        ev.parsed["timed_out"] = True
    return ev


def _phase(evidence: list[Evidence], phase: str) -> Evidence | None:
    return next((e for e in evidence if e.meta.get("phase") == phase), None)


def _err_text(ev: Evidence) -> str:
    p = ev.parsed if isinstance(ev.parsed, dict) else {}
    text = (p.get("stderr") or p.get("stdout") or "").strip().splitlines()
    return text[-1][:200] if text else f"rc={p.get('rc')}"


def _first_unrun(evidence: list[Evidence]) -> Verdict | None:
    return error_if_unrun(evidence)


# --- the repository, read by the grader -------------------------------------------------------

class Workdir:
    """A private directory of the grader for repository copies, removed afterwards."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="labkit-backup-"))
        os.chmod(self.path, 0o700)

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def read_repository(fs: NodeFS, repo: str, password: str, work: Path, tag: str, *,
                    before: list[str] | None = None, proofs: dict[str, bytes] | None = None,
                    needles: list[str] | None = None, dump_newest: str | None = None) -> dict[str, Any]:
    """Copy the repository out of the node and read it with the host's tool.

    ``before``: snapshot ids seen earlier (the others are "new"); ``proofs``: {path: bytes}
    looked for in the new snapshots (or, for a plain copy, as files of the repository);
    ``needles``: strings searched in the raw files; ``dump_newest``: a path whose content in
    the newest snapshot is returned as its sha256 and size, with whether it holds
    ``needles[0]``."""
    out: dict[str, Any] = {"repo": repo, "kind": "missing", "files": 0, "bytes": 0, "snapshots": [], "error": None}
    local = work / tag
    st = nodetree.lstat(fs, repo)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return out
    out.update(nodetree.copy_out(fs, repo, local))
    out["kind"] = kind = br.kind_of(local)
    if needles:
        out["raw_hits"] = br.raw_hits(local, [n.encode() for n in needles])
    env = br.clean_env(work, password)
    snaps: list[dict[str, Any]] = []
    if kind in ("restic", "borg"):
        try:
            snaps = br.snapshots(kind, local, env)
        except br.ToolError as exc:
            out["error"] = str(exc)
    out["snapshots"] = [{k: s[k] for k in ("id", "time", "host", "paths", "tags", "name")} for s in snaps]
    if before is not None:
        out["new"] = [s["id"] for s in snaps if s["id"] not in set(before)]
    if proofs is not None:
        found: dict[str, str | None] = {}
        new = [s for s in reversed(snaps) if before is None or s["id"] not in set(before)]
        for path, content in proofs.items():
            found[path] = None
            for s in new[:5]:
                if br.dump(kind, local, env, s, path) == content:
                    found[path] = f"snapshot {str(s['id'])[:8]}"
                    break
            if found[path] is None and kind not in ("restic", "borg"):
                # a plain copy of the data: is the proof file there, byte for byte?
                for p in local.rglob(Path(path).name):
                    if p.is_file() and p.read_bytes() == content:
                        found[path] = f"plain file {p.relative_to(local)}"
                        break
        out["proofs_found"] = found
    if dump_newest and snaps:
        data = br.dump(kind, local, env, snaps[-1], dump_newest)
        out["newest_file"] = None if data is None else {
            "path": dump_newest, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "holds_marker": bool(needles) and (needles or [""])[0].encode() in data}
    return out


def _repo_raw(p: dict[str, Any]) -> str:
    lines = [f"repository {p.get('repo')}: {p.get('kind')}, {p.get('files')} files, {p.get('bytes')} bytes "
             f"(copied out by the grader, read with the host's tool)"]
    if p.get("error"):
        lines.append(f"tool: {p['error']}")
    snaps = p.get("snapshots") or []
    lines.append(f"{len(snaps)} snapshot(s)" + (f", newest {snaps[-1]['time']}" if snaps else ""))
    if "new" in p:
        lines.append(f"new since the grader's first look: {len(p['new'])}")
    for path, where in (p.get("proofs_found") or {}).items():
        lines.append(f"grader's proof file {path}: " + (f"found ({where})" if where else "NOT found"))
    if "raw_hits" in p:
        lines.append(f"raw files holding data in clear: {len({h['file'] for h in p['raw_hits']})}")
    return "\n".join(lines)


def _read_repo_ev(ctx: CheckContext, args: dict[str, Any], work: Path, phase: str, **kw: Any) -> Evidence:
    node, repo = args["repo_node"], args["repo"]

    def go() -> tuple[dict[str, Any], str]:
        with ctx.node_fs(node) as fs:
            p = read_repository(fs, repo, str(args["password"]), work, f"{phase}-{ctx.eid('copy')[-6:]}", **kw)
        return p, _repo_raw(p)

    return _grader_step(ctx, f"repo-{phase}", f"copy {node}:{repo} out with the grader's code and read it with "
                        "the host's restic/borg (clean environment, the brief's password)", f"{node}:{repo}", go,
                        meta={"phase": phase})


def _plant_proofs(ctx: CheckContext, node: str, root: str, paths: list[str],
                  phase: str = "plant") -> tuple[Evidence, dict[str, bytes]]:
    proofs = {p: proof_content() for p in paths}

    def go() -> tuple[dict[str, Any], str]:
        with ctx.node_fs(node) as fs:
            for path, content in proofs.items():
                nodetree.write_file(fs, path, content, mode=0o644, uid=0, gid=0)
        info: dict[str, dict[str, Any]] = {path: {"bytes": len(c), "sha256": hashlib.sha256(c).hexdigest()}
                                           for path, c in proofs.items()}
        return {"proofs": info}, "\n".join(f"wrote {p} ({i['bytes']} random bytes, sha256 {i['sha256'][:16]}…)"
                                           for p, i in info.items())

    ev = _grader_step(ctx, "plant", f"write fresh random proof files in {node}:{root} (grader's code)",
                      f"{node}:{root}", go,
                      kind="fault", meta={"phase": phase})
    return ev, proofs


def _remove_proofs(ctx: CheckContext, node: str, root: str, paths: list[str]) -> Evidence:
    def go() -> tuple[dict[str, Any], str]:
        with ctx.node_fs(node) as fs:
            n = sum(nodetree.remove(fs, p) for p in paths)
        return {"removed": n}, f"removed {n} proof file(s)"

    return _grader_step(ctx, "unplant", f"restore {node}:{root} as it was: remove the grader's proof files",
                        f"{node}:{root}", go, kind="fault", meta={"phase": "unplant"})


def _proof_path(data_root: str) -> str:
    return f"{data_root.rstrip('/')}/{PROOF_PREFIX}{os.urandom(6).hex()}.txt"


def _proof_backup(ctx: CheckContext, args: dict[str, Any], command: str, work: Path, *,
                  extra: dict[str, Any] | None = None) -> list[Evidence]:
    """First look at the repository; a fresh proof file in the data; the candidate's command run
    as cron would; second look: the proof file must be in a new snapshot."""
    evidence = [_read_repo_ev(ctx, args, work, "before")]
    before = [s["id"] for s in (evidence[0].parsed or {}).get("snapshots", [])] if evidence[0].ok else []
    path = _proof_path(args["data_root"])
    plant, proofs = _plant_proofs(ctx, args["node"], args["data_root"], [path])
    evidence.append(plant)
    if not plant.ok:
        return evidence
    try:
        evidence.append(_run_script(ctx, args["node"], command, float(args.get("run_timeout", 110)),
                                    meta={"phase": "run", **(extra or {})}, label="backup"))
        evidence.append(_read_repo_ev(ctx, args, work, "after", before=before, proofs=proofs,
                                      needles=[*args.get("markers", []), *proof_needles(proofs[path])]))
    finally:
        evidence.append(_remove_proofs(ctx, args["node"], args["data_root"], [path]))
    return evidence


def _proof_found(ev: Evidence | None) -> tuple[bool, str | None]:
    found = ((ev.parsed or {}).get("proofs_found") or {}) if ev is not None else {}
    where = next(iter(found.values()), None) if found else None
    return bool(found) and all(found.values()), where


def _repo_unreadable(p: dict[str, Any], repo: str) -> Verdict | None:
    kind = p.get("kind")
    if kind in ("missing", "empty"):
        return Verdict.failed(f"Aucun dépôt de sauvegarde dans {repo}.", f"No backup repository in {repo}.")
    if kind not in ("restic", "borg"):
        return Verdict.failed(f"{repo} n'est ni un dépôt restic ni un dépôt borg.",
                              f"{repo} is neither a restic nor a borg repository.")
    if p.get("error"):
        return Verdict.failed(f"L'outil de l'évaluateur ne peut pas ouvrir le dépôt avec le mot de passe de la "
                              f"consigne ({p['error']}).",
                              f"The grader's tool cannot open the repository with the brief's password "
                              f"({p['error']}).")
    return None


# --- repository encrypted ---------------------------------------------------------------------

class RepositoryEncrypted:
    """The grader plants a fresh proof file, runs the candidate's backup script, then decrypts
    the repository itself (host restic/borg, the brief's password) and finds the proof file in
    a new snapshot, while no raw file of the repository holds the business marker or any piece
    of the proof file."""

    name = "backup.repository_encrypted"
    needs: frozenset[Capability] = frozenset({"node_exec", "node_fs"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        with Workdir() as w:
            return _proof_backup(ctx, args, args["backup_script"], w.path)

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        after = _phase(evidence, "after")
        if after is None:
            return Verdict.errored("Le dépôt n'a pas pu être examiné.", "The repository could not be examined.")
        p = after.parsed or {}
        repo = args["repo"]
        hits = p.get("raw_hits") or []
        if hits:
            names = sorted({h["file"] for h in hits})
            files = ", ".join(names[:3])
            return Verdict.failed(
                f"Des données sont lisibles en clair dans les fichiers du dépôt ({len(names)} fichier(s), ex. "
                f"{files}) : il n'est pas chiffré.",
                f"Data is readable in clear in the repository's files ({len(names)} file(s), e.g. {files}): "
                "it is not encrypted.")
        if (bad := _repo_unreadable(p, repo)) is not None:
            return bad
        found, where = _proof_found(after)
        if not found:
            run = _phase(evidence, "run")
            rc = (run.parsed or {}).get("rc") if run is not None else None
            return Verdict.failed(
                f"Après la sauvegarde lancée par l'évaluateur (code {rc}), le fichier témoin qu'il venait d'écrire "
                "n'est dans aucun nouvel instantané déchiffré.",
                f"After the backup the grader ran (exit {rc}), the proof file it had just written is in no new "
                "decrypted snapshot.")
        return Verdict.passed(
            f"Dépôt {p['kind']} déchiffré par l'évaluateur avec le mot de passe de la consigne : le fichier témoin "
            f"frais y est ({where}) ; aucun des {p['files']} fichiers bruts ne contient de donnée en clair.",
            f"{p['kind']} repository decrypted by the grader with the brief's password: the fresh proof file is "
            f"in it ({where}); none of its {p['files']} raw files holds data in clear.")


# --- recent snapshot -------------------------------------------------------------------------

def _age_hours(snap_time: str, at: datetime) -> float | None:
    t = br.parse_time(snap_time)
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.astimezone()  # borg: naive local time
    return (at.astimezone(UTC) - t.astimezone(UTC)).total_seconds() / 3600


class RecentSnapshot:
    """The repository, decrypted by the grader before any backup of this grading, holds a
    snapshot newer than the RPO, and that snapshot holds the business data."""

    name = "backup.recent_snapshot"
    needs: frozenset[Capability] = frozenset({"node_fs"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        with Workdir() as w:
            return [_read_repo_ev(ctx, args, w.path, "repo", needles=list(args.get("markers", [])),
                                  dump_newest=args["probe_file"])]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        ev = _phase(evidence, "repo")
        if ev is None:
            return Verdict.errored("Aucune mesure n'a été faite.", "No measurement was made.")
        p = ev.parsed or {}
        if (bad := _repo_unreadable(p, args["repo"])) is not None:
            return bad
        snaps = p.get("snapshots") or []
        if not snaps:
            return Verdict.failed("Aucun instantané dans le dépôt.", "No snapshot in the repository.")
        rpo = float(args["rpo_hours"])
        age = _age_hours(str(snaps[-1]["time"]), ev.ended_at)
        if age is None:
            return Verdict.errored("Date d'instantané illisible.", "Unreadable snapshot time.")
        if age < -0.25:
            return Verdict.failed(
                f"Le dernier instantané est daté de {-age:.1f} h dans le futur : sa date a été forcée.",
                f"The newest snapshot is dated {-age:.1f} h in the future: its time was forced.")
        if age > rpo:
            return Verdict.failed(
                f"Le dernier instantané date de {age:.1f} h, au-delà du RPO de {rpo:g} h ({len(snaps)} instantané(s)).",
                f"The newest snapshot is {age:.1f} h old, beyond the {rpo:g} h RPO ({len(snaps)} snapshot(s)).")
        newest = p.get("newest_file")
        if not newest or not newest.get("holds_marker"):
            return Verdict.failed(
                f"Le dernier instantané ne contient pas les données métier ({args['probe_file']} absent ou autre).",
                f"The newest snapshot does not hold the business data ({args['probe_file']} missing or different).")
        return Verdict.passed(
            f"Dernier instantané il y a {age:.2f} h (RPO {rpo:g} h), déchiffré par l'évaluateur : il contient les "
            f"données métier ; {len(snaps)} instantané(s).",
            f"Newest snapshot {age:.2f} h old (RPO {rpo:g} h), decrypted by the grader: it holds the business data; "
            f"{len(snaps)} snapshot(s).")


# --- schedule ------------------------------------------------------------------------------

_CRON_D_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _tokens(command: str) -> list[str]:
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return command.split()


def cron_entries(path: str, text: str, system: bool) -> list[dict[str, Any]]:
    """The job lines of a crontab (system ones have a user field); cron's ``%`` ends the command."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", s):
            continue
        if s.startswith("@"):
            parts = s.split(None, 2 if system else 1)
            spec, rest = [parts[0]], parts[1:]
        else:
            parts = s.split(None, 6 if system else 5)
            spec, rest = parts[:5], parts[5:]
        user = rest[0] if system and rest else None
        cmd = (rest[1] if len(rest) > 1 else "") if system else (rest[0] if rest else "")
        cmd = re.split(r"(?<!\\)%", cmd, maxsplit=1)[0]
        out.append({"file": path, "line": n, "schedule": spec, "user": user, "command": cmd})
    return out


def read_crontabs(fs: NodeFS) -> dict[str, Any]:
    """The crontabs cron loads (Debian rules: /etc/cron.d names made of letters, digits, - and
    _, regular files not writable by group or others), read with the grader's code."""
    out: dict[str, Any] = {"entries": [], "ignored": []}
    paths: list[tuple[str, bool]] = [("/etc/crontab", True)]
    for d, system in (("/etc/cron.d", True), ("/var/spool/cron/crontabs", False)):
        try:
            paths += [(f"{d}/{n}", system) for n in fs.listdir(d)]
        except OSError:
            pass
    for path, system in paths:
        st = nodetree.lstat(fs, path)
        if st is None:
            continue
        name = path.rsplit("/", 1)[-1]
        why = None
        if not stat.S_ISREG(st.st_mode):
            why = "not a regular file"
        elif st.st_mode & 0o022:
            why = "writable by group or others (cron refuses it)"
        elif path.startswith("/etc/cron.d/") and not _CRON_D_NAME.fullmatch(name):
            why = "name cron ignores"
        elif system and st.st_uid != 0:
            why = "not owned by root (cron refuses it)"
        if why:
            out["ignored"].append({"file": path, "why": why})
            continue
        out["entries"] += cron_entries(path, fs.read_text(path, 1 << 20), system)
    return out


def genuine_cron_running(fs: NodeFS) -> dict[str, Any]:
    """Whether a process of the node runs the genuine cron binary: the bytes of each node
    process's executable (/proc/PID/exe, from the host) against the genuine /usr/sbin/cron of
    the node's read-only image (the host's when the node has no image)."""
    genuine = fs.pristine(HOST_CRON)
    want_size = os.stat(genuine).st_size
    with open(genuine, "rb") as fh:
        want = hashlib.sha256(fh.read()).hexdigest()
    seen = 0
    for pid in fs.process_ids():
        try:
            seen += 1
            exe = f"/proc/{pid}/exe"
            if os.stat(exe).st_size != want_size:
                continue
            with open(exe, "rb") as fh:
                if hashlib.sha256(fh.read()).hexdigest() == want:
                    return {"running": True, "processes_seen": seen}
        except OSError:
            continue
    return {"running": False, "processes_seen": seen}


def backup_entries(cron: dict[str, Any], script: str) -> list[dict[str, Any]]:
    """Cron entries that run the backup: they call the brief's backup script, or restic/borg."""
    out = []
    for e in cron.get("entries") or []:
        toks = _tokens(str(e.get("command", "")))
        names = {t.rsplit("/", 1)[-1] for t in toks}
        if script in toks or "restic" in names or "borg" in names:
            out.append(e)
    return out


def _field_matches(field: str, value: int) -> bool:
    return any(part.isdigit() and int(part) == value for part in field.split(","))


def _daily_at(e: dict[str, Any], hour: int, minute: int) -> bool:
    spec = e.get("schedule") or []
    return len(spec) == 5 and spec[2:] == ["*", "*", "*"] and _field_matches(spec[0], minute) \
        and _field_matches(spec[1], hour)


class Schedule:
    """A crontab that cron loads holds a daily entry at the brief's time that runs the backup,
    the genuine cron runs in the node, and when the grader runs that entry's command the
    grader's fresh proof file appears in a new snapshot of the repository."""

    name = "backup.schedule"
    needs: frozenset[Capability] = frozenset({"node_exec", "node_fs"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        node = args["node"]

        def read() -> tuple[dict[str, Any], str]:
            with ctx.node_fs(node) as fs:
                cron = read_crontabs(fs)
                cron["daemon"] = genuine_cron_running(fs)
            lines = [f"{e['file']}:{e['line']}: {' '.join(e['schedule'])} {e['command']}" for e in cron["entries"]]
            lines += [f"ignored by cron: {i['file']} ({i['why']})" for i in cron["ignored"]]
            lines.append(f"genuine cron running in the node: {cron['daemon'].get('running')}")
            return cron, "\n".join(lines)

        ev = _grader_step(ctx, "crontab", "read the crontabs with the grader's code; compare the node's running "
                          f"executables with the genuine {HOST_CRON} of the node's read-only image", node, read,
                          meta={"phase": "crontab"})
        evidence = [ev]
        if not ev.ok:
            return evidence
        hour, minute = int(args["hour"]), int(args["minute"])
        entries = [e for e in backup_entries(ev.parsed, args["backup_script"]) if _daily_at(e, hour, minute)]
        if entries and ev.parsed["daemon"].get("running"):
            e = entries[0]
            with Workdir() as w:
                evidence += _proof_backup(ctx, args, e["command"], w.path, extra={"entry": f"{e['file']}:{e['line']}"})
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        cron_ev = _phase(evidence, "crontab")
        if cron_ev is None or not isinstance(cron_ev.parsed, dict):
            return Verdict.errored("Les tables cron n'ont pas pu être lues.", "The crontabs could not be read.")
        cron = cron_ev.parsed
        hour, minute = int(args["hour"]), int(args["minute"])
        entries = backup_entries(cron, args["backup_script"])
        if not entries:
            return Verdict.failed("Aucune entrée cron (chargée par cron) ne lance la sauvegarde.",
                                  "No cron entry (that cron loads) runs the backup.")
        daily = [e for e in entries if _daily_at(e, hour, minute)]
        if not daily:
            e = entries[0]
            return Verdict.failed(
                f"L'entrée cron {e['file']}:{e['line']} ({' '.join(e['schedule'])}) ne lance pas la sauvegarde "
                f"chaque jour à {hour:02d}:{minute:02d}.",
                f"Cron entry {e['file']}:{e['line']} ({' '.join(e['schedule'])}) does not run the backup every day "
                f"at {hour:02d}:{minute:02d}.")
        if not (cron.get("daemon") or {}).get("running"):
            return Verdict.failed("Le vrai démon cron ne tourne pas sur le serveur : la planification ne s'exécutera "
                                  "pas.", "The genuine cron daemon does not run on the server: the schedule will "
                                  "not run.")
        run, after = _phase(evidence, "run"), _phase(evidence, "after")
        if run is None or after is None:
            return Verdict.errored("La commande planifiée n'a pas été lancée.", "The scheduled command was not run.")
        p = run.parsed or {}
        if p.get("timed_out"):
            return Verdict.errored(f"La commande planifiée ne s'est pas terminée en {run.meta.get('timeout_s')} s.",
                                   f"The scheduled command did not finish within {run.meta.get('timeout_s')} s.")
        where = run.meta.get("entry")
        found, at = _proof_found(after)
        if not found:
            return Verdict.failed(
                f"La commande de {where}, lancée par l'évaluateur (code {p.get('rc')}), n'a pas sauvegardé le fichier "
                "témoin qu'il venait d'écrire : aucun nouvel instantané ne le contient.",
                f"The command of {where}, run by the grader (exit {p.get('rc')}), did not back up the proof file the "
                "grader had just written: no new snapshot holds it.")
        return Verdict.passed(
            f"{where} lance la sauvegarde chaque jour à {hour:02d}:{minute:02d}, le vrai cron tourne, et la commande "
            f"lancée par l'évaluateur a sauvegardé son fichier témoin ({at}).",
            f"{where} runs the backup every day at {hour:02d}:{minute:02d}, the genuine cron runs, and the command "
            f"run by the grader backed up its proof file ({at}).")


# --- retention -----------------------------------------------------------------------------

RETENTION_TAG = "labkit-retention"


def sync_back(fs: NodeFS, repo: str, local: Path, before: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Make the node's repository match what the grader's tool changed in the local copy:
    new or changed files written (owned like the repository's top directory), removed ones
    removed."""
    top = nodetree.lstat(fs, repo)
    uid, gid = (top.st_uid, top.st_gid) if top is not None else (0, 0)
    now = br.tree_digest(local)
    written = removed = 0
    for rel in sorted(now):
        if before.get(rel) != now[rel]:
            parent = os.path.dirname(rel)
            if parent:
                nodetree.makedirs(fs, f"{repo}/{parent}", mode=0o700, uid=uid, gid=gid)
            nodetree.write_file(fs, f"{repo}/{rel}", (local / rel).read_bytes(), mode=0o600, uid=uid, gid=gid)
            written += 1
    for rel in sorted(set(before) - set(now)):
        removed += nodetree.remove(fs, f"{repo}/{rel}")
    return {"written": written, "removed": removed}


def retention_times(daily: int, weekly: int, now: datetime) -> list[datetime]:
    """Noon of each of the last ``daily + 2`` days, then one day a week further back, for
    ``weekly + 2`` weeks: enough old snapshots for both rules to keep and to drop some."""
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    days = list(range(1, daily + 3)) + [7 * k for k in range(daily // 7 + 2, daily // 7 + weekly + 4)]
    return sorted(noon - timedelta(days=d) for d in days)


def _same_group(tool: str, s: dict[str, Any], host: str, paths: list[str]) -> bool:
    return tool == "borg" or (s.get("host") == host and sorted(s.get("paths") or []) == paths)


class Retention:
    """The grader adds old snapshots (dated over past days and weeks) to the repository, runs
    the candidate's backup script, and reads which of them the repository still keeps: exactly
    those the brief's --keep-daily / --keep-weekly keep."""

    name = "backup.retention"
    needs: frozenset[Capability] = frozenset({"node_exec", "node_fs"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        node, repo = args["repo_node"], args["repo"]
        daily, weekly = int(args["keep_daily"]), int(args["keep_weekly"])
        with Workdir() as w:
            def seed() -> tuple[dict[str, Any], str]:
                local = w.path / "seed"
                env = br.clean_env(w.path, str(args["password"]))
                with ctx.node_fs(node) as fs:
                    st = nodetree.lstat(fs, repo)
                    if st is None or not stat.S_ISDIR(st.st_mode):
                        return {"kind": "missing", "repo": repo}, "no repository"
                    nodetree.copy_out(fs, repo, local)
                    kind = br.kind_of(local)
                    out: dict[str, Any] = {"kind": kind, "repo": repo, "error": None}
                    if kind not in ("restic", "borg"):
                        return out, f"not a restic or borg repository ({kind})"
                    try:
                        s0 = br.snapshots(kind, local, env)
                    except br.ToolError as exc:
                        out["error"] = str(exc)
                        return out, str(exc)
                    mine = [s for s in s0 if args["data_root"] in (s.get("paths") or [])] or s0
                    host = str(mine[-1]["host"]) if mine else "srv1"
                    paths = [args["data_root"]]
                    digest = br.tree_digest(local)
                    br.add_old_snapshots(kind, local, env, data_dir=args["data_root"], host=host,
                                         times=retention_times(daily, weekly, datetime.now()), tag=RETENTION_TAG)
                    s1 = br.snapshots(kind, local, env)
                    synthetic = [s for s in s1 if s["id"] not in {x["id"] for x in s0}]
                    out.update({"before": s0, "synthetic": synthetic, "host": host, "paths": paths,
                                **sync_back(fs, repo, local, digest)})
                return out, (f"{len(s0)} snapshot(s) in the repository; the grader added {len(synthetic)} old ones "
                             f"(from {synthetic[0]['time']} to {synthetic[-1]['time']}), host {host}, "
                             f"paths {paths}" if synthetic else "no snapshot added")

            evidence = [_grader_step(ctx, "seed", f"add old snapshots to {node}:{repo} (host restic/borg on a copy, "
                                     "files written back with the grader's code)", f"{node}:{repo}", seed,
                                     kind="fault", meta={"phase": "seed"})]
            synthetic = (evidence[0].parsed or {}).get("synthetic") if evidence[0].ok else None
            if not synthetic:
                return evidence
            evidence.append(_run_script(ctx, args["node"], args["backup_script"], float(args.get("run_timeout", 110)),
                                        meta={"phase": "run"}, label="backup"))
            after = _read_repo_ev(ctx, args, w.path, "after")
            evidence.append(after)
            left = {s["id"] for s in (after.parsed or {}).get("snapshots", [])} if after.ok else set()

            def cleanup() -> tuple[dict[str, Any], str]:
                survivors = [s for s in synthetic if s["id"] in left]
                if not survivors:
                    return {"removed_snapshots": 0}, "none of the grader's snapshots left"
                local = w.path / "cleanup"
                env = br.clean_env(w.path, str(args["password"]))
                with ctx.node_fs(node) as fs:
                    nodetree.copy_out(fs, repo, local)
                    digest = br.tree_digest(local)
                    br.forget(br.kind_of(local), local, env, survivors)
                    res = sync_back(fs, repo, local, digest)
                return {"removed_snapshots": len(survivors), **res}, \
                    f"removed the {len(survivors)} snapshot(s) the grader had added and the repository kept"

            evidence.append(_grader_step(ctx, "cleanup", f"restore {node}:{repo}: remove the grader's old snapshots",
                                         f"{node}:{repo}", cleanup, kind="fault", meta={"phase": "cleanup"}))
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        seed = _phase(evidence, "seed")
        if seed is None or not seed.ok:
            return error_if_unrun(evidence) or Verdict.errored("Aucune mesure.", "No measurement.")
        s = seed.parsed or {}
        if (bad := _repo_unreadable(s, args["repo"])) is not None:
            return bad
        if (err := error_if_unrun([e for e in evidence if e.meta.get("phase") != "cleanup"])) is not None:
            return err
        after = _phase(evidence, "after")
        if after is None:
            return Verdict.errored("Le dépôt n'a pas été relu.", "The repository was not read again.")
        if (bad := _repo_unreadable(after.parsed or {}, args["repo"])) is not None:
            return bad
        tool = s["kind"]
        daily, weekly = int(args["keep_daily"]), int(args["keep_weekly"])
        before = s.get("before") or []
        synthetic = s.get("synthetic") or []
        syn_ids = {x["id"] for x in synthetic}
        now = after.parsed.get("snapshots") or []
        now_ids = {x["id"] for x in now}
        new = [x for x in now if x["id"] not in syn_ids and x["id"] not in {b["id"] for b in before}]
        group = [x for x in [*before, *synthetic, *new] if _same_group(tool, x, s.get("host", ""), s.get("paths", []))]
        expected = br.kept_by_policy(tool, group, daily, weekly) & syn_ids
        kept = syn_ids & now_ids
        if kept == expected:
            return Verdict.passed(
                f"Sur {len(synthetic)} instantanés anciens ajoutés par l'évaluateur, le dépôt garde exactement les "
                f"{len(kept)} que garde la rétention demandée ({daily} quotidiennes, {weekly} hebdomadaires).",
                f"Of {len(synthetic)} old snapshots the grader added, the repository keeps exactly the {len(kept)} the "
                f"required retention keeps ({daily} daily, {weekly} weekly).")
        if kept == syn_ids:
            return Verdict.failed(
                f"Après la sauvegarde, le dépôt garde les {len(synthetic)} instantanés anciens ajoutés par "
                f"l'évaluateur : aucune rétention n'est appliquée (attendu : {len(expected)} gardés).",
                f"After the backup, the repository keeps all {len(synthetic)} old snapshots the grader added: no "
                f"retention is applied ({len(expected)} expected to be kept).")
        return Verdict.failed(
            f"Le dépôt garde {len(kept)} des {len(synthetic)} instantanés anciens ajoutés par l'évaluateur ; la "
            f"rétention demandée ({daily} quotidiennes, {weekly} hebdomadaires) en garde {len(expected)} "
            f"({len(kept - expected)} en trop, {len(expected - kept)} supprimé(s) à tort).",
            f"The repository keeps {len(kept)} of the {len(synthetic)} old snapshots the grader added; the required "
            f"retention ({daily} daily, {weekly} weekly) keeps {len(expected)} ({len(kept - expected)} too many, "
            f"{len(expected - kept)} wrongly removed).")


# --- backups travel encrypted --------------------------------------------------------------

def ssh_flows(flows: list[dict[str, Any]]) -> set[frozenset[tuple[str, int]]]:
    """Connections (unordered endpoint pairs) where one side greeted with ``SSH-``."""
    return {frozenset({(f["src"], f["sport"]), (f["dst"], f["dport"])}) for f in flows
            if str(f.get("greeting") or "").startswith("SSH-")}


def backup_session(flows: list[dict[str, Any]], client: str, server: str) -> dict[str, Any]:
    """The SSH sessions from ``client`` to ``server``:22 in a capture: both sides' greetings
    and the bytes each way (from TCP sequence numbers when the flows have ``bytes``, else the
    payload bytes seen)."""
    up = [f for f in flows if f.get("proto", "tcp") == "tcp" and f["src"] == client and f["dst"] == server
          and f["dport"] == 22]
    down = [f for f in flows if f.get("proto", "tcp") == "tcp" and f["src"] == server and f["dst"] == client
            and f["sport"] == 22]
    greet = lambda fs: any(str(f.get("greeting") or "").startswith("SSH-") for f in fs)  # noqa: E731
    size = lambda f: int(f["bytes"] if "bytes" in f else f.get("payload_bytes") or 0)  # noqa: E731
    return {"client_greeting": greet(up), "server_greeting": greet(down),
            "bytes_up": sum(size(f) for f in up), "bytes_down": sum(size(f) for f in down)}


class TransportEncrypted:
    """The grader writes a fresh random proof file in the data, then captures on the LAN while
    it runs the candidate's backup script: the backup must be an SSH session from the file
    server to the backup server's port 22 (both greetings seen) carrying at least the proof
    file's size, no other flow may carry data, and no piece of the data may cross in clear."""

    name = "backup.transport_encrypted"
    needs: frozenset[Capability] = frozenset({"capture", "node_exec", "node_fs"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        path = _proof_path(args["data_root"])
        plant, proofs = _plant_proofs(ctx, args["node"], args["data_root"], [path])
        if not plant.ok:
            return [plant]
        plant.meta["proof_bytes"] = len(proofs[path])
        ready, stop = rendezvous.new_name("ready"), rendezvous.new_name("stop")
        duration = float(args.get("capture_s", 120))
        where = f"segment:{args['segment']}"
        cap = ctx.deferred(where, "capture", "br0", "capture", partial(
            capture_probe.capture, markers=[*args["markers"], *proof_needles(proofs[path])], source=where,
            check=ctx.check.id,
            duration_s=duration, max_bytes=int(args.get("max_bytes", 64 << 20)), ready=ready, stop=stop),
            timeout=duration + 10, meta={"phase": "capture"})

        ready2 = rendezvous.new_name("ready")
        span = ctx.deferred(where, "capture", "br0", "tcp sequence numbers", partial(
            tcpspan.tcp_span, source=where, check=ctx.check.id, duration_s=duration, ready=ready2, stop=stop),
            timeout=duration + 10, meta={"phase": "span"})

        def backup() -> Evidence:
            try:
                if not (ctx.wait_signal(where, ready, 5) and ctx.wait_signal(where, ready2, 5)):
                    return Evidence(id=ctx.eid("backup-not-run"), check=ctx.check.id, kind="exec", source=args["node"],
                                    target=args["node"], action="run the backup script", started_at=utcnow(),
                                    ended_at=utcnow(), ok=False, error="the capture did not start within 5 s",
                                    meta={"phase": "backup"})
                ev = _run_script(ctx, args["node"], args["backup_script"], min(duration - 5, 110),
                                 meta={"phase": "backup"}, label="backup")
                time.sleep(0.3)  # let the last frames of the session cross the bridge
                return ev
            finally:
                ctx.signal(where, stop)

        try:
            evidence = [plant, *ctx.parallel([cap, span, backup])]
        finally:
            removal = _remove_proofs(ctx, args["node"], args["data_root"], [path])
        return [*evidence, removal]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        cap, run, plant = _phase(evidence, "capture"), _phase(evidence, "backup"), _phase(evidence, "plant")
        if cap is None or run is None or plant is None:
            return Verdict.errored("Capture ou sauvegarde manquante.", "Capture or backup missing.")
        p = run.parsed or {}
        if p.get("timed_out"):
            return Verdict.errored(f"Le script de sauvegarde ne s'est pas terminé en {p.get('duration_s')} s.",
                                   f"The backup script did not finish within {p.get('duration_s')} s.")
        c = cap.parsed or {}
        flows = c.get("flows") or []
        hits = c.get("marker_hits") or []
        if hits:
            where = "; ".join(sorted({h["flow"] for h in hits})[:3])
            return Verdict.failed(f"Des données ont circulé en clair sur le LAN ({where}).",
                                  f"Data crossed the LAN in clear ({where}).")
        spans = _phase(evidence, "span")
        span_flows = (spans.parsed or {}).get("flows") or [] if spans is not None else []
        # a connection is SSH if either capture saw an SSH greeting on it (one may drop a frame)
        ssh = ssh_flows(flows) | ssh_flows(span_flows)
        clear = [f for f in flows if f.get("payload_bytes") and
                 frozenset({(f["src"], f["sport"]), (f["dst"], f["dport"])}) not in ssh]
        if clear:
            f = clear[0]
            what = f"{f['proto']} {f['src']}:{f['sport']} → {f['dst']}:{f['dport']}" + \
                (f" « {f['greeting']} »" if f.get("greeting") else "")
            return Verdict.failed(
                f"La sauvegarde emprunte un canal non chiffré : {len(clear)} flux hors SSH, dont {what}.",
                f"The backup uses an unencrypted channel: {len(clear)} non-SSH flow(s), e.g. "
                + what.replace("« ", "'").replace(" »", "'") + ".")
        node, srv = plan.node(args["node"]), plan.node(args["repo_node"])
        client = node.first_address(args["segment"]) if node else None
        server = srv.first_address(args["segment"]) if srv else None
        sess = backup_session(span_flows if spans is not None else flows, str(client), str(server))
        seen = backup_session(flows, str(client), str(server))
        sess["client_greeting"] = sess["client_greeting"] or seen["client_greeting"]
        sess["server_greeting"] = sess["server_greeting"] or seen["server_greeting"]
        need = int(WIRE_SHARE * int(plant.meta.get("proof_bytes") or PROOF_BYTES))
        if not (sess["client_greeting"] and sess["server_greeting"]) or sess["bytes_up"] < need:
            return Verdict.failed(
                f"Pendant la sauvegarde lancée par l'évaluateur, aucune session SSH de {args['node']} vers "
                f"{args['repo_node']}:22 n'a porté les données ({sess['bytes_up']} octets montants, au moins {need} "
                f"attendus pour le seul fichier témoin frais ; poignées de main SSH : {sess['client_greeting']}/"
                f"{sess['server_greeting']}).",
                f"During the backup the grader ran, no SSH session from {args['node']} to {args['repo_node']}:22 "
                f"carried the data ({sess['bytes_up']} bytes up, at least {need} expected for the proof file alone; "
                f"SSH greetings: {sess['client_greeting']}/{sess['server_greeting']}).")
        return Verdict.passed(
            f"Pendant la sauvegarde ({p.get('duration_s')} s), la session SSH {args['node']} → {args['repo_node']}:22 "
            f"a porté {sess['bytes_up']} octets (fichier témoin frais : {plant.meta.get('proof_bytes')}), aucun autre "
            "flux de données, aucun "
            "morceau des données en clair.",
            f"During the backup ({p.get('duration_s')} s), the SSH session {args['node']} → {args['repo_node']}:22 "
            f"carried {sess['bytes_up']} bytes (fresh proof file: {plant.meta.get('proof_bytes')}), no other data "
            "flow, no piece of the data "
            "in clear.")


# --- restore test ----------------------------------------------------------------------------

def compare_manifests(baseline: dict[str, str], after: dict[str, str]) -> dict[str, Any]:
    missing = sorted(k for k in baseline if k not in after)
    mismatched = sorted(k for k in baseline if k in after and after[k] != baseline[k])
    extra = sorted(k for k in after if k not in baseline)
    return {"files_checked": len(baseline), "intact": len(baseline) - len(missing) - len(mismatched),
            "missing": len(missing), "mismatched": len(mismatched), "extra": len(extra),
            "missing_files": missing[:50], "mismatched_files": mismatched[:50], "extra_files": extra[:20]}


RANSOM = b"\x8f\x1b CHIFFRE PAR RANCONGICIEL \x00\xff" * 4
RANSOM_TAIL = b"\x00RANCON-CLE\x00" + bytes(range(256))
RANSOM_NOTE = "LISEZ-MOI-RANCON.txt"


def manifest(fs: NodeFS, root: str) -> dict[str, Any]:
    """sha256 of every regular file below ``root``, computed by the grader's own code."""
    if nodetree.lstat(fs, root) is None:
        return {"root": root, "exists": False, "files": {}, "bytes": 0}
    tree = fs.hash_tree(root)
    return {"root": root, "exists": True, "files": {k: v.sha256 for k, v in sorted(tree.items())},
            "bytes": sum(v.size for v in tree.values())}


def damage(fs: NodeFS, root: str) -> dict[str, Any]:
    """The simulated ransomware, with the grader's code: the biggest top folder deleted, the
    database dump, the proof files and every 7th file overwritten at their start and grown by a
    trailer (so their size changes), a ransom note."""
    tree = fs.hash_tree(root)
    tops: dict[str, int] = {}
    for rel in tree:
        if "/" in rel:
            tops[rel.split("/", 1)[0]] = tops.get(rel.split("/", 1)[0], 0) + 1
    out: dict[str, Any] = {"deleted_folder": None, "deleted_files": 0, "corrupted": [], "note": RANSOM_NOTE}
    if tops:
        name = max(tops, key=lambda d: (tops[d], d))
        out["deleted_folder"] = name
        out["deleted_files"] = nodetree.remove(fs, f"{root}/{name}")
    files = sorted(rel for rel in tree if not (out["deleted_folder"] and rel.startswith(out["deleted_folder"] + "/")))
    hit = [f for f in files if f.endswith(".sql") or f.startswith(PROOF_PREFIX)]
    for rel in (hit + [f for f in files[::7] if f not in hit])[:40]:
        nodetree.overwrite_start(fs, f"{root}/{rel}", RANSOM, grow=RANSOM_TAIL)
        out["corrupted"].append(rel)
    nodetree.write_file(fs, f"{root}/{RANSOM_NOTE}", b"Vos fichiers sont chiffres (simulation labkit).\n")
    return out


class RestoreTest:
    """Fresh proof files written by the grader and backed up by the candidate's own backup
    script (run by the grader), then a simulated ransomware (grader's code), then the
    candidate's restore script; every file's sha256 (grader's code) against the manifest
    recorded at ``up`` plus the proof files, which can only come back from the repository."""

    name = "backup.restore_test"
    needs: frozenset[Capability] = frozenset({"capture", "node_exec", "node_fs"})

    def _manifest(self, ctx: CheckContext, args: dict[str, Any], phase: str) -> Evidence:
        node, root = args["node"], args["data_root"]

        def go() -> tuple[dict[str, Any], str]:
            with ctx.node_fs(node) as fs:
                m = manifest(fs, root)
            return {"json": m}, f"{len(m['files'])} files, {m['bytes']} bytes under {root}"

        return _grader_step(ctx, f"manifest-{phase}", f"sha256 of every file under {root} (grader's code)",
                            f"{node}:{root}", go, meta={"phase": phase})

    def baseline(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        return [self._manifest(ctx, args, "manifest")]

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        node, root, script = args["node"], args["data_root"], args["restore_script"]
        target = f"{node}:{root}"

        def check_script() -> tuple[dict[str, Any], str]:
            with ctx.node_fs(node) as fs:
                try:
                    fd = fs.open(script)
                except OSError as exc:
                    return {"executable": False, "why": exc.strerror}, f"{script}: {exc.strerror}"
                try:
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
            ok = stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)
            return {"executable": ok, "mode": oct(stat.S_IMODE(st.st_mode))}, f"{script}: mode {oct(st.st_mode)}"

        evidence = [_grader_step(ctx, "script", f"stat {script} (grader's code)", f"{node}:{script}", check_script,
                                 meta={"phase": "script"})]
        if not evidence[0].ok or not evidence[0].parsed["executable"] or not ctx.baseline:
            return evidence
        stash: nodetree.TreeCopy | None = None

        def take() -> tuple[dict[str, Any], str]:
            nonlocal stash
            with ctx.node_fs(node) as fs:
                stash = nodetree.read_tree(fs, root)
            return {"files": len(stash.files), "bytes": stash.size}, \
                f"{len(stash.files)} files, {stash.size} bytes kept in the grader's memory only"

        evidence.append(_grader_step(ctx, "stash", f"copy {root} into the grader's memory (to undo the damage)",
                                     target, take, meta={"phase": "stash"}))
        if stash is None:
            return evidence
        try:
            tops = sorted({r.split("/", 1)[0] for r in stash.files if "/" in r},
                          key=lambda d: (sum(r.startswith(d + "/") for r in stash.files), d))  # type: ignore[union-attr]
            paths = [_proof_path(root)] + ([_proof_path(f"{root}/{tops[-1]}")] if tops else [])
            plant, proofs = _plant_proofs(ctx, node, root, paths)
            evidence.append(plant)
            if not plant.ok:
                return evidence
            evidence.append(_run_script(ctx, node, args["backup_script"], float(args.get("timeout", 120)),
                                        meta={"phase": "backup"}, label="backup"))

            def hit() -> tuple[dict[str, Any], str]:
                with ctx.node_fs(node) as fs:
                    d = damage(fs, root)
                return d, (f"deleted folder: {d['deleted_folder']} ({d['deleted_files']} files)\n"
                           f"corrupted files: {len(d['corrupted'])}\n"
                           + "".join(f"  {f}\n" for f in d["corrupted"][:10]) + f"ransom note added: {d['note']}")

            dmg = _grader_step(ctx, "damage", f"simulated ransomware on {root}: delete one folder, corrupt files, "
                               "drop a note (grader's code)", target, hit, kind="fault", meta={"phase": "damage"})
            evidence.append(dmg)
            if not dmg.ok:
                return evidence
            timeout = float(args.get("timeout", 120))
            ready, stop = rendezvous.new_name("ready"), rendezvous.new_name("stop")
            where = f"segment:{args['segment']}"
            cap = ctx.deferred(where, "capture", "br0", "tcp sequence numbers", partial(
                tcpspan.tcp_span, source=where, check=ctx.check.id, duration_s=timeout + 15, ready=ready, stop=stop),
                timeout=timeout + 25, meta={"phase": "restore-capture"})

            def restore() -> Evidence:
                try:
                    if not ctx.wait_signal(where, ready, 5):
                        return Evidence(id=ctx.eid("restore-not-run"), check=ctx.check.id, kind="exec", source=node,
                                        target=node, action="run the restore script", started_at=utcnow(),
                                        ended_at=utcnow(), ok=False, error="the capture did not start within 5 s",
                                        meta={"phase": "restore"})
                    t0 = time.monotonic()
                    ev = _run_script(ctx, node, script, timeout, meta={"phase": "restore"}, label="restore")
                    ev.meta["rto_s"] = round(time.monotonic() - t0, 3)
                    time.sleep(0.3)  # let the last frames cross the bridge
                    return ev
                finally:
                    ctx.signal(where, stop)

            cap_ev, run = ctx.parallel([cap, restore])
            evidence += [cap_ev, run]
            if not run.ok:
                return evidence
            rto = float(run.meta["rto_s"])
            cap_ev.meta["proof_bytes"] = sum(len(c) for c in proofs.values())
            after = self._manifest(ctx, args, "verify")
            base = (ctx.baseline[-1].parsed or {}).get("json") or {}
            now = (after.parsed or {}).get("json") or {}
            if after.ok and isinstance(base.get("files"), dict):
                rel = {p[len(root.rstrip('/')) + 1:]: hashlib.sha256(c).hexdigest() for p, c in proofs.items()}
                cmp = compare_manifests(base["files"], {k: v for k, v in now.get("files", {}).items()
                                                       if k not in rel})
                cmp["proofs"] = len(rel)
                cmp["proofs_restored"] = sum(now.get("files", {}).get(k) == v for k, v in rel.items())
                cmp["rto_s"] = rto
                after.meta.update({k: cmp[k] for k in ("files_checked", "mismatched", "missing", "extra", "rto_s",
                                                       "proofs", "proofs_restored")})
                after.parsed["comparison"] = cmp
                after.parsed.pop("json", None)
                after.raw = (f"files checked: {cmp['files_checked']}\nintact: {cmp['intact']}\n"
                             f"mismatched (sha256 differs): {cmp['mismatched']}\nmissing: {cmp['missing']}\n"
                             f"extra files: {cmp['extra']}\n"
                             f"grader's proof files restored byte for byte: {cmp['proofs_restored']}/{cmp['proofs']}\n"
                             f"time to restore (RTO): {rto:.2f} s\n"
                             + "".join(f"mismatched: {f}\n" for f in cmp["mismatched_files"][:5])
                             + "".join(f"missing: {f}\n" for f in cmp["missing_files"][:5]))
            evidence.append(after)
        finally:
            def undo() -> tuple[dict[str, Any], str]:
                with ctx.node_fs(node) as fs:
                    removed = nodetree.clear_dir(fs, root)
                    written = nodetree.write_tree(fs, root, stash)  # type: ignore[arg-type]
                return {"removed": removed, "written": written}, \
                    f"{root} put back as it was before the test: {written} files from the grader's copy"

            evidence.append(_grader_step(ctx, "undo", f"restore {root} as it was before the test, from the grader's "
                                         "copy (grader's code)", target, undo, kind="fault", meta={"phase": "undo"}))
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        script = args["restore_script"]
        base = _phase(evidence, "baseline") or _phase(evidence, "manifest")
        files = ((base.parsed or {}).get("json") or {}).get("files") if base is not None else None
        if not isinstance(files, dict) or not files:
            return Verdict.errored("Aucun manifeste de référence des données n'a été enregistré au démarrage.",
                                   "No reference manifest of the data was recorded at start-up.")
        chk = _phase(evidence, "script")
        if chk is None or not chk.ok:
            return Verdict.errored(f"Le script {script} n'a pas pu être examiné.", f"{script} could not be examined.")
        if not chk.parsed.get("executable"):
            return Verdict.failed(f"Pas de script de restauration exécutable en {script}.",
                                  f"No executable restore script at {script}.")
        for phase in ("stash", "plant", "damage"):
            ev = _phase(evidence, phase)
            if ev is None or not ev.ok:
                why = (ev.error if ev is not None else None) or "not run"
                return Verdict.errored(f"Le test n'a pas pu préparer l'attaque ({phase} : {why}).",
                                       f"The test could not prepare the attack ({phase}: {why}).")
        run = _phase(evidence, "restore")
        if run is None or not run.ok:
            why = (run.error if run is not None else None) or "not run"
            return Verdict.errored(f"Le script de restauration n'a pas pu être lancé ({why}).",
                                   f"The restore script could not be run ({why}).")
        p = run.parsed or {}
        if p.get("timed_out"):
            t = run.meta.get("timeout_s")
            return Verdict.errored(f"Le script de restauration ne s'est pas terminé en {t} s : arrêté.",
                                   f"The restore script did not finish within {t} s: stopped.")
        verify = _phase(evidence, "verify")
        if verify is None or not verify.ok or "comparison" not in (verify.parsed or {}):
            return Verdict.errored("Les données n'ont pas pu être vérifiées après la restauration.",
                                   "The data could not be verified after the restore.")
        c = verify.parsed["comparison"]
        rto = float(c["rto_s"])
        head_fr = f"{c['files_checked']} fichiers vérifiés, {c['mismatched']} altéré(s), {c['missing']} manquant(s)"
        head_en = f"{c['files_checked']} files checked, {c['mismatched']} mismatched, {c['missing']} missing"
        if c["mismatched"] or c["missing"]:
            return Verdict.failed(f"Après restauration : {head_fr} (durée {rto:.2f} s).",
                                  f"After the restore: {head_en} (took {rto:.2f} s).")
        cap = _phase(evidence, "restore-capture")
        if cap is None or not cap.ok:
            why = (cap.error if cap is not None else None) or "not run"
            return Verdict.errored(f"La capture pendant la restauration n'a pas pu être faite ({why}).",
                                   f"The capture during the restore could not be made ({why}).")
        src, dst = plan.node(args["repo_node"]), plan.node(args["node"])
        server = src.first_address(args["segment"]) if src else None
        client = dst.first_address(args["segment"]) if dst else None
        down = sum(int(f.get("bytes") or 0) for f in (cap.parsed or {}).get("flows") or []
                   if f.get("src") == server and f.get("dst") == client)
        need = int(WIRE_SHARE * int(cap.meta.get("proof_bytes") or 0))
        if c.get("proofs_restored") != c.get("proofs") or down < need:
            if c.get("proofs_restored") == c.get("proofs"):
                return Verdict.failed(
                    f"{head_fr}, mais seuls {down} octets sont venus de {args['repo_node']} pendant la restauration "
                    f"(au moins {need} attendus pour les fichiers témoins) : la restauration ne vient pas du dépôt.",
                    f"{head_en}, but only {down} bytes came from {args['repo_node']} during the restore (at least "
                    f"{need} expected for the proof files): the restore does not come from the repository.")
            return Verdict.failed(
                f"{head_fr}, mais {c.get('proofs_restored')}/{c.get('proofs')} des fichiers témoins frais, "
                "sauvegardés juste avant l'attaque, sont revenus : la restauration ne vient pas du dépôt.",
                f"{head_en}, but only {c.get('proofs_restored')}/{c.get('proofs')} of the fresh proof files, backed "
                "up just before the attack, came back: the restore does not come from the repository.")
        if p.get("rc") != 0:
            return Verdict.failed(f"{head_fr}, mais le script a échoué (code {p.get('rc')}).",
                                  f"{head_en}, but the script failed (exit {p.get('rc')}).")
        return Verdict.passed(
            f"Restauration probante : {head_fr}, {c['proofs']} fichier(s) témoin(s) frais revenu(s) octet pour "
            f"octet, {down} octets venus de {args['repo_node']} ; temps de restauration mesuré (RTO) {rto:.2f} s.",
            f"Restore proven: {head_en}, {c['proofs']} fresh proof file(s) back byte for byte, {down} bytes from "
            f"{args['repo_node']}; measured time to restore (RTO) {rto:.2f} s.")


# --- no password login on the backup server ------------------------------------------------

class NoPasswordLogin:
    """The grader tries a password login on the backup server's SSH from its vantage point."""

    name = "backup.no_password_login"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        vantage = args["vantage"]
        seg = ctx.plan.vantage_point(vantage).segment  # type: ignore[union-attr]
        addr = ctx.address(args["node"], seg)
        return [ctx.probe(vantage, "ssh", f"{addr}:22", "ssh password login attempt", partial(
            sshauth.password_login, addr, user=args["user"], password=args["password"], source=vantage,
            check=ctx.check.id))]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not evidence:
            return Verdict.errored("Aucune mesure n'a été faite.", "No measurement was made.")
        p = evidence[-1].parsed or {}
        node, user = args["node"], args["user"]
        if "accepted" in (p.get("password"), p.get("keyboard_interactive")) or "none" in (p.get("allowed") or []):
            return Verdict.failed(f"{node} accepte une connexion SSH par mot de passe pour {user}.",
                                  f"{node} accepts an SSH password login for {user}.")
        offered = [m for m in ("password", "keyboard-interactive") if m in (p.get("allowed") or [])]
        if offered:
            return Verdict.failed(f"{node} propose encore l'authentification par mot de passe ({', '.join(offered)}).",
                                  f"{node} still offers password authentication ({', '.join(offered)}).")
        allowed = ", ".join(p.get("allowed") or []) or "—"
        return Verdict.passed(f"{node} refuse les mots de passe : méthodes proposées {allowed}.",
                              f"{node} refuses passwords: methods offered {allowed}.")


GRADERS = [RepositoryEncrypted(), RecentSnapshot(), Schedule(), Retention(), TransportEncrypted(), RestoreTest(),
           NoPasswordLogin()]

__all__ = ["GRADERS", "NoPasswordLogin", "RecentSnapshot", "RepositoryEncrypted", "RestoreTest", "Retention",
           "Schedule", "TransportEncrypted", "backup_entries", "backup_session", "compare_manifests", "cron_entries",
           "damage", "manifest", "read_repository", "retention_times"]
