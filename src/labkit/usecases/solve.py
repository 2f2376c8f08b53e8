"""Apply the reference solution or a faulty variant to an instance (trainer and test use).

Linux hosts get the lab's Ansible playbook; network devices (topology nodes with
``platform:``) get the lab's config set, rendered with the instance's parameters and pushed
through their CLI with netmiko (never Ansible), over a connection the provider opens from the
grader's own place (``device_socket``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from labkit.adapters.ansible.runner import run_playbook
from labkit.domain.configsets import render_config_set
from labkit.domain.labs import LoadedLab
from labkit.errors import ProviderError, SolveError, UnknownVariantError, UserError
from labkit.models.instance import InstanceState
from labkit.usecases.lifecycle import Context, load_lab_checked


@dataclass
class SolveOutcome:
    instance: str
    variant: str | None
    playbook: str  # the playbook and/or config set applied
    duration: float
    converged_after: float | None


def _refs(lab: LoadedLab, variant: str | None) -> tuple[str | None, str | None]:
    if variant is None:
        return lab.spec.solution.playbook, lab.spec.solution.config
    v = lab.spec.variant(variant)
    if v is None:
        known = ", ".join(v.id for v in [*lab.spec.variants, *lab.spec.cheats]) or "none"
        raise UnknownVariantError(f"lab {lab.spec.id!r} has no variant or cheat {variant!r}; "
                                  f"choose one of: {known}.")
    return v.playbook, v.config


def playbook_for(ctx: Context, lab: LoadedLab, variant: str | None) -> Path:
    rel, _ = _refs(lab, variant)
    if rel is None:
        raise UserError(f"lab {lab.spec.id!r}: {variant or 'the solution'} has no playbook (its nodes are "
                        "network devices, which get its config set); use 'labkit solve'.")
    return ctx.settings.playbooks / rel


def push_config_sets(ctx: Context, state: InstanceState, lab: LoadedLab, rel: str) -> list[str]:
    """Render the config set ``rel`` (lab folder) and make each device's part its routing
    configuration through netmiko; returns the devices configured."""
    from labkit.adapters.devices import frr
    from labkit.adapters.devices.netmiko_driver import connect, push_config

    sections = render_config_set(lab.dir / rel, state.plan.params)
    devices = [n.name for n in state.plan.nodes if n.platform is not None]
    unknown = sorted(set(sections) - set(devices))
    if unknown:
        raise UserError(f"config set {rel} has sections for {', '.join(unknown)}, which are not network devices "
                        f"of this lab (its devices: {', '.join(devices) or 'none'}); fix the [node] headers.")
    prov = ctx.provider(state.provider)
    opener = getattr(prov, "device_endpoint", None)
    if opener is None:
        raise UserError(f"the {state.provider} provider cannot reach network devices; "
                        "bring the lab up on a provider that hosts them (netns, gns3).")
    done = []
    for node in devices:
        ep = prov.device_endpoint(state, node)  # type: ignore[attr-defined]
        try:
            sock = prov.device_socket(state, node) if ep.transport == "ssh" else None  # type: ignore[attr-defined]
            conn = connect(ep, sock)
        except ProviderError as exc:
            raise SolveError(f"config set {rel}: {exc}") from None
        try:
            lines = sections.get(node, [])
            if ep.platform == "frr":  # no "configure replace" in vtysh: undo what the set lacks first
                running = str(conn.send_command("show running-config"))
                lines = [*frr.removals(running, lines), *lines]
            push_config(ep, lines, conn=conn)
        except ProviderError as exc:
            raise SolveError(f"config set {rel}: {exc}") from None
        finally:
            conn.disconnect()
        done.append(node)
    return done


def solve(ctx: Context, name: str, *, variant: str | None = None, wait: float = 60.0) -> SolveOutcome:
    """Run the playbook and/or push the config set, then (with ``wait``) wait until the lab's
    routing has converged, judged by the lab's ready checks run as a self-check (bounded by
    ``wait`` seconds)."""
    state = ctx.store.load(name)
    if state.phase != "up":
        raise UserError(f"instance {name!r} is {state.phase}, not up; run 'labkit down {name}' and bring it up again.")
    lab = load_lab_checked(ctx, state.plan.lab_dir)
    book_rel, config_rel = _refs(lab, variant)
    has_devices = any(n.platform is not None for n in state.plan.nodes)
    if has_devices and config_rel is None:
        raise UserError(f"lab {lab.spec.id!r} has network devices but {variant or 'its solution'} has no config "
                        "set ('config:' in lab.yaml); devices are configured through their CLI only.")
    t0 = time.monotonic()
    applied: list[str] = []
    if book_rel is not None:
        book = ctx.settings.playbooks / book_rel
        res = run_playbook(book, Path(state.inventory or ""), artifact_dir=ctx.settings.instances / name / "ansible")
        if res.rc != 0:
            hosts = ", ".join(sorted(set(res.failed_hosts) | set(res.unreachable_hosts))) or "unknown hosts"
            raise SolveError(
                f"playbook {book.name} failed on {hosts} (status {res.status}); see the Ansible output in "
                f"{ctx.settings.instances / name / 'ansible'}:\n{res.stdout_tail}"
            )
        applied.append(str(book))
    if config_rel is not None and has_devices:
        push_config_sets(ctx, state, lab, config_rel)
        applied.append(str(lab.dir / config_rel))
    duration = time.monotonic() - t0
    state.applied.append(variant or "reference")
    ctx.store.save(state)
    converged = None
    if wait > 0:
        from labkit.usecases.grade import wait_ready

        applied_variant = lab.spec.variant(variant) if variant else None
        declared = applied_variant.fails if applied_variant else []
        converged = wait_ready(ctx, name, timeout=wait, checks=[c for c in lab.spec.ready if c not in declared])
    return SolveOutcome(name, variant, " + ".join(applied), duration, converged)
