"""LDAP probes (ldap3): bind, search and write a directory from inside a lab namespace.

ldap3's synchronous strategy opens its socket in the calling (probe) thread. LDAPS is the
default: Samba AD refuses simple binds over plain LDAP unless told otherwise, and its
self-signed certificate is accepted without validation (the grader checks answers, not PKI).
"""

from __future__ import annotations

import base64
import math
import ssl
from functools import partial
from typing import Any

from ldap3 import BASE, LEVEL, MODIFY_ADD, MODIFY_DELETE, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPSocketOpenError

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from labkit.adapters.probes.registry import probe

__all__ = ["ldap_modify", "ldap_search"]

_SCOPES = {"base": BASE, "one": LEVEL, "sub": SUBTREE}
_MAX_ENTRIES = 2000


def _plain(value: Any) -> Any:
    """JSON-able copy of an attribute value (bytes as text when they are text, else hex)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@probe("ldap.ldap_search")
def ldap_search(
    host: str,
    queries: list[dict[str, Any]],
    *,
    bind_user: str,
    password: str,
    ev_id: str,
    source: str,
    check: str | None = None,
    use_ssl: bool = True,
    port: int | None = None,
    timeout: float = 5.0,
) -> Evidence:
    """Bind as ``bind_user`` (simple bind) and run ``queries`` on one connection.

    A query is ``{"name", "base", "filter", "scope": base|one|sub, "attributes": [...]}``.
    parsed: ``bound`` (bool), ``bind_result`` (LDAP result name, e.g. invalidCredentials),
    ``results``: ``{name: {"result": ..., "entries": [{"dn", "attributes"}]}}`` (no search is
    sent when the bind is refused). Nothing listening, TLS failure or timeout: ok=False.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    port = port or (636 if use_ssl else 389)
    scheme = "ldaps" if use_ssl else "ldap"
    names = ", ".join(str(q.get("name")) for q in queries)
    action = f"ldap bind {bind_user} on {scheme}://{host}:{port}; search {names}"
    base = partial(evidence, ev_id=ev_id, check=check, kind="ldap", source=source,
                   target=f"{host}:{port}", action=action)
    meta: dict[str, Any] = {"netns": netns, "bind_user": bind_user, "scheme": scheme}
    try:
        ip_literal(host)
        if not 0 < timeout <= 120:
            raise ValueError("timeout must be between 0 and 120 s")
        for q in queries:
            if q.get("scope", "sub") not in _SCOPES or not q.get("name"):
                raise ValueError(f"query {q!r} needs a name and a scope among base, one, sub")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)

    tls = Tls(validate=ssl.CERT_NONE) if use_ssl else None
    server = Server(host, port=port, use_ssl=use_ssl, tls=tls, get_info=NONE, connect_timeout=timeout)
    # ldap3 packs receive_timeout into SO_RCVTIMEO as a whole number of seconds
    conn = Connection(server, user=bind_user, password=password, receive_timeout=max(1, math.ceil(timeout)),
                      raise_exceptions=False, read_only=True, auto_referrals=False)
    lines: list[str] = []
    try:
        conn.open()
        bound = bool(conn.bind())
        bind_result = str((conn.result or {}).get("description", ""))
        lines.append(f"bind {bind_user}: {bind_result}")
        results: dict[str, Any] = {}
        if bound:
            for q in queries:
                conn.search(q["base"], q.get("filter", "(objectClass=*)"), search_scope=_SCOPES[q.get("scope", "sub")],
                            attributes=q.get("attributes") or [], size_limit=_MAX_ENTRIES)
                entries = [{"dn": r["dn"], "attributes": _plain(dict(r.get("attributes") or {}))}
                           for r in (conn.response or []) if r.get("type") == "searchResEntry"]
                result = str((conn.result or {}).get("description", ""))
                results[q["name"]] = {"result": result, "entries": entries}
                lines.append(f"search {q['name']} base={q['base']!r} filter={q.get('filter')!r}: "
                             f"{result}, {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
                lines += [f"  {e['dn']}: {e['attributes']}" for e in entries]
    except LDAPSocketOpenError as exc:
        return base(started_at=started, ok=False, meta=meta,
                    error=f"cannot open {scheme}://{host}:{port}: {describe_exc(exc)}")
    except (LDAPException, OSError, ssl.SSLError) as exc:
        return base(started_at=started, ok=False, meta=meta, raw="\n".join(lines),
                    error=f"LDAP exchange failed: {describe_exc(exc)}")
    finally:
        try:
            conn.unbind()
        except (LDAPException, OSError):
            pass
    parsed = {"bound": bound, "bind_result": bind_result, "results": results}
    return base(started_at=started, ok=True, raw="\n".join(lines), parsed=parsed, meta=meta)


_OPS = ("add", "delete", "add_member", "remove_member")
_MAX_OPS = 40


@probe("ldap.ldap_modify")
def ldap_modify(
    host: str,
    ops: list[dict[str, Any]],
    *,
    bind_user: str,
    password: str,
    ev_id: str,
    source: str,
    check: str | None = None,
    port: int = 636,
    timeout: float = 5.0,
) -> Evidence:
    """Bind as ``bind_user`` over LDAPS and run write operations, in order, on one connection;
    every operation runs whatever the previous ones answered (a clean-up step always runs).

    An operation is ``{"name", "op", "dn", ...}``:
    - ``add``: ``object_class`` (list), ``attributes`` (dict), ``binary_attributes`` (dict of
      base64 values: a call is JSON, it has no bytes) and, optionally, ``password``,
      sent as ``unicodePwd`` (quoted, UTF-16LE, as AD wants it; never recorded);
    - ``delete``;
    - ``add_member`` / ``remove_member``: ``member`` (a DN) added to / removed from ``dn``.

    parsed: ``bound``, ``bind_result``, ``ops``: ``{name: {"op", "dn", "result", "message"}}``
    (``result`` is the LDAP result name: success, constraintViolation, noSuchObject...).
    Nothing listening, TLS failure or timeout: ok=False.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    names = ", ".join(f"{o.get('op')} {o.get('name')}" for o in ops)
    action = f"ldap bind {bind_user} on ldaps://{host}:{port}; {names}"
    base = partial(evidence, ev_id=ev_id, check=check, kind="ldap", source=source,
                   target=f"{host}:{port}", action=action)
    meta: dict[str, Any] = {"netns": netns, "bind_user": bind_user, "scheme": "ldaps"}
    try:
        ip_literal(host)
        if not 0 < timeout <= 120:
            raise ValueError("timeout must be between 0 and 120 s")
        if not 0 < len(ops) <= _MAX_OPS:
            raise ValueError(f"between 1 and {_MAX_OPS} operations")
        for o in ops:
            if o.get("op") not in _OPS or not o.get("name") or not o.get("dn"):
                raise ValueError(f"operation {o.get('name')!r} needs a name, a dn and an op among {', '.join(_OPS)}")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    secrets_seen = [password] + [str(o["password"]) for o in ops if o.get("password")]

    def masked(text: str) -> str:
        for s in secrets_seen:
            text = text.replace(s, "(password)")
        return text

    server = Server(host, port=port, use_ssl=True, tls=Tls(validate=ssl.CERT_NONE), get_info=NONE,
                    connect_timeout=timeout)
    conn = Connection(server, user=bind_user, password=password, receive_timeout=max(1, math.ceil(timeout)),
                      raise_exceptions=False, read_only=False, auto_referrals=False)
    lines: list[str] = []
    results: dict[str, Any] = {}
    try:
        conn.open()
        bound = bool(conn.bind())
        bind_result = str((conn.result or {}).get("description", ""))
        lines.append(f"bind {bind_user}: {bind_result}")
        if bound:
            for o in ops:
                kind, dn = o["op"], o["dn"]
                if kind == "add":
                    attrs = dict(o.get("attributes") or {})
                    attrs.update({k: base64.b64decode(v) for k, v in (o.get("binary_attributes") or {}).items()})
                    if o.get("password"):
                        attrs["unicodePwd"] = f'"{o["password"]}"'.encode("utf-16-le")
                    conn.add(dn, list(o.get("object_class") or []), attrs)
                elif kind == "delete":
                    conn.delete(dn)
                else:
                    change = MODIFY_ADD if kind == "add_member" else MODIFY_DELETE
                    conn.modify(dn, {"member": [(change, [o["member"]])]})
                res = conn.result or {}
                results[o["name"]] = {"op": kind, "dn": dn, "result": str(res.get("description", "")),
                                      "message": masked(str(res.get("message", "")))[:300]}
                lines.append(f"{kind} {o['name']} {dn}: {results[o['name']]['result']} "
                             f"{results[o['name']]['message']}".rstrip())
    except LDAPSocketOpenError as exc:
        return base(started_at=started, ok=False, meta=meta,
                    error=f"cannot open ldaps://{host}:{port}: {describe_exc(exc)}")
    except (LDAPException, OSError, ssl.SSLError) as exc:
        return base(started_at=started, ok=False, meta=meta, raw="\n".join(lines), parsed={"ops": results},
                    error=f"LDAP exchange failed: {describe_exc(exc)}")
    finally:
        try:
            conn.unbind()
        except (LDAPException, OSError):
            pass
    parsed = {"bound": bound, "bind_result": bind_result, "ops": results}
    return base(started_at=started, ok=True, raw="\n".join(lines), parsed=parsed, meta=meta)
