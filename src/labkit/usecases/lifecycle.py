"""Bring lab instances up and down, report their status, run commands in their nodes."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from labkit.adapters.ansible.inventory import build_inventory, write_inventory
from labkit.adapters.providers.base import Provider, get_provider
from labkit.adapters.storage.state import InstanceStore, check_instance_name, utcnow
from labkit.domain.criteria import load_catalog
from labkit.domain.grading import CheckContext, GraderRegistry, has_baseline
from labkit.domain.labs import LoadedLab, find_lab, instantiate, load_lab, rendered_checks
from labkit.errors import InstanceExistsError, LabkitError, ProviderError, SolveError, UserError
from labkit.models.instance import ExecResult, InstancePlan, InstanceState, InstanceStatus
from labkit.settings import Settings, load_settings


@dataclass
class Context:
    settings: Settings

    @classmethod
    def default(cls) -> Context:
        return cls(load_settings())

    @property
    def store(self) -> InstanceStore:
        return InstanceStore(self.settings.instances)

    def provider(self, name: str) -> Provider:
        prov = get_provider(name)
        if hasattr(prov, "settings"):
            prov.settings = self.settings
        return prov


def load_lab_checked(ctx: Context, ref: str) -> LoadedLab:
    """Load and fully validate a lab (graders and criteria included)."""
    return load_lab(
        find_lab(ref, ctx.settings), ctx.settings,
        known_graders=GraderRegistry.load().names(),
        known_criteria={c.id for c in load_catalog().criteria},
    )


def inventory_path(ctx: Context, name: str) -> Path:
    return ctx.settings.inventories / f"{name}.yml"


def up(ctx: Context, lab_ref: str, *, instance: str | None = None, seed: int | None = None,
       candidate: str | None = None, provider: str = "netns") -> InstanceState:
    lab = load_lab_checked(ctx, lab_ref)
    name = check_instance_name(instance or lab.spec.id[:31])
    seed = secrets.randbelow(2**31) if seed is None else seed
    if seed < 0:
        raise UserError(f"seed {seed} is negative; give a seed of 0 or more.")
    plan = instantiate(lab, name, seed, candidate)
    return _up(ctx, lab, plan, provider)


def _up(ctx: Context, lab: LoadedLab, plan: InstancePlan, provider: str) -> InstanceState:
    name = plan.name
    prov = ctx.provider(provider)
    prov.preflight(plan)
    store = ctx.store
    with store.lock(name):
        if store.exists(name) or any(Path("/run/netns").glob(f"lk-{name}.*")) \
                or (ctx.settings.run_dir / name).exists():
            raise InstanceExistsError(
                f"an instance named {name!r} already exists; pick another --instance or run 'labkit down {name}'."
            )
        inst_dir = store.dir(name)
        inst_dir.mkdir(parents=True, exist_ok=True)
        key = inst_dir / "grader_key"
        now = utcnow()
        state = InstanceState(name=name, provider=provider, phase="creating", created_at=now,
                              updated_at=now, plan=plan, ssh_key=str(key))
        try:
            store.save(state)  # first, so that 'down' finds it after a crash
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"labkit-grader-{name}",
                            "-f", str(key)], check=True, capture_output=True)
            prov.create(state)
            store.save(state)
            prov.start(state)
            inv = inventory_path(ctx, name)
            inv.parent.mkdir(parents=True, exist_ok=True)
            write_inventory(inv, build_inventory(plan, {
                n.name: _ns_paths(prov.ansible_host_vars(state, n.name)) for n in plan.nodes}))
            state.inventory = str(inv)
            store.save(state)
            _setup_and_baseline(ctx, lab, prov, state)
            state.phase = "up"
            store.save(state)
        except BaseException as exc:
            state.phase = "failed"
            _teardown(ctx, prov, name, state)
            if isinstance(exc, LabkitError):
                raise
            if isinstance(exc, KeyboardInterrupt):
                raise UserError(f"interrupted; instance {name!r} was rolled back, nothing is left.") from exc
            raise ProviderError(
                f"bringing up {name!r} failed and was rolled back ({type(exc).__name__}: {exc})."
            ) from exc
    return state


def _setup_and_baseline(ctx: Context, lab: LoadedLab, prov: Provider, state: InstanceState) -> None:
    """Apply the lab's base set-up playbook, then record each grader's baseline evidence."""
    if lab.spec.setup is not None:
        from labkit.adapters.ansible.runner import run_playbook

        book = ctx.settings.playbooks / lab.spec.setup.playbook
        res = run_playbook(book, Path(state.inventory or ""),
                           artifact_dir=ctx.settings.instances / state.name / "ansible")
        if res.rc != 0:
            raise SolveError(f"the lab's set-up playbook {book.name} failed (status {res.status}); "
                             f"the instance was rolled back:\n{res.stdout_tail}")
        state.applied.append("setup")
    registry = GraderRegistry.load()
    for spec in rendered_checks(lab, state.plan.params):
        grader = registry.get(spec.grader)
        if has_baseline(grader):
            cctx = CheckContext(state=state, provider=prov, check=spec)
            evidence = grader.baseline(cctx, spec.args)  # type: ignore[attr-defined]
            for ev in evidence:
                ev.id = f"baseline.{ev.id}"  # distinct from the ids collect() gives in a run
                ev.meta["phase"] = "baseline"
            ctx.store.save_baseline(state.name, spec.id, evidence)


def _ns_paths(hv: dict[str, str]) -> tuple[str, ...]:
    return hv["labkit_netns"], hv["labkit_mnt"], hv["labkit_uts"], hv["labkit_ipc"], hv["labkit_pid"]


def _teardown(ctx: Context, prov: Provider, name: str, state: InstanceState | None) -> list[str]:
    removed = prov.destroy(name, state)
    inv = inventory_path(ctx, name)
    if inv.exists():
        inv.unlink()
        removed.append(f"file {inv}")
    d = ctx.settings.instances / name
    if d.exists():
        shutil.rmtree(d)
        removed.append(f"dir {d}")
    ctx.store.remove_lock(name)
    return removed


def down(ctx: Context, name: str) -> list[str]:
    """Remove an instance, whatever state it is in (also after a crash, or a half-made up)."""
    check_instance_name(name)
    store = ctx.store
    state: InstanceState | None = None
    if store.exists(name):
        try:
            state = store.load(name)
        except UserError:
            state = None
    elif not any(Path("/run/netns").glob(f"lk-{name}.*")) and not (ctx.settings.run_dir / name).exists() \
            and not store.dir(name).exists():
        known = ", ".join(store.names()) or "none"
        raise UserError(f"there is no instance named {name!r} (instances: {known}); nothing to do.")
    prov = ctx.provider(state.provider if state else "netns")
    with store.lock(name):
        return _teardown(ctx, prov, name, state)


def down_all(ctx: Context) -> dict[str, list[str]]:
    """Every instance of this labkit home: those with state, and those whose namespace files
    are still in this run dir after a crash. Instances of other homes are left alone."""
    names = set(ctx.store.names())
    rd = ctx.settings.run_dir
    if rd.is_dir():
        names |= {p.name for p in rd.iterdir() if p.is_dir()}
    return {n: down(ctx, n) for n in sorted(names)}


def status(ctx: Context, name: str) -> InstanceStatus:
    state = ctx.store.load(name)
    return ctx.provider(state.provider).status(state)


def status_all(ctx: Context) -> list[InstanceStatus]:
    out = []
    for n in ctx.store.names():
        try:
            out.append(status(ctx, n))
        except UserError:
            continue
    return out


def exec_in(ctx: Context, name: str, node: str, argv: list[str], timeout: float = 600.0) -> ExecResult:
    if not argv:
        raise UserError("no command given; write it after '--', for example: labkit exec NAME NODE -- ip route")
    state = ctx.store.load(name)
    return ctx.provider(state.provider).exec(state, node, argv, timeout=timeout)


def console_argv(ctx: Context, name: str, node: str) -> list[str]:
    state = ctx.store.load(name)
    return ctx.provider(state.provider).console_argv(state, node)
