"""Capabilities a provider withholds on some nodes (domain/labs.node_capability_gaps): the real
supervision-snmp lab, made-up limits, no provider and no I/O."""

from __future__ import annotations

from typing import Any

from labkit.domain.labs import GraderNeeds, find_lab, load_lab, names_in, node_capability_gaps, node_capability_problem
from labkit.settings import Settings
from tests.domain.test_labs import ROOT

NEEDS = {
    "supervision.alert_fires": GraderNeeds(frozenset({"vantage", "node_exec"})),
    "supervision.syslog_forwarded": GraderNeeds(frozenset({"vantage"}), {"node_fs": ("fr", "en")}),
}


def _lab() -> Any:
    settings = Settings(home=ROOT / "nonexistent", run_dir=ROOT / "nonexistent", project=ROOT)
    return load_lab(find_lab("supervision-snmp", settings), settings)


def _of(grader: str) -> GraderNeeds:
    return NEEDS.get(grader, GraderNeeds())


def test_names_are_found_at_any_depth_as_keys_and_whole_strings() -> None:
    assert names_in({"a": [{"node": "r1"}, "x y"], "r2": 3}) == {"a", "node", "r1", "x y", "r2"}


def test_a_need_and_a_want_on_a_withheld_node_are_gaps_with_the_providers_reason() -> None:
    lab = _lab()
    nodes = {n.name for n in lab.topology.nodes}
    withheld = frozenset({"node_exec", "node_fs"})
    gaps = node_capability_gaps(lab, _of, lambda n: (withheld, "it is a box") if n.name in nodes else None)
    kinds = {(g.grader, g.capability) for g in gaps}
    assert ("supervision.alert_fires", "node_exec") in kinds       # a need
    assert ("supervision.syslog_forwarded", "node_fs") in kinds    # a want counts too
    assert all(g.node in nodes and g.why == "it is a box" for g in gaps)
    problem = node_capability_problem("supervision-snmp", "boxes", gaps)
    assert problem is not None and problem.startswith(f"check {gaps[0].check!r} of lab supervision-snmp needs ")
    assert f"on node {gaps[0].node}, which provider boxes cannot offer there (and {len(gaps) - 1} more" in problem
    assert problem.endswith(": it is a box.")


def test_nothing_withheld_or_nothing_used_gives_no_gap() -> None:
    lab = _lab()
    assert node_capability_gaps(lab, _of, lambda n: None) == []
    # withholding what no check uses on a node is no gap
    assert node_capability_gaps(lab, _of, lambda n: (frozenset({"node_kernel"}), "x")) == []
    assert node_capability_problem("l", "p", []) is None
