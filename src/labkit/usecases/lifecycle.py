"""Bring lab instances up and down, report their status, run commands in their nodes."""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labkit.adapters.ansible.inventory import build_inventory, write_inventory
from labkit.adapters.providers.base import PROVIDERS, Provider, get_provider, vantage_modes
from labkit.adapters.storage.state import InstanceStore, check_instance_name, utcnow
from labkit.domain.criteria import load_catalog
from labkit.domain.grading import CheckContext, GraderRegistry, has_baseline
from labkit.domain.labs import (
    GraderNeeds,
    LoadedLab,
    capability_gaps,
    capability_problem,
    capability_shortfalls,
    capability_warning,
    node_capability_gaps,
    node_capability_problem,
    find_lab,
    instantiate,
    load_lab,
    rendered_checks,
)
from labkit.errors import InstanceExistsError, LabkitError, ProviderError, SolveError, UserError
from labkit.models.instance import ExecResult, InstancePlan, InstanceState, InstanceStatus
from labkit.settings import Settings, load_settings

log = logging.getLogger(__name__)


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


def check_provider_fits(ctx: Context, lab: LoadedLab, provider: str, vantage: str | None = None, *,
                        warn: Callable[[str], None] | None = None) -> str:
    """Refuse, before anything is made, a lab whose checks need a capability ``provider`` lacks,
    or a vantage mode it cannot grade with; return the vantage mode to use (the provider's
    default when ``vantage`` is None). Checks that run without a capability they only want
    give one warning line (to ``warn``; logged as a warning when None) saying what they will
    not check."""
    try:
        prov = ctx.provider(provider)
    except ImportError as exc:
        raise UserError(f"provider {provider} cannot be used here: its code does not load ({exc}); install "
                        "what it needs, or choose another --provider.") from None
    registry = GraderRegistry.load()
    gaps = capability_gaps(lab, lambda g: GraderNeeds.of(registry.get(g)).needs, prov.capabilities)
    problem = capability_problem(lab.spec.id, provider, gaps)
    if problem:
        raise UserError(problem)
    node_limits = getattr(prov, "node_limits", None)
    if callable(node_limits):
        node_gaps = node_capability_gaps(lab, lambda g: GraderNeeds.of(registry.get(g)), node_limits)
        if (problem := node_capability_problem(lab.spec.id, provider, node_gaps)) is not None:
            raise UserError(problem)
    devices = sorted({str(n.platform) for n in lab.topology.nodes if getattr(n, "platform", None)})
    if devices and not callable(getattr(prov, "device_endpoint", None)):
        raise UserError(f"lab {lab.spec.id} has network devices ({', '.join(devices)}) that provider {provider} "
                        "cannot reach through their CLI; use a provider that drives devices (netns for frr, "
                        "gns3 for appliances).")
    modes = vantage_modes(prov)
    if vantage is not None and vantage not in modes:
        raise UserError(f"provider {provider} cannot grade with vantage {vantage!r} (it grades with: "
                        f"{', '.join(modes)}); use --vantage {modes[0]} or leave --vantage out.")
    shortfalls = capability_shortfalls(lab, lambda g: GraderNeeds.of(registry.get(g)), prov.capabilities)
    if (warning := capability_warning(lab.spec.id, provider, shortfalls)) is not None:
        (warn or log.warning)(warning)
    return modes[0] if vantage is None else vantage


def leftovers_by_provider(ctx: Context, name: str, providers: list[str] | None = None, *,
                          errors: dict[str, str] | None = None) -> dict[str, list[str]]:
    """What of instance ``name`` is still on each provider (those with something left), found
    from the name alone. A provider that cannot be imported here (an optional SDK missing, a
    provider not installed) is not configured: nothing of it can be left. A provider that
    cannot answer (its API unreachable) raises, unless ``errors`` is given: then its error is
    recorded there and the other providers are still asked."""
    found: dict[str, list[str]] = {}
    for pname in list(PROVIDERS) if providers is None else providers:
        try:
            prov = ctx.provider(pname)
        except ImportError:
            continue
        try:
            left = prov.leftovers(name)
        except LabkitError as exc:
            if errors is None:
                raise
            errors[pname] = str(exc)
            continue
        if left:
            found[pname] = left
    return found


def instance_exists(ctx: Context, name: str, provider: str | None = None) -> bool:
    """An instance ``name`` has state, or something of it is left on ``provider`` (any
    registered provider when None)."""
    return ctx.store.exists(name) or bool(leftovers_by_provider(ctx, name, [provider] if provider else None))


def up(ctx: Context, lab_ref: str, *, instance: str | None = None, seed: int | None = None,
       candidate: str | None = None, provider: str = "netns", vantage: str | None = None,
       warn: Callable[[str], None] | None = None) -> InstanceState:
    """Bring up one instance; ``warn`` receives the capability warnings (default: logged)."""
    lab = load_lab_checked(ctx, lab_ref)
    name = check_instance_name(instance or lab.spec.id[:31])
    seed = secrets.randbelow(2**31) if seed is None else seed
    if seed < 0:
        raise UserError(f"seed {seed} is negative; give a seed of 0 or more.")
    vantage = check_provider_fits(ctx, lab, provider, vantage, warn=warn)
    plan = instantiate(lab, name, seed, candidate)
    return _up(ctx, lab, plan, provider, vantage)


def _up(ctx: Context, lab: LoadedLab, plan: InstancePlan, provider: str, vantage: str) -> InstanceState:
    name = plan.name
    prov = ctx.provider(provider)
    prov.preflight(plan)
    store = ctx.store
    with store.lock(name):
        if store.exists(name) or prov.leftovers(name):
            raise InstanceExistsError(
                f"an instance named {name!r} already exists; pick another --instance or run 'labkit down {name}'."
            )
        inst_dir = store.dir(name)
        inst_dir.mkdir(parents=True, exist_ok=True)
        key = inst_dir / "grader_key"
        now = utcnow()
        state = InstanceState(name=name, provider=provider, phase="creating", created_at=now,
                              updated_at=now, plan=plan, ssh_key=str(key), vantage=vantage)  # type: ignore[arg-type]  # pydantic checks it
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
                n.name: prov.ansible_host_vars(state, n.name) for n in plan.nodes}))
            state.inventory = str(inv)
            store.save(state)
            _setup_and_baseline(ctx, lab, prov, state)
            state.phase = "up"
            store.save(state)
        except BaseException as exc:
            state.phase = "failed"
            _teardown(ctx, [prov], name, state)
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
            try:
                evidence = grader.baseline(cctx, spec.args)  # type: ignore[attr-defined]
            finally:
                cctx.close()  # the ground it opened (an agent ground holds an SSH session)
            for ev in evidence:
                ev.id = f"baseline.{ev.id}"  # distinct from the ids collect() gives in a run
                ev.meta["phase"] = "baseline"
            ctx.store.save_baseline(state.name, spec.id, evidence)


def _teardown(ctx: Context, provs: list[Provider], name: str, state: InstanceState | None) -> list[str]:
    removed = [item for prov in provs for item in prov.destroy(name, state)]
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


def down(ctx: Context, name: str, *, providers: list[str] | None = None) -> list[str]:
    """Remove an instance, whatever state it is in (also after a crash, or a half-made up).
    Without its state, every provider that still has something of ``name`` removes it (those
    in ``providers`` when given: ``down_all`` leaves out the ones that could not answer).

    A provider that cannot answer (a Proxmox cluster unreachable) does not keep the others from
    removing what they have of ``name``: it is one warning then, unless nothing of ``name`` was
    found here at all (it may live on that provider alone: an error)."""
    check_instance_name(name)
    store = ctx.store
    state: InstanceState | None = None
    if store.exists(name):
        try:
            state = store.load(name)
        except UserError:
            state = None
    errors: dict[str, str] = {}
    if state is not None:
        provs = [ctx.provider(state.provider)]
    else:
        found = leftovers_by_provider(ctx, name, providers, errors=errors)
        if not found and not errors and not store.dir(name).exists():
            known = ", ".join(store.names()) or "none"
            raise UserError(f"there is no instance named {name!r} (instances: {known}); nothing to do.")
        provs = [ctx.provider(p) for p in found]
    here = bool(provs) or store.dir(name).exists()
    with store.lock(name):
        removed = _teardown(ctx, provs, name, state) if here or not errors else []
    if errors:
        asked = "; ".join(f"{p}: {e}" for p, e in errors.items())
        if not here:  # nothing of it here: it may live only where nobody answered
            raise ProviderError(f"could not ask every provider what is left of {name!r} ({asked}); run "
                                f"'labkit down {name}' again once it answers.")
        log.warning("warning: instance %s removed from %s, but %s", name,
                    ", ".join(p.name for p in provs) or "this host", _unasked(errors, name))
    return removed


def _unasked(errors: dict[str, str], name: str) -> str:
    """The end of the one warning line about providers that could not be asked."""
    asked = "; ".join(f"{p} could not be asked what is left of it ({e.rstrip('.')})" for p, e in errors.items())
    return f"{asked}; if it had anything there, run 'labkit down {name}' again once it answers."


def down_all(ctx: Context) -> dict[str, list[str]]:
    """Every instance: those with state, and those each provider still has without state after
    a crash (its optional ``instances()``: netns, the instances in this run dir, those of other
    homes left alone; Proxmox, the labkit pools and tagged VMs of the configured cluster). A
    provider that cannot answer is one warning and is not asked again; the others are cleaned."""
    names = set(ctx.store.names())
    unreachable: dict[str, str] = {}
    for pname in PROVIDERS:
        try:
            prov = ctx.provider(pname)
        except ImportError:
            continue  # not installed here: nothing of it can be left
        lister = getattr(prov, "instances", None)
        if lister is None:
            continue
        try:
            names |= set(lister())
        except LabkitError as exc:
            unreachable[pname] = str(exc)
    for pname, err in unreachable.items():
        log.warning("warning: could not list the %s instances (%s); its instances without state are left; "
                    "run 'labkit down --all' again once it answers.", pname, err.rstrip("."))
    asked = [p for p in PROVIDERS if p not in unreachable]
    return {n: down(ctx, n, providers=asked) for n in sorted(names)}


def status(ctx: Context, name: str) -> InstanceStatus:
    state = ctx.store.load(name)
    return ctx.provider(state.provider).status(state)


def access_lines(ctx: Context, name: str) -> list[str]:
    """How the instance's candidate reaches their lab on the provider (its optional
    ``access_lines(state)`` hook: GNS3's account and project), for ``labkit status NAME``."""
    state = ctx.store.load(name)
    hook = getattr(ctx.provider(state.provider), "access_lines", None)
    return list(hook(state)) if callable(hook) else []


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
