"""A topology diagram as a standalone SVG, drawn from the ``topology`` artifact of a run.

Layout (deterministic, no randomness, input order kept):

* top row: the "core" nodes (routers, firewalls, and any node at the end of a p2p link);
  p2p links between neighbours in that row are straight lines, the others arc above it;
* under each core node: the LAN segments it is the first core member of, as bars;
* under each bar: the other nodes whose first segment it is (workstations, servers...),
  and the grader's vantage points (``vantage: [{name, segment, address}]``) on that LAN.

Interface names, and when addresses are given the host part of each address, label the
lines; bars and links are labelled with their name and network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

__all__ = ["cidr_addresses", "diagram_addresses", "topology_svg"]

CORE_ROLES = ("router", "firewall")
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

# geometry (px)
MARGIN = 24
NODE_H = 34
HOST_SLOT = 124  # width given to each node hanging under a LAN bar
CORE_SLOT = 150  # minimum width of a column
COL_GAP = 30
ROW_GAP_SEG = 86  # core row centre -> bar
ROW_GAP_HOST = 84  # bar -> host row centre
ARC_STEP = 44  # extra height per arc level
BAR_H = 8

STYLE = {
    "router": ("#1f4e79", "#ffffff"),
    "firewall": ("#9c2f2f", "#ffffff"),
    "switch": ("#55606b", "#ffffff"),
    "server": ("#dfe9f3", "#14324f"),
    "workstation": ("#eef3ea", "#24401b"),
    "vantage": ("#fff4d6", "#5c4300"),
}
DEFAULT_STYLE = ("#f2f2f2", "#222222")

LEGEND = {
    "fr": {
        "router": "routeur",
        "firewall": "pare-feu",
        "switch": "commutateur",
        "server": "serveur",
        "workstation": "poste",
        "vantage": "sonde d'évaluation",
        "node": "équipement",
        "lan": "segment LAN",
        "link": "lien point à point",
        "empty": "topologie vide",
        "title": "Schéma de la topologie",
    },
    "en": {
        "router": "router",
        "firewall": "firewall",
        "switch": "switch",
        "server": "server",
        "workstation": "workstation",
        "vantage": "grading probe",
        "node": "device",
        "lan": "LAN segment",
        "link": "point-to-point link",
        "empty": "empty topology",
        "title": "Topology diagram",
    },
}


@dataclass
class _Node:
    name: str
    role: str
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0

    @property
    def top(self) -> float:
        return self.y - NODE_H / 2

    @property
    def bottom(self) -> float:
        return self.y + NODE_H / 2


@dataclass
class _Segment:
    name: str
    members: list[tuple[str, str]]
    hosts: list[str] = field(default_factory=list)
    x1: float = 0.0
    x2: float = 0.0
    y: float = 0.0
    width: float = 0.0


@dataclass
class _Link:
    name: str
    a: tuple[str, str]
    b: tuple[str, str]


def _text_width(text: str, size: float, bold: bool = False) -> float:
    return len(text) * size * (0.64 if bold else 0.58)


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _endpoint(text: Any) -> tuple[str, str] | None:
    if not isinstance(text, str) or ":" not in text:
        return None
    node, _, iface = text.partition(":")
    return (node, iface) if node else None


def _networks(addresses: Sequence[str]) -> list[str]:
    nets: list[str] = []
    for a in addresses:
        try:
            net = str(ipaddress.ip_interface(a).network)
        except ValueError:
            continue
        if net not in nets:
            nets.append(net)
    return nets


def _host_part(address: str) -> str:
    """``10.1.2.1/24`` -> ``.1``; other prefixes and IPv6 keep the full address."""
    try:
        itf = ipaddress.ip_interface(address)
    except ValueError:
        return address
    if itf.version == 4 and itf.network.prefixlen >= 24:
        return "." + str(itf.ip).rsplit(".", 1)[1]
    return str(itf.ip)


class _Canvas:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, item: str) -> None:
        self.items.append(item)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: float = 11,
        anchor: str = "middle",
        bold: bool = False,
        fill: str = "#222222",
        cls: str = "",
    ) -> None:
        weight = ' font-weight="bold"' if bold else ""
        klass = f' class="{cls}"' if cls else ""
        self.add(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{weight}'
            f' fill="{fill}"{klass}>{escape(text)}</text>'
        )

    def halo_text(self, x: float, y: float, text: str, size: float = 10, anchor: str = "middle") -> None:
        """Small text with a white outline so it stays readable over lines."""
        self.add(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="#333333"'
            f' stroke="#ffffff" stroke-width="3" paint-order="stroke">{escape(text)}</text>'
        )

    def line(
        self, x1: float, y1: float, x2: float, y2: float, color: str = "#555555", width: float = 1.6
    ) -> None:
        self.add(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}"'
            f' stroke-width="{width}"/>'
        )


def _draw_node(c: _Canvas, n: _Node, lang: str) -> None:
    fill, ink = STYLE.get(n.role, DEFAULT_STYLE)
    x0, y0 = n.x - n.w / 2, n.top
    c.add(
        f'<g class="node {escape(n.role)}"><title>{escape(n.name)} ({escape(_role_label(n.role, lang))})</title>'
    )
    if n.role == "router":
        c.add(
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{n.w:.1f}" height="{NODE_H}" rx="{NODE_H / 2}"'
            f' fill="{fill}" stroke="#0d2a45" stroke-width="1.5"/>'
        )
    elif n.role == "firewall":
        c.add(
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{n.w:.1f}" height="{NODE_H}" rx="3"'
            f' fill="{fill}" stroke="#5e1515" stroke-width="1.5"/>'
        )
        c.line(x0, n.y, x0 + n.w, n.y, "#c77a7a", 1)
    elif n.role == "workstation":
        c.add(
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{n.w:.1f}" height="{NODE_H - 6}" rx="3"'
            f' fill="{fill}" stroke="#3b6b2c" stroke-width="1.5"/>'
        )
        base_y = y0 + NODE_H - 6
        c.add(
            f'<path d="M{n.x - 12:.1f},{base_y + 6:.1f} L{n.x - 6:.1f},{base_y:.1f} L{n.x + 6:.1f},{base_y:.1f}'
            f' L{n.x + 12:.1f},{base_y + 6:.1f} Z" fill="#3b6b2c"/>'
        )
    elif n.role == "vantage":
        c.add(
            f'<rect x="{x0:.1f}" y="{y0 + 4:.1f}" width="{n.w:.1f}" height="{NODE_H - 8}" rx="{(NODE_H - 8) / 2}"'
            f' fill="{fill}" stroke="#a07800" stroke-width="1.2" stroke-dasharray="4 2"/>'
        )
    elif n.role == "server":
        c.add(
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{n.w:.1f}" height="{NODE_H}" rx="2"'
            f' fill="{fill}" stroke="#14324f" stroke-width="1.5"/>'
        )
        for dx in (6, 10):
            c.line(x0 + dx, y0 + 6, x0 + dx, y0 + NODE_H - 6, "#14324f", 1.2)
    else:
        c.add(
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{n.w:.1f}" height="{NODE_H}" rx="4"'
            f' fill="{fill}" stroke="#444444" stroke-width="1.5"/>'
        )
    text_y = (y0 + (NODE_H - 6) / 2 + 4) if n.role == "workstation" else n.y + 4
    c.text(n.x, text_y, n.name, size=11 if n.role == "vantage" else 12, bold=True, fill=ink)
    c.add("</g>")


def _role_label(role: str, lang: str) -> str:
    words = LEGEND.get(lang, LEGEND["fr"])
    return words.get(role, words["node"])


def _iface_label(iface: str, addrs: Sequence[str]) -> str:
    hosts = [_host_part(a) for a in addrs]
    return " ".join([iface, *hosts]) if iface else " ".join(hosts)


def topology_svg(
    topology: Mapping[str, Any],
    addresses: Mapping[str, Sequence[str]] | None = None,
    lang: str = "fr",
) -> str:
    """Draw ``{nodes: [{name, role}], segments: [{name, members}], links: [{name, endpoints}]}``.

    ``addresses`` maps ``"node:iface"`` to CIDR addresses to write on the drawing. Entries
    that are malformed are skipped; nodes named only by segments or links are drawn as plain
    devices. Returns a standalone SVG document (UTF-8 text, no XML declaration).
    """
    words = LEGEND.get(lang, LEGEND["fr"])
    addresses = addresses or {}

    nodes: dict[str, _Node] = {}
    for raw in _items(topology.get("nodes")):
        if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) and raw["name"] not in nodes:
            nodes[raw["name"]] = _Node(raw["name"], str(raw.get("role") or "node"))

    segments: list[_Segment] = []
    for raw in _items(topology.get("segments")):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            continue
        members = [e for e in (_endpoint(m) for m in _items(raw.get("members"))) if e]
        segments.append(_Segment(raw["name"], members))

    links: list[_Link] = []
    for raw in _items(topology.get("links")):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            continue
        ends = [e for e in (_endpoint(m) for m in _items(raw.get("endpoints"))) if e]
        if len(ends) == 2:
            links.append(_Link(raw["name"], ends[0], ends[1]))

    # grader vantage points ({name, segment, address}) hang on their LAN like hosts
    by_name = {seg.name: seg for seg in segments}
    vantage_addresses: dict[str, list[str]] = {}
    for raw in _items(topology.get("vantage")):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or raw["name"] in nodes:
            continue
        seg = by_name.get(str(raw.get("segment")))
        if seg is None:
            continue
        nodes[raw["name"]] = _Node(raw["name"], "vantage")
        seg.members.append((raw["name"], ""))
        if isinstance(raw.get("address"), str):
            vantage_addresses[f"{raw['name']}:"] = [raw["address"]]
    addresses = {**vantage_addresses, **addresses}

    for seg in segments:
        for node, _ in seg.members:
            nodes.setdefault(node, _Node(node, "node"))
    for link in links:
        for node, _ in (link.a, link.b):
            nodes.setdefault(node, _Node(node, "node"))

    for n in nodes.values():
        n.w = max(84.0, _text_width(n.name, 12, bold=True) + 28)

    linked = {e[0] for link in links for e in (link.a, link.b)}
    core = [n for n in nodes if nodes[n].role in CORE_ROLES or n in linked]
    core_index = {name: i for i, name in enumerate(core)}

    # anchor each segment under its first core member; hang each other node under its first segment
    anchored: dict[str, list[_Segment]] = {name: [] for name in core}
    orphans: list[_Segment] = []
    home: dict[str, _Segment] = {}
    for seg in segments:
        first_core = next((m for m, _ in seg.members if m in core_index), None)
        (anchored[first_core] if first_core else orphans).append(seg)
        for m, _ in seg.members:
            if m not in core_index and m not in home:
                home[m] = seg
                seg.hosts.append(m)
    loose = [n for n in nodes if n not in core_index and n not in home]

    for seg in segments:
        label_w = max(
            [_text_width(seg.name, 11)]
            + [_text_width(n, 10) for n in _networks(_seg_addresses(seg, addresses))]
        )
        seg.width = max(HOST_SLOT * max(1, len(seg.hosts)), 2 * label_w + 40)

    # columns: (core node or None, segments, loose nodes)
    columns: list[tuple[str | None, list[_Segment], list[str]]] = [(n, anchored[n], []) for n in core]
    columns += [(None, [s], []) for s in orphans]
    if loose:
        columns.append((None, [], loose))

    max_arc = 0
    pair_count: dict[tuple[str, str], int] = {}
    link_level: list[int] = []
    for link in links:
        ia, ib = core_index[link.a[0]], core_index[link.b[0]]
        key = (min(link.a[0], link.b[0]), max(link.a[0], link.b[0]))
        k = pair_count.get(key, 0)
        pair_count[key] = k + 1
        level = abs(ia - ib) - 1 + k if ia != ib else 1 + k
        link_level.append(level)
        max_arc = max(max_arc, level)

    has_segments = any(cols[1] for cols in columns)
    has_hosts = any(seg.hosts for seg in segments) or bool(loose)
    y_core = MARGIN + 20 + max_arc * ARC_STEP + NODE_H / 2 + (14 if max_arc else 0)
    y_seg = y_core + ROW_GAP_SEG if core else MARGIN + 30
    y_host = (y_seg + ROW_GAP_HOST) if has_segments else (y_core + ROW_GAP_SEG)

    x = float(MARGIN)
    for core_name, segs, loose_nodes in columns:
        seg_total = sum(s.width for s in segs) + COL_GAP * max(0, len(segs) - 1)
        loose_total = HOST_SLOT * len(loose_nodes)
        width = max(CORE_SLOT if core_name else 0, seg_total, loose_total)
        if core_name:
            width = max(width, nodes[core_name].w + 40)
            nodes[core_name].x, nodes[core_name].y = x + width / 2, y_core
        sx = x + (width - seg_total) / 2
        for s in segs:
            s.x1, s.x2, s.y = sx + 10, sx + s.width - 10, y_seg
            for i, h in enumerate(s.hosts):
                nodes[h].x = sx + HOST_SLOT * i + HOST_SLOT / 2 + (s.width - HOST_SLOT * len(s.hosts)) / 2
                nodes[h].y = y_host
            sx += s.width + COL_GAP
        for i, h in enumerate(loose_nodes):
            nodes[h].x = x + (width - loose_total) / 2 + HOST_SLOT * i + HOST_SLOT / 2
            nodes[h].y = y_host
        x += width + COL_GAP

    legend_y = (y_host if has_hosts else (y_seg if has_segments else y_core)) + NODE_H / 2 + 34
    total_w = max(x - COL_GAP + MARGIN, 420.0)
    total_h = legend_y + 22 + MARGIN / 2

    c = _Canvas()

    # LAN bars and the lines of their members
    for seg in segments:
        nets = _networks(_seg_addresses(seg, addresses))
        c.add(f'<g class="segment"><title>{escape(seg.name)}</title>')
        for node, iface in seg.members:
            n = nodes[node]
            bx = min(max(n.x, seg.x1 + 6), seg.x2 - 6)
            label = _iface_label(iface, addresses.get(f"{node}:{iface}", ()))
            y_node = n.bottom if node in core_index else n.top
            c.line(n.x, y_node, bx, seg.y)
            # label a third of the way from the node, so a node's several lines keep apart
            lx, ly = n.x + (bx - n.x) * 0.33, y_node + (seg.y - y_node) * 0.33
            c.halo_text(lx + 6, ly + 4, label, anchor="start")
        c.add(
            f'<rect x="{seg.x1:.1f}" y="{seg.y - BAR_H / 2:.1f}" width="{seg.x2 - seg.x1:.1f}"'
            f' height="{BAR_H}" rx="2" fill="#7a8a99"/>'
        )
        # name and network above the bar's left half, clear of the router's line in the middle
        if nets:
            c.halo_text(seg.x1, seg.y - BAR_H / 2 - 20, seg.name, size=11, anchor="start")
            c.halo_text(seg.x1, seg.y - BAR_H / 2 - 6, ", ".join(nets), size=10, anchor="start")
        else:
            c.halo_text(seg.x1, seg.y - BAR_H / 2 - 6, seg.name, size=11, anchor="start")
        c.add("</g>")

    # p2p links
    for link, level in zip(links, link_level, strict=True):
        na, nb = nodes[link.a[0]], nodes[link.b[0]]
        if na.x > nb.x:
            na, nb = nb, na
            end_a, end_b = link.b, link.a
        else:
            end_a, end_b = link.a, link.b
        nets = _networks(
            [*addresses.get(f"{end_a[0]}:{end_a[1]}", ()), *addresses.get(f"{end_b[0]}:{end_b[1]}", ())]
        )
        title = link.name + (" — " + ", ".join(nets) if nets else "")
        lab_a = _iface_label(end_a[1], addresses.get(f"{end_a[0]}:{end_a[1]}", ()))
        lab_b = _iface_label(end_b[1], addresses.get(f"{end_b[0]}:{end_b[1]}", ()))
        c.add(f'<g class="link"><title>{escape(title)}</title>')
        if level == 0:
            x1, x2 = na.x + na.w / 2, nb.x - nb.w / 2
            c.line(x1, na.y, x2, nb.y, "#1f4e79", 2.2)
            c.halo_text((x1 + x2) / 2, na.y - 8, link.name, size=11)
            if nets:
                c.halo_text((x1 + x2) / 2, na.y + 16, ", ".join(nets), size=10)
            c.halo_text(x1 + 4, na.y - 8, lab_a, size=9, anchor="start")
            c.halo_text(x2 - 4, nb.y - 8, lab_b, size=9, anchor="end")
        else:
            x1, y1 = na.x - 10, na.top
            x2, y2 = nb.x + 10, nb.top
            peak = na.top - level * ARC_STEP
            cy = 2 * peak - (y1 + y2) / 2  # control point so the curve's middle reaches `peak`
            c.add(
                f'<path d="M{x1:.1f},{y1:.1f} Q{(x1 + x2) / 2:.1f},{cy:.1f} {x2:.1f},{y2:.1f}"'
                f' fill="none" stroke="#1f4e79" stroke-width="2.2"/>'
            )
            c.halo_text((x1 + x2) / 2, peak - 6, title, size=11)
            c.halo_text(x1 - 6, y1 - 8, lab_a, size=9, anchor="end")
            c.halo_text(x2 + 6, y2 - 8, lab_b, size=9, anchor="start")
        c.add("</g>")

    for n in nodes.values():
        _draw_node(c, n, lang)

    if not nodes:
        c.text(total_w / 2, MARGIN + 40, words["empty"], size=12, fill="#666666")

    # legend
    lx = float(MARGIN)
    roles_present = list(dict.fromkeys(n.role for n in nodes.values()))
    for role in roles_present:
        fill, _ink = STYLE.get(role, DEFAULT_STYLE)
        c.add(
            f'<rect x="{lx:.1f}" y="{legend_y - 9:.1f}" width="14" height="10" rx="2" fill="{fill}"'
            f' stroke="#444444" stroke-width="0.8"/>'
        )
        label = _role_label(role, lang)
        c.text(lx + 19, legend_y, label, size=10, anchor="start", fill="#444444")
        lx += 19 + _text_width(label, 10) + 18
    if segments:
        c.add(f'<rect x="{lx:.1f}" y="{legend_y - 7:.1f}" width="22" height="6" rx="1" fill="#7a8a99"/>')
        c.text(lx + 27, legend_y, words["lan"], size=10, anchor="start", fill="#444444")
        lx += 27 + _text_width(words["lan"], 10) + 18
    if links:
        c.line(lx, legend_y - 4, lx + 22, legend_y - 4, "#1f4e79", 2.2)
        c.text(lx + 27, legend_y, words["link"], size=10, anchor="start", fill="#444444")

    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{total_w:.0f}" height="{total_h:.0f}"'
        f' viewBox="0 0 {total_w:.0f} {total_h:.0f}" role="img" font-family="{FONT}">'
        f"<title>{escape(words['title'])}</title>"
        f'<rect x="0" y="0" width="{total_w:.0f}" height="{total_h:.0f}" fill="#ffffff"/>'
    )
    return head + "".join(c.items) + "</svg>"


def _seg_addresses(seg: _Segment, addresses: Mapping[str, Sequence[str]]) -> list[str]:
    return [a for node, iface in seg.members for a in addresses.get(f"{node}:{iface}", ())]


def cidr_addresses(value: Any) -> list[str]:
    """Addresses as CIDR text, from strings or ``{address: ...}`` records (the netlink probe's)."""
    items = value if isinstance(value, list) else [value] if value else []
    out = []
    for a in items:
        text = a.get("address") if isinstance(a, dict) else a
        if isinstance(text, str) and text:
            out.append(text)
    return out


def diagram_addresses(rows: Sequence[Mapping[str, Any]] | None) -> dict[str, list[str]]:
    """``node:iface`` -> global addresses, from the addressing artifact's rows (link-local and
    loopback ones would only clutter the drawing)."""
    out: dict[str, list[str]] = {}
    for r in rows or []:
        keep = []
        for a in cidr_addresses(r.get("addresses")):
            try:
                itf = ipaddress.ip_interface(a)
            except ValueError:
                continue
            if not (itf.is_link_local or itf.is_loopback):
                keep.append(a)
        out[f"{r.get('node')}:{r.get('iface')}"] = keep
    return out
