"""The pure halves of the backup-restore graders: verdicts from fabricated evidence. What a
cheat produces (a restic-shaped directory the grader's restic cannot open, a cron command that
succeeds without backing anything up, SSH bytes that are not the backup session, a restore
that brings back the start-up data but not the grader's fresh proof files) is a failure here."""

from __future__ import annotations

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
    backup_session,
    compare_manifests,
    cron_entries,
    retention_times,
)
from labkit.adapters.probes.backuprepo import kept_by_policy
from labkit.domain.grading import GraderRegistry
from labkit.models.evidence import Evidence
from labkit.models.instance import IfacePlan, InstancePlan, NodePlan
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


# --- the repository as the grader reads it ------------------------------------------------

REPO = "/srv/sauvegardes/depot"
PROOF = "/srv/d/labkit-preuve-0a1b2c3d4e5f.txt"


def snap(age_h: float, sid: str = "s1", **kw: Any) -> dict[str, Any]:
    t = (T - timedelta(hours=age_h)).isoformat().replace("+00:00", ".123456789+00:00")
    return {"id": sid, "time": t, "host": "srv1", "paths": ["/srv/d"], "tags": [], "name": sid, **kw}


def repo(phase: str, **kw: Any) -> Evidence:
    base: dict[str, Any] = {"repo": REPO, "kind": "restic", "files": 12, "bytes": 4096, "snapshots": [snap(0.1)],
                            "error": None}
    return ev("exec", {**base, **kw}, phase=phase, source="grader")


def proof_backup(after: dict[str, Any], rc: int = 0) -> list[Evidence]:
    return [repo("before"), ev("fault", {"proofs": {PROOF: {"bytes": 10}}}, phase="plant"),
            ev("exec", run(rc), phase="run", entry="/etc/cron.d/sauvegarde:2"), repo("after", **after),
            ev("fault", {"removed": 1}, phase="unplant")]


FOUND = {"new": ["s2"], "proofs_found": {PROOF: "snapshot s2"}, "raw_hits": []}
ENC_ARGS = {"node": "srv1", "repo_node": "bkp1", "repo": REPO, "data_root": "/srv/d"}


@pytest.mark.parametrize("after,status,word", [
    (FOUND, "pass", "decrypted by the grader"),
    ({**FOUND, "kind": "borg"}, "pass", "borg"),
    # a plain copy: the data sits in clear in the repository's files
    ({**FOUND, "kind": "other", "raw_hits": [{"marker": 0, "file": "compta/a.txt"}]}, "fail", "compta/a.txt"),
    ({**FOUND, "kind": "missing", "files": 0}, "fail", "No backup repository"),
    ({**FOUND, "kind": "other"}, "fail", "neither"),
    # cheat fake-repo-files: restic's layout, random bytes the grader's restic cannot open
    ({**FOUND, "error": "restic cannot read the repository: Fatal: config cannot be loaded"}, "fail",
     "cannot open the repository"),
    # the backup run by the grader did not save its proof file
    ({**FOUND, "proofs_found": {PROOF: None}}, "fail", "in no new decrypted snapshot"),
])
def test_repository_encrypted(after: dict[str, Any], status: str, word: str) -> None:
    v = RepositoryEncrypted().judge(proof_backup(after), ENC_ARGS, PLAN)
    assert v.status == status and word in v.message.en, v.message.en


def test_repository_unreadable_is_error() -> None:
    evidence = [ev("exec", None, ok=False, error="ProviderError: node gone", phase="after")]
    assert RepositoryEncrypted().judge(evidence, ENC_ARGS, PLAN).status == "error"


# --- snapshots ----------------------------------------------------------------------------

RPO_ARGS = {"repo_node": "bkp1", "repo": REPO, "rpo_hours": "12", "probe_file": "/srv/d/base/gestion.sql"}
HOLDS = {"path": "/srv/d/base/gestion.sql", "bytes": 900, "sha256": "0" * 64, "holds_marker": True}


@pytest.mark.parametrize("kw,status,word", [
    ({"snapshots": [snap(30, "a"), snap(2, "b")], "newest_file": HOLDS}, "pass", "holds the business data"),
    ({"snapshots": [snap(13)], "newest_file": HOLDS}, "fail", "beyond the 12 h RPO"),
    ({"snapshots": [snap(-30)], "newest_file": HOLDS}, "fail", "in the future"),
    ({"snapshots": [], "newest_file": None}, "fail", "No snapshot"),
    ({"snapshots": [snap(1)], "newest_file": None}, "fail", "does not hold the business data"),
    ({"snapshots": [snap(1)], "newest_file": {**HOLDS, "holds_marker": False}}, "fail", "business data"),
    # cheat fake-repo-files: a forged restic in the node would list a fresh snapshot; the grader's cannot open it
    ({"snapshots": [], "error": "restic cannot read the repository: wrong password or no key found"}, "fail",
     "cannot open"),
    ({"kind": "other", "snapshots": []}, "fail", "neither"),
])
def test_recent_snapshot(kw: dict[str, Any], status: str, word: str) -> None:
    v = RecentSnapshot().judge([repo("repo", **kw)], RPO_ARGS, PLAN)
    assert v.status == status and word in v.message.en, v.message.en


def test_recent_snapshot_probe_that_could_not_run_is_error() -> None:
    assert RecentSnapshot().judge([ev("exec", None, ok=False, error="timeout", phase="repo")], RPO_ARGS,
                                  PLAN).status == "error"


# --- schedule -----------------------------------------------------------------------------

SCRIPT = "/usr/local/sbin/sauvegarde.sh"
SCHED_ARGS = {"node": "srv1", "backup_script": SCRIPT, "hour": "2", "minute": "5", "repo": REPO}


def crontab(schedule: list[str], command: str = f"{SCRIPT} >>/var/log/s.log 2>&1", running: bool = True) -> Evidence:
    entries = [{"file": "/etc/cron.d/sauvegarde", "line": 2, "schedule": schedule, "user": "root", "command": command}]
    return ev("exec", {"entries": entries, "ignored": [], "daemon": {"running": running}}, phase="crontab",
              source="grader")


DAILY = ["5", "2", "*", "*", "*"]


@pytest.mark.parametrize("cron,after,status,word", [
    (crontab(DAILY), FOUND, "pass", "backed up its proof file"),
    (crontab(DAILY, command="restic backup /srv/x"), FOUND, "pass", "genuine cron"),
    # a plain copy counts as a backup run here (encryption is repo-encrypted's business)
    (crontab(DAILY), {"kind": "other", "proofs_found": {PROOF: "plain file d/p.txt"}}, "pass", "plain file"),
    (crontab(["5", "3", "*", "*", "*"]), None, "fail", "every day at 02:05"),
    (crontab(["5", "2", "*", "*", "1"]), None, "fail", "every day"),
    (crontab(DAILY, command="/usr/bin/updatedb"), None, "fail", "No cron entry"),
    (crontab(DAILY, running=False), None, "fail", "genuine cron daemon does not run"),
    # cheat fake-schedule: the entry names the script, its command succeeds, nothing is backed up
    (crontab(DAILY, command=f"echo {SCRIPT} OK >>/var/log/s.log"), {**FOUND, "proofs_found": {PROOF: None}},
     "fail", "did not back up the proof file"),
])
def test_schedule(cron: Evidence, after: dict[str, Any] | None, status: str, word: str) -> None:
    evidence = [cron] + (proof_backup(after) if after is not None else [])
    v = Schedule().judge(evidence, SCHED_ARGS, PLAN)
    assert v.status == status and word in v.message.en, v.message.en


def test_schedule_timeout_is_error() -> None:
    evidence = [crontab(DAILY), repo("before"), ev("exec", run(124, timed_out=True), phase="run", timeout_s=110),
                repo("after", **FOUND)]
    assert Schedule().judge(evidence, SCHED_ARGS, PLAN).status == "error"


def test_cron_entries_system_and_user_and_percent() -> None:
    text = "SHELL=/bin/sh\n# c\n5 2 * * * root /s.sh % input\n@daily root /x\n"
    es = cron_entries("/etc/cron.d/a", text.replace("\\n", "\n"), True)
    assert [(e["schedule"], e["user"], e["command"].strip()) for e in es] == [
        (["5", "2", "*", "*", "*"], "root", "/s.sh"), (["@daily"], "root", "/x")]
    assert cron_entries("/var/spool/cron/crontabs/root", "5 2 * * * /s.sh\n".replace("\\n", "\n"),
                        False)[0]["command"] == "/s.sh"


def test_backup_entries_match_script_or_tool() -> None:
    cron = {"entries": [{"command": "run-parts /etc/cron.daily"}, {"command": f"{SCRIPT} >/dev/null"},
                        {"command": "/usr/bin/borg create r::a /srv"}]}
    assert [e["command"] for e in backup_entries(cron, SCRIPT)] == [f"{SCRIPT} >/dev/null",
                                                                     "/usr/bin/borg create r::a /srv"]


# --- retention ----------------------------------------------------------------------------

RET_ARGS = {"node": "srv1", "repo": REPO, "backup_script": SCRIPT, "keep_daily": "3", "keep_weekly": "2"}
NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def _snaps(times: list[datetime], prefix: str) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "time": t.isoformat(), "host": "srv1", "paths": ["/srv/d"], "tags": [],
             "name": f"{prefix}{i}"} for i, t in enumerate(times)]


SYN = _snaps(retention_times(3, 2, NOW), "g")
OWN = _snaps([NOW - timedelta(hours=1)], "c")
NEW = _snaps([NOW], "n")


def retention(kept: set[str], tool: str = "restic", **seed: Any) -> list[Evidence]:
    after = [s for s in [*OWN, *SYN] if s["id"] in kept] + NEW
    return [ev("fault", {"kind": tool, "repo": REPO, "error": None, "before": OWN, "synthetic": SYN, "host": "srv1",
                         "paths": ["/srv/d"], **seed}, phase="seed", source="grader"),
            ev("exec", run(0), phase="run"), repo("after", kind=tool, snapshots=after),
            ev("fault", {"removed_snapshots": 1}, phase="cleanup")]


def test_retention_times_cover_days_and_weeks() -> None:
    ts = retention_times(3, 2, NOW)
    assert len(ts) == (3 + 2) + (2 + 2) and len({t.date() for t in ts}) == len(ts) and max(ts) < NOW


def test_kept_by_policy_restic_and_borg_rules() -> None:
    kept_restic = kept_by_policy("restic", [*OWN, *SYN, *NEW], 3, 2)
    kept_borg = kept_by_policy("borg", [*OWN, *SYN, *NEW], 3, 2)
    # today (newest only), then the two previous days; weekly: this week (already the newest), one more
    assert "n0" in kept_restic and "c0" not in kept_restic and len(kept_restic) == 4
    # borg's weekly rule skips what daily kept, so it reaches two weeks further
    assert len(kept_borg) == 5


@pytest.mark.parametrize("tool", ["restic", "borg"])
def test_retention_as_required_passes(tool: str) -> None:
    kept = kept_by_policy(tool, [*OWN, *SYN, *NEW], 3, 2)
    v = Retention().judge(retention(kept, tool), RET_ARGS, PLAN)
    assert v.status == "pass", v.message.en


@pytest.mark.parametrize("kept,word", [
    ({s["id"] for s in SYN}, "no retention is applied"),  # the forget line is a comment, an echo, a no-op
    (set(), "wrongly removed"),  # a mirror that wipes what srv1 does not have
    (kept_by_policy("restic", [*OWN, *SYN, *NEW], 4, 2), "too many"),  # wrong numbers
])
def test_retention_not_as_required_fails(kept: set[str], word: str) -> None:
    v = Retention().judge(retention(kept), RET_ARGS, PLAN)
    assert v.status == "fail" and word in v.message.en, v.message.en


def test_retention_on_a_repository_the_grader_cannot_open_fails() -> None:
    seed = ev("fault", {"kind": "restic", "repo": REPO, "error": "restic cannot read the repository: x"},
              phase="seed", source="grader")
    assert Retention().judge([seed], RET_ARGS, PLAN).status == "fail"
    plain = ev("fault", {"kind": "other", "repo": REPO}, phase="seed", source="grader")
    assert Retention().judge([plain], RET_ARGS, PLAN).status == "fail"


# --- transport ----------------------------------------------------------------------------

TR_ARGS = {"node": "srv1", "repo_node": "bkp1", "segment": "lan", "backup_script": SCRIPT, "markers": ["M"]}
NET_PLAN = InstancePlan(
    name="x", lab_id="l", lab_dir="/", topology_id="t", seed=0, params={}, segments={}, links={},
    nodes=[NodePlan(name=n, role="server", services=[],
                    interfaces=[IfacePlan(name="eth0", segment="lan", addresses=[f"10.0.0.{a}/24"])])
           for n, a in (("srv1", 10), ("bkp1", 20), ("pc1", 100))])


def flow(src: str, sport: int, dst: str, dport: int, n: int, greeting: str | None = None) -> dict[str, Any]:
    return {"proto": "tcp", "src": src, "sport": sport, "dst": dst, "dport": dport, "packets": 3,
            "payload_bytes": n, "greeting": greeting}


def ssh(client: str = "10.0.0.10", server: str = "10.0.0.20", up: int = 400_000) -> list[dict[str, Any]]:
    return [flow(server, 22, client, 40000, 5000, "SSH-2.0-OpenSSH_9.2"),
            flow(client, 40000, server, 22, up, "SSH-2.0-OpenSSH_9.2")]


RSYNCD = [flow("10.0.0.10", 40002, "10.0.0.20", 873, 9000, "@RSYNCD: 32.0"),
          flow("10.0.0.20", 873, "10.0.0.10", 40002, 100, "@RSYNCD: 32.0")]


def transport(flows: list[dict[str, Any]], hits: list[dict[str, Any]] | None = None, rc: int = 0,
              **extra: Any) -> list[Evidence]:
    return [ev("fault", {"proofs": {PROOF: {"bytes": 262145}}}, phase="plant", proof_bytes=262145),
            ev("capture", {"flows": flows, "marker_hits": hits or [], "frames": 10, "bytes": 1000}, phase="capture"),
            ev("exec", run(rc, **extra), phase="backup"), ev("fault", {"removed": 1}, phase="unplant")]


@pytest.mark.parametrize("evidence,status,word", [
    (transport(ssh()), "pass", "SSH session srv1 → bkp1:22 carried 400000 bytes"),
    (transport(ssh() + RSYNCD), "fail", "873"),
    (transport(ssh(), hits=[{"marker": 1, "flow": "tcp 10.0.0.10:40002 → 10.0.0.20:873"}]), "fail", "in clear"),
    (transport([]), "fail", "no SSH session"),
    # cheat fake-repo-files: an SSH session that carries a few bytes, not the data
    (transport(ssh(up=4000)), "fail", "4000 bytes up"),
    # SSH bytes that are not the backup session: pc1 to bkp1, or srv1 to pc1
    (transport(ssh(client="10.0.0.100")), "fail", "no SSH session"),
    (transport(ssh(server="10.0.0.100")), "fail", "no SSH session"),
    (transport(ssh(), rc=124, timed_out=True), "error", "did not finish"),
])
def test_transport_encrypted(evidence: list[Evidence], status: str, word: str) -> None:
    v = TransportEncrypted().judge(evidence, TR_ARGS, NET_PLAN)
    assert v.status == status and word in v.message.en, v.message.en


def test_transport_counts_bytes_from_sequence_numbers_when_frames_were_dropped() -> None:
    """The payload capture saw 50 kB of the session (frames dropped in a burst); the sequence
    numbers say 400 kB went up: the session carried the data."""
    evidence = transport(ssh(up=50_000))
    span = [{"src": "10.0.0.10", "sport": 40000, "dst": "10.0.0.20", "dport": 22, "bytes": 400_000,
             "payload_seen": 50_000, "syn_seen": True, "greeting": None}]
    evidence.insert(2, ev("capture", {"flows": span, "frames": 90}, phase="span"))
    v = TransportEncrypted().judge(evidence, TR_ARGS, NET_PLAN)
    assert v.status == "pass" and "400000 bytes" in v.message.en, v.message.en
    # the payload capture dropped the client's greeting frame: the connection is still SSH
    for f in evidence[1].parsed["flows"]:
        f["greeting"] = None
    evidence[2].parsed["flows"][0]["greeting"] = "SSH-2.0-OpenSSH_9.2"
    evidence[2].parsed["flows"].append({"src": "10.0.0.20", "sport": 22, "dst": "10.0.0.10", "dport": 40000,
                                        "bytes": 5000, "greeting": "SSH-2.0-OpenSSH_9.2"})
    assert TransportEncrypted().judge(evidence, TR_ARGS, NET_PLAN).status == "pass"
    evidence[2].parsed["flows"][0]["bytes"] = 4000  # a cheat's session: a few kB, by any count
    assert TransportEncrypted().judge(evidence, TR_ARGS, NET_PLAN).status == "fail"


def test_backup_session_needs_both_greetings() -> None:
    one_sided = [flow("10.0.0.10", 40000, "10.0.0.20", 22, 400_000, "SSH-2.0-x"),
                 flow("10.0.0.20", 22, "10.0.0.10", 40000, 100, None)]
    s = backup_session(one_sided, "10.0.0.10", "10.0.0.20")
    assert s["client_greeting"] and not s["server_greeting"]
    v = TransportEncrypted().judge(transport(one_sided), TR_ARGS, NET_PLAN)
    assert v.status == "fail"


def test_transport_capture_that_could_not_run_is_error() -> None:
    evidence = [ev("fault", {}, phase="plant"), ev("capture", None, ok=False, error="TimeoutError", phase="capture"),
                ev("exec", run(0), phase="backup")]
    assert TransportEncrypted().judge(evidence, TR_ARGS, NET_PLAN).status == "error"


# --- restore test -------------------------------------------------------------------------

RS_ARGS = {"node": "srv1", "data_root": "/srv/d", "restore_script": "/usr/local/sbin/restauration.sh",
           "repo_node": "bkp1", "segment": "lan"}
FILES = {f"f{i}.txt": f"{i:064x}" for i in range(10)}


def restore_evidence(after: dict[str, str] | None = None, rc: int = 0, *, timed_out: bool = False,
                     executable: bool = True, damage_ok: bool = True, proofs_restored: int = 2,
                     down: int = 600_000) -> list[Evidence]:
    out = [ev("exec", {"json": {"files": FILES}}, phase="baseline"),
           ev("exec", {"executable": executable}, phase="script")]
    if not executable:
        return out
    out += [ev("exec", {"files": 10}, phase="stash"), ev("fault", {"proofs": {}}, phase="plant"),
            ev("exec", run(0), phase="backup")]
    if not damage_ok:
        return [*out, ev("fault", None, ok=False, error="PermissionError", phase="damage")]
    out.append(ev("fault", {"deleted_folder": "a"}, phase="damage"))
    job = run(124, timed_out=True) if timed_out else run(rc)
    out.append(ev("capture", {"flows": [{**flow("10.0.0.20", 22, "10.0.0.10", 40000, 0), "bytes": down}],
                              "marker_hits": []}, phase="restore-capture", proof_bytes=524290))
    out.append(ev("exec", job, phase="restore", timeout_s=120, rto_s=2.5))
    if not timed_out:
        cmp = compare_manifests(FILES, after if after is not None else FILES)
        cmp.update({"rto_s": 2.5, "proofs": 2, "proofs_restored": proofs_restored})
        out.append(ev("exec", {"comparison": cmp}, phase="verify"))
    out.append(ev("fault", {"written": 10}, phase="undo"))
    return out


def test_compare_manifests_counts() -> None:
    after = {**FILES, "f1.txt": "0" * 64, "note.txt": "1" * 64}
    del after["f2.txt"]
    c = compare_manifests(FILES, after)
    assert (c["files_checked"], c["intact"], c["mismatched"], c["missing"], c["extra"]) == (10, 8, 1, 1, 1)
    assert c["mismatched_files"] == ["f1.txt"] and c["missing_files"] == ["f2.txt"]


@pytest.mark.parametrize("evidence,status,word", [
    (restore_evidence(), "pass", "0 missing, 2 fresh proof file(s) back byte for byte, 600000 bytes from bkp1"),
    (restore_evidence({**FILES, "f3.txt": "0" * 64}), "fail", "1 mismatched"),
    (restore_evidence({k: v for k, v in FILES.items() if k != "f4.txt"}), "fail", "1 missing"),
    # cheat restore-from-local-copy: the start-up data comes back, the grader's fresh files do not
    (restore_evidence(proofs_restored=0), "fail", "does not come from the repository"),
    (restore_evidence(proofs_restored=1), "fail", "only 1/2"),
    # the proof files came back but nothing came from bkp1: a local mirror kept by the candidate
    (restore_evidence(down=3000), "fail", "only 3000 bytes came from bkp1"),
    (restore_evidence(rc=1), "fail", "script failed"),
    (restore_evidence(timed_out=True), "error", "did not finish within 120 s"),
    (restore_evidence(executable=False), "fail", "No executable restore script"),
    (restore_evidence(damage_ok=False), "error", "could not prepare the attack"),
    (restore_evidence()[1:], "error", "No reference manifest"),
])
def test_restore_test(evidence: list[Evidence], status: str, word: str) -> None:
    v = RestoreTest().judge(evidence, RS_ARGS, NET_PLAN)
    assert v.status == status and word in v.message.en, v.message.en


def test_restore_pass_reports_the_measured_rto() -> None:
    v = RestoreTest().judge(restore_evidence(), RS_ARGS, NET_PLAN)
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
