"""Config sets: a lab's CLI lines for its device nodes, one file per solution or variant.

The file (in the lab's folder) is a template rendered with the instance's parameters (``p``,
as everywhere in a lab); the rendered text is split by section headers ``[node]`` on lines of
their own: the lines under a header are that node's config set, in order. Lines starting with
``!`` and blank lines are comments.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from labkit.domain.params import RenderError, render
from labkit.errors import UserError

_HEADER = re.compile(r"^\[([a-z][a-z0-9-]{0,30})\]\s*$")


def split_sections(text: str, source: str = "the config set") -> dict[str, list[str]]:
    """{node: lines} from a rendered config set."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for no, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line.strip())
        if m:
            current = m.group(1)
            if current in out:
                raise UserError(f"{source} line {no}: section [{current}] appears twice; merge the two.")
            out[current] = []
            continue
        if not line.strip() or line.lstrip().startswith("!"):
            continue
        if current is None:
            raise UserError(f"{source} line {no}: {line.strip()!r} comes before any [node] header; "
                            "start the file with the node it is for, e.g. [r-hq].")
        out[current].append(line.rstrip())
    return out


def render_config_set(path: Path, params: dict[str, Any]) -> dict[str, list[str]]:
    """Render ``path`` with ``p`` = ``params`` and split it into each node's lines."""
    try:
        text = render(path.read_text(encoding="utf-8"), params)
    except OSError as exc:
        raise UserError(f"cannot read the config set {path}: {exc.strerror}; check the lab's 'config:' path.") \
            from None
    except RenderError as exc:
        raise UserError(f"config set {path}: {exc.message}; {exc.hint}") from None
    return split_sections(text, str(path))
