"""Grading: collect evidence with graders, then judge it with pure functions.

A grader is a small plugin with two halves, after netlab's validation plugins:

- ``collect(ctx, args)`` does I/O: it runs probes at vantage points or nodes through the
  :class:`CheckContext` and returns the :class:`Evidence` it gathered (never raises for a
  network outcome: a probe that cannot run is evidence with ``ok=False``);
- ``judge(evidence, args, plan)`` is pure: from evidence alone it returns a :class:`Verdict`
  with a message for the candidate in French and English (what is wrong, not how to fix
  it). Verdicts can be recomputed from a stored run.

Graders come from modules that expose ``GRADERS`` (a list of grader objects): the built-in
``graders.*`` modules and any module registered under the ``labkit.graders`` entry point.
The registry is built per run; there is no global mutable registry.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from labkit.adapters.probes import registry, rendezvous
from labkit.adapters.providers.base import GraderGround, NodeFiles, Provider
from labkit.errors import ProviderError
from labkit.models.evidence import Evidence, EvidenceKind
from labkit.models.instance import InstancePlan, InstanceState
from labkit.models.lab import CheckSpec
from labkit.models.probe import EchoCall, ProbeCall
from labkit.models.results import CheckResult, Verdict

__all__ = ["CheckContext", "Grader", "GraderRegistry", "NodeFiles", "error_if_unrun", "utcnow"]

BUILTIN_GRADER_MODULES = ("graders.routing", "graders.snmp", "graders.ad", "graders.backup", "graders.vpn",
                          "graders.supervision")
MAX_PARALLEL = 16
NODE_OUTPUT_MAX = 16_000  # characters of a node command's output kept in its evidence


@runtime_checkable
class Grader(Protocol):
    """A check plugin. A grader may also define ``baseline(ctx, args) -> list[Evidence]``:
    it runs once at ``up`` (after the lab's set-up) to record a reference state, e.g. the
    sha256 manifest of business data before a restore test. Baseline evidence is kept in the
    instance's state (hidden from candidates), handed to ``collect`` as ``ctx.baseline``, and
    stored in every run with ``meta.phase == "baseline"`` so that ``judge`` sees it."""

    name: str

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]: ...

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict: ...


def has_baseline(grader: Grader) -> bool:
    return callable(getattr(grader, "baseline", None))


class GraderRegistry:
    def __init__(self, graders: Iterable[Grader]):
        self._graders: dict[str, Grader] = {}
        for g in graders:
            if g.name in self._graders:
                raise ValueError(f"two graders are named {g.name!r}")
            self._graders[g.name] = g

    @classmethod
    def load(cls, modules: Iterable[str] = BUILTIN_GRADER_MODULES) -> GraderRegistry:
        found: list[Grader] = []
        names = list(modules) + [ep.value for ep in entry_points(group="labkit.graders")]
        for mod_name in names:
            found.extend(importlib.import_module(mod_name).GRADERS)
        return cls(found)

    def names(self) -> set[str]:
        return set(self._graders)

    def get(self, name: str) -> Grader:
        return self._graders[name]


def utcnow() -> datetime:
    return datetime.now(UTC)


_ID_SAFE = re.compile(r"[^a-z0-9._-]+")


@dataclass
class CheckContext:
    """What a grader's ``collect`` may use: the instance, the provider and probe helpers.

    Probes run through ``ground`` (the provider's :class:`GraderGround`: in labkit's process
    or in the grader agent), as data: a partial of a registered probe becomes a
    :class:`ProbeCall`. The use case hands one ground to every check of a grading and closes
    it; without one, the provider's default ground is made on first use (:meth:`close` ends it).
    """

    state: InstanceState
    provider: Provider
    check: CheckSpec
    baseline: list[Evidence] = field(default_factory=list)
    _seq: int = 0
    faults: list[Evidence] = field(default_factory=list)
    ground: GraderGround | None = None
    _own_ground: bool = False
    _ground_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def grader_ground(self) -> GraderGround:
        """The ground probes run through (made on first use when none was given)."""
        with self._ground_lock:  # parallel probes must not make two
            if self.ground is None:
                self.ground = self.provider.ground(self.state)
                self._own_ground = True
            return self.ground

    def close(self) -> None:
        """End the ground this context made itself (a ground handed in is the caller's)."""
        with self._ground_lock:
            ground, own = self.ground, self._own_ground
            if own:
                self.ground, self._own_ground = None, False
        if own and ground is not None:
            ground.close()

    @property
    def plan(self) -> InstancePlan:
        return self.state.plan

    @property
    def ssh_key(self) -> str:
        return self.state.ssh_key

    def eid(self, label: str) -> str:
        """A new evidence id, unique in the run: ``<check>.<nn>.<label>``."""
        self._seq += 1
        return f"{self.check.id}.{self._seq:02d}.{_ID_SAFE.sub('-', label.lower())[:60]}"

    def address(self, node: str, segment: str | None = None) -> str:
        n = self.plan.node(node)
        addr = n.first_address(segment) if n else None
        if addr is None:
            raise ProviderError(f"node {node!r} has no address in this lab's plan")
        return addr

    def probe(self, where: str, kind: EvidenceKind, target: str, action: str,
              fn: Callable[..., Evidence] | ProbeCall, timeout: float | None = None) -> Evidence:
        """Run probe ``fn`` (a partial of a registered probe, or a :class:`ProbeCall`) with
        ``ev_id=...`` at ``where``; any failure to run (a grader bug too: an unregistered
        function, arguments that are not JSON) becomes evidence with ``ok=False``."""
        ev_id = self.eid(f"{where}-{target}")
        started = utcnow()
        try:
            call = registry.call_of(fn)
            return self.grader_ground().run(where, call, ev_id, timeout or self.check.timeout)
        except Exception as exc:  # noqa: BLE001 - a failed probe is a result, not a crash
            return Evidence(
                id=ev_id, check=self.check.id, kind=kind, source=where, target=target, action=action,
                started_at=started, ended_at=utcnow(), ok=False,
                error=f"{type(exc).__name__}: {exc}",
            )

    def deferred(self, where: str, kind: EvidenceKind, target: str, action: str,
                 fn: Callable[..., Evidence] | ProbeCall, timeout: float | None = None,
                 meta: dict[str, Any] | None = None) -> Callable[[], Evidence]:
        """A probe to run later (e.g. in :meth:`parallel`); ``meta`` is added to its evidence."""

        def run() -> Evidence:
            ev = self.probe(where, kind, target, action, fn, timeout)
            ev.meta.update(meta or {})
            return ev

        return run

    def node_exec(self, node: str, argv: list[str], *, kind: EvidenceKind = "exec", label: str | None = None,
                  action: str | None = None, target: str | None = None, source: str | None = None,
                  input: str | None = None, timeout: float = 60.0, meta: dict[str, Any] | None = None,
                  parse_json: bool = False, output_max: int | None = NODE_OUTPUT_MAX) -> Evidence:
        """Run ``argv`` in ``node`` through the provider; a command that cannot run is
        evidence with ``ok=False``, not an exception.

        ``parsed`` holds ``rc``, ``stdout``, ``stderr`` (their last ``output_max`` characters;
        ``None``: all of stdout) and ``duration_s``; with ``parse_json``, also ``json`` (stdout
        as JSON, else null; stdout itself is then left out when it parsed). ``source`` is
        where the evidence says the command ran from (default: the node; ``"grader"`` for
        what the grader does to a node, such as a fault)."""
        ev_id = self.eid(f"{node}-{label or argv[0]}")
        action = action or shlex.join(argv)
        source = source or node
        meta = {"node": node, **(meta or {})}
        started = utcnow()
        try:
            res = self.provider.exec(self.state, node, argv, input=input, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - a command that cannot run is a result, not a crash
            return Evidence(id=ev_id, check=self.check.id, kind=kind, source=source, target=target or node,
                            action=action, started_at=started, ended_at=utcnow(), ok=False,
                            error=f"{type(exc).__name__}: {exc}", meta=meta)
        parsed_json: Any = None
        if parse_json and res.stdout.strip():
            try:
                parsed_json = json.loads(res.stdout)
            except ValueError:
                parsed_json = None
        stdout = res.stdout if output_max is None else res.stdout[-output_max:]
        stderr = res.stderr[-(output_max or NODE_OUTPUT_MAX):]
        parsed: dict[str, Any] = {"rc": res.rc, "stdout": stdout if parsed_json is None else "", "stderr": stderr,
                                  "duration_s": round(res.duration, 3)}
        if parse_json:
            parsed["json"] = parsed_json
        if res.via == "guest-agent":  # the node's own software ran it and says what happened
            meta["reported_by"] = "the node's own guest agent (inside the candidate's system)"
        raw = (f"$ {action}\n" + (stdout if parsed_json is None else "(JSON, see parsed)")
               + (f"\n[stderr] {stderr.strip()}" if stderr.strip() else "") + f"\n[rc={res.rc}]")
        return Evidence(id=ev_id, check=self.check.id, kind=kind, source=source, target=target or node,
                        action=action, started_at=started, ended_at=utcnow(), ok=True, raw=raw, parsed=parsed,
                        meta=meta)

    def signal(self, where: str, name: str) -> bool:
        """Set the signal ``name`` (:mod:`labkit.adapters.probes.rendezvous`) where the probes
        run, e.g. to stop a capture; False if it could not be set."""
        return self._signal_probe(where, partial(rendezvous.set_event, name, source=where, check=self.check.id), 10.0)

    def wait_signal(self, where: str, name: str, timeout: float) -> bool:
        """Wait at most ``timeout`` s for the signal ``name`` (e.g. a capture is listening)."""
        call = partial(rendezvous.wait_event, name, source=where, check=self.check.id, timeout=timeout)
        return self._signal_probe(where, call, timeout + 10.0)

    def _signal_probe(self, where: str, fn: Callable[..., Evidence], timeout: float) -> bool:
        try:
            ev = self.grader_ground().run(where, registry.call_of(fn), f"{self.check.id}.signal", timeout)
        except Exception:  # noqa: BLE001 - the caller treats "not set" as the probe's outcome
            return False
        return ev.ok and bool((ev.parsed or {}).get("set"))

    def _echo(self, src: str, dst: str, action: str, call: EchoCall, meta: dict[str, Any] | None) -> Evidence:
        target = self.plan.vantage_point(dst)
        ev_id = self.eid(f"{src}-{dst}")
        started = utcnow()
        base_meta = {"target_name": dst, **(meta or {})}
        try:
            if target is None or self.plan.vantage_point(src) is None:
                raise ProviderError(f"grader echo runs between vantage points only ({src!r} → {dst!r})")
            p = call.params
            budget = float(p.get("deadline_s", 0)) + float(p.get("count", 0)) * (float(p.get("timeout", 0)) + 0.1)
            parsed = self.grader_ground().echo(src, dst, call.model_copy(update={"target_ip": target.ip}),
                                               10.0 + budget)
        except Exception as exc:  # noqa: BLE001 - a probe that cannot run is a result
            return Evidence(id=ev_id, check=self.check.id, kind="udp", source=src,
                            target=target.ip if target else dst, action=action, started_at=started,
                            ended_at=utcnow(), ok=False, error=f"{type(exc).__name__}: {exc}", meta=base_meta)
        raw = (f"{parsed.get('verified', int(parsed['reachable']))} verified repl(ies) from {dst} "
               f"({target.ip}:{parsed['port']}), {parsed['forged']} forged, "
               f"{parsed['responder_received']} nonce(s) received by the far probe")
        return Evidence(id=ev_id, check=self.check.id, kind="udp", source=src, target=target.ip, action=action,
                        started_at=started, ended_at=utcnow(), ok=True, raw=raw, parsed=parsed, meta=base_meta)

    def echo(self, src: str, dst: str, *, count: int = 3, timeout: float = 1.0,
             meta: dict[str, Any] | None = None) -> Evidence:
        """Grader-to-grader echo between two vantage points (see :mod:`labkit.adapters.probes.echo`):
        only replies carrying this call's HMAC of a fresh nonce count. Never raises."""
        return self._echo(src, dst, f"nonce echo ×{count} to {dst} (UDP, HMAC-verified)",
                          EchoCall(mode="exchange", target_ip="", params={"count": count, "timeout": timeout}), meta)

    def wait_echo(self, src: str, dst: str, deadline_s: float, interval: float = 0.2,
                  meta: dict[str, Any] | None = None) -> Evidence:
        """Like :meth:`echo`, until the first verified reply or ``deadline_s``;
        ``parsed['first_reply_after_s']`` is None if none came."""
        return self._echo(src, dst, f"nonce echo to {dst} until a verified reply (≤ {deadline_s:g} s)",
                          EchoCall(mode="wait", target_ip="", params={"deadline_s": deadline_s, "interval": interval}),
                          meta)

    def node_fs(self, node: str) -> NodeFiles:
        """The node's files read by the grader's own code (never the node's binaries); use
        it ``with ctx.node_fs(node) as fs:``. Raises ProviderError if the node is gone."""
        return self.provider.node_fs(self.state, node)

    def parallel(self, calls: list[Callable[[], Evidence]]) -> list[Evidence]:
        """Run independent probes side by side; results in the order of ``calls``."""
        if not calls:
            return []
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(calls))) as pool:
            return list(pool.map(lambda c: c(), calls))


def result_from(spec: CheckSpec, verdict: Verdict) -> CheckResult:
    points = round(spec.points * verdict.ratio) if verdict.status == "pass" else 0
    return CheckResult(
        id=spec.id, title=spec.title, grader=spec.grader, status=verdict.status, points=points,
        max_points=spec.points, message=verdict.message, criteria=list(spec.criteria),
        evidence=list(verdict.evidence), doc=spec.doc,
    )


def judge_safely(grader: Grader, evidence: list[Evidence], args: dict[str, Any],
                 plan: InstancePlan) -> Verdict:
    """Judge; a judge that crashes on odd evidence gives an ``error`` verdict, not a crash."""
    try:
        verdict = grader.judge(evidence, args, plan)
    except Exception as exc:  # noqa: BLE001
        verdict = Verdict.errored(
            f"La vérification n'a pas pu conclure ({type(exc).__name__}: {exc}).",
            f"The check could not conclude ({type(exc).__name__}: {exc}).",
        )
    if not verdict.evidence:
        verdict.evidence = [e.id for e in evidence]
    return verdict


def unrun_evidence(evidence: list[Evidence]) -> list[Evidence]:
    """Evidence whose probe could not run (``ok=False``)."""
    return [e for e in evidence if not e.ok]


def error_if_unrun(evidence: list[Evidence]) -> Verdict | None:
    """Shared rule for judges: if a probe could not run, the check cannot be judged."""
    bad = unrun_evidence(evidence)
    if not bad:
        return None
    first = bad[0]
    what = f"{first.source} → {first.target}"
    return Verdict.errored(
        f"Observation impossible depuis {what} : {first.error}.",
        f"Could not observe from {what}: {first.error}.",
        [e.id for e in evidence],
    )
