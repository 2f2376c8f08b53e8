"""Console recordings in asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/).

One JSON header line, then one ``[seconds, code, data]`` line per event: ``"o"`` what the
console printed, ``"i"`` what the candidate typed, ``"r"`` a resize (``"COLSxROWS"``). Every
event is flushed to the kernel as it is written, so a crash of the bastion keeps everything
written before it; the file is fsynced when the session closes. Referentials grade the
approach, so input is kept as well as output; ``asciinema play`` reads these files as they are.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from labkit.errors import UserError

EventCode = Literal["o", "i", "r", "m"]
_SAFE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FILE_MODE = 0o640
DIR_MODE = 0o750
MAX_OUTPUT = 64 * 1024 * 1024  # output bytes kept per recording


@dataclass(frozen=True)
class CastHeader:
    width: int
    height: int
    timestamp: int  # unix seconds at the start of the recording
    title: str = ""
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CastEvent:
    time: float  # seconds since the start of the recording
    code: str
    data: str


def recording_path(root: Path, cohort: str, login: str, node: str, channel: str, at: datetime) -> Path:
    """``<root>/<cohort>/<login>/<UTC timestamp>-<node>-<channel>.cast``; every part is checked
    so that a name can never climb out of ``root``."""
    for label, part in (("cohort", cohort), ("login", login), ("node", node), ("channel", channel)):
        if not _SAFE.fullmatch(part):
            raise UserError(f"{label} {part!r} cannot name a recording; "
                            "use lowercase letters, digits, '.', '_' or '-'.")
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return root / cohort / login / f"{stamp}-{node}-{channel}.cast"


def _create_exclusive(path: Path) -> tuple[Path, int]:
    """Open a new file 0640, never truncating an older recording: two sessions opened in the same
    second get ``-2``, ``-3``... before ``.cast``."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    stem = path.name.removesuffix(".cast")
    for n in range(1, 1000):
        candidate = path if n == 1 else path.with_name(f"{stem}-{n}.cast")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            continue
        os.fchmod(fd, FILE_MODE)  # the umask must not widen or narrow it
        return candidate, fd
    raise UserError(f"too many recordings named {path.name} in {path.parent}; remove old ones.")


class CastWriter:
    """Append-only asciicast v2 writer; times come from a monotonic clock, so they never go
    backwards even if the wall clock is changed during the exam.

    Output is kept up to ``max_output`` bytes per recording (``yes`` left running must not fill
    the disk on exam day); past it, one ``"m"`` marker says so and only input is still
    recorded: what the candidate typed is the approach the referentials grade.
    """

    def __init__(self, path: Path, header: CastHeader, max_output: int = MAX_OUTPUT):
        self.max_output = max_output
        self.output_bytes = 0
        self.path, fd = _create_exclusive(path)
        self._fh: TextIO | None = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        self._t0 = time.monotonic()
        self._last = 0.0
        self._decoders = {code: codecs.getincrementaldecoder("utf-8")("replace") for code in ("o", "i")}
        self._line(_header_json(header))

    @property
    def closed(self) -> bool:
        return self._fh is None

    def output(self, data: bytes) -> None:
        if self.output_bytes >= self.max_output:
            return
        self.output_bytes += len(data)
        if self.output_bytes >= self.max_output:
            data = data[:len(data) - (self.output_bytes - self.max_output)]
            self._bytes("o", data)
            self.marker(f"output truncated after {self.max_output} bytes")
            return
        self._bytes("o", data)

    def input(self, data: bytes) -> None:
        self._bytes("i", data)

    def resize(self, width: int, height: int) -> None:
        self._event("r", f"{width}x{height}")

    def marker(self, label: str) -> None:
        """A named point in the recording (for example where the session became read-only)."""
        self._event("m", label)

    def size(self) -> int:
        return self.path.stat().st_size

    def close(self) -> None:
        if self._fh is None:
            return
        for code, dec in self._decoders.items():
            rest = dec.decode(b"", final=True)
            if rest:
                self._event(code, rest)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None

    def __enter__(self) -> CastWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _bytes(self, code: str, data: bytes) -> None:
        # bytes of one UTF-8 character may arrive in two reads: the incremental decoder keeps
        # the unfinished tail for the next call instead of writing two replacement characters
        text = self._decoders[code].decode(data)
        if text:
            self._event(code, text)

    def _event(self, code: str, text: str) -> None:
        if self._fh is None:
            return
        self._last = max(self._last, round(time.monotonic() - self._t0, 6))
        self._line(json.dumps([self._last, code, text], ensure_ascii=False))

    def _line(self, text: str) -> None:
        assert self._fh is not None
        self._fh.write(text + "\n")
        self._fh.flush()


def _header_json(h: CastHeader) -> str:
    doc: dict[str, Any] = {"version": 2, "width": h.width, "height": h.height, "timestamp": h.timestamp}
    if h.title:
        doc["title"] = h.title
    if h.env:
        doc["env"] = h.env
    return json.dumps(doc, ensure_ascii=False)


def read_header(path: Path) -> CastHeader:
    with path.open(encoding="utf-8") as fh:
        return _parse_header(path, fh.readline())


def read_events(path: Path) -> Iterator[CastEvent]:
    """Yield the events in file order. A last line cut short by a crash is skipped (the events
    before it are intact); any other malformed line is an error naming the file and line."""
    with path.open(encoding="utf-8") as fh:
        _parse_header(path, fh.readline())
        for lineno, line in enumerate(fh, start=2):
            if not line.endswith("\n"):
                return  # the writer died mid-line
            yield _parse_event(path, lineno, line)


def _parse_header(path: Path, line: str) -> CastHeader:
    try:
        doc = json.loads(line)
        if doc.get("version") != 2:
            raise ValueError("not version 2")
        return CastHeader(width=int(doc["width"]), height=int(doc["height"]), timestamp=int(doc.get("timestamp", 0)),
                          title=str(doc.get("title", "")), env=dict(doc.get("env", {})))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{path} is not an asciicast v2 recording (bad header line).") from None


def _parse_event(path: Path, lineno: int, line: str) -> CastEvent:
    try:
        t, code, data = json.loads(line)
        return CastEvent(time=float(t), code=str(code), data=str(data))
    except (ValueError, TypeError):
        raise UserError(f"{path}:{lineno} is not an asciicast event; the recording is damaged.") from None
