"""The topology diagram: valid, deterministic SVG whatever the input looks like."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from labkit.domain.diagram import topology_svg

NS = {"svg": "http://www.w3.org/2000/svg"}

THREE_SITES: dict[str, Any] = {
    "nodes": [
        {"name": "r-hq", "role": "router"},
        {"name": "r-br1", "role": "router"},
        {"name": "r-br2", "role": "router"},
        {"name": "pc-hq", "role": "workstation"},
        {"name": "pc-br1", "role": "workstation"},
        {"name": "pc-br2", "role": "workstation"},
    ],
    "segments": [
        {"name": "lan-hq", "members": ["r-hq:eth0", "pc-hq:eth0"]},
        {"name": "lan-br1", "members": ["r-br1:eth0", "pc-br1:eth0"]},
        {"name": "lan-br2", "members": ["r-br2:eth0", "pc-br2:eth0"]},
    ],
    "links": [
        {"name": "wan-a", "endpoints": ["r-hq:eth1", "r-br1:eth1"]},
        {"name": "wan-b", "endpoints": ["r-hq:eth2", "r-br2:eth1"]},
        {"name": "wan-c", "endpoints": ["r-br1:eth2", "r-br2:eth2"]},
    ],
}
ADDRESSES = {
    "r-hq:eth0": ["10.1.2.1/24"],
    "pc-hq:eth0": ["10.1.2.10/24"],
    "r-hq:eth1": ["172.16.0.1/30"],
    "r-br1:eth1": ["172.16.0.2/30"],
}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_three_sites() -> None:
    root = parse(topology_svg(THREE_SITES))
    words = texts(root)
    for name in ("r-hq", "r-br1", "r-br2", "pc-hq", "pc-br1", "pc-br2"):
        assert name in words
    assert {"lan-hq", "lan-br1", "lan-br2", "wan-a", "wan-c"} <= set(words)
    assert any("wan-b" in w for w in words)  # the arc over r-br1 carries its name
    assert len(root.findall(".//svg:g[@class='node router']", NS)) == 3
    assert len(root.findall(".//svg:g[@class='node workstation']", NS)) == 3
    assert len(root.findall(".//svg:g[@class='segment']", NS)) == 3
    assert len(root.findall(".//svg:g[@class='link']", NS)) == 3
    assert root.get("viewBox", "").startswith("0 0 ")


def test_is_deterministic() -> None:
    assert topology_svg(THREE_SITES, ADDRESSES) == topology_svg(THREE_SITES, ADDRESSES)


def test_layout_routers_in_a_row_hosts_below() -> None:
    root = parse(topology_svg(THREE_SITES))
    ys: dict[str, float] = {}
    xs: dict[str, float] = {}
    for t in root.iter("{http://www.w3.org/2000/svg}text"):
        if t.get("font-weight") == "bold":
            ys[t.text or ""] = float(t.get("y", "0"))
            xs[t.text or ""] = float(t.get("x", "0"))
    assert ys["r-hq"] == ys["r-br1"] == ys["r-br2"]
    assert ys["pc-hq"] > ys["r-hq"]
    assert xs["r-hq"] < xs["r-br1"] < xs["r-br2"]
    assert xs["pc-hq"] == pytest.approx(xs["r-hq"], abs=1)


def test_addresses_label_networks_and_hosts() -> None:
    words = texts(parse(topology_svg(THREE_SITES, ADDRESSES)))
    assert "lan-hq" in words and "10.1.2.0/24" in words
    assert "172.16.0.0/30" in words
    assert "eth0 .1" in words and "eth0 .10" in words


def test_names_are_escaped() -> None:
    topo = {"nodes": [{"name": "<b>&x", "role": "server"}], "segments": [], "links": []}
    svg = topology_svg(topo)
    assert "<b>" not in svg
    assert "<b>&x" in texts(parse(svg))


@pytest.mark.parametrize(
    "topo",
    [
        {},
        {"nodes": []},
        {"nodes": "oops", "segments": 3, "links": None},
        {"nodes": [{"role": "router"}, "junk", {"name": "a"}]},
        {"segments": [{"name": "lan", "members": ["x:eth0", "nocolon", 5]}]},
        {"links": [{"name": "l", "endpoints": ["a:e0"]}, {"name": "m", "endpoints": ["a:e1", "b:e1"]}]},
        {
            "nodes": [{"name": "fw", "role": "firewall"}, {"name": "sw", "role": "switch"}],
            "segments": [{"name": "dmz", "members": ["srv:eth0", "srv2:eth0"]}],
            "links": [
                {"name": "p1", "endpoints": ["fw:e1", "r:e1"]},
                {"name": "p2", "endpoints": ["fw:e2", "r:e2"]},
            ],
        },
    ],
)
def test_odd_inputs_still_give_valid_svg(topo: dict[str, Any]) -> None:
    root = parse(topology_svg(topo, lang="en"))
    assert root.tag.endswith("svg")


def test_many_hosts_widen_the_segment() -> None:
    topo = {
        "nodes": [{"name": "r1", "role": "router"}]
        + [{"name": f"pc{i}", "role": "workstation"} for i in range(5)],
        "segments": [{"name": "lan", "members": ["r1:eth0"] + [f"pc{i}:eth0" for i in range(5)]}],
    }
    root = parse(topology_svg(topo))
    bar = root.find(".//svg:g[@class='segment']/svg:rect", NS)
    assert bar is not None and float(bar.get("width", "0")) >= 5 * 120


def test_legend_in_both_languages() -> None:
    assert "routeur" in texts(parse(topology_svg(THREE_SITES, lang="fr")))
    assert "router" in texts(parse(topology_svg(THREE_SITES, lang="en")))
