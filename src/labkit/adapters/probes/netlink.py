"""Kernel state of the namespace the calling thread is in, read (or changed) over netlink.

``IPRoute()`` is created inside the calling thread, so its netlink socket belongs to that
thread's network namespace; nothing here names or enters a namespace by itself.
"""

from __future__ import annotations

import socket
from functools import partial
from typing import Any

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, utcnow
from labkit.adapters.probes.registry import probe

__all__ = ["RT_PROTOCOLS", "addresses", "routes", "set_link_state"]

# /etc/iproute2/rt_protos (+ rt_protos.d) names, without reading host files.
RT_PROTOCOLS: dict[int, str] = {
    0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
    10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
    17: "mrouted", 18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis",
    188: "ospf", 189: "rip", 190: "ripng", 191: "nhrp", 192: "eigrp", 193: "ldp", 194: "sharp",
    195: "pbr", 196: "static", 197: "openfabric", 198: "srte",  # FRR's rt_protos.d/frr.conf
}
_RT_TYPES = {0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
             6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}
_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
_IFF_UP = 0x1
_IFF_LOWER_UP = 0x10000
_MAIN_TABLE = 254


def _iproute() -> Any:
    from pyroute2 import IPRoute

    return IPRoute()


def _ifnames(ipr: Any) -> dict[int, str]:
    return {link["index"]: link.get("ifname") for link in ipr.get_links()}


def _route_entry(msg: Any, names: dict[int, str]) -> dict[str, Any]:
    dst = msg.get("dst")
    plen = msg["dst_len"]
    proto = msg["proto"]
    oif = msg.get("oif")
    entry: dict[str, Any] = {
        "dst": f"{dst or '0.0.0.0'}/{plen}",
        "prefixlen": plen,
        "protocol": RT_PROTOCOLS.get(proto, str(proto)),
        "protocol_num": proto,
        "type": _RT_TYPES.get(msg["type"], str(msg["type"])),
        "scope": _SCOPES.get(msg["scope"], str(msg["scope"])),
        "gateway": msg.get("gateway"),
        "oif": names.get(oif) if oif is not None else None,
        "metric": msg.get("priority"),
        "prefsrc": msg.get("prefsrc"),
    }
    multipath = msg.get("multipath")
    if multipath:
        entry["nexthops"] = [
            {"gateway": nh.get("gateway"), "oif": names.get(nh["oif"]), "weight": nh["hops"] + 1}
            for nh in multipath
        ]
    return entry


def _route_line(r: dict[str, Any]) -> str:
    dst = "default" if r["prefixlen"] == 0 else r["dst"]
    parts = [dst] if r["type"] == "unicast" else [r["type"], dst]
    if r["gateway"]:
        parts += ["via", r["gateway"]]
    if r["oif"]:
        parts += ["dev", r["oif"]]
    for nh in r.get("nexthops", []):
        parts += ["nexthop", "via", str(nh["gateway"]), "dev", str(nh["oif"]), "weight", str(nh["weight"])]
    parts += ["proto", r["protocol"]]
    if r["scope"] != "global":
        parts += ["scope", r["scope"]]
    if r["prefsrc"]:
        parts += ["src", r["prefsrc"]]
    if r["metric"] is not None:
        parts += ["metric", str(r["metric"])]
    return " ".join(parts)


@probe("netlink.routes")
def routes(*, ev_id: str, source: str, check: str | None = None) -> Evidence:
    """IPv4 routes of the main table of this thread's namespace.

    parsed: list of {``dst`` (CIDR), ``prefixlen``, ``protocol`` (kernel, boot, static,
    zebra, ospf, bgp, ... or the number as text), ``protocol_num``, ``type``, ``scope``,
    ``gateway``, ``oif`` (interface name), ``metric``, ``prefsrc``, and ``nexthops`` for
    multipath routes}. raw: the same in ``ip route`` style.
    """
    netns = assert_in_lab_netns()  # refuse to touch the host's namespace
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="netlink", source=source,
                   target=f"netns:{netns}", action="ip -4 route show table main (netlink RTM_GETROUTE)")
    meta = {"netns": netns}
    try:
        with _iproute() as ipr:
            names = _ifnames(ipr)
            msgs = ipr.get_routes(family=socket.AF_INET, table=_MAIN_TABLE)
            entries = [_route_entry(m, names) for m in msgs]
    except Exception as exc:  # noqa: BLE001 - the probe could not run
        return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
    entries.sort(key=lambda r: (r["prefixlen"] != 0, r["dst"], r["metric"] or 0))
    raw = "\n".join(_route_line(r) for r in entries)
    return base(started_at=started, ok=True, raw=raw, parsed=entries, meta=meta)


def _links(ipr: Any) -> list[dict[str, Any]]:
    out = []
    for link in ipr.get_links():
        flags = link["flags"]
        carrier = link.get("carrier")
        out.append({
            "name": link.get("ifname"),
            "index": link["index"],
            "state": "up" if flags & _IFF_UP else "down",
            "lower_up": bool(flags & _IFF_LOWER_UP),
            "operstate": (link.get("operstate") or "unknown").lower(),
            "carrier": bool(carrier) if carrier is not None else None,
            "mac": link.get("address"),
            "mtu": link.get("mtu"),
            "addresses": [],
        })
    return out


@probe("netlink.addresses")
def addresses(*, ev_id: str, source: str, check: str | None = None) -> Evidence:
    """Interfaces of this thread's namespace with their addresses.

    parsed: list of {``name``, ``index``, ``state`` (up/down: administrative), ``lower_up``,
    ``operstate``, ``carrier`` (bool), ``mac``, ``mtu``, ``addresses``: [{``address``
    (CIDR), ``family`` (4/6), ``scope``}]}.
    """
    netns = assert_in_lab_netns()  # refuse to touch the host's namespace
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="netlink", source=source,
                   target=f"netns:{netns}", action="ip addr show (netlink RTM_GETLINK + RTM_GETADDR)")
    meta = {"netns": netns}
    try:
        with _iproute() as ipr:
            links = _links(ipr)
            by_index = {link["index"]: link for link in links}
            for msg in ipr.get_addr():
                link = by_index.get(msg["index"])
                if link is None:
                    continue
                fam = 4 if msg["family"] == socket.AF_INET else 6
                addr = msg.get("local") if fam == 4 and msg.get("local") else msg.get("address")
                link["addresses"].append({
                    "address": f"{addr}/{msg['prefixlen']}",
                    "family": fam,
                    "scope": _SCOPES.get(msg["scope"], str(msg["scope"])),
                })
    except Exception as exc:  # noqa: BLE001 - the probe could not run
        return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
    links.sort(key=lambda x: x["index"])
    lines = []
    for link in links:
        carrier = {True: "carrier", False: "no-carrier", None: "carrier?"}[link["carrier"]]
        lines.append(f"{link['index']}: {link['name']}: {link['state']} {link['operstate']} {carrier} "
                     f"mtu {link['mtu']} {link['mac'] or ''}".rstrip())
        lines += [f"    inet{'6' if a['family'] == 6 else ''} {a['address']} scope {a['scope']}"
                  for a in link["addresses"]]
    return base(started_at=started, ok=True, raw="\n".join(lines), parsed=links, meta=meta)


@probe("netlink.set_link_state")
def set_link_state(iface: str, up: bool, *, ev_id: str, source: str, check: str | None = None) -> Evidence:
    """Set ``iface`` of this thread's namespace administratively up or down (a fault injection).

    kind "fault". parsed: {``iface``, ``requested`` (up/down), ``before`` and ``after``
    (state, operstate, carrier), ``changed`` (bool), ``changed_at`` (UTC ISO time the
    request was sent)}.
    """
    netns = assert_in_lab_netns()  # refuse to touch the host's namespace
    started = utcnow()
    want = "up" if up else "down"
    base = partial(evidence, ev_id=ev_id, check=check, kind="fault", source=source,
                   target=f"netns:{netns}/{iface}", action=f"ip link set dev {iface} {want}")
    meta = {"netns": netns}

    def snapshot(ipr: Any, index: int) -> dict[str, Any]:
        link = next(x for x in _links(ipr) if x["index"] == index)
        return {k: link[k] for k in ("state", "lower_up", "operstate", "carrier")}

    try:
        with _iproute() as ipr:
            found = ipr.link_lookup(ifname=iface)
            if not found:
                return base(started_at=started, ok=False, meta=meta,
                            error=f"no interface {iface!r} in namespace {netns!r}")
            index = found[0]
            before = snapshot(ipr, index)
            changed_at = utcnow()
            ipr.link("set", index=index, state=want)
            after = snapshot(ipr, index)
    except Exception as exc:  # noqa: BLE001 - the probe could not run
        return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
    parsed = {
        "iface": iface,
        "requested": want,
        "before": before,
        "after": after,
        "changed": before["state"] != after["state"],
        "changed_at": changed_at.isoformat(),
    }
    raw = (f"{iface}: {before['state']} ({before['operstate']}) -> {after['state']} ({after['operstate']}) "
           f"at {changed_at.isoformat()}")
    ok = after["state"] == want
    return base(started_at=started, ok=ok, raw=raw, parsed=parsed, meta=meta,
                error=None if ok else f"{iface} is still {after['state']} after the request")


@probe("netlink.source_address")
def source_address(cidr: str, add: bool, *, ev_id: str, source: str, check: str | None) -> Evidence:
    """Add (or remove) ``cidr`` on this vantage namespace's eth0."""
    netns = assert_in_lab_netns()  # before anything is opened
    from pyroute2 import IPRoute

    started = utcnow()
    ip, plen = cidr.split("/")
    base = partial(evidence, ev_id=ev_id, check=check, kind="netlink", source=source, target=f"{source}/eth0",
                   action=f"ip addr {'add' if add else 'del'} {cidr} dev eth0 (grader probe)")
    try:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add" if add else "del", index=idx, address=ip, prefixlen=int(plen))
    except Exception as exc:  # noqa: BLE001 - the probe could not run
        return base(started_at=started, ok=False, error=str(exc), meta={"netns": netns})
    return base(started_at=started, ok=True, parsed={"address": cidr, "added": add}, raw=cidr,
                meta={"netns": netns, "purpose": "fresh-source"})


@probe("netlink.veth_ends")
def veth_ends(only: str | None = None, *, ev_id: str, source: str, check: str | None = None) -> Evidence:
    """The veth ends of this thread's namespace: parsed is a list of [name, ifindex, peer
    ifindex] (only ``only`` when given)."""
    netns = assert_in_lab_netns()
    from pyroute2 import IPRoute

    started = utcnow()
    with IPRoute() as ipr:
        out = []
        for link in ipr.get_links():
            name, peer = link.get_attr("IFLA_IFNAME"), link.get_attr("IFLA_LINK")
            if peer and (only is None or name == only):
                out.append([str(name), int(link["index"]), int(peer)])
    return evidence(ev_id=ev_id, check=check, kind="netlink", source=source, target=only or "veth",
                    action="ip -d link show type veth (netlink)", started_at=started, ok=True, parsed=out,
                    raw="\n".join(f"{n} ifindex {i} peer {p}" for n, i, p in out), meta={"netns": netns})
