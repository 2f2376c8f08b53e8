"""The wire of a GNS3 project, through the v3 API: link faults and link captures.

- a cable pull: ``PUT /projects/{p}/links/{l} {"suspend": true|false}``. GNS3 then drops
  everything on the link (its uBridge gets ``frequency_drop -1``) and, on a qemu node,
  ``set_link gns3-<adapter> off`` in QEMU's monitor, so the node's NIC loses carrier;
- a silent drop: ``{"filters": {"packet_loss": [100]}}`` (uBridge drops every packet, the
  NICs keep carrier);
- GNS3 3.0.6 never clears a node's filters or its suspend flag on the compute (its NIO update
  routes, ``api/routes/compute/*_nodes.py``, apply ``filters`` and qemu's ``suspend`` only when
  they are truthy: gns3-server#2532/#2536, fixed after 3.0.6), so ``{"filters": {}}`` or
  ``{"suspend": false}`` leave the link dropping everything. labkit therefore ends a drop with
  the neutral filter :data:`NEUTRAL` (a BPF expression no Ethernet frame matches: uBridge drops
  nothing), and ends a cable pull on a link with a qemu end by ``POST /links/{id}/reset`` too
  (GNS3 recreates the link's tunnels, the NIC's link comes back on);
- a capture: ``POST .../capture/start`` (uBridge writes a pcap file on the GNS3 host),
  ``GET .../capture/stream`` (GNS3 tails that file while the capture runs),
  ``POST .../capture/stop``. :func:`capture` reads the streams of one or more links,
  parses the pcap records (:class:`PcapReader`) and hands each Ethernet frame to a callback
  (the probes' own decoders, :class:`labkit.adapters.probes.capture.CaptureDecoder` and
  :class:`labkit.adapters.probes.ospf.OspfDecoder`), bounded in time and in bytes.

Every call is one API request of labkit's Administrator account (``Link.Modify`` /
``Link.Capture``, which the candidates' role lacks).
"""

from __future__ import annotations

import hashlib
import queue
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit.adapters.gns3.client import Gns3Client
from labkit.errors import ProviderError

DROP_ALL = {"packet_loss": [100]}
NEUTRAL = {"bpf": ["less 1"]}  # drops frames of at most 1 byte: none (see the module's doc)
MAX_RECORD = 262144  # a pcap record larger than this is not a frame uBridge writes
MAX_LINKS = 64  # links captured at once by one call
READY_TIMEOUT_S = 15.0  # every stream must show its pcap header within this
DEDUP_WINDOW_S = 1.0  # the same frame on two links of one switch within this is one frame
MAX_RESTARTS = 3  # a link's capture started again after GNS3 ended its stream (per capture)


class PcapError(ProviderError):
    """A capture stream that is not a pcap of Ethernet frames."""


def link_path(project_id: str, link_id: str) -> str:
    return f"/projects/{project_id}/links/{link_id}"


def get_link(client: Gns3Client, project_id: str, link_id: str) -> dict[str, Any]:
    return dict(client.get(link_path(project_id, link_id)))


def node_types(client: Gns3Client, project_id: str, link: dict[str, Any]) -> list[str]:
    """The node types at the link's two ends."""
    return [str(client.get(f"/projects/{project_id}/nodes/{n['node_id']}").get("node_type"))
            for n in link.get("nodes") or []]


def set_suspend(client: Gns3Client, project_id: str, link_id: str, suspend: bool, *,
                drop: bool = False) -> dict[str, Any]:
    """Suspend (cable pulled) or resume the link; a resume also sets the filters back (the
    drop of a silent cut still in force, else :data:`NEUTRAL`) and resets a link with a qemu
    end (see the module's doc). Returns the link as GNS3 now has it, with ``labkit_reset``."""
    path = link_path(project_id, link_id)
    if suspend:
        return dict(client.put(path, {"suspend": True}))
    link = dict(client.put(path, {"filters": dict(DROP_ALL) if drop else dict(NEUTRAL), "suspend": False}))
    reset = "qemu" in node_types(client, project_id, link)
    if reset:
        link = dict(client.post(path + "/reset"))
    return {**link, "labkit_reset": reset}


def set_drop(client: Gns3Client, project_id: str, link_id: str, drop: bool) -> dict[str, Any]:
    """Drop every packet on the link (packet_loss 100 %, carrier kept) or end the drop (the
    neutral filter); returns the link as GNS3 now has it."""
    return dict(client.put(link_path(project_id, link_id), {"filters": dict(DROP_ALL if drop else NEUTRAL)}))


class PcapReader:
    """An incremental reader of a libpcap stream (micro- or nanosecond, either byte order):
    ``feed(chunk)`` returns the complete records so far as ``(timestamp, frame)``."""

    def __init__(self) -> None:
        self._buf = b""
        self.header: dict[str, Any] | None = None
        self._endian = "<"
        self._scale = 1e-6

    def feed(self, data: bytes) -> list[tuple[float, bytes]]:
        self._buf += data
        out: list[tuple[float, bytes]] = []
        if self.header is None:
            if len(self._buf) < 24:
                return out
            magic = self._buf[:4]
            kinds = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
                     b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
            if magic not in kinds:
                raise PcapError(f"the capture stream is not a pcap file (magic {magic.hex()})")
            self._endian, self._scale = kinds[magic]
            major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack(self._endian + "HHiIII",
                                                                             self._buf[4:24])
            if linktype != 1:
                raise PcapError(f"the capture stream has link type {linktype}, not Ethernet (1)")
            self.header = {"version": f"{major}.{minor}", "snaplen": snaplen, "linktype": linktype}
            self._buf = self._buf[24:]
        while len(self._buf) >= 16:
            sec, frac, incl, _orig = struct.unpack(self._endian + "IIII", self._buf[:16])
            if incl > MAX_RECORD:
                raise PcapError(f"a pcap record of {incl} bytes; the stream is corrupt")
            if len(self._buf) < 16 + incl:
                break
            out.append((sec + frac * self._scale, self._buf[16:16 + incl]))
            self._buf = self._buf[16 + incl:]
        return out


@dataclass
class CaptureRun:
    """What :func:`capture` did: ``stopped_by`` (stop | deadline | limit | stream-ended: GNS3
    ended a stream more than MAX_RESTARTS times before the deadline), ``restarts`` (a link's
    capture started again after GNS3 ended its stream: link and time; frames in the gap are
    missing), ``elapsed`` (s from
    ready), frames handed out, frames dropped as duplicates (the same frame seen on two links
    of one switch), stream bytes read per link, the capture files GNS3 wrote."""

    stopped_by: str = "deadline"
    elapsed: float = 0.0
    frames: int = 0
    duplicates: int = 0
    stream_bytes: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    stop_errors: list[str] = field(default_factory=list)
    restarts: list[dict[str, Any]] = field(default_factory=list)


def _put(q: queue.Queue[tuple[Any, Any]], item: tuple[Any, Any], halt: threading.Event) -> bool:
    while not halt.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _reader(client: Gns3Client, path: str, idx: tuple[int, int], q: queue.Queue[tuple[Any, Any]],
            halt: threading.Event, timeout: float, max_bytes: int) -> None:
    """Push the stream's chunks to ``q`` as (idx, bytes); (idx, None) at its end, (idx, exc) on
    an error. ``idx``: (link index, generation: restarts of that link's capture)."""
    got = 0
    try:
        with client.stream("GET", path + "/capture/stream", timeout=timeout) as resp:
            for chunk in resp.iter_bytes():
                if halt.is_set():
                    break
                got += len(chunk)
                if not _put(q, (idx, chunk), halt) or got > max_bytes:
                    break
        _put(q, (idx, None), halt)
    except Exception as exc:  # noqa: BLE001 - handed to the capture loop
        _put(q, (idx, exc), halt)


def capture(client: Gns3Client, project_id: str, link_ids: list[str], on_frame: Callable[[bytes, float], bool], *,
            duration_s: float, max_bytes: int, ready: threading.Event | None = None,
            stop: threading.Event | None = None, label: str = "lk") -> CaptureRun:
    """Capture on every link of ``link_ids`` at once for at most ``duration_s`` seconds and
    ``max_bytes`` stream bytes per link; each frame goes to ``on_frame(frame, seconds since
    ready)`` in arrival order, which answers False to stop (its own limit). The same frame
    seen on two of the links within :data:`DEDUP_WINDOW_S` is handed out once (a frame the
    switch forwards crosses two of its links). ``ready`` is set once every stream delivered
    its pcap header. Captures are stopped on GNS3 whatever happens. Raises ProviderError
    (Gns3ApiError) when a capture cannot start or a stream fails."""
    if not link_ids or len(link_ids) > MAX_LINKS:
        raise ProviderError(f"a capture takes 1 to {MAX_LINKS} links, not {len(link_ids)}.")
    run = CaptureRun()
    q: queue.Queue[tuple[Any, Any]] = queue.Queue(maxsize=1024)
    halt = threading.Event()
    started: list[str] = []
    threads: list[threading.Thread] = []
    tag = secrets.token_hex(4)
    gens = [0] * len(link_ids)

    def begin(i: int) -> None:
        lid = link_ids[i]
        name = f"{label}-{tag}-{i}" + (f"-r{gens[i]}" if gens[i] else "") + ".pcap"
        client.post(link_path(project_id, lid) + "/capture/start",
                    {"capture_file_name": name, "data_link_type": "DLT_EN10MB"})
        if lid not in started:
            started.append(lid)
        run.files[lid] = name

    def read(i: int) -> None:
        t = threading.Thread(target=_reader, args=(client, link_path(project_id, link_ids[i]), (i, gens[i]), q, halt,
                                                   duration_s + READY_TIMEOUT_S + 30, 2 * max_bytes + (1 << 20)),
                             name=f"gns3-capture-{i}", daemon=True)
        t.start()
        threads.append(t)

    try:
        for i in range(len(link_ids)):
            begin(i)
        for i in range(len(link_ids)):
            read(i)
        readers = [PcapReader() for _ in link_ids]
        open_streams = set(range(len(link_ids)))
        t_ready: float | None = None
        t0 = time.monotonic()
        seen: dict[bytes, float] = {}
        while True:
            now = time.monotonic()
            if t_ready is None and now - t0 > READY_TIMEOUT_S:
                missing = [link_ids[i] for i, r in enumerate(readers) if r.header is None]
                raise ProviderError(f"GNS3's capture stream of link(s) {', '.join(missing)} showed no pcap header "
                                    f"within {READY_TIMEOUT_S:g} s; is the link's node started?")
            if t_ready is not None:
                if stop is not None and stop.is_set():
                    run.stopped_by = "stop"
                    break
                if now - t_ready >= duration_s:
                    break
            if not open_streams:
                if t_ready is None:
                    raise ProviderError("GNS3 ended the capture stream(s) before any pcap header; is the link's "
                                        "node started?")
                run.stopped_by = "stream-ended"
                break
            try:
                (idx, gen), item = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if gen != gens[idx]:
                continue  # a chunk of a stream that was replaced
            if item is None:
                # GNS3 ended this link's stream (its capture was stopped on the compute: a link reset
                # after a resume, see set_suspend): start it again, at most MAX_RESTARTS times
                if t_ready is not None and gens[idx] < MAX_RESTARTS:
                    try:
                        client.post(link_path(project_id, link_ids[idx]) + "/capture/stop")
                    except ProviderError:
                        pass
                    gens[idx] += 1
                    begin(idx)
                    readers[idx] = PcapReader()
                    read(idx)
                    run.restarts.append({"link": link_ids[idx], "at_s": round(time.monotonic() - t_ready, 3)})
                else:
                    open_streams.discard(idx)
                continue
            if isinstance(item, BaseException):
                raise ProviderError(f"GNS3's capture stream of link {link_ids[idx]} failed: {item}") from None
            run.stream_bytes[link_ids[idx]] = run.stream_bytes.get(link_ids[idx], 0) + len(item)
            records = readers[idx].feed(item)
            if t_ready is None and all(r.header is not None for r in readers):
                t_ready = time.monotonic()
                if ready is not None:
                    ready.set()
            at = time.monotonic() - (t_ready or t0)
            go_on = True
            for _ts, frame in records:
                if len(link_ids) > 1:
                    digest = hashlib.blake2b(frame, digest_size=16).digest()
                    for k in [k for k, t in seen.items() if at - t > DEDUP_WINDOW_S]:
                        del seen[k]
                    if digest in seen:
                        run.duplicates += 1
                        continue
                    seen[digest] = at
                run.frames += 1
                if not on_frame(frame, at):
                    go_on = False
                    break
            if not go_on:
                run.stopped_by = "limit"
                break
            if run.stream_bytes[link_ids[idx]] > 2 * max_bytes + (1 << 20):
                run.stopped_by = "limit"
                break
        run.elapsed = time.monotonic() - (t_ready or t0)
        return run
    finally:
        halt.set()
        for lid in started:
            try:
                client.post(link_path(project_id, lid) + "/capture/stop")
            except Exception as exc:  # noqa: BLE001 - every capture gets its stop
                run.stop_errors.append(f"link {lid}: {exc}")
        for t in threads:
            t.join(5)
