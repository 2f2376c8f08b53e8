"""Apply the reference solution or a faulty variant to an instance (trainer and test use)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from labkit.adapters.ansible.runner import run_playbook
from labkit.domain.labs import LoadedLab
from labkit.errors import SolveError, UnknownVariantError, UserError
from labkit.usecases.lifecycle import Context, load_lab_checked


@dataclass
class SolveOutcome:
    instance: str
    variant: str | None
    playbook: str
    duration: float
    converged_after: float | None


def playbook_for(ctx: Context, lab: LoadedLab, variant: str | None) -> Path:
    if variant is None:
        rel = lab.spec.solution.playbook
    else:
        v = lab.spec.variant(variant)
        if v is None:
            known = ", ".join(v.id for v in [*lab.spec.variants, *lab.spec.cheats]) or "none"
            raise UnknownVariantError(f"lab {lab.spec.id!r} has no variant or cheat {variant!r}; "
                                      f"choose one of: {known}.")
        rel = v.playbook
    return ctx.settings.playbooks / rel


def solve(ctx: Context, name: str, *, variant: str | None = None, wait: float = 60.0) -> SolveOutcome:
    """Run the playbook, then (with ``wait``) wait until the lab's routing has converged,
    judged by the lab's first check run as a self-check (bounded by ``wait`` seconds)."""
    state = ctx.store.load(name)
    if state.phase != "up":
        raise UserError(f"instance {name!r} is {state.phase}, not up; run 'labkit down {name}' and bring it up again.")
    lab = load_lab_checked(ctx, state.plan.lab_dir)
    book = playbook_for(ctx, lab, variant)
    t0 = time.monotonic()
    res = run_playbook(book, Path(state.inventory or ""), artifact_dir=ctx.settings.instances / name / "ansible")
    if res.rc != 0:
        hosts = ", ".join(sorted(set(res.failed_hosts) | set(res.unreachable_hosts))) or "unknown hosts"
        raise SolveError(
            f"playbook {book.name} failed on {hosts} (status {res.status}); see the Ansible output in "
            f"{ctx.settings.instances / name / 'ansible'}:\n{res.stdout_tail}"
        )
    duration = time.monotonic() - t0
    state.applied.append(variant or "reference")
    ctx.store.save(state)
    converged = None
    if wait > 0:
        from labkit.usecases.grade import wait_ready

        applied = lab.spec.variant(variant) if variant else None
        declared = applied.fails if applied else []
        converged = wait_ready(ctx, name, timeout=wait, checks=[c for c in lab.spec.ready if c not in declared])
    return SolveOutcome(name, variant, str(book), duration, converged)
