"""Console recordings (asciicast v2) as readable HTML transcripts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from labkit.adapters.recording.asciicast import CastHeader, CastWriter
from labkit.adapters.recording.transcript import (
    clean_output,
    describe_input,
    error_html,
    render_html,
    transcribe,
)
from labkit.errors import UserError


def _cast(path: Path, events: list[tuple[float, str, str]], header: dict | None = None) -> Path:
    head = header or {"version": 2, "width": 80, "height": 24, "timestamp": 1_796_000_000, "title": "r-hq console"}
    lines = [json.dumps(head)] + [json.dumps([t, c, d]) for t, c, d in events]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_escape_sequences_are_removed_or_interpreted() -> None:
    text = ("\x1b]0;root@r-hq: ~\x07\x1b[01;32mroot@r-hq\x1b[00m:~# ls\r\n"
            "foo  bar\r\n"
            "10%\r50%\r100%\n"              # a progress line overwritten by \r
            "abcdef\x08\x08\x08X\x1b[K\n"   # backspaces then erase to end of line
            "\x1b(B\x1b[?2004h\x1b=tail\x1b[2D\x1b[1CZ\n"  # charset, bracketed paste, keypad, cursor moves
            "\x1bP1$r0m\x1b\\dcs gone\n"      # a DCS string
            "bell\x07 and \x9b31mC1 CSI\n")
    assert clean_output(text) == ("root@r-hq:~# ls\nfoo  bar\n100%\nabcX\ntaiZ\ndcs gone\nbell and C1 CSI")
    assert "\x1b" not in clean_output("\x1b[38;2;255;0;0mred\x1b[0m \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\")


def test_typed_keys_are_named() -> None:
    assert describe_input("ls -la\r") == "ls -la⏎\n"
    assert describe_input("\x03\x04\x1b[A\x1b[D\t\x7f") == "^C^D↑←⇥⌫"
    assert describe_input("\x1b[1;5C") == "Esc[1;5C"


def test_transcript_keeps_input_apart_with_times(tmp_path: Path) -> None:
    cast = _cast(tmp_path / "a.cast", [
        (0.1, "o", "root@r-hq:~# "),
        (1.5, "i", "v"), (1.6, "i", "t"), (1.7, "i", "ysh\r"),
        (1.8, "o", "vtysh\r\n\x1b[1mr-hq#\x1b[0m "),
        (3.25, "i", "show ip route\r"),
        (3.3, "o", "show ip route\r\nO>* 10.1.3.0/24 [110/20] via 172.16.0.2, eth1\r\nr-hq# "),
        (5.0, "r", "120x40"),
        (6.0, "m", "session read-only"),
        (7.0, "i", "<script>alert(1)</script>\r"),
    ])
    tr = transcribe(cast)
    kinds = [(b.kind, b.text) for b in tr.blocks]
    assert kinds[0] == ("output", "root@r-hq:~#")
    assert kinds[1] == ("input", "vtysh⏎\n")  # three keystroke events, one command
    assert tr.blocks[1].time == 1.5
    assert ("input", "show ip route⏎\n") in kinds
    assert any(k == "output" and "O>* 10.1.3.0/24" in t and "\x1b" not in t for k, t in kinds)
    assert ("resize", "120x40") in kinds and ("marker", "session read-only") in kinds
    page = render_html(tr, "en")
    assert "<script" not in page and "&lt;script&gt;" in page  # typed text is escaped
    assert page.count('class="b input"') == 3
    assert "00:03.250" in page and "r-hq console" in page
    assert "00:53:23 UTC" in page  # wall-clock time of the block (header timestamp + 3.25 s)
    assert not re.search(r"https?://", page)


def test_size_is_bounded(tmp_path: Path) -> None:
    big = [(i / 100, "o", "x" * 1000 + "\r\n") for i in range(500)]
    tr = transcribe(_cast(tmp_path / "big.cast", big), max_chars=50_000)
    assert tr.truncated
    assert sum(len(b.text) for b in tr.blocks) < 60_000
    assert "full" in render_html(tr, "en") and "big.cast" in render_html(tr, "en")
    small = transcribe(_cast(tmp_path / "small.cast", big[:3]), max_chars=50_000)
    assert not small.truncated


def test_a_recording_written_by_castwriter(tmp_path: Path) -> None:
    with CastWriter(tmp_path / "w.cast", CastHeader(width=80, height=24, timestamp=1_796_000_000)) as w:
        w.output("é".encode()[:1])  # a UTF-8 character split across two reads
        w.output("é".encode()[1:] + b"t\xc3\xa9\r\n")
        w.input(b"exit\r")
    tr = transcribe(w.path)
    assert [(b.kind, b.text) for b in tr.blocks] == [("output", "été"), ("input", "exit⏎\n")]


def test_damaged_recording_is_an_error_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cast"
    bad.write_text(json.dumps({"version": 2, "width": 80, "height": 24}) + "\n[1.0, \"o\"\nnot json\n")
    with pytest.raises(UserError, match="bad.cast:2"):
        transcribe(bad)
    page = error_html("bad.cast", "bad.cast:2 is not an asciicast event", "fr")
    assert "pas pu être transcrit" in page and "bad.cast:2" in page
