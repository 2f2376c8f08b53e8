"""The ad-gpo lab end to end on the netns provider: the reference solution gets full marks,
every faulty variant and every cheat fails exactly the checks it declares, a stopped
controller gives ``error`` results (not a crash), the grader's own test accounts and DNS
records are gone after grading, and nothing is left after ``down``."""

from __future__ import annotations

import json
import time

import pytest

from labkit.adapters.storage.runs import open_run
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context, exec_in, up
from labkit.usecases.solve import solve
from tests.agent.lab_agent import same_verdicts_through_the_agent
from tests.conftest import LabEnv, down_leaves_nothing, lab_cheats, lab_variants, variant_fails_what_it_declares

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "ad-gpo"
DC_ROLE_CONF = "[global]\n\tserver role = active directory domain controller\n\tworkgroup = X\n\trealm = X.LAN\n"


def _pid(ctx: Context, name: str, node: str, pidfile: str) -> str:
    res = exec_in(ctx, name, node, ["cat", pidfile])
    assert res.rc == 0, res.stderr
    return res.stdout.strip()


def test_reference_solution_full_marks_then_controller_down_gives_errors(lab_env: LabEnv) -> None:
    ctx = Context(lab_env.settings)
    t0 = time.monotonic()
    up(ctx, LAB, instance="adref", seed=21, candidate="Alice Martin", vantage="agent")
    # the set-up playbook hands the candidate the CSV built from this instance's parameters
    csv = exec_in(ctx, "adref", "dc1", ["cat", "/root/users.csv"])
    assert csv.rc == 0 and csv.stdout.startswith("login,givenName,sn,department,password\n")
    assert len(csv.stdout.strip().splitlines()) == 7
    solve(ctx, "adref", wait=10)
    up_and_solve = time.monotonic() - t0
    summary = grade(ctx, "adref", vantage="inprocess")
    bad = {c.id: c.message.en for c in summary.checks if c.status != "pass"}
    assert bad == {}
    assert summary.score == summary.max_score == 100
    # the same instance graded through its grader agent: the same verdict for every check
    same_verdicts_through_the_agent(ctx, "adref", summary)
    # and from the command line: a self-check through the agent
    cli = json.loads(lab_env.labkit("check", "adref", "--vantage", "agent", "--json").stdout)
    assert cli["score"] == 100 and {c["id"]: c["status"] for c in cli["checks"]} == {
        c.id: "pass" for c in summary.checks}
    run = open_run(lab_env.settings.runs, summary.run_id)
    assert {e.kind for e in run.evidence.values()} >= {"dns", "ldap", "kerberos", "smb"}
    # the probe's address is drawn per instance, from the seed (no fixed, announced address)
    plan = ctx.store.load("adref").plan
    probe = plan.vantage_point("v-lan")
    assert probe is not None and probe.ip.rsplit(".", 1)[1] == str(plan.params["probe_lan"])
    brief = lab_env.labkit("brief", "adref", "--lang", "en").stdout
    assert probe.ip not in brief and ".250" not in brief and "probe" not in brief.lower()
    assert "do not filter traffic from the lan" in " ".join(brief.lower().split())
    assert "ne filtrez pas le trafic venant du lan" in " ".join(lab_env.labkit("brief", "adref").stdout.lower().split())
    # the grader leaves none of its own accounts or DNS records in the directory
    left = exec_in(ctx, "adref", "dc1", ["ldbsearch", "-H", "/var/lib/samba/private/sam.ldb",
                                         "--cross-ncs", "(|(sAMAccountName=lkprobe*)(name=lkprobe*))", "dn"])
    assert left.rc == 0 and "dn: " not in left.stdout, left.stdout
    print(f"ad-gpo up + reference solution: {up_and_solve:.1f} s")

    # Nodes share the host's process list: stopping "samba", "smbd" and "winbind" with the
    # stock init scripts in another node (pc1, which runs none) must not touch dc1's or fs1's.
    before = {("dc1", "/run/samba/samba.pid"): _pid(ctx, "adref", "dc1", "/run/samba/samba.pid"),
              ("fs1", "/run/samba/smbd.pid"): _pid(ctx, "adref", "fs1", "/run/samba/smbd.pid"),
              ("fs1", "/run/samba/winbindd.pid"): _pid(ctx, "adref", "fs1", "/run/samba/winbindd.pid")}
    script = (f"printf '{DC_ROLE_CONF}' > /etc/samba/smb.conf; /etc/init.d/samba-ad-dc stop; "
              "printf '[global]\\n\\tworkgroup = X\\n' > /etc/samba/smb.conf; /etc/init.d/smbd stop; "
              "/etc/init.d/winbind stop")
    assert exec_in(ctx, "adref", "pc1", ["sh", "-c", script]).rc == 0
    for (node, pidfile), pid in before.items():
        alive = exec_in(ctx, "adref", node, ["sh", "-c", f"kill -0 $(cat {pidfile}) && cat {pidfile}"])
        assert alive.rc == 0 and alive.stdout.strip() == pid, f"{node} lost {pidfile}"

    # A controller that is stopped: every directory check is an error with its reason.
    assert exec_in(ctx, "adref", "dc1", ["/etc/init.d/samba-ad-dc", "stop"]).rc == 0
    stopped = grade(ctx, "adref")
    statuses = {c.id: c.status for c in stopped.checks}
    assert statuses.pop("share-access") in ("pass", "fail", "error")  # fs1 is still up; its DC is not
    assert set(statuses.values()) == {"error"}, {c.id: c.message.en for c in stopped.checks}
    assert all(c.message.en for c in stopped.checks)

    down_leaves_nothing(lab_env, "adref")


@pytest.mark.parametrize("variant,declared", lab_variants(LAB))
def test_faulty_variant_fails_exactly_what_it_declares(lab_env: LabEnv, variant: str,
                                                       declared: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"ad-{variant}"[:31], variant, declared,
                                   seed=22, wait=10)


@pytest.mark.parametrize("cheat,targeted", lab_cheats(LAB))
def test_cheat_fails_what_it_targets(lab_env: LabEnv, cheat: str, targeted: frozenset[str]) -> None:
    variant_fails_what_it_declares(lab_env, LAB, f"adc-{cheat}"[:31], cheat, targeted, seed=23, wait=10)
