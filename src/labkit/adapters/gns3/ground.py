"""The grader's ground on GNS3: the project's wire through the GNS3 API, vantage points and
echoes in labkit's agent on the GNS3 host.

Places and what runs there:

- ``link:X`` (a point-to-point link of the plan; its GNS3 link id is
  ``provider_data["links"][X]``):
  - ``netlink.set_link_state(p1|p2, up)`` -> a cable pull: the link is suspended while
    either grader port is down (``PUT /links/{id} {"suspend": ...}``; on qemu nodes GNS3 sets
    the NIC's link off, so both routers lose carrier), resumed when both are up again;
  - ``capture.bridge_block(block)`` -> a silent drop: link filter ``packet_loss 100``
    (carrier kept), ended by a neutral filter (GNS3 3.0.6 keeps removed filters: wire.py);
  - ``capture.capture`` / ``ospf.capture_ospf`` -> a GNS3 capture of the link, its pcap stream
    judged by the probes' own decoders (:class:`CaptureDecoder`, :class:`OspfDecoder`);
- ``segment:S``: the same captures over every link of the segment's switch (its members,
  ``provider_data["segment_links"][S]``, and the grader's vantage ports on it,
  ``provider_data["vantage_links"]``): a switch sends a unicast frame only to the right port,
  so the union of its links is what the netns bridge sees; a frame the switch forwards
  crosses two of its links and is counted once (:func:`wire.capture`);
- a vantage point: every probe, and the echoes, in labkit's agent on the GNS3 host
  (:mod:`labkit.adapters.gns3.host`), in namespace ``lk-<homeid>-<instance>.v.<vp>``;
- ``rendezvous.set_event`` / ``wait_event`` at a link or segment run in labkit's process,
  where the GNS3 captures run; a capture's ``ready`` is also set in the agent, and a
  ``stop`` set in the agent (a sender done sending) also stops the capture here.

Anything else (a node's kernel, another probe at a link, a capture of one bridge port of a
segment) comes back as evidence with ``ok=False`` saying GNS3 cannot do it: never a pass.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from labkit.adapters.gns3 import host, wire
from labkit.adapters.probes import rendezvous
from labkit.adapters.probes._common import describe_exc, evidence, utcnow
from labkit.adapters.probes.capture import CaptureDecoder
from labkit.adapters.probes.capture import check_bounds as capture_bounds
from labkit.adapters.probes.ospf import OspfDecoder
from labkit.adapters.probes.ospf import check_bounds as ospf_bounds
from labkit.adapters.probes.registry import resolve
from labkit.errors import AgentError, UnknownNodeError
from labkit.models.evidence import Evidence, EvidenceKind
from labkit.models.instance import InstanceState
from labkit.models.probe import EchoCall, ProbeCall

RENDEZVOUS = ("rendezvous.set_event", "rendezvous.wait_event")
LINK_PORTS = ("p1", "p2")


def ground(provider: Any, state: InstanceState) -> Gns3Ground:
    """The grader's ground of a GNS3 instance (``provider``: the Gns3Provider)."""
    return Gns3Ground(provider, state)


def _bounded(fn: Any, timeout: float, what: str) -> Evidence:
    """``fn()`` in a worker thread, at most ``timeout`` seconds (TimeoutError after that, as the
    netns runner does; the work itself is bounded too and ends on its own)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["ev"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    t = threading.Thread(target=work, name="gns3-ground", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"{what} did not finish within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["ev"]  # type: ignore[no-any-return]


def _arg(call: ProbeCall, index: int, name: str, default: Any = None) -> Any:
    if len(call.args) > index:
        return call.args[index]
    return call.kwargs.get(name, default)


class Gns3Ground:
    mode = "agent"

    def __init__(self, provider: Any, state: InstanceState, agent_factory: Any = None):
        self.provider = provider
        self.state = state
        self.data = state.provider_data
        if "project_id" not in self.data:
            raise AgentError(f"instance {state.name!r} has no GNS3 project recorded; bring it up again.")
        self.pid = str(self.data["project_id"])
        self._agent_factory = agent_factory or self._open_agent
        self._agent: Any = None
        self._agent_lock = threading.Lock()
        self._closed = False
        self._down: dict[str, set[str]] = {}
        self._dropped: set[str] = set()
        self._fault_lock = threading.Lock()

    # ------------------------------------------------------------------ the agent
    def _open_agent(self) -> Any:
        from labkit.adapters.agent.client import AgentGround

        session = host.open_session(self.provider, self.state.name)
        return AgentGround(session, self.agent_place)

    def agent(self) -> Any:
        """The agent ground on the GNS3 host (opened on first use)."""
        with self._agent_lock:
            if self._closed:
                raise AgentError(f"the grader's ground of {self.state.name!r} is closed.")
            if self._agent is None:
                self._agent = self._agent_factory()
            return self._agent

    def agent_place(self, where: str) -> str:
        if self.state.plan.vantage_point(where) is None:
            raise UnknownNodeError(f"instance {self.state.name!r} has no vantage point {where!r}.")
        hinst = host.host_instance(self.provider.home_id(), self.state.name)
        return host.vantage_namespace(hinst, where)

    def _first_vantage(self) -> str | None:
        return self.state.plan.vantage[0].name if self.state.plan.vantage else None

    def _mirror_set(self, name: str) -> None:
        """Set signal ``name`` in the agent too (a vantage probe there may wait for it); best effort."""
        vp = self._first_vantage()
        if vp is None or not isinstance(name, str):
            return

        def work() -> None:
            try:
                self.agent().run(vp, ProbeCall(probe="rendezvous.set_event", args=[name], kwargs={"source": vp}),
                                 "gns3-mirror", 10.0)
            except Exception:  # noqa: BLE001 - the waiter then times out and says so
                pass

        threading.Thread(target=work, name="gns3-mirror", daemon=True).start()

    def _watch_stop(self, name: str, local: threading.Event, seconds: float) -> None:
        """Set ``local`` when signal ``name`` is set in the agent (within ``seconds``)."""
        vp = self._first_vantage()
        if vp is None:
            return

        def work() -> None:
            try:
                ev = self.agent().run(vp, ProbeCall(probe="rendezvous.wait_event", args=[name],
                                                    kwargs={"source": vp, "timeout": seconds}),
                                      "gns3-watch", seconds)
                if ev.ok and (ev.parsed or {}).get("set"):
                    local.set()
            except Exception:  # noqa: BLE001 - the capture then ends at its deadline
                pass

        threading.Thread(target=work, name="gns3-watch", daemon=True).start()

    # ------------------------------------------------------------------ places
    def _place(self, where: str) -> tuple[str, str]:
        plan = self.state.plan
        if where.startswith("link:") and where[5:] in plan.links:
            return "link", where[5:]
        if where.startswith("segment:") and where[8:] in plan.segments:
            return "segment", where[8:]
        if plan.vantage_point(where):
            return "vantage", where
        if plan.node(where):
            return "node", where
        raise UnknownNodeError(f"instance {self.state.name!r} has no vantage point, node, link or segment {where!r}.")

    def link_id(self, link: str) -> str:
        try:
            return str(self.data["links"][link])
        except KeyError:
            raise AgentError(f"no GNS3 link recorded for {link!r}; bring the instance up again.") from None

    def segment_link_ids(self, segment: str) -> list[str]:
        members = dict((self.data.get("segment_links") or {}).get(segment) or {})
        vps = [v.name for v in self.state.plan.vantage if v.segment == segment]
        vlinks = self.data.get("vantage_links") or {}
        ids = [str(x) for x in members.values()] + [str(vlinks[v]) for v in vps if v in vlinks]
        if not ids:
            raise AgentError(f"no GNS3 link recorded for segment {segment!r}; bring the instance up again.")
        return ids

    # ------------------------------------------------------------------ the contract
    def run(self, where: str, call: ProbeCall, ev_id: str, timeout: float) -> Evidence:
        kind, name = self._place(where)
        if kind == "vantage":
            return self.agent().run(where, call, ev_id, timeout)  # type: ignore[no-any-return]
        return _bounded(lambda: self._run_here(kind, name, where, call, ev_id), timeout, f"{call.probe} at {where}")

    def _run_here(self, kind: str, name: str, where: str, call: ProbeCall, ev_id: str) -> Evidence:
        """A probe at a link, a segment or a node: in labkit's process, through the GNS3 API."""
        if kind in ("link", "segment") and call.probe in RENDEZVOUS:
            ev = resolve(call, ev_id)()
            if call.probe == "rendezvous.set_event":
                self._mirror_set(_arg(call, 0, "name"))
            return ev
        if kind == "link" and call.probe == "netlink.set_link_state":
            return self._pull(name, call, ev_id)
        if kind == "link" and call.probe == "capture.bridge_block":
            return self._drop(name, call, ev_id)
        if kind in ("link", "segment") and call.probe in ("capture.capture", "ospf.capture_ospf"):
            iface = str(call.kwargs.get("iface", "br0"))
            allowed = ("br0", *LINK_PORTS) if kind == "link" else ("br0",)
            if iface in allowed:
                return self._capture(kind, name, call, ev_id)
            why = (f"GNS3 captures a whole link or a whole segment, not the single bridge port {iface!r} of "
                   f"{where}")
            return self.unsupported(where, call, ev_id, why)
        if kind == "node":
            why = f"on GNS3 the grader cannot run {call.probe} in node {name!r} (no node_kernel/node_exec)"
        else:
            why = f"GNS3 cannot run probe {call.probe} at {where} (only cuts, silent drops and captures)"
        return self.unsupported(where, call, ev_id, why)

    def echo(self, src: str, dst: str, call: EchoCall, timeout: float) -> dict[str, Any]:
        return self.agent().echo(src, dst, call, timeout)  # type: ignore[no-any-return]

    def _scrub(self) -> dict[str, Any]:
        """Blank the project's finished capture files: candidates may read their own project's
        files (Project.Audit), and these are the grader's captures (access.scrub_captures)."""
        from labkit.adapters.gns3 import access

        try:
            return {"capture_files_blanked": access.scrub_captures(self.provider.client, self.pid)}
        except Exception as exc:  # noqa: BLE001 - recorded in the evidence, never a crash
            return {"capture_files_blanked_error": describe_exc(exc)}

    def close(self) -> None:
        with self._agent_lock:
            agent, self._agent, self._closed = self._agent, None, True
        if agent is not None:
            agent.close()

    # ------------------------------------------------------------------ evidence
    def unsupported(self, where: str, call: ProbeCall, ev_id: str, why: str) -> Evidence:
        now = utcnow()
        kind: EvidenceKind = "fault" if call.probe in ("netlink.set_link_state", "capture.bridge_block") else \
            "capture" if "capture" in call.probe else "exec"
        return evidence(ev_id=ev_id, check=call.kwargs.get("check"), kind=kind,
                        source=str(call.kwargs.get("source", where)), target=where,
                        action=f"{call.probe} at {where}: not run", started_at=now, ok=False,
                        error=f"{why}; this check needs another provider.",
                        meta={"provider": "gns3", "not_supported": call.probe})

    def _base(self, call: ProbeCall, ev_id: str, kind: EvidenceKind, target: str, action: str) -> Any:
        return partial(evidence, ev_id=ev_id, check=call.kwargs.get("check"), kind=kind,
                       source=str(call.kwargs.get("source", target)), target=target, action=action)

    def _pull(self, link: str, call: ProbeCall, ev_id: str) -> Evidence:
        iface, up = str(_arg(call, 0, "iface")), bool(_arg(call, 1, "up"))
        started = utcnow()
        want = "up" if up else "down"
        if iface not in LINK_PORTS:
            return self.unsupported(f"link:{link}", call, ev_id,
                                    f"a GNS3 link has the grader ports p1 and p2 only, not {iface!r}")
        base = self._base(call, ev_id, "fault", f"gns3:link/{link}/{iface}",
                          f"GNS3: link {link} suspended while a grader port is down ({iface} {want})")
        meta: dict[str, Any] = {"provider": "gns3", "project_id": self.pid}
        try:
            lid = self.link_id(link)
            meta["link_id"] = lid
            with self._fault_lock:
                before = bool(wire.get_link(self.provider.client, self.pid, lid).get("suspend"))
                down = self._down.setdefault(link, set())
                down.discard(iface) if up else down.add(iface)
                suspend = bool(down)
                changed_at = utcnow()
                with self.provider.allocating_ports(f"the link fault on {link}"):  # a resume may reset it
                    got = wire.set_suspend(self.provider.client, self.pid, lid, suspend,
                                           drop=link in self._dropped)
                after = bool(got.get("suspend"))
                meta["link_reset"] = bool(got.get("labkit_reset"))
        except Exception as exc:  # noqa: BLE001 - the fault could not be applied
            return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
        ok = after == suspend
        state = {False: "resumed", True: "suspended"}
        parsed = {"iface": iface, "requested": want, "before": {"suspend": before}, "after": {"suspend": after},
                  "changed": before != after, "changed_at": changed_at.isoformat(), "ports_down": sorted(down)}
        raw = f"GNS3 link {lid} ({link}): {state[before]} -> {state[after]} at {changed_at.isoformat()}"
        return base(started_at=started, ok=ok, raw=raw, parsed=parsed, meta=meta,
                    error=None if ok else f"GNS3 reports the link {state[after]} after the request")

    def _drop(self, link: str, call: ProbeCall, ev_id: str) -> Evidence:
        block = bool(_arg(call, 0, "block"))
        started = utcnow()
        want = "block" if block else "unblock"
        base = self._base(call, ev_id, "fault", f"gns3:link/{link}",
                          f"GNS3: link {link} filter packet_loss 100" if block else
                          f"GNS3: link {link} drop ended (neutral filter)")
        meta: dict[str, Any] = {"provider": "gns3", "project_id": self.pid}
        try:
            lid = self.link_id(link)
            meta["link_id"] = lid
            with self._fault_lock:
                changed_at = utcnow()
                filters = dict(wire.set_drop(self.provider.client, self.pid, lid, block).get("filters") or {})
                self._dropped.add(link) if block else self._dropped.discard(link)
        except Exception as exc:  # noqa: BLE001 - the fault could not be applied
            return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
        ok = filters == (wire.DROP_ALL if block else wire.NEUTRAL)
        parsed = {"requested": want, "filters": filters, "changed_at": changed_at.isoformat()}
        return base(started_at=started, ok=ok, raw=f"GNS3 link {lid} ({link}) filters now {filters}", parsed=parsed,
                    meta=meta, error=None if ok else f"GNS3 reports filters {filters} after {want}")

    def _capture(self, kind: str, name: str, call: ProbeCall, ev_id: str) -> Evidence:
        kw = call.kwargs
        started = utcnow()
        ospf = call.probe == "ospf.capture_ospf"
        duration = float(kw.get("duration_s", 5.0 if ospf else 30.0))
        where = f"{kind}:{name}"
        meta: dict[str, Any] = {"provider": "gns3", "project_id": self.pid}
        if ospf:
            limit = int(kw.get("max_frames", 5000))
            bad = ospf_bounds(duration, limit)
            what = f"GNS3 capture of OSPF (IP protocol 89) on {where}, at most {duration:g} s / {limit} frames"
        else:
            limit = int(kw.get("max_bytes", 64 << 20))
            bad = capture_bounds(duration, limit)
            what = f"GNS3 capture on {where}, at most {duration:g} s / {limit} bytes"
        base = self._base(call, ev_id, "capture", where, what)
        if bad is not None:
            return base(started_at=started, ok=False, error=bad, meta=meta)
        dec: Any = OspfDecoder(limit) if ospf else CaptureDecoder(list(kw.get("markers") or []), limit)
        ready_name, stop_name = kw.get("ready"), kw.get("stop")
        ready_local = rendezvous.event(ready_name)
        stop_local = rendezvous.event(stop_name)

        class _Ready:
            def set(_self) -> None:  # noqa: N805 - a tiny adapter
                if ready_local is not None:
                    ready_local.set()
                if isinstance(ready_name, str):
                    self._mirror_set(ready_name)

        try:
            ids = [self.link_id(name)] if kind == "link" else self.segment_link_ids(name)
            meta["link_ids"] = ids
            if isinstance(stop_name, str) and stop_local is not None:
                self._watch_stop(stop_name, stop_local, duration + wire.READY_TIMEOUT_S)
            try:
                run = wire.capture(self.provider.client, self.pid, ids, dec.feed, duration_s=duration,
                                   max_bytes=(limit if not ospf else 64 << 20), ready=_Ready(),  # type: ignore[arg-type]
                                   stop=stop_local, label="lk")
            finally:
                meta.update(self._scrub())
        except Exception as exc:  # noqa: BLE001 - the capture could not run
            return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
        stopped_by = {"limit": "max_frames" if ospf else "max_bytes"}.get(run.stopped_by, run.stopped_by)
        meta.update(duplicates=run.duplicates, stream_bytes=run.stream_bytes, capture_files=run.files,
                    restarts=run.restarts)
        if run.stop_errors:
            meta["stop_errors"] = run.stop_errors
        if run.stopped_by == "stream-ended":  # an observation cut short is no observation
            return base(started_at=started, ok=False, meta=meta,
                        error=f"GNS3 ended the capture stream after {run.elapsed:.1f} s of {duration:g} s "
                              f"({dec.frames} frames, {len(run.restarts)} restarts); the capture was stopped on "
                              "the server or a node stopped")
        if ospf:
            return base(started_at=started, ok=True, raw=dec.raw(where, stopped_by, run.elapsed),
                        parsed=dec.parsed(stopped_by, run.elapsed), meta=meta)
        return base(started_at=started, ok=True, raw=dec.raw(where, stopped_by), parsed=dec.parsed(stopped_by),
                    meta=meta)
