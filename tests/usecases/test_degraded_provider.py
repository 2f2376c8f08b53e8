"""A REAL degraded run: routing-multisite on a provider that cannot read a node's kernel from
outside it (as Proxmox). A test-only provider (netns without ``node_kernel``, whose ground
refuses every node place) brings the lab up; the reference solution gets full marks, and the
check that only *wants* the routers' kernel tables says, in its message, its evidence and the
report, that they were not observed. Then a candidate who adds a static route beside a working
OSPF: the same instance graded with every capability fails it (the kernel table shows the
static route); graded degraded it passes, and the message and report say the routes were not
checked."""

from __future__ import annotations

import html as htmllib
import time
from pathlib import Path

import pytest

from labkit.adapters.ansible.runner import run_playbook
from labkit.adapters.netns.provider import NetnsProvider
from labkit.adapters.providers import base
from labkit.adapters.storage.runs import open_run
from labkit.domain.report import render_html
from labkit.errors import ProviderError
from labkit.models.capabilities import ALL_CAPABILITIES, Capability
from labkit.models.instance import InstanceState
from labkit.usecases.lifecycle import Context
from tests.conftest import PROJECT, LabEnv, down_leaves_nothing

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "routing-multisite"
NOT_CHECKED = ("Not checked: the routers' own routing tables (a static route to another site's LAN) "
               "(r-br1, r-br2, r-hq; this provider cannot read a node's kernel from outside it).")


class DegradedProvider(NetnsProvider):
    """netns that cannot read a node from outside it: no ``node_kernel``, and its ground
    refuses a node as a place (vantage points, segments and grader links are still its own)."""

    name = "degraded"
    capabilities: frozenset[Capability] = ALL_CAPABILITIES - {"node_kernel"}
    reads_nodes = False

    def place_namespace(self, state: InstanceState, where: str) -> str:
        if not self.reads_nodes and state.plan.node(where) is not None and state.plan.vantage_point(where) is None:
            raise ProviderError(f"provider degraded cannot read node {where!r} from outside it")
        return super().place_namespace(state, where)


@pytest.fixture
def degraded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.PROVIDERS, "degraded", f"{__name__}:DegradedProvider")


def _wait_settled(ctx: Context, name: str, checks: list[str], timeout: float = 90.0) -> None:
    """Wait (bounded) until the grader-owned readiness checks pass: ``solve``'s own wait reads
    every node's kernel routes, which this provider cannot."""
    from labkit.usecases.grade import checks_pass

    t0 = time.monotonic()
    while not checks_pass(ctx, name, checks):
        assert time.monotonic() - t0 < timeout, f"{checks} did not pass within {timeout:g} s"
        time.sleep(1.0)


def test_routing_on_a_provider_without_node_kernel(lab_env: LabEnv, degraded: None, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.usecases.grade import grade
    from labkit.usecases.lifecycle import up
    from labkit.usecases.solve import solve

    ctx = Context(lab_env.settings)
    warned: list[str] = []
    monkeypatch.setattr("labkit.usecases.lifecycle.log.warning", warned.append)
    state = up(ctx, LAB, instance="deg-rt", seed=21, provider="degraded")
    assert state.provider == "degraded"
    assert warned == ["lab routing-multisite on degraded: check 'ospf-lan-routes' runs without node kernel state "
                      "read from outside the node (node_kernel): not checked: the routers' own routing tables (a "
                      "static route to another site's LAN)."]
    lab_ready = ["lan-reachability", "ospf-adjacency"]

    # the reference solution: full marks, and the kernel tables recorded as not observed
    outcome = solve(ctx, "deg-rt")  # its wait: the ready checks, then a settle time, kernels unread
    assert outcome.converged_after is not None, outcome
    summary = grade(ctx, "deg-rt")
    assert {c.id: c.message.en for c in summary.checks if c.status != "pass"} == {}
    assert summary.score == summary.max_score == 100
    routes = next(c for c in summary.checks if c.id == "ospf-lan-routes")
    assert routes.message.en.endswith(NOT_CHECKED), routes.message.en
    assert "Non vérifié : les tables de routage des routeurs" in routes.message.fr
    run = open_run(lab_env.settings.runs, summary.run_id)
    mine = [e for e in run.evidence.values() if e.check == "ospf-lan-routes"]
    unseen = [e for e in mine if e.kind == "netlink"]
    assert sorted(e.target for e in unseen) == ["r-br1", "r-br2", "r-hq"]
    assert all(e.meta["not_observed"] == "node_kernel" and e.parsed is None
               and e.raw == "not observed: this provider cannot read a node's kernel from outside it"
               for e in unseen)
    assert {e.kind for e in mine} >= {"capture", "fault", "udp"}  # the decisive evidence is still the grader's
    # the run's addressing and routing tables say they were not observed (not an error)
    assert run.artifacts["routes-r-hq"] == {"error": "not observed: this provider cannot read a node's kernel "
                                                     "from outside it"}
    assert {row["state"] for row in run.artifacts["addressing"]} == {"not observed"}
    page = htmllib.unescape(render_html(run, "en"))
    assert NOT_CHECKED in page and "ip route show (netlink): not observed" in page

    # a static route beside a working OSPF: what the kernel tables used to catch
    book = tmp_path / "static-beside-ospf.yml"
    book.write_text(
        "- ansible.builtin.import_playbook: " + str(PROJECT / "playbooks" / LAB / "reference.yml") + "\n"
        "  vars:\n"
        "    static_routes:\n"
        "      r-hq:\n"
        "        - {to: \"{{ p.lan_br2 }}\", via: \"{{ p.wan_b | host(2) }}\"}\n")
    res = run_playbook(book, Path(ctx.store.load("deg-rt").inventory or ""),
                       artifact_dir=tmp_path / "ansible")
    assert res.rc == 0, res.stdout_tail
    _wait_settled(ctx, "deg-rt", lab_ready)

    # with every capability (the same instance, as netns grades it), the static route fails the check
    with monkeypatch.context() as full:
        full.setattr(DegradedProvider, "capabilities", ALL_CAPABILITIES)
        full.setattr(DegradedProvider, "reads_nodes", True)
        whole = grade(ctx, "deg-rt", only=["ospf-lan-routes"])
    (c,) = whole.checks
    assert c.status == "fail" and "r-hq reaches" in c.message.en and "through a static route" in c.message.en
    assert "Not checked" not in c.message.en

    # degraded, it passes: honestly, and the message and report say the routes were not checked
    summary = grade(ctx, "deg-rt", only=["ospf-lan-routes"])
    (c,) = summary.checks
    assert c.status == "pass" and c.message.en.endswith(NOT_CHECKED), c.message.en
    assert NOT_CHECKED in htmllib.unescape(render_html(open_run(lab_env.settings.runs, summary.run_id), "en"))
    down_leaves_nothing(lab_env, "deg-rt")
