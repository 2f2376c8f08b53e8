"""A console recording (asciicast v2) as a readable, standalone HTML transcript.

What the console printed is turned back into plain lines: escape sequences (CSI colours and
cursor moves, OSC window titles, charset and keypad switches) are removed, a carriage return
goes back to the start of the line so that what is printed next overwrites it (progress bars,
shell prompt redraws), a backspace moves one column left, "erase line" (``CSI K``) clears to
the end of the line, ``CSI n C``/``CSI n D`` move right/left. What the candidate typed is
shown apart, in its own blocks, with the time since the start of the recording, and keys that
print nothing are named (``⏎``, ``^C``, ``←``, ``⇥``...). No script, no external resource.

The size is bounded: the transcript keeps at most ``max_chars`` characters of text (output and
input); past it, one line says where it stopped and the ``.cast`` file remains the full record.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from labkit.adapters.recording.asciicast import CastHeader, read_events, read_header

__all__ = ["MAX_CHARS", "Block", "Transcript", "clean_output", "describe_input", "error_html", "render_html",
           "transcribe"]

MAX_CHARS = 2_000_000  # characters of text kept in one transcript
MAX_LINE = 4_000  # columns kept in one line (a runaway line without newline)

# ESC followed by: CSI "[" params final; OSC "]" ... (BEL | ESC \); DCS/SOS/PM/APC "P X ^ _" ... ESC \;
# two-byte sequences (charset "( ) * +" + one char, keypad "=" ">", "7" "8", "M" "D" "E" "c"...).
_ESCAPE = re.compile(
    r"\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[()*+\-./][ -~]?"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_KEYS = {
    "\r": "⏎", "\n": "⏎", "\t": "⇥", "\x7f": "⌫", "\x08": "⌫", "\x1b": "Esc",
    "\x1b[A": "↑", "\x1b[B": "↓", "\x1b[C": "→", "\x1b[D": "←",
    "\x1bOA": "↑", "\x1bOB": "↓", "\x1bOC": "→", "\x1bOD": "←",
    "\x1b[H": "Home", "\x1b[F": "End", "\x1b[3~": "Suppr", "\x1b[5~": "PgUp", "\x1b[6~": "PgDn",
}
_KEY_SEQ = re.compile(r"\x1b\[[0-9;]*[A-Za-z~]|\x1bO[A-Za-z]|[\x00-\x1f\x7f]")


@dataclass
class Block:
    kind: str  # "output" | "input" | "marker" | "resize"
    time: float  # seconds since the start of the recording, of the block's first event
    text: str


@dataclass
class Transcript:
    header: CastHeader
    blocks: list[Block] = field(default_factory=list)
    truncated: bool = False
    duration: float = 0.0
    source: str = ""


class _Screen:
    """A line with a cursor: enough of a terminal to read shell sessions back."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.line: list[str] = []
        self.col = 0
        self.size = 0  # characters in ``lines``

    def feed(self, text: str) -> None:
        pos = 0
        for m in _ESCAPE.finditer(text):
            self._chars(text[pos:m.start()])
            self._escape(m.group("final"), m.group("params"))
            pos = m.end()
        self._chars(text[pos:])

    def _escape(self, final: str | None, params: str | None) -> None:
        if final is None:
            return
        n = int(params) if params and params.isdigit() else 1
        if final == "K":
            if params in (None, "", "0"):
                del self.line[self.col:]
            elif params == "2":
                self.line.clear()
        elif final == "C":
            self.col = min(self.col + n, MAX_LINE)
        elif final == "D":
            self.col = max(self.col - n, 0)
        elif final == "G":
            self.col = min(max(n - 1, 0), MAX_LINE)
        elif final == "J" and params == "2":  # clear the screen: keep what was shown, start anew
            self.newline()

    def _chars(self, text: str) -> None:
        for ch in text:
            if ch == "\n":
                self.newline()
            elif ch == "\r":
                self.col = 0
            elif ch == "\b":
                self.col = max(self.col - 1, 0)
            elif ch == "\t":
                self._put_many(" " * (8 - self.col % 8))
            elif ch < " " or "\x7f" <= ch <= "\x9f":
                continue  # BEL and other controls print nothing
            else:
                self._put_many(ch)

    def _put_many(self, chars: str) -> None:
        for ch in chars:
            if self.col >= MAX_LINE:
                return
            if self.col < len(self.line):
                self.line[self.col] = ch
            else:
                self.line.extend(" " * (self.col - len(self.line)))
                self.line.append(ch)
            self.col += 1

    def newline(self) -> None:
        text = "".join(self.line).rstrip()
        self.lines.append(text)
        self.size += len(text) + 1
        self.line, self.col = [], 0

    def take(self) -> str:
        """The lines so far (the unfinished one included) and start over."""
        if self.line:
            self.newline()
        text = "\n".join(self.lines)
        self.lines, self.size = [], 0
        return text


def clean_output(text: str) -> str:
    """``text`` as printed on a terminal, escape sequences interpreted or removed."""
    screen = _Screen()
    screen.feed(text)
    return screen.take()


def describe_input(data: str) -> str:
    """Typed input, printable: keys that print nothing are named (``⏎``, ``^C``, ``←``)."""
    out: list[str] = []
    pos = 0
    for m in _KEY_SEQ.finditer(data):
        out.append(data[pos:m.start()])
        seq = m.group()
        if seq in _KEYS:
            out.append(_KEYS[seq] + ("\n" if seq in ("\r", "\n") else ""))
        elif len(seq) == 1:
            out.append("^" + chr(ord(seq) + 64))
        else:
            out.append("Esc" + seq[1:])
        pos = m.end()
    out.append(data[pos:])
    return "".join(out)


def transcribe(path: Path, *, max_chars: int = MAX_CHARS) -> Transcript:
    """Read ``path`` (asciicast v2) into output, input and marker blocks, bounded in size."""
    tr = Transcript(header=read_header(path), source=path.name)
    screen = _Screen()
    out_time: float | None = None
    used = 0

    def flush_output() -> None:
        nonlocal out_time, used
        if out_time is None:
            return
        text = screen.take()
        if text.strip():
            tr.blocks.append(Block("output", out_time, text))
            used += len(text)
        out_time = None

    for ev in read_events(path):
        tr.duration = max(tr.duration, ev.time)
        if used >= max_chars:
            tr.truncated = True
            break
        if ev.code == "o":
            if out_time is None:
                out_time = ev.time
            screen.feed(ev.data[: max_chars - used + MAX_LINE])
            if screen.size + used > max_chars:
                flush_output()
        elif ev.code == "i":
            flush_output()
            text = describe_input(ev.data)
            if tr.blocks and tr.blocks[-1].kind == "input" and not tr.blocks[-1].text.endswith("\n"):
                tr.blocks[-1].text += text  # keystrokes of one command form one block
            else:
                tr.blocks.append(Block("input", ev.time, text))
            used += len(text)
        elif ev.code == "m":
            flush_output()
            tr.blocks.append(Block("marker", ev.time, ev.data))
        elif ev.code == "r":
            flush_output()
            tr.blocks.append(Block("resize", ev.time, ev.data))
    flush_output()
    return tr


_STRINGS = {
    "fr": {"title": "Transcription de la console", "started": "Début", "duration": "Durée",
           "size": "Taille du terminal", "typed": "saisi", "printed": "affiché", "marker": "repère",
           "resize": "terminal redimensionné", "truncated": "Transcription arrêtée ici (taille limitée) ; "
           "l'enregistrement complet est le fichier {file}.", "file": "Enregistrement",
           "unreadable": "Cet enregistrement n'a pas pu être transcrit : {error}",
           "note": "Les séquences d'échappement du terminal sont interprétées ou retirées ; ce que le candidat "
           "a tapé est encadré, avec le temps écoulé depuis le début."},
    "en": {"title": "Console transcript", "started": "Started", "duration": "Duration",
           "size": "Terminal size", "typed": "typed", "printed": "printed", "marker": "marker",
           "resize": "terminal resized", "truncated": "Transcript stopped here (size limit); the full "
           "recording is the file {file}.", "file": "Recording",
           "unreadable": "This recording could not be transcribed: {error}",
           "note": "Terminal escape sequences are interpreted or removed; what the candidate typed is boxed, "
           "with the time since the start."},
}

_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; max-width: 200mm; margin: 0 auto;
       padding: 8mm; color: #1d1d1d; }
h1 { font-size: 15pt; color: #14324f; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; }
dt { color: #5a6570; } dd { margin: 0; }
.t .w { color: #8a949e; font-size: 7pt; }
.b { display: grid; grid-template-columns: 20mm 1fr; gap: 6px; margin: 2px 0; break-inside: avoid; }
.t { color: #5a6570; font-family: "DejaVu Sans Mono", monospace; font-size: 8pt; text-align: right;
     padding-top: 3px; }
pre { margin: 0; white-space: pre-wrap; word-break: break-all; font-family: "DejaVu Sans Mono", monospace;
      font-size: 8.5pt; line-height: 1.3; }
.output pre { background: #f7f7f5; border-left: 3px solid #d6d6cf; padding: 2px 6px; }
.input pre { background: #e8f0fb; border: 1px solid #7ea3d4; border-radius: 3px; padding: 2px 6px;
             font-weight: 700; color: #0d3b75; }
.input pre::before { content: "⌨ "; }
.marker pre, .resize pre { color: #8a4a00; font-style: italic; }
.trunc { color: #8a1c1c; font-weight: 700; margin-top: 4mm; }
.note { color: #5a6570; font-size: 9pt; }
"""


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:06.3f}" if h else f"{m:02d}:{s:06.3f}"


def render_html(tr: Transcript, lang: str = "fr") -> str:
    """The transcript as a standalone HTML page (inline CSS, no script)."""
    s = _STRINGS["en" if lang == "en" else "fr"]
    e = html.escape
    h = tr.header
    started = datetime.fromtimestamp(h.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if h.timestamp else "—"
    parts = [
        f'<!DOCTYPE html>\n<html lang="{e(lang)}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(s['title'])} — {e(h.title or tr.source)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
        f"<h1>{e(s['title'])}</h1>\n<dl>",
        f"<dt>{e(s['file'])}</dt><dd><code>{e(tr.source)}</code>{' — ' + e(h.title) if h.title else ''}</dd>",
        f"<dt>{e(s['started'])}</dt><dd>{e(started)}</dd>",
        f"<dt>{e(s['duration'])}</dt><dd>{e(_clock(tr.duration))}</dd>",
        f"<dt>{e(s['size'])}</dt><dd>{h.width}×{h.height}</dd></dl>\n",
        f'<p class="note">{e(s["note"])}</p>\n',
    ]
    labels = {"output": s["printed"], "input": s["typed"], "marker": s["marker"], "resize": s["resize"]}
    for b in tr.blocks:
        text = b.text.rstrip("\n") if b.kind == "input" else b.text
        if b.kind == "resize":
            text = f"{s['resize']}: {b.text}"
        elif b.kind == "marker":
            text = f"{s['marker']}: {b.text}"
        wall = (f'<br><span class="w">{datetime.fromtimestamp(h.timestamp + b.time, UTC):%H:%M:%S} UTC</span>'
                if h.timestamp else "")
        parts.append(f'<div class="b {b.kind}" title="{e(labels[b.kind])}"><div class="t">{_clock(b.time)}{wall}</div>'
                     f"<pre>{e(text)}</pre></div>\n")
    if tr.truncated:
        parts.append(f'<p class="trunc">{e(s["truncated"].format(file=tr.source))}</p>\n')
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def error_html(source: str, error: str, lang: str = "fr") -> str:
    """The page put in place of a transcript when the recording cannot be read."""
    s = _STRINGS["en" if lang == "en" else "fr"]
    e = html.escape
    return (f'<!DOCTYPE html>\n<html lang="{e(lang)}">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{e(s['title'])} — {e(source)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>{e(s['title'])}</h1>\n<p class=\"trunc\">{e(s['unreadable'].format(error=error))}</p>\n"
            "</body>\n</html>\n")
