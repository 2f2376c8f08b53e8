"""asciicast v2 writer and reader: header, both directions, monotonic times, crash safety."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from labkit.adapters.recording.asciicast import (
    CastHeader,
    CastWriter,
    read_events,
    read_header,
    recording_path,
)
from labkit.errors import UserError

AT = datetime(2026, 6, 12, 8, 30, 5, tzinfo=UTC)


def test_path_layout_and_names_checked(tmp_path: Path) -> None:
    p = recording_path(tmp_path, "bts1", "alice.martin", "pc-hq", "ssh", AT)
    assert p == tmp_path / "bts1" / "alice.martin" / "20260612T083005Z-pc-hq-ssh.cast"
    for bad in ("../x", "a/b", "", "A"):
        with pytest.raises(UserError, match="cannot name a recording"):
            recording_path(tmp_path, "bts1", bad, "pc-hq", "ssh", AT)


def test_write_then_read(tmp_path: Path) -> None:
    path = recording_path(tmp_path, "bts1", "alice", "pc-hq", "ssh", AT)
    with CastWriter(path, CastHeader(width=100, height=30, timestamp=1781253005, title="alice@pc-hq",
                                     env={"TERM": "xterm"})) as w:
        w.output(b"root@pc-hq:~# ")
        w.input(b"hostname\r")
        w.output("h\u00e9".encode()[:2])  # "h" + first byte of "é": the decoder waits
        w.output("h\u00e9".encode()[2:] + b"\r\n")
        w.resize(120, 40)
        w.marker("read-only")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    h = read_header(path)
    assert (h.width, h.height, h.timestamp, h.title, h.env) == (100, 30, 1781253005, "alice@pc-hq", {"TERM": "xterm"})
    events = list(read_events(path))
    assert [(e.code, e.data) for e in events] == [
        ("o", "root@pc-hq:~# "), ("i", "hostname\r"), ("o", "h"), ("o", "\u00e9\r\n"),
        ("r", "120x40"), ("m", "read-only")]
    times = [e.time for e in events]
    assert times == sorted(times) and times[0] >= 0
    first = json.loads(path.read_text().splitlines()[0])
    assert first["version"] == 2


def test_never_overwrites_a_recording(tmp_path: Path) -> None:
    path = recording_path(tmp_path, "c", "bob", "r1", "ssh", AT)
    with CastWriter(path, CastHeader(80, 24, 0)) as w1:
        w1.output(b"first")
    with CastWriter(path, CastHeader(80, 24, 0)) as w2:
        w2.output(b"second")
    assert w2.path.name == "20260612T083005Z-r1-ssh-2.cast"
    assert [e.data for e in read_events(path)] == ["first"]
    assert [e.data for e in read_events(w2.path)] == ["second"]


def test_events_are_on_disk_before_close_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "s.cast"
    w = CastWriter(path, CastHeader(80, 24, 0))
    w.input(b"ls\r")
    w.output(b"file\r\n")
    # what a crash leaves: the file as flushed so far, plus half a line
    with path.open("a") as fh:
        fh.write('[1.5, "o", "cut sh')
    assert [(e.code, e.data) for e in read_events(path)] == [("i", "ls\r"), ("o", "file\r\n")]
    w.close()


def test_output_is_capped_input_is_not(tmp_path: Path) -> None:
    path = tmp_path / "big.cast"
    with CastWriter(path, CastHeader(80, 24, 0), max_output=10) as w:
        w.output(b"123456")
        w.input(b"yes\r")
        w.output(b"789abc")
        w.output(b"def")
        w.input(b"\x03")
    assert [(e.code, e.data) for e in read_events(path)] == [
        ("o", "123456"), ("i", "yes\r"), ("o", "789a"), ("m", "output truncated after 10 bytes"), ("i", "\x03")]


def test_damaged_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cast"
    bad.write_text("not json\n")
    with pytest.raises(UserError, match="not an asciicast v2 recording"):
        read_header(bad)
    bad.write_text('{"version": 2, "width": 80, "height": 24}\n[0.1, "o"]\n')
    with pytest.raises(UserError, match="bad.cast:2 is not an asciicast event"):
        list(read_events(bad))
