"""Grade an instance: collect evidence, judge it, store an immutable run folder."""

from __future__ import annotations

import hashlib
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from labkit import __version__
from labkit.adapters.probes import netlink, registry
from labkit.adapters.providers.base import GraderGround
from labkit.adapters.security.keyring import Keyring
from labkit.adapters.storage.runs import RunWriter, new_run_id
from labkit.adapters.storage.state import utcnow
from labkit.domain.criteria import load_catalog
from labkit.domain.grading import CheckContext, GraderRegistry, judge_safely, result_from
from labkit.domain.labs import rendered_checks
from labkit.errors import LabkitError, UserError
from labkit.models.evidence import Evidence
from labkit.models.instance import InstanceState
from labkit.models.results import GradeSummary, RunInfo, Verdict
from labkit.usecases.lifecycle import Context, load_lab_checked


def _dst(route: dict[str, Any]) -> str:
    dst = str(route.get("dst") or "0.0.0.0")
    return dst if "/" in dst else f"{dst}/{route.get('prefixlen', 0)}"


def _route_rows(ev: Evidence) -> list[dict[str, Any]]:
    return [
        {"dst": _dst(r), "gateway": r.get("gateway"),
         "dev": r.get("oif"), "protocol": r.get("protocol"), "metric": r.get("metric")}
        for r in (ev.parsed or [])
    ]


def _read(ground: GraderGround, where: str, fn: Any, ev_id: str, timeout: float) -> Evidence:
    """Run a registered probe (``partial``) at ``where`` through the grader's ground."""
    return ground.run(where, registry.call_of(fn), ev_id, timeout)


NOT_OBSERVED = "not observed: this provider cannot read a node's kernel from outside it"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _attach_provider_files(prov: Any, state: InstanceState, writer: RunWriter) -> None:
    """Files the provider keeps as proof of the lab as graded (GNS3: the project's export),
    stored in the run's ``attachments/`` and listed in the ``attachments`` artifact; sealed in
    the manifest with the rest. A provider without the optional ``run_attachments(state,
    workdir) -> [(name, path)]`` hook adds nothing; one that fails is recorded, not fatal."""
    hook = getattr(prov, "run_attachments", None)
    if hook is None:
        return
    with tempfile.TemporaryDirectory(prefix="labkit-attach-") as tmp:
        try:
            files = list(hook(state, Path(tmp)))
        except LabkitError as exc:
            writer.add_artifact("attachments", [{"error": str(exc)}])
            return
        rows = []
        for name, path in files:
            writer.add_file(name, path)
            rows.append({"name": name, "size": path.stat().st_size, "sha256": _sha256_file(path)})
        writer.add_artifact("attachments", rows)


def _collect_artifacts(state: InstanceState, ground: GraderGround, writer: RunWriter,
                       node_kernel: bool = True) -> None:
    """Portfolio artifacts read from the live lab: topology, addressing plan, routing tables.
    Without ``node_kernel`` (e.g. Proxmox VMs) the addressing and routing tables are recorded
    as not observed, never asked of the nodes themselves."""
    plan = state.plan
    writer.add_artifact("topology", {
        "nodes": [{"name": n.name, "role": n.role} for n in plan.nodes],
        "segments": [{"name": s, "members": m} for s, m in plan.segments.items()],
        "links": [{"name": ln, "endpoints": list(ends)} for ln, ends in plan.links.items()],
        "vantage": [{"name": v.name, "segment": v.segment, "address": v.address} for v in plan.vantage],
    })
    addressing: list[dict[str, Any]] = []
    if not node_kernel:
        writer.add_artifact("addressing", [{"node": n.name, "iface": None, "state": "not observed", "addresses": [],
                                            "error": NOT_OBSERVED} for n in plan.nodes])
        for node in plan.nodes:
            if node.role == "router":
                writer.add_artifact(f"routes-{node.name}", {"error": NOT_OBSERVED})
        return
    for node in plan.nodes:
        try:
            ev = _read(ground, node.name, partial(netlink.addresses, source=node.name),
                       f"artifact.addresses.{node.name}", 10.0)
            for iface in ev.parsed or []:
                if iface.get("name") == "lo":
                    continue
                addressing.append({"node": node.name, "iface": iface.get("name"), "state": iface.get("state"),
                                   "addresses": iface.get("addresses", [])})
        except Exception as exc:  # noqa: BLE001 - an artifact that cannot be read is noted, not fatal
            addressing.append({"node": node.name, "iface": None, "state": "unreadable", "addresses": [],
                               "error": str(exc)})
        if node.role == "router":
            try:
                ev = _read(ground, node.name, partial(netlink.routes, source=node.name),
                           f"artifact.routes.{node.name}", 10.0)
                writer.add_artifact(f"routes-{node.name}", _route_rows(ev))
            except Exception as exc:  # noqa: BLE001
                writer.add_artifact(f"routes-{node.name}", {"error": str(exc)})
    writer.add_artifact("addressing", addressing)


def grade(ctx: Context, name: str, *, mode: str = "grade", only: list[str] | None = None,
          vantage: str | None = None) -> GradeSummary:
    """Grade instance ``name``; ``vantage`` picks the grader's ground (``inprocess`` or
    ``agent``; None: the instance's own). One ground serves every check and is closed at the end."""
    state = ctx.store.load(name)
    if state.phase != "up":
        raise UserError(f"instance {name!r} is {state.phase}, not up; bring it up before grading.")
    lab = load_lab_checked(ctx, state.plan.lab_dir)
    graders = GraderRegistry.load()
    catalog = load_catalog()
    checks = rendered_checks(lab, state.plan.params)
    if only:
        unknown = sorted(set(only) - {c.id for c in checks})
        if unknown:
            raise UserError(f"unknown check(s) {', '.join(unknown)}; the lab's checks are: "
                            f"{', '.join(c.id for c in checks)}.")
        checks = [c for c in checks if c.id in only]
    prov = ctx.provider(state.provider)
    signer = Keyring(ctx.settings.home / "keys").signer()  # None: sealed unsigned (the CLI warns)
    started = utcnow()
    run_id = new_run_id(name, started)
    writer = RunWriter(ctx.settings.runs, run_id)
    ground: GraderGround | None = None
    try:
        ground = prov.ground(state, vantage)
        results = []
        # a grader may hand portfolio tables to the run: evidence of kind "artifact" with
        # meta["artifact"] = NAME and a list of rows in parsed; rows of one name are joined
        from_graders: dict[str, list[Any]] = {}
        for spec in checks:
            grader = graders.get(spec.grader)
            baseline = ctx.store.load_baseline(name, spec.id)
            cctx = CheckContext(state=state, provider=prov, check=spec, baseline=baseline, ground=ground)
            t0 = time.monotonic()
            try:
                evidence = baseline + grader.collect(cctx, spec.args)
            except Exception as exc:  # noqa: BLE001 - one check's failure is a result
                evidence = []
                verdict = Verdict.errored(
                    f"La collecte a échoué ({type(exc).__name__}: {exc}).",
                    f"Collecting evidence failed ({type(exc).__name__}: {exc}).",
                )
            else:
                verdict = judge_safely(grader, evidence, spec.args, state.plan)
            for ev in evidence:
                ev.meta.setdefault("check_duration_s", round(time.monotonic() - t0, 3))
                writer.add_evidence(ev)
                if ev.kind == "artifact" and ev.ok and isinstance(ev.meta.get("artifact"), str) \
                        and isinstance(ev.parsed, list):
                    from_graders.setdefault(ev.meta["artifact"], []).extend(ev.parsed)
            result = result_from(spec, verdict)
            result.duration_s = round(time.monotonic() - t0, 3)
            results.append(result)
        for art_name, rows in from_graders.items():
            writer.add_artifact(art_name, rows)
        _collect_artifacts(state, ground, writer, node_kernel="node_kernel" in prov.capabilities)
        if mode == "grade":  # a recorded grade keeps the provider's proof files; a self-check does not
            _attach_provider_files(prov, state, writer)
        ended = utcnow()
        secret = set(state.plan.secret_params)
        info = RunInfo(
            run_id=run_id, mode=mode, lab_id=lab.spec.id, lab_title=lab.spec.title,  # type: ignore[arg-type]
            lab_version=lab.spec.version, instance=name, candidate=state.plan.candidate,
            provider=state.provider, seed=state.plan.seed,
            params={k: ("(secret)" if k in secret else v) for k, v in state.plan.params.items()},
            started_at=started, ended_at=ended, labkit_version=__version__,
            checks=[_public_spec(c.model_dump(mode="json"), secret, state) for c in checks],
            vantage=ground.mode,
        )
        summary = GradeSummary(
            run_id=run_id, lab_id=lab.spec.id, instance=name, candidate=state.plan.candidate,
            score=sum(r.points for r in results), max_score=sum(r.max_points for r in results),
            started_at=started, ended_at=ended, checks=results,
        )
        used = sorted({c for r in results for c in r.criteria})
        criteria = [c for c in catalog.criteria if c.id in used]
        return writer.seal(info, summary, criteria, signer=signer)
    except BaseException:
        writer.abort()
        raise
    finally:
        if ground is not None:
            ground.close()


def _public_spec(spec: dict[str, Any], secret: set[str], state: InstanceState) -> dict[str, Any]:
    """The check as run, with secret parameter values masked."""
    values = {str(state.plan.params[k]) for k in secret if k in state.plan.params}

    def mask(v: Any) -> Any:
        if isinstance(v, str) and v in values:
            return "(secret)"
        if isinstance(v, dict):
            return {k: mask(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mask(x) for x in v]
        return v

    return mask(spec)  # type: ignore[no-any-return]


def checks_pass(ctx: Context, name: str, check_ids: list[str], *, vantage: str | None = None,
                ground: GraderGround | None = None) -> bool:
    """Run these checks without recording a run; True if every one passes (readiness).
    Without ``ground``, one is made (``vantage``) for these checks and closed at the end."""
    if not check_ids:
        return True
    state = ctx.store.load(name)
    lab = load_lab_checked(ctx, state.plan.lab_dir)
    graders = GraderRegistry.load()
    prov = ctx.provider(state.provider)
    used = ground or prov.ground(state, vantage)
    try:
        for spec in rendered_checks(lab, state.plan.params):
            if spec.id not in check_ids:
                continue
            grader = graders.get(spec.grader)
            cctx = CheckContext(state=state, provider=prov, check=spec,
                                baseline=ctx.store.load_baseline(name, spec.id), ground=used)
            try:
                evidence = cctx.baseline + grader.collect(cctx, spec.args)
            except Exception:  # noqa: BLE001 - not ready yet
                return False
            if judge_safely(grader, evidence, spec.args, state.plan).status != "pass":
                return False
        return True
    finally:
        if ground is None:
            used.close()


def wait_ready(ctx: Context, name: str, *, timeout: float = 60.0, settle: float = 4.0,
               poll: float = 0.25, checks: list[str] | None = None, vantage: str | None = None) -> float | None:
    """Wait until every node's kernel routing table has not changed for ``settle`` seconds.

    With ``checks``, first wait until those checks pass (polled every second): a routing
    table can stay still for seconds while OSPF adjacencies are still forming on a loaded
    machine. Returns the time (s) of the last change seen, or None if it never settled
    within ``timeout``.
    """
    state = ctx.store.load(name)
    prov = ctx.provider(state.provider)
    t0 = time.monotonic()
    ground = prov.ground(state, vantage)  # one for the whole wait
    try:
        if checks:
            while not checks_pass(ctx, name, checks, ground=ground):
                if time.monotonic() - t0 > timeout:
                    return None
                time.sleep(1.0)
        if "node_kernel" not in prov.capabilities:
            # the nodes' routing tables cannot be read from outside them here: after the
            # checks (grader-owned probes) pass, give routing ``settle`` seconds, unobserved
            time.sleep(settle)
            return round(time.monotonic() - t0, 3)
        last: dict[str, Any] | None = None
        last_change = 0.0
        while time.monotonic() - t0 < timeout:
            snap: dict[str, Any] = {}
            for node in state.plan.nodes:
                ev = _read(ground, node.name, partial(netlink.routes, source=node.name), f"ready.{node.name}", 5.0)
                snap[node.name] = sorted(
                    (str(r.get("dst")), str(r.get("prefixlen")), str(r.get("gateway")), str(r.get("protocol")))
                    for r in (ev.parsed or []))
            now = time.monotonic() - t0
            if snap != last:
                last, last_change = snap, now
            elif now - last_change >= settle:
                return round(last_change, 3)
            time.sleep(poll)
        return None
    finally:
        ground.close()
