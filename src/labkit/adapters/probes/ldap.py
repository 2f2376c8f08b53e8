"""LDAP probe (ldap3): bind and search a directory from inside a lab namespace.

ldap3's synchronous strategy opens its socket in the calling (probe) thread. LDAPS is the
default: Samba AD refuses simple binds over plain LDAP unless told otherwise, and its
self-signed certificate is accepted without validation (the grader checks answers, not PKI).
"""

from __future__ import annotations

import math
import ssl
from functools import partial
from typing import Any

from ldap3 import BASE, LEVEL, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPSocketOpenError

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow

__all__ = ["ldap_search"]

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
