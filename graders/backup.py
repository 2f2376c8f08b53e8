"""Backup and restore checks: an encrypted repository on the backup server, backups that
travel encrypted, a recent snapshot, a schedule, a retention policy, a proven restore, and
no password login on the backup server.

What is observed where:

- from the grader's side: the LAN capture (a raw packet socket on the segment's bridge, in
  the switch namespace) while the grader runs the candidate's backup, and the SSH password
  attempt sent from the grader's vantage point;
- node state, read through the provider (``nsenter`` into the node, read-only commands):
  the repository files and snapshot list on the backup server, crontabs and scripts on the
  file server, and the sha256 manifest of the business data. The lab's check docs say so;
- actions of the grader in a node: it runs the candidate's backup and restore scripts, and
  damages the data for the restore test (recorded as ``fault`` evidence, always undone from
  a copy the grader took just before).
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from labkit.adapters.probes import capture as capture_probe
from labkit.adapters.probes import sshauth
from labkit.domain.grading import CheckContext, error_if_unrun, utcnow
from labkit.models.evidence import Evidence
from labkit.models.instance import InstancePlan
from labkit.models.results import Verdict

# The environment cron gives a job (cron(8)); the grader runs the candidate's scripts with it.
CRON_ENV = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
            "SHELL=/bin/sh", "LOGNAME=root", "USER=root", "LANG=C.UTF-8"]
# Read-only programs run with the node's own Python, isolated from labkit's environment.
NODE_PY = [*CRON_ENV, "/usr/bin/python3", "-I", "-c"]
NODE_SH = [*CRON_ENV, "/bin/sh", "-c"]
OUTPUT_MAX = 16_000

# --- node-side read-only programs (run with the node's python3, input on stdin) -------------

MANIFEST_PY = r"""
import hashlib, json, os, sys
root = sys.argv[1]
out = {"root": root, "exists": os.path.isdir(root), "files": {}, "bytes": 0}
for d, dirs, files in os.walk(root):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(d, f)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out["files"][os.path.relpath(p, root)] = h.hexdigest()
        out["bytes"] += os.path.getsize(p)
json.dump(out, sys.stdout)
"""

REPO_SCAN_PY = r"""
import json, os, sys
req = json.load(sys.stdin)
root, needles, limit = req["repo"], [m.encode() for m in req["markers"] if m], req["max_bytes"]
out = {"repo": root, "exists": os.path.isdir(root), "kind": "missing", "files": 0, "bytes": 0,
       "scanned_bytes": 0, "hits": [], "truncated": False}
if out["exists"]:
    cfg = os.path.join(root, "config")
    readme = os.path.join(root, "README")
    if os.path.isfile(cfg) and os.path.isdir(os.path.join(root, "keys")) and os.path.isdir(os.path.join(root, "data")):
        out["kind"] = "restic"
    elif os.path.isfile(readme) and open(readme, "rb").read(64).startswith(b"This is a Borg Backup repository"):
        out["kind"] = "borg"
    keep = max((len(n) for n in needles), default=1) - 1
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            out["files"] += 1
            out["bytes"] += os.path.getsize(p)
            if out["scanned_bytes"] >= limit:
                out["truncated"] = True
                continue
            tail = b""
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    out["scanned_bytes"] += len(chunk)
                    window = tail + chunk
                    for i, n in enumerate(needles):
                        hit = {"marker": i, "file": os.path.relpath(p, root)}
                        if n in window and hit not in out["hits"] and len(out["hits"]) < 50:
                            out["hits"].append(hit)
                    tail = window[-keep:] if keep else b""
    if out["kind"] == "missing":
        out["kind"] = "empty" if out["files"] == 0 else "other"
json.dump(out, sys.stdout)
"""

CRON_READ_PY = r"""
import glob, json, os, re, sys
req = json.load(sys.stdin)
out = {"entries": [], "files": {}, "daemon": None, "scripts": {}}
def entries(path, text, system):
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
        out["entries"].append({"file": path, "line": n, "schedule": spec, "user": user, "command": cmd})
for path in ["/etc/crontab"] + sorted(glob.glob("/etc/cron.d/*")):
    if os.path.isfile(path) and not path.endswith((".dpkg-dist", ".dpkg-old")) and "e2scrub" not in path:
        text = open(path, errors="replace").read()
        out["files"][path] = text
        entries(path, text, True)
for path in sorted(glob.glob("/var/spool/cron/crontabs/*")):
    text = open(path, errors="replace").read()
    out["files"][path] = text
    entries(path, text, False)
try:
    pid = int(open("/run/crond.pid").read().split()[0])
    out["daemon"] = {"pid": pid, "exe": os.readlink("/proc/%d/exe" % pid)}
except (OSError, ValueError, IndexError) as exc:
    out["daemon"] = {"error": str(exc)}
for path in req.get("scripts", []):
    try:
        out["scripts"][path] = {"text": open(path, errors="replace").read(200000),
                                "executable": os.access(path, os.X_OK)}
    except OSError as exc:
        out["scripts"][path] = {"error": str(exc)}
json.dump(out, sys.stdout)
"""

DAMAGE_PY = r"""
import json, os, shutil, sys
root = sys.argv[1]
def count(d):
    return sum(len(f) for _, _, f in os.walk(d))
top = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
out = {"deleted_folder": None, "deleted_files": 0, "corrupted": [], "note": None}
if top:
    name = max(top, key=lambda d: (count(os.path.join(root, d)), d))  # the biggest folder
    out["deleted_folder"] = name
    out["deleted_files"] = count(os.path.join(root, name))
    shutil.rmtree(os.path.join(root, name))
files = []
for d, dirs, names in os.walk(root):
    dirs.sort()
    files += [os.path.join(d, n) for n in sorted(names)]
dumps = [p for p in files if p.endswith(".sql")]  # the database dump is always hit
for p in (dumps + [p for p in files[::7] if p not in dumps])[:40]:
    with open(p, "r+b") as fh:
        fh.write(b"\x8f\x1b CHIFFRE PAR RANCONGICIEL \x00\xff" * 4)
    out["corrupted"].append(os.path.relpath(p, root))
note = os.path.join(root, "LISEZ-MOI-RANCON.txt")
with open(note, "w") as fh:
    fh.write("Vos fichiers sont chiffres (simulation labkit).\n")
out["note"] = os.path.basename(note)
json.dump(out, sys.stdout)
"""


def _snapshot_list_sh(repo: str) -> list[str]:
    """List snapshots of a restic or borg repository, locally on the backup server; the
    password comes on stdin (never on a command line)."""
    script = (
        'IFS= read -r P; export RESTIC_PASSWORD="$P" BORG_PASSPHRASE="$P"; '
        'if [ -f "$1/config" ] && [ -d "$1/keys" ]; then echo restic; '
        'exec restic -r "$1" --no-lock --no-cache --json snapshots; '
        'elif [ -f "$1/README" ] && grep -q "Borg Backup" "$1/README"; then echo borg; '
        'exec borg list --bypass-lock --json "$1"; '
        'else echo none; exit 3; fi'
    )
    return [*NODE_SH, script, "sh", repo]


# --- I/O helpers ---------------------------------------------------------------------------

def node_exec(ctx: CheckContext, node: str, argv: list[str], *, whole_output: bool = False,
              **kw: Any) -> Evidence:
    """:meth:`CheckContext.node_exec` with stdout read as JSON when it is JSON (``parsed["json"]``),
    and the whole of stdout kept with ``whole_output``."""
    return ctx.node_exec(node, argv, parse_json=True, output_max=None if whole_output else OUTPUT_MAX, **kw)


def _run_script(ctx: CheckContext, node: str, command: str, timeout: float, *,
                meta: dict[str, Any] | None = None, label: str = "run") -> Evidence:
    """Run a candidate command as cron would (``/bin/sh -c``, cron's environment), bounded by
    ``timeout`` seconds (then TERM to its process group, KILL 5 s later)."""
    argv = [*CRON_ENV, "timeout", "-k", "5", f"{timeout:g}", "/bin/sh", "-c", command]
    ev = node_exec(ctx, node, argv, action=f"{command} (as cron would, at most {timeout:g} s)", timeout=timeout + 20,
                   meta={"timeout_s": timeout, **(meta or {})}, label=label)
    if ev.ok and ev.parsed["rc"] in (124, 137):
        ev.parsed["timed_out"] = True
    return ev


def _json_of(ev: Evidence | None) -> Any:
    return (ev.parsed or {}).get("json") if ev is not None and ev.ok and isinstance(ev.parsed, dict) else None


def _phase(evidence: list[Evidence], phase: str) -> Evidence | None:
    return next((e for e in evidence if e.meta.get("phase") == phase), None)


def _err_text(ev: Evidence) -> str:
    p = ev.parsed if isinstance(ev.parsed, dict) else {}
    text = (p.get("stderr") or p.get("stdout") or "").strip().splitlines()
    return text[-1][:200] if text else f"rc={p.get('rc')}"


# --- repository encrypted --------------------------------------------------------------------

class RepositoryEncrypted:
    """The repository exists on the backup server, is a restic or borg repository, and no
    business-data marker can be read in any of its files."""

    name = "backup.repository_encrypted"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        req = json.dumps({"repo": args["repo"], "markers": args["markers"],
                          "max_bytes": int(args.get("max_bytes", 512 << 20))})
        return [node_exec(ctx, args["node"], [*NODE_PY, REPO_SCAN_PY], input=req,
                          action=f"read-only scan of {args['repo']} for the business-data markers",
                          target=f"{args['node']}:{args['repo']}", timeout=120, label="scan")]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        scan = _json_of(evidence[-1] if evidence else None)
        if not isinstance(scan, dict):
            return Verdict.errored("Le dépôt n'a pas pu être examiné.", "The repository could not be examined.")
        repo = args["repo"]
        if not scan.get("exists") or scan.get("kind") in ("missing", "empty"):
            return Verdict.failed(f"Aucun dépôt de sauvegarde dans {repo} sur {args['node']}.",
                                  f"No backup repository in {repo} on {args['node']}.")
        hits = scan.get("hits") or []
        if hits:
            names = sorted({h["file"] for h in hits})
            n = f"{len(names)}" if len(hits) < 50 else f"≥ {len(names)}"
            files = ", ".join(names[:3])
            return Verdict.failed(
                f"Des données métier sont lisibles en clair dans le dépôt ({n} fichier(s), ex. {files}) : "
                "il n'est pas chiffré.",
                f"Business data is readable in clear in the repository ({n} file(s), e.g. {files}): "
                "it is not encrypted.")
        if scan.get("kind") not in ("restic", "borg"):
            return Verdict.failed(f"{repo} n'est ni un dépôt restic ni un dépôt borg.",
                                  f"{repo} is neither a restic nor a borg repository.")
        note_fr = " (examen limité aux premiers octets)" if scan.get("truncated") else ""
        note_en = " (scan limited to the first bytes)" if scan.get("truncated") else ""
        return Verdict.passed(
            f"Dépôt {scan['kind']} présent ({scan['files']} fichiers, {scan['bytes']} octets) ; aucun marqueur des "
            f"données métier n'y est lisible{note_fr}.",
            f"{scan['kind']} repository present ({scan['files']} files, {scan['bytes']} bytes); no business-data "
            f"marker is readable in it{note_en}.")


# --- recent snapshot -----------------------------------------------------------------------

def _parse_time(text: str) -> datetime | None:
    """restic (nanoseconds, offset) and borg (naive, taken as UTC) timestamps."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = m.group(3) or "+00:00"
    dt = datetime.fromisoformat(m.group(1) + frac + ("+00:00" if tz == "Z" else tz))
    return dt.astimezone(UTC)


def snapshot_times(ev: Evidence) -> tuple[str | None, list[datetime]]:
    """(tool, snapshot times) from a snapshot listing's evidence."""
    p = ev.parsed if isinstance(ev.parsed, dict) else {}
    out = str(p.get("stdout") or "")
    first, _, rest = out.partition("\n")
    tool = first.strip() or None
    try:
        data = json.loads(rest) if rest.strip() else None
    except ValueError:
        data = None
    items: list[Any] = []
    if tool == "restic" and isinstance(data, list):
        items = [s.get("time") for s in data if isinstance(s, dict)]
    elif tool == "borg" and isinstance(data, dict):
        items = [a.get("time") or a.get("start") for a in data.get("archives", []) if isinstance(a, dict)]
    times = [t for t in (_parse_time(str(i)) for i in items if i) if t is not None]
    return tool, sorted(times)


class RecentSnapshot:
    """A snapshot exists that is newer than the recovery point objective (RPO)."""

    name = "backup.recent_snapshot"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        return [node_exec(ctx, args["node"], _snapshot_list_sh(args["repo"]), input=str(args["password"]) + "\n",
                          action=f"list the snapshots of {args['repo']} (restic snapshots / borg list, read-only)",
                          target=f"{args['node']}:{args['repo']}", timeout=60, label="snapshots")]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        if not evidence:
            return Verdict.errored("Aucune mesure n'a été faite.", "No measurement was made.")
        ev = evidence[-1]
        rpo = float(args["rpo_hours"])
        tool, times = snapshot_times(ev)
        if tool not in ("restic", "borg"):
            return Verdict.failed(f"Pas de dépôt restic ou borg lisible dans {args['repo']} : aucun instantané.",
                                  f"No readable restic or borg repository in {args['repo']}: no snapshot.")
        if not times:
            why = _err_text(ev)
            return Verdict.failed(f"Aucun instantané dans le dépôt ({why}).", f"No snapshot in the repository ({why}).")
        age_h = (ev.ended_at.astimezone(UTC) - times[-1]).total_seconds() / 3600
        if age_h > rpo:
            return Verdict.failed(
                f"Le dernier instantané date de {age_h:.1f} h, au-delà du RPO de {rpo:g} h "
                f"({len(times)} instantané(s)).",
                f"The newest snapshot is {age_h:.1f} h old, beyond the {rpo:g} h RPO ({len(times)} snapshot(s)).")
        return Verdict.passed(
            f"Dernier instantané il y a {age_h:.2f} h (RPO {rpo:g} h) ; {len(times)} instantané(s) dans le dépôt.",
            f"Newest snapshot {age_h:.2f} h old (RPO {rpo:g} h); {len(times)} snapshot(s) in the repository.")


# --- schedule ------------------------------------------------------------------------------

def _tokens(command: str) -> list[str]:
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return command.split()


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
    for part in field.split(","):
        if part.isdigit() and int(part) == value:
            return True
    return False


class Schedule:
    """A cron entry on the file server runs the backup every day at the brief's time, cron
    runs in that node, and the entry's command succeeds when the grader runs it."""

    name = "backup.schedule"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        node = args["node"]
        read = node_exec(ctx, node, [*NODE_PY, CRON_READ_PY], input=json.dumps({"scripts": []}),
                         action="read the crontabs (/etc/crontab, /etc/cron.d, /var/spool/cron/crontabs), "
                                "/run/crond.pid",
                         meta={"phase": "crontab"}, label="crontab")
        evidence = [read]
        cron = _json_of(read)
        entries = backup_entries(cron, args["backup_script"]) if isinstance(cron, dict) else []
        if entries:
            evidence.append(_run_script(ctx, node, entries[0]["command"], float(args.get("run_timeout", 120)),
                                        meta={"phase": "run", "entry": f"{entries[0]['file']}:{entries[0]['line']}"}))
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        cron = _json_of(_phase(evidence, "crontab"))
        if not isinstance(cron, dict):
            return Verdict.errored("Les tables cron n'ont pas pu être lues.", "The crontabs could not be read.")
        entries = backup_entries(cron, args["backup_script"])
        if not entries:
            return Verdict.failed("Aucune entrée cron ne lance la sauvegarde.", "No cron entry runs the backup.")
        daemon = cron.get("daemon") or {}
        if not str(daemon.get("exe", "")).endswith("/cron"):
            return Verdict.failed("Le démon cron ne tourne pas sur le serveur : la planification ne s'exécutera pas.",
                                  "The cron daemon does not run on the server: the schedule will not run.")
        hour, minute = int(args["hour"]), int(args["minute"])
        e = entries[0]
        spec = e.get("schedule") or []
        where = f"{e['file']}:{e['line']}"
        daily = len(spec) == 5 and spec[2:] == ["*", "*", "*"]
        if not (daily and _field_matches(spec[0], minute) and _field_matches(spec[1], hour)):
            return Verdict.failed(
                f"L'entrée cron {where} ({' '.join(spec)}) ne lance pas la sauvegarde chaque jour à "
                f"{hour:02d}:{minute:02d}.",
                f"Cron entry {where} ({' '.join(spec)}) does not run the backup every day at {hour:02d}:{minute:02d}.")
        run = _phase(evidence, "run")
        if run is None:
            return Verdict.errored("La commande planifiée n'a pas été lancée.", "The scheduled command was not run.")
        p = run.parsed or {}
        if p.get("timed_out"):
            return Verdict.errored(f"La commande planifiée ne s'est pas terminée en {p.get('duration_s')} s.",
                                   f"The scheduled command did not finish within {p.get('duration_s')} s.")
        if p.get("rc") != 0:
            return Verdict.failed(f"La commande planifiée échoue (code {p.get('rc')} : {_err_text(run)}).",
                                  f"The scheduled command fails (exit {p.get('rc')}: {_err_text(run)}).")
        return Verdict.passed(
            f"{where} lance la sauvegarde chaque jour à {hour:02d}:{minute:02d}, cron tourne, et la commande réussit "
            f"({p.get('duration_s')} s).",
            f"{where} runs the backup every day at {hour:02d}:{minute:02d}, cron runs, and the command succeeds "
            f"({p.get('duration_s')} s).")


# --- retention -----------------------------------------------------------------------------

_KEEP = {
    "daily": (r"--keep-daily(?:=|\s+)(\d+)", r"(?:^|\s)-d\s*(\d+)"),
    "weekly": (r"--keep-weekly(?:=|\s+)(\d+)", r"(?:^|\s)-w\s*(\d+)"),
}


def retention_of(text: str) -> dict[str, Any]:
    """The keep-daily / keep-weekly numbers of the restic ``forget`` or borg ``prune`` lines
    of a shell script (comments ignored)."""
    lines = [ln.split("#", 1)[0] for ln in text.replace("\\\n", " ").splitlines()]
    policy: dict[str, Any] = {"lines": []}
    for ln in lines:
        restic = re.search(r"\brestic\b.*\bforget\b", ln)
        borg = re.search(r"\bborg\b.*\bprune\b", ln)
        if not (restic or borg):
            continue
        policy["lines"].append(ln.strip())
        for key, (long_re, short_re) in _KEEP.items():
            m = re.search(long_re, ln) or (re.search(short_re, ln) if borg else None)
            if m:
                policy[key] = int(m.group(1))
        policy["tool"] = "restic" if restic else "borg"
    return policy


class Retention:
    """The backup script applies the brief's retention (restic forget / borg prune)."""

    name = "backup.retention"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        return [node_exec(ctx, args["node"], [*NODE_PY, CRON_READ_PY],
                          input=json.dumps({"scripts": [args["backup_script"]]}),
                          action=f"read {args['backup_script']} and the crontabs", label="script")]

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        data = _json_of(evidence[-1] if evidence else None)
        if not isinstance(data, dict):
            return Verdict.errored("Le script de sauvegarde n'a pas pu être lu.",
                                   "The backup script could not be read.")
        script = args["backup_script"]
        texts = [str((data.get("scripts") or {}).get(script, {}).get("text") or "")]
        texts += [str(e.get("command", "")) for e in data.get("entries") or []]
        policy = retention_of("\n".join(texts))
        want = {"daily": int(args["keep_daily"]), "weekly": int(args["keep_weekly"])}
        if not policy["lines"]:
            return Verdict.failed(f"Aucune politique de rétention (restic forget / borg prune) dans {script}.",
                                  f"No retention policy (restic forget / borg prune) in {script}.")
        got = {k: policy.get(k) for k in want}
        if got != want:
            return Verdict.failed(
                f"Rétention appliquée : {got['daily']} quotidienne(s), {got['weekly']} hebdomadaire(s) ; "
                f"attendu : {want['daily']} et {want['weekly']}.",
                f"Retention applied: {got['daily']} daily, {got['weekly']} weekly; "
                f"expected {want['daily']} and {want['weekly']}.")
        return Verdict.passed(f"Rétention conforme : {want['daily']} quotidiennes, {want['weekly']} hebdomadaires.",
                              f"Retention as required: {want['daily']} daily, {want['weekly']} weekly.")


# --- backups travel encrypted --------------------------------------------------------------

def _capture(ev_id: str, *, markers: list[str], source: str, check: str, duration_s: float, max_bytes: int,
             ready: threading.Event, stop: threading.Event) -> Evidence:
    return capture_probe.capture(markers=markers, ev_id=ev_id, source=source, check=check, duration_s=duration_s,
                                 max_bytes=max_bytes, ready=ready, stop=stop)


def ssh_flows(flows: list[dict[str, Any]]) -> set[frozenset[tuple[str, int]]]:
    """Connections (unordered endpoint pairs) where one side greeted with ``SSH-``."""
    return {frozenset({(f["src"], f["sport"]), (f["dst"], f["dport"])}) for f in flows
            if str(f.get("greeting") or "").startswith("SSH-")}


class TransportEncrypted:
    """The grader captures on the LAN while it runs the candidate's backup script: no marker
    of the business data may cross in clear, and the backup traffic is SSH only."""

    name = "backup.transport_encrypted"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        ready, stop = threading.Event(), threading.Event()
        duration = float(args.get("capture_s", 120))
        where = f"segment:{args['segment']}"
        cap = ctx.deferred(where, "capture", "br0", "capture", partial(
            _capture, markers=args["markers"], source=where, check=ctx.check.id, duration_s=duration,
            max_bytes=int(args.get("max_bytes", 64 << 20)), ready=ready, stop=stop),
            timeout=duration + 10, meta={"phase": "capture"})

        def backup() -> Evidence:
            try:
                if not ready.wait(5):
                    return Evidence(id=ctx.eid("backup-not-run"), check=ctx.check.id, kind="exec", source=args["node"],
                                    target=args["node"], action="run the backup script", started_at=utcnow(),
                                    ended_at=utcnow(), ok=False, error="the capture did not start within 5 s",
                                    meta={"phase": "backup"})
                ev = _run_script(ctx, args["node"], args["backup_script"], min(duration - 5, 110),
                                 meta={"phase": "backup"}, label="backup")
                time.sleep(0.3)  # let the last frames of the session cross the bridge
                return ev
            finally:
                stop.set()

        return ctx.parallel([cap, backup])

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        cap, run = _phase(evidence, "capture"), _phase(evidence, "backup")
        if cap is None or run is None:
            return Verdict.errored("Capture ou sauvegarde manquante.", "Capture or backup missing.")
        p = run.parsed or {}
        if p.get("timed_out"):
            return Verdict.errored(f"Le script de sauvegarde ne s'est pas terminé en {p.get('duration_s')} s.",
                                   f"The backup script did not finish within {p.get('duration_s')} s.")
        if p.get("rc") != 0:
            return Verdict.failed(
                f"Le script de sauvegarde {args['backup_script']} échoue (code {p.get('rc')} : {_err_text(run)}).",
                f"The backup script {args['backup_script']} fails (exit {p.get('rc')}: {_err_text(run)}).")
        c = cap.parsed or {}
        flows = c.get("flows") or []
        hits = c.get("marker_hits") or []
        if hits:
            where = "; ".join(sorted({h["flow"] for h in hits})[:3])
            return Verdict.failed(f"Des données métier ont circulé en clair sur le LAN ({where}).",
                                  f"Business data crossed the LAN in clear ({where}).")
        ssh = ssh_flows(flows)
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
        moved = sum(int(f.get("payload_bytes") or 0) for f in flows)
        if not ssh or moved == 0:
            return Verdict.failed("Aucun trafic de sauvegarde n'a été vu sur le LAN pendant la sauvegarde.",
                                  "No backup traffic was seen on the LAN during the backup.")
        return Verdict.passed(
            f"Pendant la sauvegarde ({p.get('duration_s')} s), {moved} octets ont circulé, uniquement en SSH, "
            f"sans aucun marqueur des données en clair.",
            f"During the backup ({p.get('duration_s')} s), {moved} bytes crossed the LAN, SSH only, with no "
            f"data marker in clear.")


# --- restore test ----------------------------------------------------------------------------

def compare_manifests(baseline: dict[str, str], after: dict[str, str]) -> dict[str, Any]:
    missing = sorted(k for k in baseline if k not in after)
    mismatched = sorted(k for k in baseline if k in after and after[k] != baseline[k])
    extra = sorted(k for k in after if k not in baseline)
    return {"files_checked": len(baseline), "intact": len(baseline) - len(missing) - len(mismatched),
            "missing": len(missing), "mismatched": len(mismatched), "extra": len(extra),
            "missing_files": missing[:50], "mismatched_files": mismatched[:50], "extra_files": extra[:20]}


class RestoreTest:
    """Simulated ransomware, then the candidate's restore script, then every file's sha256
    against the manifest recorded at ``up``; the recovery time is measured."""

    name = "backup.restore_test"

    def _manifest(self, ctx: CheckContext, args: dict[str, Any], phase: str) -> Evidence:
        return node_exec(ctx, args["node"], [*NODE_PY, MANIFEST_PY, args["data_root"]],
                         action=f"sha256 of every file under {args['data_root']} (read-only)",
                         target=f"{args['node']}:{args['data_root']}", timeout=120, meta={"phase": phase},
                         label=f"manifest-{phase}")

    def baseline(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        return [self._manifest(ctx, args, "manifest")]

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        node, root, script = args["node"], args["data_root"], args["restore_script"]
        target = f"{node}:{root}"
        evidence = [node_exec(ctx, node, [*NODE_SH, 'ls -l -- "$1"; test -f "$1" && test -x "$1"', "sh", script],
                              action=f"test -x {script}", meta={"phase": "script"}, label="script")]
        if not evidence[0].ok or evidence[0].parsed["rc"] != 0 or not ctx.baseline:
            return evidence
        # A copy of the data as it is now, kept in the grader's memory, to undo the damage.
        stash = node_exec(ctx, node, [*NODE_SH, 'tar -C "$1" -czf - . | base64 -w0', "sh", root],
                          action=f"tar -czf - {root} (the grader's copy, to undo the damage)", timeout=120,
                          meta={"phase": "stash"}, label="stash", whole_output=True)
        copy = (stash.parsed or {}).get("stdout", "") if stash.ok and stash.parsed["rc"] == 0 else ""
        if not copy:
            stash.ok, stash.error = False, stash.error or f"the grader could not copy the data ({_err_text(stash)})"
            return [*evidence, stash]
        stash.parsed["stdout"] = f"({len(copy)} base64 characters, kept in memory only)"
        stash.raw = f"$ {stash.action}\n{stash.parsed['stdout']}"
        evidence.append(stash)
        damaged = False
        try:
            dmg = node_exec(ctx, node, [*NODE_PY, DAMAGE_PY, root], kind="fault", target=target,
                            action=f"simulated ransomware on {root}: delete one folder, corrupt files, drop a note",
                            meta={"phase": "damage"}, label="damage")
            evidence.append(dmg)
            damaged = True
            if not dmg.ok or dmg.parsed["rc"] != 0:
                return evidence
            d = _json_of(dmg) or {}
            dmg.raw = (f"deleted folder: {d.get('deleted_folder')} ({d.get('deleted_files')} files)\n"
                       f"corrupted files: {len(d.get('corrupted') or [])}\n"
                       + "".join(f"  {f}\n" for f in (d.get("corrupted") or [])[:10])
                       + f"ransom note added: {d.get('note')}")
            timeout = float(args.get("timeout", 120))
            t0 = time.monotonic()
            run = _run_script(ctx, node, script, timeout, meta={"phase": "restore"}, label="restore")
            rto = round(time.monotonic() - t0, 3)
            run.meta["rto_s"] = rto
            evidence.append(run)
            after = self._manifest(ctx, args, "verify")
            base = _json_of(ctx.baseline[-1]) or {}
            now = _json_of(after) or {}
            if isinstance(base, dict) and isinstance(now, dict) and isinstance(base.get("files"), dict):
                cmp = compare_manifests(base["files"], now.get("files") or {})
                cmp["rto_s"] = rto
                after.meta.update({k: cmp[k] for k in ("files_checked", "mismatched", "missing", "extra", "rto_s")})
                after.parsed["comparison"] = cmp
                after.raw = (f"files checked: {cmp['files_checked']}\nintact: {cmp['intact']}\n"
                             f"mismatched (sha256 differs): {cmp['mismatched']}\nmissing: {cmp['missing']}\n"
                             f"extra files: {cmp['extra']}\ntime to restore (RTO): {rto:.2f} s\n"
                             + "".join(f"mismatched: {f}\n" for f in cmp["mismatched_files"][:5])
                             + "".join(f"missing: {f}\n" for f in cmp["missing_files"][:5]))
            evidence.append(after)
        finally:
            if damaged:
                evidence.append(node_exec(
                    ctx, node, [*NODE_SH, 'rm -rf "$1" && mkdir -p "$1" && base64 -d | tar -C "$1" -xzf -',
                                "sh", root],
                    input=copy, kind="fault", target=target, timeout=120, meta={"phase": "undo"},
                    action=f"restore {root} as it was before the test, from the grader's copy", label="undo"))
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        script = args["restore_script"]
        # lifecycle marks baseline evidence with meta.phase == "baseline" when it stores it
        base = _phase(evidence, "baseline") or _phase(evidence, "manifest")
        files = (_json_of(base) or {}).get("files") if base is not None else None
        if not isinstance(files, dict) or not files:
            return Verdict.errored("Aucun manifeste de référence des données n'a été enregistré au démarrage.",
                                   "No reference manifest of the data was recorded at start-up.")
        chk = _phase(evidence, "script")
        if chk is None or not chk.ok:
            return Verdict.errored(f"Le script {script} n'a pas pu être examiné.", f"{script} could not be examined.")
        if chk.parsed["rc"] != 0:
            return Verdict.failed(f"Pas de script de restauration exécutable en {script}.",
                                  f"No executable restore script at {script}.")
        for phase in ("stash", "damage"):
            ev = _phase(evidence, phase)
            if ev is None or not ev.ok or (ev.parsed or {}).get("rc") != 0:
                why = (ev.error or _err_text(ev)) if ev is not None else "not run"
                return Verdict.errored(f"Le test n'a pas pu endommager les données ({phase} : {why}).",
                                       f"The test could not damage the data ({phase}: {why}).")
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
        if p.get("rc") != 0:
            return Verdict.failed(f"{head_fr}, mais le script a échoué (code {p.get('rc')}).",
                                  f"{head_en}, but the script failed (exit {p.get('rc')}).")
        return Verdict.passed(f"Restauration probante : {head_fr} ; temps de restauration mesuré (RTO) {rto:.2f} s.",
                              f"Restore proven: {head_en}; measured time to restore (RTO) {rto:.2f} s.")


# --- no password login on the backup server ------------------------------------------------

def _password_login(ev_id: str, *, host: str, user: str, password: str, source: str, check: str) -> Evidence:
    return sshauth.password_login(host, user=user, password=password, ev_id=ev_id, source=source, check=check)


class NoPasswordLogin:
    """The grader tries a password login on the backup server's SSH from its vantage point."""

    name = "backup.no_password_login"

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        vantage = args["vantage"]
        seg = ctx.plan.vantage_point(vantage).segment  # type: ignore[union-attr]
        addr = ctx.address(args["node"], seg)
        return [ctx.probe(vantage, "ssh", f"{addr}:22", "ssh password login attempt", partial(
            _password_login, host=addr, user=args["user"], password=args["password"], source=vantage,
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
           "Schedule", "TransportEncrypted", "compare_manifests", "retention_of", "snapshot_times"]
