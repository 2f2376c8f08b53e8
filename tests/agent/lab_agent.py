"""Shared by the five lab tests: one instance brought up with ``vantage="agent"``, the
reference solution graded in labkit's process and then through the grader agent; the two
gradings must give the same status and points for every check."""

from __future__ import annotations

from labkit.adapters.storage.runs import open_run
from labkit.models.results import GradeSummary
from labkit.models.stored_run import StoredRun
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context, up
from labkit.usecases.solve import SolveOutcome, solve
from tests.conftest import LabEnv


def verdicts(summary: GradeSummary) -> dict[str, tuple[str, int, int]]:
    return {c.id: (c.status, c.points, c.max_points) for c in summary.checks}


def same_verdicts_through_the_agent(ctx: Context, name: str, inprocess: GradeSummary) -> GradeSummary:
    """Grade ``name`` again through its agent; assert every check's verdict equals ``inprocess``'s."""
    agent = grade(ctx, name, vantage="agent")
    assert verdicts(agent) == verdicts(inprocess), {
        c.id: (c.status, c.message.en) for c in agent.checks if verdicts(agent)[c.id] != verdicts(inprocess).get(c.id)}
    assert agent.score == inprocess.score
    assert open_run(ctx.settings.runs, agent.run_id).info.vantage == "agent"
    assert open_run(ctx.settings.runs, inprocess.run_id).info.vantage == "inprocess"
    return agent


def full_marks_both_ways(lab_env: LabEnv, lab: str, name: str, *, seed: int, wait: float,
                         candidate: str | None = None) -> tuple[SolveOutcome, GradeSummary, StoredRun]:
    """``tests.conftest.full_marks`` on an instance made with the grader agent: up, solve,
    grade in-process (full marks, every check passes), then grade through the agent (same
    verdict per check). Returns the solve outcome and the in-process summary and run."""
    ctx = Context(lab_env.settings)
    state = up(ctx, lab, instance=name, seed=seed, candidate=candidate, vantage="agent")
    assert state.vantage == "agent"
    solved = solve(ctx, name, wait=wait)
    summary = grade(ctx, name, vantage="inprocess")
    assert {c.id: c.message.en for c in summary.checks if c.status != "pass"} == {}
    assert summary.score == summary.max_score == 100
    same_verdicts_through_the_agent(ctx, name, summary)
    return solved, summary, open_run(lab_env.settings.runs, summary.run_id)
