"""DNS probe (dnspython): one query sent by the grader itself to a given server, from inside a
lab namespace. The socket is created by dnspython in the calling (probe) thread."""

from __future__ import annotations

from functools import partial
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from labkit.adapters.probes.registry import probe

__all__ = ["dns_query"]


def _rdata(rdtype: int, rd: Any) -> dict[str, Any]:
    if rdtype == dns.rdatatype.SRV:
        return {"priority": rd.priority, "weight": rd.weight, "port": rd.port,
                "target": rd.target.to_text(omit_final_dot=True).lower()}
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return {"address": rd.address}
    return {"text": rd.to_text()}


@probe("dns.dns_query")
def dns_query(
    server: str,
    qname: str,
    rdtype: str = "A",
    *,
    ev_id: str,
    source: str,
    check: str | None = None,
    timeout: float = 2.0,
    port: int = 53,
) -> Evidence:
    """Ask ``server`` for ``qname``/``rdtype`` over UDP (TCP if the answer is truncated).

    parsed: ``rcode`` (NOERROR, NXDOMAIN, ...), ``answers`` (list of dicts: SRV ``priority``,
    ``weight``, ``port``, ``target``; A/AAAA ``address``; else ``text``), ``authoritative``.
    No answer within ``timeout`` (nothing listens, dropped): ok=False with the reason.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    action = f"dig @{server} -p {port} {qname} {rdtype}"
    base = partial(evidence, ev_id=ev_id, check=check, kind="dns", source=source,
                   target=f"{server}:{port}", action=action)
    meta: dict[str, Any] = {"netns": netns, "qname": qname, "rdtype": rdtype}
    try:
        ip_literal(server)
        rdt = dns.rdatatype.from_text(rdtype)
        if not 0 < timeout <= 60:
            raise ValueError("timeout must be between 0 and 60 s")
        query = dns.message.make_query(qname, rdt)
    except (ValueError, dns.exception.DNSException) as exc:
        return base(started_at=started, ok=False, error=describe_exc(exc), meta=meta)
    try:
        resp = dns.query.udp(query, server, port=port, timeout=timeout)
        if resp.flags & dns.flags.TC:
            resp = dns.query.tcp(query, server, port=port, timeout=timeout)
            meta["transport"] = "tcp"
    except dns.exception.Timeout:
        return base(started_at=started, ok=False, meta=meta,
                    error=f"no DNS answer from {server} within {timeout} s")
    except (OSError, dns.exception.DNSException) as exc:
        return base(started_at=started, ok=False, meta=meta, error=f"DNS query failed: {describe_exc(exc)}")
    answers = [_rdata(rrset.rdtype, rd) for rrset in resp.answer if rrset.rdtype == rdt for rd in rrset]
    parsed = {"rcode": dns.rcode.to_text(resp.rcode()), "answers": answers,
              "authoritative": bool(resp.flags & dns.flags.AA)}
    return base(started_at=started, ok=True, raw=resp.to_text(), parsed=parsed, meta=meta)
