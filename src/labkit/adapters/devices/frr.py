"""FRR has no ``configure replace``: a config set is made the device's whole routing
configuration by first undoing, through vtysh, what its running configuration has and the
config set has not (the ``no`` form of each such line), then pushing the config set.

Handled: top-level static routes (``ip route`` / ``ipv6 route``), ``router ...`` blocks (a
block the config set lacks is removed whole, else its extra lines), ``interface ...`` blocks
(their extra lines). Other top-level lines (hostname, log, service...) belong to the device's
base and are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

ROUTE_PREFIXES = ("ip route ", "ipv6 route ")
BLOCK_PREFIXES = ("router ", "interface ")
_SKIP_SUB = ("exit", "!", "exit-address-family")


def _norm(line: str) -> str:
    return " ".join(line.split())


def parse(config: str | Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(top-level lines, {block header: its lines}) of a vtysh configuration text."""
    lines = config.splitlines() if isinstance(config, str) else list(config)
    top: list[str] = []
    blocks: dict[str, list[str]] = {}
    current: str | None = None
    for raw in lines:
        if not raw.strip() or raw.strip().startswith("!"):
            continue
        line = _norm(raw)
        if raw[:1].isspace():
            if current is not None and line not in _SKIP_SUB:
                blocks[current].append(line)
            continue
        if line in ("exit", "end"):
            current = None
            continue
        if line.startswith(BLOCK_PREFIXES):
            current = line
            blocks.setdefault(line, [])
        else:
            current = None
        top.append(line)
    return top, blocks


def removals(running: str, wanted: Sequence[str]) -> list[str]:
    """The vtysh config lines that remove what ``running`` has and ``wanted`` lacks."""
    run_top, run_blocks = parse(running)
    want_top, want_blocks = parse(wanted)
    out: list[str] = []
    for line in run_top:
        if line.startswith(ROUTE_PREFIXES) and line not in want_top:
            out.append(f"no {line}")
    for header, subs in run_blocks.items():
        if header.startswith("router ") and header not in want_blocks:
            out.append(f"no {header}")
            continue
        extra = [s for s in subs if s not in want_blocks.get(header, [])]
        if extra:
            out.append(header)
            out.extend(f" no {s}" for s in extra)
            out.append("exit")
    return out
