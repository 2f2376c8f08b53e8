"""routing-multisite-devices end to end on the netns provider: the routers are FRR devices
driven only through their CLI (vtysh) with netmiko; the reference solution and the faulty
variants are config sets pushed by ``solve``. The reference gets the same verdict per check
(status, points) as the Ansible-driven routing-multisite's reference; each variant fails
exactly what routing-multisite's variant of the same id declares. One instance serves them
all: each config set replaces the routers' routing configuration (the suite's time)."""

from __future__ import annotations

import pytest
import yaml

from labkit.domain.labs import load_lab
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context, exec_in, up
from labkit.usecases.solve import solve
from tests.conftest import PROJECT, LabEnv, down_leaves_nothing

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB = "routing-multisite-devices"
ANSIBLE_LAB = "routing-multisite"


def _ansible_lab() -> dict:
    return yaml.safe_load((PROJECT / "labs" / ANSIBLE_LAB / "lab.yaml").read_text())


def test_devices_lab_matches_the_ansible_lab(lab_env: LabEnv) -> None:
    ansible = _ansible_lab()
    ansible_points = {c["id"]: c["points"] for c in ansible["checks"]}
    ansible_fails = {v["id"]: frozenset(v["fails"]) for v in ansible["variants"]}
    devices = load_lab(PROJECT / "labs" / LAB / "lab.yaml", lab_env.settings)
    # the same checks, graders and arguments as the Ansible lab's routing checks
    for check in devices.spec.checks:
        twin = next(c for c in ansible["checks"] if c["id"] == check.id)
        assert (check.grader, check.points, check.args) == (twin["grader"], twin["points"], twin["args"])
    # every variant keeps the id and the declared failures of the Ansible lab's
    for v in devices.spec.variants:
        assert frozenset(v.fails) == ansible_fails[v.id], v.id
        assert v.config and v.playbook is None
    assert devices.spec.solution.playbook is None and devices.spec.solution.config

    ctx = Context(lab_env.settings)
    name = "rdev"
    up(ctx, LAB, instance=name, seed=11)
    state = ctx.store.load(name)
    assert {n.name for n in state.plan.nodes if n.platform == "frr"} == {"r-hq", "r-br1", "r-br2"}
    assert all(n.platform is None for n in state.plan.nodes if n.name.startswith("pc-"))

    # reference: full marks, same status and points per check as the Ansible reference
    solved = solve(ctx, name, wait=60)
    assert solved.converged_after is not None and solved.playbook.endswith("configs/reference.cfg")
    summary = grade(ctx, name)
    assert {c.id: (c.status, c.points) for c in summary.checks} == \
        {c.id: ("pass", ansible_points[c.id]) for c in devices.spec.checks}
    assert summary.score == summary.max_score
    # the routers' static routes were read through their CLI (supporting evidence), not netlink
    from labkit.adapters.storage.runs import open_run

    run = open_run(lab_env.settings.runs, summary.run_id)
    reads = [e for e in run.evidence.values() if e.check == "ospf-lan-routes" and e.kind in ("ssh", "netlink")]
    assert sorted((e.meta.get("target_name"), e.kind, e.ok, bool(e.meta.get("device_cli"))) for e in reads) == \
        [("r-br1", "ssh", True, True), ("r-br2", "ssh", True, True), ("r-hq", "ssh", True, True)]
    # the configuration came through the CLI and was saved by it (write memory)
    saved = exec_in(ctx, name, "r-hq", ["cat", "/etc/frr/frr.conf"]).stdout
    assert "ip ospf hello-interval 1" in saved and f"network {state.plan.params['lan_hq']} area 0" in saved

    # each variant and the cheat on the same instance, replacing the previous configuration
    every = [(v.id, frozenset(v.fails)) for v in [*devices.spec.variants, *devices.spec.cheats]]
    for variant, declared in every:
        solve(ctx, name, variant=variant, wait=60)
        summary = grade(ctx, name)
        assert {c.id: c.message.en for c in summary.checks if c.status == "error"} == {}, variant
        failed = {c.id for c in summary.checks if c.status == "fail"}
        assert failed == declared, (variant, {c.id: c.message.en for c in summary.checks
                                              if (c.id in failed) != (c.id in declared)})
        if variant in ansible_fails:
            assert failed == ansible_fails[variant], variant
        if variant in ("static-routes", "ospf-facade"):  # the CLI read names the static routes too
            routes_msg = next(c.message.en for c in summary.checks if c.id == "ospf-lan-routes")
            assert "through a static route (its CLI: show ip route static)" in routes_msg, (variant, routes_msg)
    assert ctx.store.load(name).applied == ["reference", *(v for v, _ in every)]
    down_leaves_nothing(lab_env, name)



def test_a_config_set_line_the_device_rejects_stops_solve_naming_it(lab_env: LabEnv, tmp_path) -> None:  # noqa: ANN001
    import shutil

    from labkit.errors import SolveError

    lab_dir = tmp_path / LAB
    shutil.copytree(PROJECT / "labs" / LAB, lab_dir)
    cfg = lab_dir / "configs" / "reference.cfg"
    cfg.write_text(cfg.read_text().replace(" ip ospf passive", " ip ospf passiv-typo", 1))
    ctx = Context(lab_env.settings)
    up(ctx, str(lab_dir), instance="rdev-bad", seed=12)
    with pytest.raises(SolveError, match=r"configs/reference.cfg: device 'r-hq' rejected the config line "
                                         r"'ip ospf passiv-typo'"):
        solve(ctx, "rdev-bad", wait=0)
    assert ctx.store.load("rdev-bad").applied == []
    down_leaves_nothing(lab_env, "rdev-bad")
