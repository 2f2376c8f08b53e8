"""Host mode of the grader agent (a GNS3 host): the grader's places of one instance, made and
removed on request (ops ``host_setup``, ``host_teardown``, ``host_leftovers``).

The agent runs in the GNS3 host's own network namespace (where gns3-server and uBridge run).
For each vantage point it makes the bridge ``lkb<hash>`` the request names (the cloud node's
port), a namespace ``lk-<instance>.v.<vp>`` and a veth ``lkv<hash>`` <-> ``eth0`` between
them (:mod:`labkit.adapters.gns3.host` names them; ``instance`` is the agent's own,
``<homeid>-<name>`` on a GNS3 host). Nothing else is ever touched: only names with
labkit's prefixes, and for removal only those this instance's record or alias names.

Before it makes anything it writes what it will make to ``<state dir>/<instance>.json``
(``LABKIT_AGENT_HOST_STATE``, default /var/lib/labkit-agent/host), so a teardown after a
crash finds it from the instance name alone; bridges and veths also carry the alias
``labkit:<instance>:<vp>``. Every ``ip`` command is bounded (10 s).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from labkit.adapters.gns3.host import ALIAS_PREFIX, BRIDGE_RE, MAX_VANTAGE, alias, vantage_namespace, veth_name
from labkit.adapters.netns.nsutil import NETNS_RUN_DIR

STATE_ENV = "LABKIT_AGENT_HOST_STATE"
DEFAULT_STATE = "/var/lib/labkit-agent/host"
IP = os.environ.get("LABKIT_AGENT_IP", "ip")
_VP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,30}$")
_DEV = re.compile(r"^lk[bv][0-9a-f]{12}$")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


class HostOpError(Exception):
    """A host op refused or failed; one sentence."""


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV) or DEFAULT_STATE)


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([IP, *argv], capture_output=True, text=True, timeout=10, env=_ENV)
    if check and proc.returncode != 0:
        raise HostOpError(f"ip {' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def _links() -> dict[str, str]:
    """Interfaces of this namespace: name -> alias ('' when none)."""
    out = json.loads(_ip("-j", "link", "show").stdout or "[]")
    return {str(x["ifname"]).split("@")[0]: str(x.get("ifalias") or "") for x in out}


def _namespaces() -> set[str]:
    try:
        return {p.name for p in NETNS_RUN_DIR.iterdir()}
    except FileNotFoundError:
        return set()


def _record_path(instance: str) -> Path:
    return state_dir() / f"{instance}.json"


def _read_record(instance: str) -> dict[str, Any]:
    try:
        data = json.loads(_record_path(instance).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_record(instance: str, data: dict[str, Any]) -> None:
    d = state_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = d / f".{instance}.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, _record_path(instance))


def _entries(instance: str, vantage: Any) -> list[dict[str, Any]]:
    if not isinstance(vantage, list) or len(vantage) > MAX_VANTAGE:
        raise HostOpError(f"vantage must be a list of at most {MAX_VANTAGE} vantage points.")
    out = []
    for v in vantage:
        if not isinstance(v, dict) or not isinstance(v.get("name"), str) or not _VP.match(v["name"]):
            raise HostOpError(f"{v!r} is not a vantage point (name, address, gateway).")
        try:
            addr = ipaddress.ip_interface(str(v.get("address")))
            gw = ipaddress.ip_address(v["gateway"]) if v.get("gateway") else None
        except ValueError as exc:
            raise HostOpError(f"vantage point {v['name']!r}: {exc}.") from None
        if gw is not None and gw not in addr.network:
            raise HostOpError(f"vantage point {v['name']!r}: gateway {gw} is outside {addr.network}.")
        br = str(v.get("bridge") or "")
        if not BRIDGE_RE.match(br):
            raise HostOpError(f"vantage point {v['name']!r}: bridge {br!r} is not a labkit host bridge (lkb + 12 hex).")
        out.append({"name": v["name"], "address": str(addr), "gateway": str(gw) if gw else None,
                    "bridge": br, "veth": veth_name(br), "namespace": vantage_namespace(instance, v["name"])})
    return out


def setup(instance: str, vantage: Any, relay: Any = None) -> dict[str, Any]:
    """Make the places of ``vantage`` (idempotent: what exists is kept)."""
    entries = _entries(instance, vantage)
    targets: dict[str, str] = {}
    if relay:
        if not isinstance(relay, dict) or len(relay) > 1024:
            raise HostOpError("relay must map node addresses to vantage namespaces.")
        spaces = {e["namespace"] for e in entries}
        for a, ns in relay.items():
            if ns not in spaces:
                raise HostOpError(f"relay target {a} goes through {ns!r}, which is no vantage point of {instance!r}.")
            targets[str(ipaddress.ip_address(a))] = ns
    links = _links()
    rec = _read_record(instance)
    mine = {d for r in rec.get("vantage", []) if isinstance(r, dict) and BRIDGE_RE.match(str(r.get("bridge") or ""))
            for d in (r["bridge"], veth_name(r["bridge"]))}
    for e in entries:  # a device of that name that another instance (or nobody of labkit's) owns: refused
        mark = alias(instance, e["name"])
        for dev in (e["bridge"], e["veth"]):
            # ours: our alias, or none yet when our record names it (made just before a crash)
            if dev in links and links[dev] != mark and not (links[dev] == "" and dev in mine):
                raise HostOpError(f"{dev} exists on this host and is not {instance}'s (alias {links[dev]!r}); "
                                  "refusing to use it.")
    known = {e["name"]: e for e in rec.get("vantage", [])}
    known.update({e["name"]: e for e in entries})
    _write_record(instance, {"instance": instance, "vantage": list(known.values())})  # before anything is made
    if targets:
        _write_private(state_dir() / f"{instance}.relay.json", json.dumps({"ports": [22], "targets": targets}))
    made: list[str] = []
    spaces = _namespaces()
    for e in entries:
        br, veth, ns, mark = e["bridge"], e["veth"], e["namespace"], alias(instance, e["name"])
        if br not in links:
            _ip("link", "add", "name", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            made.append(f"bridge {br}")
        _ip("link", "set", "dev", br, "alias", mark)
        _ip("link", "set", "dev", br, "up")
        if ns not in spaces:
            _ip("netns", "add", ns)
            made.append(f"namespace {ns}")
        if veth not in links:
            _ip("link", "add", "name", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            made.append(f"veth {veth}")
        _ip("link", "set", "dev", veth, "alias", mark)
        _ip("link", "set", "dev", veth, "master", br, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        have = _ip("-n", ns, "-j", "addr", "show", "dev", "eth0").stdout
        addr = ipaddress.ip_interface(e["address"])
        if f'"{addr.ip}"' not in have:
            _ip("-n", ns, "addr", "add", e["address"], "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        if e["gateway"]:
            _ip("-n", ns, "route", "replace", "default", "via", e["gateway"])
    return {"bridges": {e["name"]: e["bridge"] for e in entries},
            "namespaces": [e["namespace"] for e in entries], "made": made}


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _found(instance: str) -> tuple[list[str], list[str]]:
    """(devices, namespaces) of ``instance`` here: from its record and from the aliases."""
    rec = _read_record(instance)
    links = _links()
    mark = f"{ALIAS_PREFIX}{instance}:"
    devs = {d for d, a in links.items() if _DEV.match(d) and a.startswith(mark)}
    names: set[str] = set()
    for e in rec.get("vantage", []):
        if not isinstance(e, dict) or not _VP.match(str(e.get("name", ""))):
            continue
        br = str(e.get("bridge") or "")
        if BRIDGE_RE.match(br):  # ours: our alias, or none yet (made just before a crash)
            devs |= {d for d in (br, veth_name(br)) if d in links and links[d] in ("", alias(instance, e["name"]))}
        names.add(vantage_namespace(instance, e["name"]))
    here = _namespaces()
    return sorted(devs), sorted(n for n in names if n in here)


def leftovers(instance: str) -> list[str]:
    devs, spaces = _found(instance)
    return [f"link {d}" for d in devs] + [f"namespace {n}" for n in spaces]


def teardown(instance: str) -> list[str]:
    """Remove the instance's namespaces (their eth0 and thus the veths), veths, bridges and
    record; idempotent."""
    devs, spaces = _found(instance)
    removed: list[str] = []
    for ns in spaces:
        _ip("netns", "del", ns)
        removed.append(f"namespace {ns}")
    links = _links()
    for d in sorted(devs, key=lambda d: d.startswith("lkb")):  # veths first, then bridges
        if d in links:
            # a veth whose peer's namespace was just deleted goes away on its own, a moment later
            proc = _ip("link", "del", "dev", d, check=False)
            if proc.returncode != 0 and "Cannot find device" not in proc.stderr:
                raise HostOpError(f"ip link del dev {d} failed: {proc.stderr.strip() or proc.returncode}")
            removed.append(f"link {d}")
    deadline = time.monotonic() + 5.0
    left = leftovers(instance)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leftovers(instance)
    if left:
        raise HostOpError(f"could not remove {', '.join(left)}; run the teardown again.")
    for p in (_record_path(instance), state_dir() / f"{instance}.relay.json"):
        p.unlink(missing_ok=True)
    return removed


def relay_file(instance: str) -> Path:
    """The relay file ``setup`` writes for ``instance`` (may not exist)."""
    return state_dir() / f"{instance}.relay.json"


def handle(op: str, req: dict[str, Any], instance: str) -> dict[str, Any]:
    """The host ops of the agent for its own ``instance`` (a request naming another is refused)."""
    if req.get("instance", instance) != instance:
        raise HostOpError(f"this agent session serves instance {instance!r}, not {req.get('instance')!r}.")
    if op == "host_setup":
        return setup(instance, req.get("vantage"), req.get("relay"))
    if op == "host_teardown":
        return {"removed": teardown(instance)}
    if op == "host_leftovers":
        return {"left": leftovers(instance)}
    raise HostOpError(f"unknown host op {op!r}.")
