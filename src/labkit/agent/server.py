"""The grader agent's protocol: JSON lines on stdin, JSON lines on stdout.

Every request is one JSON object on one line (at most :data:`MAX_LINE` bytes) with an ``id``;
every answer carries the same ``id``. Requests are served concurrently (at most
:data:`MAX_CONCURRENT` at once; reading stops while all slots are busy), so answers may come
back in any order.

- ``{"id", "op": "hello"}`` -> ``{"id", "version", "instance", "probes": [...]}``
- ``{"id", "op": "probe", "place": NS, "call": ProbeCall, "ev_id", "timeout"}`` ->
  ``{"id", "evidence": {...}}``
- ``{"id", "op": "echo", "src": NS, "dst": NS, "call": EchoCall, "timeout"}`` ->
  ``{"id", "result": {...}}``
- host mode only (``--host-ops``, a GNS3 host; :mod:`labkit.agent.host`):
  ``{"id", "op": "host_setup", "vantage": [...], "relay": {...}}``, ``host_teardown``,
  ``host_leftovers``: the instance's bridges and vantage namespaces, made or removed;
- anything wrong -> ``{"id", "error": "one sentence"}`` (``id`` null when the line had none).

Only registered probes run (:mod:`labkit.adapters.probes.registry`), and only at a place of
the agent's own instance: a network namespace named ``lk-<instance>.`` + something, other
than the agent's management pair (``.g``/``.c``). Nothing but protocol lines ever reaches
stdout: file descriptor 1 is moved aside at start and stderr takes its place, so a stray
print, a child process or a traceback cannot corrupt the stream.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from pydantic import ValidationError

from labkit import __version__
from labkit.adapters.netns.ground import run_echo
from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes import registry
from labkit.errors import LabkitError
from labkit.models.evidence import Evidence
from labkit.models.probe import MAX_CALL_BYTES, EchoCall, ProbeCall

MAX_LINE = MAX_CALL_BYTES  # 1 MiB per request line
MAX_CONCURRENT = 16
MAX_TIMEOUT = 300.0
PROTOCOL = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MANAGEMENT_SUFFIXES = (".g", ".c")


class RequestError(Exception):
    """A request the agent refuses; its message is sent back as ``error``."""


def instance_prefix(instance: str) -> str:
    return f"lk-{instance}."


class Places:
    """Which places the agent accepts: namespaces of its instance, by name."""

    def __init__(self, instance: str, runner: Callable[[str, Callable[[], Any], float], Any] | None = None,
                 host_ops: bool = False):
        if not _NAME.match(instance):
            raise ValueError(f"{instance!r} is not an instance name")
        self.instance = instance
        self.host_ops = host_ops  # host mode (a GNS3 host): the instance's places made on request
        self.prefix = instance_prefix(instance)
        self._runner = runner or (lambda ns, fn, timeout: run_in_netns(ns, fn, timeout=timeout))

    def check(self, place: Any) -> str:
        if not isinstance(place, str) or not place.startswith(self.prefix) or len(place) == len(self.prefix) \
                or "/" in place or place[len(self.prefix) - 1:] in MANAGEMENT_SUFFIXES:
            raise RequestError(f"place {place!r} is not a namespace of instance {self.instance!r}; refusing it.")
        return place

    def run(self, place: str, fn: Callable[[], Any], timeout: float) -> Any:
        return self._runner(self.check(place), fn, timeout)


def _timeout(req: dict[str, Any]) -> float:
    t = req.get("timeout", 60.0)
    if isinstance(t, bool) or not isinstance(t, int | float) or not t > 0:
        raise RequestError("timeout must be a positive number of seconds.")
    return min(float(t), MAX_TIMEOUT)


def handle(req: dict[str, Any], places: Places) -> dict[str, Any]:
    """Answer one request (without its id); raises :class:`RequestError` when refused."""
    op = req.get("op")
    if op == "hello":
        return {"version": __version__, "protocol": PROTOCOL, "instance": places.instance,
                "probes": registry.names()}
    if op == "probe":
        try:
            call = ProbeCall.model_validate(req.get("call"))
        except ValidationError as exc:
            raise RequestError(f"call is not a probe call ({exc.error_count()} errors).") from None
        ev_id = req.get("ev_id")
        if not isinstance(ev_id, str) or not ev_id:
            raise RequestError("ev_id must be a non-empty string.")
        timeout = _timeout(req)
        place = places.check(req.get("place"))
        fn = registry.resolve(call, ev_id)  # ProbeNotAllowedError for an unknown name
        ev = places.run(place, fn, timeout)
        if not isinstance(ev, Evidence):
            raise RequestError(f"probe {call.probe!r} did not return evidence.")
        return {"evidence": ev.model_dump(mode="json")}
    if op == "echo":
        try:
            ecall = EchoCall.model_validate(req.get("call"))
        except ValidationError as exc:
            raise RequestError(f"call is not an echo call ({exc.error_count()} errors).") from None
        timeout = _timeout(req)
        src, dst = places.check(req.get("src")), places.check(req.get("dst"))

        def open_at(place: str, fn: Callable[[], Any]) -> Any:
            return places.run(place, fn, timeout)

        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = run_echo(open_at, src, dst, ecall)
            except BaseException as exc:  # noqa: BLE001 - handed back below
                box["error"] = exc

        t = threading.Thread(target=work, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise RequestError(f"echo from {src} to {dst} did not finish within {timeout} s.")
        if "error" in box:
            raise box["error"]
        return {"result": box["result"]}
    if isinstance(op, str) and op.startswith("host_"):
        if not places.host_ops:
            raise RequestError(f"op {op!r} is served only by an agent in host mode (a GNS3 host).")
        from labkit.agent import host

        try:
            return host.handle(op, req, places.instance)
        except (host.HostOpError, OSError, subprocess.TimeoutExpired) as exc:
            raise RequestError(str(exc)) from None
    raise RequestError(f"unknown op {op!r}; use hello, probe or echo.")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RequestError | LabkitError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    return f"{type(exc).__name__}: {exc}"


class Server:
    """Reads requests from ``inp``, writes answers to ``out`` (binary streams)."""

    def __init__(self, places: Places, inp: IO[bytes], out: IO[bytes], max_concurrent: int = MAX_CONCURRENT):
        self.places = places
        self.inp = inp
        self.out = out
        self._write_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()

    def send(self, msg: dict[str, Any]) -> None:
        try:
            data = json.dumps(msg, allow_nan=False).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            data = json.dumps({"id": msg.get("id"), "error": f"answer is not JSON: {exc}"}).encode() + b"\n"
        with self._write_lock:
            try:
                self.out.write(data)
                self.out.flush()
            except (BrokenPipeError, OSError):
                pass

    def _serve_one(self, rid: Any, req: dict[str, Any]) -> None:
        try:
            answer = handle(req, self.places)
            self.send({"id": rid, **answer})
        except BaseException as exc:  # noqa: BLE001 - never a traceback on stdout
            self.send({"id": rid, "error": _describe(exc)})
        finally:
            self._slots.release()
            with self._threads_lock:
                self._threads.discard(threading.current_thread())

    def _read_line(self) -> bytes | None:
        """One line of at most MAX_LINE bytes; a longer one is consumed and b"" is returned."""
        line = self.inp.readline(MAX_LINE + 1)
        if not line:
            return None
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while True:  # drop the rest of the oversize line
                more = self.inp.readline(MAX_LINE)
                if not more or more.endswith(b"\n"):
                    break
            return b""
        return line

    def serve(self) -> None:
        while True:
            line = self._read_line()
            if line is None:
                break
            if line == b"":
                self.send({"id": None, "error": f"request line longer than {MAX_LINE} bytes; refused."})
                continue
            if not line.strip():
                continue
            try:
                req = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                self.send({"id": None, "error": "request is not valid JSON; send one JSON object per line."})
                continue
            if not isinstance(req, dict):
                self.send({"id": None, "error": "request must be a JSON object."})
                continue
            rid = req.get("id")
            if not isinstance(rid, int | str) or isinstance(rid, bool):
                self.send({"id": None, "error": "request has no id (a number or a string)."})
                continue
            self._slots.acquire()
            t = threading.Thread(target=self._serve_one, args=(rid, req), daemon=True, name=f"req-{rid}")
            with self._threads_lock:
                self._threads.add(t)
            t.start()
        # end of input: let running requests finish (each is bounded by its own timeout)
        with self._threads_lock:
            running = list(self._threads)
        for t in running:
            t.join(MAX_TIMEOUT + 5)


def _private_stdout() -> IO[bytes]:
    """The protocol stream: a private copy of fd 1; fd 1 itself then points at stderr, so
    nothing else (prints, child processes, tracebacks) can write protocol bytes."""
    fd = os.dup(1)
    os.set_inheritable(fd, False)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "wb", buffering=0)


def main(argv: list[str] | None = None) -> int:
    out = _private_stdout()
    parser = argparse.ArgumentParser(prog="python -m labkit.agent", description="labkit's grader agent")
    parser.add_argument("--instance", required=True, help="the instance whose places this agent serves")
    parser.add_argument("--host-ops", action="store_true",
                        help="host mode (a GNS3 host): also make and remove the instance's places")
    try:
        args = parser.parse_args(argv)
        places = Places(args.instance, host_ops=args.host_ops)
    except (SystemExit, ValueError) as exc:
        print(f"labkit agent: {exc if isinstance(exc, ValueError) else 'bad arguments'}; "
              "run it as 'python -I -m labkit.agent --instance NAME'.", file=sys.stderr)
        return 2
    try:
        registry.load_all()
    except Exception as exc:  # noqa: BLE001 - reported on stderr, never on stdout
        print(f"labkit agent: cannot load the probes: {exc}", file=sys.stderr)
        return 3
    Server(places, sys.stdin.buffer, out).serve()
    return 0
