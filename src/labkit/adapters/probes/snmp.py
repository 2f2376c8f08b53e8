"""SNMP GET probes (v3 USM, v1/v2c community) with the pysnmp 7 asyncio API.

Each call runs a fresh asyncio event loop in the calling thread, so the UDP socket is
created in that thread's network namespace. Numeric OIDs only: no MIB is loaded for the
request or the answer (pysnmp still uses its own bundled base MIBs internally).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from functools import partial
from typing import Any

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from labkit.adapters.probes.registry import probe

__all__ = ["AUTH_PROTOCOLS", "PRIV_PROTOCOLS", "snmp_get_community", "snmp_get_v3"]

# Names accepted for auth_protocol / priv_protocol (case-insensitive, '-' and '_' ignored),
# mapped to pysnmp 7 constants in pysnmp.hlapi.v3arch.asyncio (the usm*Protocol names are aliases).
AUTH_PROTOCOLS: dict[str, str] = {
    "NONE": "USM_AUTH_NONE",
    "MD5": "USM_AUTH_HMAC96_MD5",
    "SHA": "USM_AUTH_HMAC96_SHA",
    "SHA1": "USM_AUTH_HMAC96_SHA",
    "SHA224": "USM_AUTH_HMAC128_SHA224",
    "SHA256": "USM_AUTH_HMAC192_SHA256",
    "SHA384": "USM_AUTH_HMAC256_SHA384",
    "SHA512": "USM_AUTH_HMAC384_SHA512",
}
PRIV_PROTOCOLS: dict[str, str] = {
    "NONE": "USM_PRIV_NONE",
    "DES": "USM_PRIV_CBC56_DES",
    "3DES": "USM_PRIV_CBC168_3DES",
    "AES": "USM_PRIV_CFB128_AES",
    "AES128": "USM_PRIV_CFB128_AES",
    # net-snmp's AES-192 / AES-256 use Blumenthal key extension; the "-C" (Cisco) variants Reeder.
    "AES192": "USM_PRIV_CFB192_AES_BLUMENTHAL",
    "AES256": "USM_PRIV_CFB256_AES_BLUMENTHAL",
    "AES192C": "USM_PRIV_CFB192_AES",
    "AES256C": "USM_PRIV_CFB256_AES",
}

_EXCEPTION_VALUES = {"NoSuchObject": "noSuchObject", "NoSuchInstance": "noSuchInstance",
                     "EndOfMibView": "endOfMibView"}


_compiled: dict[tuple[str, str, str | bytes], Any] = {}


def _cached_compile(source: Any, filename: str, mode: str, *args: Any, **kwargs: Any) -> Any:
    """``compile`` that remembers code objects of identical (file name, mode, source) triples."""
    if args or kwargs or not isinstance(source, str | bytes):
        return compile(source, filename, mode, *args, **kwargs)
    key = (str(filename), mode, source)
    code = _compiled.get(key)
    if code is None:
        code = _compiled[key] = compile(source, filename, mode)
    return code


class _CachedRunpy:
    """Stand-in for ``runpy`` inside ``pysnmp.smi.builder``: same behaviour, cached compilation.

    pysnmp 7 loads its bundled MIB modules (SNMPv2-MIB, SNMP-FRAMEWORK-MIB, ...) for every new
    ``SnmpEngine``, compiling their source twice each time (``MibSource.read`` and then
    ``runpy.run_path``): about 0.4 s of CPU, holding the GIL, per engine and so per probe.
    Only compilation is cached; each engine still executes the modules into a fresh
    namespace of its own, so no MIB state is shared between probes.
    """

    def __init__(self, real: Any):
        self._real = real

    def run_path(self, path_name: str, init_globals: dict[str, Any] | None = None,
                 run_name: str | None = None) -> dict[str, Any]:
        if not str(path_name).endswith(".py"):
            return self._real.run_path(path_name, init_globals, run_name)  # type: ignore[no-any-return]
        with open(path_name, "rb") as f:
            code = _cached_compile(f.read(), path_name, "exec")
        mod_globals: dict[str, Any] = dict(init_globals or {})
        mod_globals.update(__name__=run_name or "<run_path>", __file__=path_name, __cached__=None,
                           __doc__=None, __loader__=None, __package__=None, __spec__=None)
        exec(code, mod_globals)  # noqa: S102 - what runpy.run_path does, minus recompiling
        return mod_globals.copy()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


_patch_lock = threading.Lock()


def _speed_up_mib_loading() -> None:
    """Install the compile cache into ``pysnmp.smi.builder`` (once; no-op if pysnmp changed)."""
    from pysnmp.smi import builder

    with _patch_lock:
        real = getattr(builder, "runpy", None)
        if real is None or isinstance(real, _CachedRunpy) or not hasattr(real, "run_path"):
            return
        builder.compile = _cached_compile  # type: ignore[attr-defined]  # shadows the builtin there
        builder.runpy = _CachedRunpy(real)  # type: ignore[attr-defined]


def _norm(name: str) -> str:
    return name.upper().replace("-", "").replace("_", "")


def _protocol(table: dict[str, str], name: str | None, what: str) -> Any:
    from pysnmp.hlapi.v3arch import asyncio as hl

    key = _norm(name) if name else "NONE"
    if key not in table:
        raise ValueError(f"unknown SNMP {what} protocol {name!r}; use one of {', '.join(sorted(table))}")
    return getattr(hl, table[key])


def _check_oids(oids: list[str] | tuple[str, ...]) -> list[str]:
    if isinstance(oids, str):
        oids = [oids]
    out = []
    for oid in oids:
        text = oid.strip().lstrip(".")
        parts = text.split(".")
        if not text or not all(p.isdigit() for p in parts) or len(parts) < 2:
            raise ValueError(f"{oid!r} is not a numeric OID; use numbers like 1.3.6.1.2.1.1.5.0")
        out.append(text)
    if not out:
        raise ValueError("no OID given")
    return out


def _render_value(value: Any) -> tuple[str, str]:
    tname = type(value).__name__
    if tname in _EXCEPTION_VALUES:
        return _EXCEPTION_VALUES[tname], tname
    try:
        text = value.prettyPrint()
    except Exception:  # noqa: BLE001 - never fail on rendering
        text = str(value)
    return str(text), tname


async def _get(host: str, port: int, auth_data: Any, oids: list[str], timeout: float,
               retries: int) -> dict[str, Any]:
    from pysnmp.hlapi.v3arch import asyncio as hl

    _speed_up_mib_loading()
    engine = hl.SnmpEngine()
    try:
        target = await hl.UdpTransportTarget.create((host, port), timeout=timeout, retries=retries)
        err_ind, err_status, err_index, var_binds = await hl.get_cmd(
            engine,
            auth_data,
            target,
            hl.ContextData(),
            *[hl.ObjectType(hl.ObjectIdentity(oid)) for oid in oids],
            lookupMib=False,
        )
    finally:
        engine.close_dispatcher()
    values: dict[str, str] = {}
    types: dict[str, str] = {}
    for vb in var_binds:
        name, value = vb[0], vb[1]
        oid = str(name.getOid() if hasattr(name, "getOid") else name)
        values[oid], types[oid] = _render_value(value)
    status = None
    if err_ind is None and err_status and int(err_status) != 0:
        status = err_status.prettyPrint() if hasattr(err_status, "prettyPrint") else str(err_status)
    if status:
        # The agent refused the request (e.g. authorizationError when VACM wants a higher
        # security level); the varbinds are the request's own, not values.
        values, types = {}, {}
    return {
        "answered": err_ind is None,
        "values": values,
        "types": types,
        "error_indication": str(err_ind) if err_ind is not None else None,
        "error_indication_type": type(err_ind).__name__ if err_ind is not None else None,
        "error_status": status,
        "error_index": int(err_index) if status else None,
    }


def _run_loop(coro_factory: Any, hard_timeout: float) -> dict[str, Any]:
    """Run ``coro_factory()`` on a fresh event loop in this thread, bounded by ``hard_timeout``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("an asyncio loop is already running in this thread; call the probe "
                           "from a plain thread (run_in_netns does)")
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)  # pysnmp's dispatcher looks the loop up itself
        return loop.run_until_complete(asyncio.wait_for(coro_factory(), hard_timeout))
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _snmp_get(
    *, host: str, port: int, oids: list[str] | tuple[str, ...], make_auth: Any, action: str,
    ev_id: str, source: str, check: str | None, timeout: float, retries: int,
    meta: dict[str, Any], netns: str,
) -> Evidence:
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="snmp", source=source,
                   target=f"{host}:{port}", action=action)
    meta = {"netns": netns, **meta, "timeout_s": timeout, "retries": retries}
    try:
        ip_literal(host)
        oid_list = _check_oids(oids)
        if not 0 < timeout <= 60 or not 0 <= retries <= 10:
            raise ValueError("timeout must be between 0 and 60 s and retries between 0 and 10")
        auth_data = make_auth()
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)

    # v3 may need an engine-discovery round trip first: allow two full request cycles.
    hard_timeout = 2 * (retries + 1) * timeout + 2.0
    try:
        parsed = _run_loop(lambda: _get(host, port, auth_data, oid_list, timeout, retries), hard_timeout)
    except TimeoutError:
        parsed = {"answered": False, "values": {}, "types": {},
                  "error_indication": f"no answer within {hard_timeout} s (probe deadline)",
                  "error_indication_type": "ProbeDeadline", "error_status": None, "error_index": None}
    except Exception as exc:  # noqa: BLE001 - the probe could not run
        return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)

    if parsed["answered"] and parsed["error_status"]:
        lines = [f"answered with error-status {parsed['error_status']} (index {parsed['error_index']})"]
    elif parsed["answered"]:
        lines = [f"{oid} = {parsed['types'][oid]}: {val}" for oid, val in parsed["values"].items()]
    else:
        lines = [f"no answer: {parsed['error_indication']}"]
    return base(started_at=started, ok=True, raw="\n".join(lines), parsed=parsed, meta=meta)


@probe("snmp.snmp_get_v3")
def snmp_get_v3(
    host: str,
    oids: list[str],
    *,
    user: str,
    auth_protocol: str | None,
    auth_key: str | None,
    priv_protocol: str | None,
    priv_key: str | None,
    ev_id: str,
    source: str,
    check: str | None = None,
    timeout: float = 1.0,
    retries: int = 1,
    port: int = 161,
) -> Evidence:
    """SNMPv3 (USM) GET of numeric ``oids``; security level follows the protocols given.

    parsed: ``answered``, ``values`` {oid: text}, ``error_indication`` (e.g. "Unknown USM
    user", "Wrong SNMP PDU digest", "Unsupported SNMP security level", a timeout),
    ``error_status`` (PDU error such as noSuchName or authorizationError, or null; then
    ``values`` is empty: the agent answered but gave nothing), plus ``types`` and
    ``error_indication_type`` (pysnmp class name, e.g. UnknownUserName, WrongDigest,
    RequestTimedOut). A missing answer or a USM report is ok=True, answered=False.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    level = "noAuthNoPriv" if not auth_protocol or _norm(auth_protocol) == "NONE" else (
        "authNoPriv" if not priv_protocol or _norm(priv_protocol) == "NONE" else "authPriv")

    def make_auth() -> Any:
        from pysnmp.hlapi.v3arch import asyncio as hl

        auth = _protocol(AUTH_PROTOCOLS, auth_protocol if level != "noAuthNoPriv" else None, "auth")
        priv = _protocol(PRIV_PROTOCOLS, priv_protocol if level == "authPriv" else None, "privacy")
        if level != "noAuthNoPriv" and not auth_key:
            raise ValueError("auth_key is required with an auth protocol")
        if level == "authPriv" and not priv_key:
            raise ValueError("priv_key is required with a privacy protocol")
        return hl.UsmUserData(
            user,
            authKey=auth_key if level != "noAuthNoPriv" else None,
            privKey=priv_key if level == "authPriv" else None,
            authProtocol=auth,
            privProtocol=priv,
        )

    action = (f"snmpget -v3 -l {level} -u {user}"
              + (f" -a {auth_protocol}" if level != "noAuthNoPriv" else "")
              + (f" -x {priv_protocol}" if level == "authPriv" else "")
              + f" {host}:{port} {' '.join(oids) if not isinstance(oids, str) else oids}")
    meta = {"version": "3", "user": user, "security_level": level,
            "auth_protocol": auth_protocol if level != "noAuthNoPriv" else None,
            "priv_protocol": priv_protocol if level == "authPriv" else None}
    return _snmp_get(host=host, port=port, oids=oids, make_auth=make_auth, action=action, ev_id=ev_id,
                     source=source, check=check, timeout=timeout, retries=retries, meta=meta, netns=netns)


@probe("snmp.snmp_get_community")
def snmp_get_community(
    host: str,
    oids: list[str],
    *,
    community: str,
    version: str = "2c",
    ev_id: str,
    source: str,
    check: str | None = None,
    timeout: float = 1.0,
    retries: int = 1,
    port: int = 161,
) -> Evidence:
    """SNMPv1/v2c GET of numeric ``oids`` with ``community`` (never recorded in the evidence).

    parsed as in :func:`snmp_get_v3`. An unknown community gets no answer from net-snmp:
    answered=False with a timeout error_indication, ok=True.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent

    def make_auth() -> Any:
        from pysnmp.hlapi.v3arch import asyncio as hl

        if version not in ("1", "2c"):
            raise ValueError(f"SNMP version {version!r} is not a community version; use '1' or '2c'")
        return hl.CommunityData(community, mpModel=0 if version == "1" else 1)

    action = (f"snmpget -v {version} -c <community> {host}:{port} "
              f"{' '.join(oids) if not isinstance(oids, str) else oids}")
    meta = {"version": version}
    return _snmp_get(host=host, port=port, oids=oids, make_auth=make_auth, action=action, ev_id=ev_id,
                     source=source, check=check, timeout=timeout, retries=retries, meta=meta, netns=netns)


@probe("snmp.raw_exchange")
def raw_exchange(host: str, src_ip: str, packet_hex: str, marker_hex: str, *, kind_label: str, ev_id: str, source: str,
              check: str | None, timeout: float, meta: dict[str, Any]) -> Evidence:
    """Send ``packet`` to ``host``:161 from ``src_ip``; answered = a datagram came back from
    host:161 carrying ``marker`` (the request id / message id encoding). Both are given in
    hexadecimal (JSON has no bytes)."""
    packet, marker = bytes.fromhex(packet_hex), bytes.fromhex(marker_hex)
    netns = assert_in_lab_netns()
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="snmp", source=source, target=f"{host}:161",
                   action=f"{kind_label} from {src_ip}")
    meta = {"netns": netns, "source_address": src_ip, **meta}
    replies = 0
    answered = False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((src_ip, 0))
            sock.settimeout(0.2)
            sock.sendto(packet, (host, 161))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not answered:
                try:
                    data, peer = sock.recvfrom(65535)
                except TimeoutError:
                    continue
                if peer == (host, 161):
                    replies += 1
                    answered = data[:1] == b"\x30" and marker in data
    except OSError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    parsed = {"answered": answered, "replies": replies, "source_address": src_ip}
    return base(started_at=started, ok=True, parsed=parsed, meta=meta,
                raw=f"{kind_label} from {src_ip}: " + ("answered" if answered else "no answer"))
