"""A REAL degraded run of supervision-snmp: a test-only netns provider that, like Proxmox, can
read neither a node's kernel nor its files from outside it (no ``node_kernel``, no ``node_fs``;
its ground refuses a node as a place, its ``node_fs`` refuses) but knows its own wiring
(``port_map``).

- ``segment_port`` names the real port: the veth of LAN A's bridge whose peer is mon's eth0.
- The reference solution passes the three real alerts (the sender's port from the wiring) and
  syslog (the collector's files read through its own exec, the evidence says so).
- The lab's variant syslog-not-forwarded fails syslog, and so does a cheat of ours: srv2 does
  forward (the nonce crosses the wire) but logs files nothing, and its ``tail`` prints a canned
  log: the node's own answer cannot hold the fresh nonce."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.adapters.ansible.runner import run_playbook
from labkit.adapters.netns.provider import NetnsProvider
from labkit.adapters.probes.netlink import veth_ends
from labkit.adapters.providers import base
from labkit.adapters.storage.runs import open_run
from labkit.errors import ProviderError
from labkit.models.capabilities import ALL_CAPABILITIES, Capability
from labkit.models.instance import InstanceState
from labkit.usecases.lifecycle import Context
from tests.conftest import LabEnv, down_leaves_nothing

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "supervision-snmp"
NAME = "deg-sup"
ALERTS = ["alert-device-down", "alert-interface-down", "alert-disk-full"]

# srv2 forwards to logs over TCP (so the nonce crosses LAN A), logs accepts syslog and drops it,
# its per-host files are written by hand, and its tail is replaced by one printing a canned log
READER_FORGED = """\
- name: srv2 forwards its logs to logs
  hosts: srv2
  gather_facts: false
  tasks:
    - name: Forward everything over TCP
      ansible.builtin.copy:
        dest: /etc/rsyslog.d/90-forward.conf
        mode: "0644"
        content: |
          *.* action(type="omfwd" target="{{ p.lan_a | host(20) }}" port="514" protocol="tcp"
                     action.resumeRetryCount="-1" queue.type="LinkedList" queue.size="10000")
    - name: Restart rsyslogd
      ansible.builtin.shell: &restart |
        set -e
        start-stop-daemon --stop --quiet --oknodo --retry TERM/5/KILL/2 --pidfile /run/rsyslogd.pid \\
          --exec /usr/sbin/rsyslogd
        rm -f /run/rsyslogd.pid
        /usr/sbin/rsyslogd
      changed_when: true

- name: logs receives, files nothing, and forges what it shows
  hosts: logs
  gather_facts: false
  tasks:
    - name: Syslog accepted on 514 and dropped
      ansible.builtin.copy:
        dest: /etc/rsyslog.d/10-remote.conf
        mode: "0644"
        content: |
          module(load="imudp")
          input(type="imudp" port="514" ruleset="remote")
          module(load="imtcp")
          input(type="imtcp" port="514" ruleset="remote")
          ruleset(name="remote") { stop }
    - name: Restart rsyslogd
      ansible.builtin.shell: *restart
      changed_when: true
    - name: Per-host files written by hand
      ansible.builtin.shell: |
        mkdir -p /var/log/remote
        echo "$(date '+%b %e %T') srv2 sshd[1]: Invalid user admin from 10.0.0.1 port 22" >> /var/log/remote/srv2.log
      changed_when: true
    - name: A tail that prints a canned log whatever it is asked
      ansible.builtin.copy:
        dest: /usr/bin/tail
        mode: "0755"
        content: |
          #!/bin/sh
          echo "$(date '+%b %e %T') srv2 sshd[1]: Invalid user admin from 10.0.0.1 port 22"
"""


class NoNodeReadProvider(NetnsProvider):
    """netns that reads no node from outside it (as Proxmox): no ``node_kernel`` (its ground
    refuses a node as a place), no ``node_fs`` (refused); it still knows its own wiring."""

    name = "degraded-sup"
    capabilities: frozenset[Capability] = ALL_CAPABILITIES - {"node_kernel", "node_fs"}

    def place_namespace(self, state: InstanceState, where: str) -> str:
        if state.plan.node(where) is not None and state.plan.vantage_point(where) is None:
            raise ProviderError(f"provider degraded-sup cannot read node {where!r} from outside it")
        return super().place_namespace(state, where)

    def node_fs(self, state: InstanceState, node: str) -> object:
        raise ProviderError(f"provider degraded-sup cannot read node {node!r}'s files from outside it")


@pytest.fixture
def degraded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.PROVIDERS, "degraded-sup", f"{__name__}:NoNodeReadProvider")


def test_supervision_on_a_provider_without_node_kernel_and_node_fs(lab_env: LabEnv, degraded: None, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.usecases.grade import grade
    from labkit.usecases.lifecycle import up
    from labkit.usecases.solve import solve

    ctx = Context(lab_env.settings)
    warned: list[str] = []
    monkeypatch.setattr("labkit.usecases.lifecycle.log.warning", warned.append)
    state = up(ctx, LAB, instance=NAME, seed=41, provider="degraded-sup")
    assert state.provider == "degraded-sup"
    assert warned == ["lab supervision-snmp on degraded-sup: check 'syslog-central' runs without node files read "
                      "from outside the node (node_fs): not checked: that the line is filed in the collector's files "
                      "as read from outside the node (the collector's own system shows its files; it can only show "
                      "the random user name if the line reached it)."]

    # the wiring's port is the real one: LAN A's bridge port whose veth peer is mon's eth0
    deg = ctx.provider("degraded-sup")
    assert isinstance(deg, NoNodeReadProvider)
    port = deg.segment_port(state, "lan-a", "mon:eth0")
    full = NetnsProvider(lab_env.settings)
    mine = full.run_at(state, "mon", lambda: veth_ends("eth0", ev_id="t1", source="mon"), 10.0).parsed
    ports = full.run_at(state, "segment:lan-a", lambda: veth_ends(ev_id="t2", source="segment:lan-a"), 10.0).parsed
    assert mine and ports
    assert [p[0] for p in ports for m in mine if p[2] == m[1] and m[2] == p[1]] == [port]
    with pytest.raises(ProviderError, match="cannot read node 'mon'"):
        deg.place_namespace(state, "mon")

    # the reference solution: the three real alerts and syslog pass
    solve(ctx, NAME, wait=10)
    summary = grade(ctx, NAME, only=[*ALERTS, "syslog-central"])
    assert {c.id: (c.status, c.message.en) for c in summary.checks if c.status != "pass"} == {}
    assert sorted(c.id for c in summary.checks) == sorted([*ALERTS, "syslog-central"])
    syslog = next(c for c in summary.checks if c.id == "syslog-central")
    assert "logs's own system shows it filed (/var/log/remote/srv2.log" in syslog.message.en, syslog.message.en
    run = open_run(lab_env.settings.runs, summary.run_id)
    witnesses = [e for e in run.evidence.values() if e.meta.get("phase") == "witness"]
    assert len(witnesses) == 3 and all(e.ok and e.meta["port"] == port and e.parsed["opens"] for e in witnesses)
    faults = [e for e in run.evidence.values() if e.kind == "fault"]
    assert len(faults) == 6 and all(e.ok for e in faults)
    cut = [e for e in faults if e.check == "alert-interface-down"]
    assert {e.source for e in cut} == {"link:backup"}  # on the grader's own bridge, never in r2
    (search,) = [e for e in run.evidence.values() if e.check == "syslog-central" and e.meta.get("phase") == "search"]
    assert search.kind == "exec" and search.source == "logs" and search.meta["read"] == "node_exec"
    assert search.meta["reported_by"] == ("the node's own answer, read through the node's own exec (inside the "
                                          "candidate's system)")
    line = search.parsed["lines"][0]
    nonce = next(w for w in line.split() if w.startswith("lk") and len(w) == 14)
    assert nonce not in search.action and "Invalid user " + nonce in line
    (wire,) = [e for e in run.evidence.values() if e.check == "syslog-central" and e.meta.get("phase") == "wire"]
    assert wire.parsed["marker_hits"], "the nonce crossed LAN A: the grader's own capture"

    # the lab's variant: nothing forwarded
    solve(ctx, NAME, variant="syslog-not-forwarded", wait=10)
    (c,) = grade(ctx, NAME, only=["syslog-central"]).checks
    assert c.status == "fail" and "did not cross the LAN" in c.message.en, c.message.en

    # our cheat: the nonce does cross to logs, which files nothing and forges what it shows
    book = tmp_path / "reader-forged.yml"
    book.write_text(READER_FORGED)
    res = run_playbook(book, Path(ctx.store.load(NAME).inventory or ""), artifact_dir=tmp_path / "ansible")
    assert res.rc == 0, res.stdout_tail
    summary = grade(ctx, NAME, only=["syslog-central"])
    (c,) = summary.checks
    assert c.status == "fail" and "did not cross" not in c.message.en, c.message.en
    assert "it is in no file under /var/log/remote on logs after 10 s (as logs's own system shows them)" in \
        c.message.en
    run = open_run(lab_env.settings.runs, summary.run_id)
    (search,) = [e for e in run.evidence.values() if e.meta.get("phase") == "search"]
    assert search.parsed["read"] and search.parsed["files"] == []  # the canned tails, read and searched
    down_leaves_nothing(lab_env, NAME)
