"""The pure halves of the backup-restore graders: verdicts from fabricated evidence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from graders.backup import (
    NoPasswordLogin,
    RecentSnapshot,
    RepositoryEncrypted,
    RestoreTest,
    Retention,
    Schedule,
    TransportEncrypted,
    backup_entries,
    compare_manifests,
    retention_of,
    snapshot_times,
)
from labkit.domain.grading import GraderRegistry
from labkit.models.evidence import Evidence
from tests.graders.evidence import PLAN, make_evidence

T = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def ev(kind: str, parsed: Any, **kw: Any) -> Evidence:
    return make_evidence(kind, parsed, **{"source": "srv1", "target": "srv1", "at": T, **kw})


def run(rc: int | None, *, stdout: str = "", js: Any = None, stderr: str = "", **extra: Any) -> dict[str, Any]:
    return {"rc": rc, "stdout": stdout, "stderr": stderr, "json": js, "duration_s": 1.5, **extra}


def test_registry_knows_the_backup_graders() -> None:
    assert GraderRegistry.load().names() >= {
        "backup.repository_encrypted", "backup.recent_snapshot", "backup.schedule", "backup.retention",
        "backup.transport_encrypted", "backup.restore_test", "backup.no_password_login"}


# --- repository ---------------------------------------------------------------------------

REPO_ARGS = {"node": "bkp1", "repo": "/srv/sauvegardes/depot"}


def scan(**kw: Any) -> Evidence:
    base = {"exists": True, "kind": "restic", "files": 12, "bytes": 4096, "hits": [], "truncated": False}
    return ev("exec", run(0, js={**base, **kw}))


@pytest.mark.parametrize("kw,status,word", [
    ({}, "pass", "restic"),
    ({"kind": "borg"}, "pass", "borg"),
    ({"hits": [{"marker": 0, "file": "compta/a.txt"}], "kind": "other"}, "fail", "compta/a.txt"),
    ({"exists": False, "kind": "missing"}, "fail", "No backup repository"),
    ({"kind": "empty", "files": 0}, "fail", "No backup repository"),
    ({"kind": "other"}, "fail", "neither"),
])
def test_repository_encrypted(kw: dict[str, Any], status: str, word: str) -> None:
    v = RepositoryEncrypted().judge([scan(**kw)], REPO_ARGS, PLAN)
    assert v.status == status and word in v.message.en


def test_repository_unreadable_is_error() -> None:
    assert RepositoryEncrypted().judge([ev("exec", None, ok=False, error="node gone")], REPO_ARGS,
                                       PLAN).status == "error"
    assert RepositoryEncrypted().judge([ev("exec", run(1, stdout="Traceback"))], REPO_ARGS, PLAN).status == "error"


# --- snapshots ----------------------------------------------------------------------------

RPO_ARGS = {"node": "bkp1", "repo": "/r", "rpo_hours": "12"}


def restic_list(*ages_h: float) -> Evidence:
    snaps = [{"time": (T - timedelta(hours=a)).isoformat().replace("+00:00", ".123456789+00:00"), "id": str(a)}
             for a in ages_h]
    return ev("exec", run(0, stdout="restic\n" + json.dumps(snaps)))


def test_snapshot_times_restic_nanoseconds_and_borg_naive() -> None:
    tool, times = snapshot_times(restic_list(1, 30))
    assert tool == "restic" and [round((T - t).total_seconds() / 3600) for t in times] == [30, 1]
    borg = ev("exec", run(0, stdout="borg\n" + json.dumps({"archives": [{"time": "2026-11-28T10:00:00.000000"}]})))
    assert snapshot_times(borg) == ("borg", [datetime(2026, 11, 28, 10, 0, tzinfo=UTC)])


@pytest.mark.parametrize("evidence,status", [
    (restic_list(30, 2), "pass"),
    (restic_list(13), "fail"),
    (restic_list(), "fail"),
    (ev("exec", run(3, stdout="none\n")), "fail"),
    (ev("exec", None, ok=False, error="timeout"), "error"),
])
def test_recent_snapshot(evidence: Evidence, status: str) -> None:
    assert RecentSnapshot().judge([evidence], RPO_ARGS, PLAN).status == status


# --- schedule -----------------------------------------------------------------------------

SCRIPT = "/usr/local/sbin/sauvegarde.sh"
SCHED_ARGS = {"node": "srv1", "backup_script": SCRIPT, "hour": "2", "minute": "5"}


def crontab(schedule: list[str], command: str = f"{SCRIPT} >>/var/log/s.log 2>&1",
            daemon: dict[str, Any] | None = None) -> Evidence:
    entries = [{"file": "/etc/cron.d/sauvegarde", "line": 2, "schedule": schedule, "user": "root", "command": command}]
    return ev("exec", run(0, js={"entries": entries, "daemon": daemon or {"pid": 9, "exe": "/usr/sbin/cron"}}),
              phase="crontab")


@pytest.mark.parametrize("cron,job,status", [
    (crontab(["5", "2", "*", "*", "*"]), run(0), "pass"),
    (crontab(["5", "2", "*", "*", "*"], command="restic backup /srv/x"), run(0), "pass"),
    (crontab(["5", "3", "*", "*", "*"]), run(0), "fail"),
    (crontab(["5", "2", "*", "*", "1"]), run(0), "fail"),
    (crontab(["5", "2", "*", "*", "*"], command="/usr/bin/updatedb"), None, "fail"),
    (crontab(["5", "2", "*", "*", "*"], daemon={"error": "no pid file"}), run(0), "fail"),
    (crontab(["5", "2", "*", "*", "*"]), run(1, stderr="Fatal: unable to open repository"), "fail"),
    (crontab(["5", "2", "*", "*", "*"]), run(124, timed_out=True), "error"),
])
def test_schedule(cron: Evidence, job: dict[str, Any] | None, status: str) -> None:
    evidence = [cron] + ([ev("exec", job, phase="run")] if job is not None else [])
    assert Schedule().judge(evidence, SCHED_ARGS, PLAN).status == status


def test_backup_entries_match_script_or_tool() -> None:
    cron = {"entries": [{"command": "run-parts /etc/cron.daily"}, {"command": f"{SCRIPT} >/dev/null"},
                        {"command": "/usr/bin/borg create r::a /srv"}]}
    assert [e["command"] for e in backup_entries(cron, SCRIPT)] == [f"{SCRIPT} >/dev/null",
                                                                     "/usr/bin/borg create r::a /srv"]


# --- retention ----------------------------------------------------------------------------

RET_ARGS = {"node": "srv1", "backup_script": SCRIPT, "keep_daily": "7", "keep_weekly": "4"}


def script(text: str) -> Evidence:
    return ev("exec", run(0, js={"entries": [], "scripts": {SCRIPT: {"text": text, "executable": True}}}))


@pytest.mark.parametrize("text,status", [
    ("restic backup /srv\nrestic forget --keep-daily 7 --keep-weekly 4 --prune\n", "pass"),
    ("restic forget \\\n  --keep-daily=7 \\\n  --keep-weekly=4\n", "pass"),
    ("borg prune -d 7 -w 4 ::\n", "pass"),
    ("restic forget --keep-daily 7 --keep-weekly 5 --prune\n", "fail"),
    ("# restic forget --keep-daily 7 --keep-weekly 4\nrestic backup /srv\n", "fail"),
    ("rsync -a /srv/ bkp1:/r/\n", "fail"),
])
def test_retention(text: str, status: str) -> None:
    assert Retention().judge([script(text)], RET_ARGS, PLAN).status == status


def test_retention_of_reads_borg_long_options() -> None:
    assert retention_of("borg prune --keep-daily=3 --keep-weekly 2 repo")["daily"] == 3


# --- transport ----------------------------------------------------------------------------

TR_ARGS = {"node": "srv1", "segment": "lan", "backup_script": SCRIPT, "markers": ["M"]}


def flow(src: str, sport: int, dst: str, dport: int, n: int, greeting: str | None = None) -> dict[str, Any]:
    return {"proto": "tcp", "src": src, "sport": sport, "dst": dst, "dport": dport, "packets": 3,
            "payload_bytes": n, "greeting": greeting}


SSH = [flow("10.0.0.20", 22, "10.0.0.10", 40000, 5000, "SSH-2.0-OpenSSH_9.2"),
       flow("10.0.0.10", 40000, "10.0.0.20", 22, 90000, "SSH-2.0-OpenSSH_9.2")]
RSYNCD = [flow("10.0.0.10", 40002, "10.0.0.20", 873, 9000, "@RSYNCD: 32.0"),
          flow("10.0.0.20", 873, "10.0.0.10", 40002, 100, "@RSYNCD: 32.0")]


def transport(flows: list[dict[str, Any]], hits: list[dict[str, Any]] | None = None, rc: int = 0,
              **extra: Any) -> list[Evidence]:
    return [ev("capture", {"flows": flows, "marker_hits": hits or [], "frames": 10, "bytes": 1000}, phase="capture"),
            ev("exec", run(rc, **extra), phase="backup")]


@pytest.mark.parametrize("evidence,status,word", [
    (transport(SSH), "pass", "SSH only"),
    (transport(SSH + RSYNCD), "fail", "873"),
    (transport(SSH, hits=[{"marker": 0, "flow": "tcp 10.0.0.10:40002 → 10.0.0.20:873"}]), "fail", "in clear"),
    (transport([]), "fail", "No backup traffic"),
    (transport(SSH, rc=2, stderr="Fatal: wrong password"), "fail", "fails"),
    (transport(SSH, rc=124, timed_out=True), "error", "did not finish"),
])
def test_transport_encrypted(evidence: list[Evidence], status: str, word: str) -> None:
    v = TransportEncrypted().judge(evidence, TR_ARGS, PLAN)
    assert v.status == status and word in v.message.en


def test_transport_capture_that_could_not_run_is_error() -> None:
    evidence = [ev("capture", None, ok=False, error="TimeoutError", phase="capture"),
                ev("exec", run(0), phase="backup")]
    assert TransportEncrypted().judge(evidence, TR_ARGS, PLAN).status == "error"


# --- restore test -------------------------------------------------------------------------

RS_ARGS = {"node": "srv1", "data_root": "/srv/d", "restore_script": "/usr/local/sbin/restauration.sh"}
FILES = {f"f{i}.txt": f"{i:064x}" for i in range(10)}


def restore_evidence(after: dict[str, str] | None = None, rc: int = 0, *, timed_out: bool = False,
                     script_rc: int = 0, damage_ok: bool = True) -> list[Evidence]:
    out = [ev("exec", run(0, js={"files": FILES}), phase="baseline"),
           ev("exec", run(script_rc), phase="script")]
    if script_rc:
        return out
    out += [ev("exec", run(0, stdout="(kept in memory)"), phase="stash"),
            ev("fault", run(0 if damage_ok else 1, js={"deleted_folder": "a"}), phase="damage")]
    if not damage_ok:
        return out
    job = run(124, timed_out=True) if timed_out else run(rc)
    out.append(ev("exec", job, phase="restore", timeout_s=120, rto_s=2.5))
    if not timed_out:
        cmp = compare_manifests(FILES, after if after is not None else FILES)
        cmp["rto_s"] = 2.5
        out.append(ev("exec", {**run(0, js={"files": after}), "comparison": cmp}, phase="verify"))
    out.append(ev("fault", run(0), phase="undo"))
    return out


def test_compare_manifests_counts() -> None:
    after = {**FILES, "f1.txt": "0" * 64, "note.txt": "1" * 64}
    del after["f2.txt"]
    c = compare_manifests(FILES, after)
    assert (c["files_checked"], c["intact"], c["mismatched"], c["missing"], c["extra"]) == (10, 8, 1, 1, 1)
    assert c["mismatched_files"] == ["f1.txt"] and c["missing_files"] == ["f2.txt"]


@pytest.mark.parametrize("evidence,status,word", [
    (restore_evidence(), "pass", "10 files checked, 0 mismatched, 0 missing"),
    (restore_evidence({**FILES, "f3.txt": "0" * 64}), "fail", "1 mismatched"),
    (restore_evidence({k: v for k, v in FILES.items() if k != "f4.txt"}), "fail", "1 missing"),
    (restore_evidence(rc=1), "fail", "script failed"),
    (restore_evidence(timed_out=True), "error", "did not finish within 120 s"),
    (restore_evidence(script_rc=1), "fail", "No executable restore script"),
    (restore_evidence(damage_ok=False), "error", "could not damage"),
    (restore_evidence()[1:], "error", "No reference manifest"),
])
def test_restore_test(evidence: list[Evidence], status: str, word: str) -> None:
    v = RestoreTest().judge(evidence, RS_ARGS, PLAN)
    assert v.status == status and word in v.message.en, v.message.en


def test_restore_pass_reports_the_measured_rto() -> None:
    v = RestoreTest().judge(restore_evidence(), RS_ARGS, PLAN)
    assert "RTO" in v.message.en and "2.50 s" in v.message.en and "2.50 s" in v.message.fr


# --- password login -----------------------------------------------------------------------

PW_ARGS = {"vantage": "v", "node": "bkp1", "user": "sauv", "password": "x"}


@pytest.mark.parametrize("parsed,status", [
    ({"allowed": ["publickey"], "password": "not-offered", "keyboard_interactive": "not-offered"}, "pass"),
    ({"allowed": ["publickey", "password"], "password": "rejected", "keyboard_interactive": "not-offered"}, "fail"),
    ({"allowed": ["publickey", "password"], "password": "accepted", "keyboard_interactive": "not-offered"}, "fail"),
    ({"allowed": ["keyboard-interactive"], "password": "not-offered", "keyboard_interactive": "rejected"}, "fail"),
])
def test_no_password_login(parsed: dict[str, Any], status: str) -> None:
    assert NoPasswordLogin().judge([ev("ssh", parsed)], PW_ARGS, PLAN).status == status


def test_no_password_login_unreachable_is_error() -> None:
    v = NoPasswordLogin().judge([ev("ssh", None, ok=False, error="connection refused")], PW_ARGS, PLAN)
    assert v.status == "error" and "connection refused" in v.message.en
