"""Kerberos probe: ask a KDC for a ticket (AS exchange) with a password, from inside a lab
namespace.

There is no Kerberos client library among labkit's dependencies, so this probe runs MIT
``kinit`` (Debian package krb5-user) as a subprocess. The probe thread is already in the
vantage namespace (a child process inherits the calling thread's namespaces); the command
is also wrapped in ``nsenter --net=/run/netns/<that namespace>`` so that it says where it
runs and can never run anywhere else. Only the network namespace is entered: the host's
files are used, with a temporary ``KRB5_CONFIG`` (this realm, this KDC, TCP only, no DNS)
and a temporary credential cache, both deleted afterwards. The password goes on stdin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import partial
from typing import Any

from labkit.adapters.netns.nsutil import NETNS_RUN_DIR, assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import evidence, ip_literal, utcnow

__all__ = ["kinit_password"]

# kinit messages (MIT krb5 1.20) -> outcome. "refused" is an answer from the KDC.
_REFUSED = {
    "Preauthentication failed": "wrong-password",
    "Password incorrect": "wrong-password",
    "not found in Kerberos database": "unknown-principal",
    "credentials have been revoked": "revoked",
    "Password has expired": "password-expired",
}
_UNREACHABLE = ("Cannot contact any KDC", "Cannot find KDC", "Connection refused", "timed out")


def _krb5_conf(realm: str, kdc: str, timeout: float) -> str:
    return (
        "[libdefaults]\n"
        f"    default_realm = {realm}\n"
        "    dns_lookup_kdc = false\n    dns_lookup_realm = false\n    rdns = false\n"
        "    udp_preference_limit = 1\n"  # TCP: a closed port answers at once
        f"    kdc_timeout = {int(timeout * 1000)}\n    max_retries = 1\n"
        "[realms]\n"
        f"    {realm} = {{\n        kdc = {kdc}:88\n    }}\n"
    )


def kinit_password(
    kdc: str,
    realm: str,
    principal: str,
    password: str,
    *,
    ev_id: str,
    source: str,
    check: str | None = None,
    timeout: float = 5.0,
) -> Evidence:
    """Run ``kinit principal@REALM`` against ``kdc`` with ``password``.

    parsed: ``authenticated`` (a ticket was granted), ``outcome`` (ticket | wrong-password |
    unknown-principal | revoked | password-expired | refused), ``rc``, ``stderr``.
    KDC unreachable, no answer within ``timeout`` s, or kinit missing: ok=False.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    realm = realm.upper()
    action = f"nsenter --net={NETNS_RUN_DIR / netns} kinit {principal}@{realm} (KDC {kdc}, password on stdin)"
    base = partial(evidence, ev_id=ev_id, check=check, kind="kerberos", source=source,
                   target=f"{kdc}:88", action=action)
    meta: dict[str, Any] = {"netns": netns, "principal": f"{principal}@{realm}"}
    try:
        ip_literal(kdc)
        if not 0 < timeout <= 60:
            raise ValueError("timeout must be between 0 and 60 s")
        plain_realm = realm.replace(".", "").replace("-", "").isalnum()
        if not principal or any(c in principal for c in "@/\n") or not plain_realm:
            raise ValueError(f"{principal!r}@{realm!r} is not a plain user principal")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    kinit = shutil.which("kinit")
    nsenter = shutil.which("nsenter")
    if kinit is None or nsenter is None:
        return base(started_at=started, ok=False, meta=meta,
                    error="kinit or nsenter is missing; install the Debian packages krb5-user and util-linux")
    with tempfile.TemporaryDirectory(prefix="labkit-krb5-") as tmp:
        conf = os.path.join(tmp, "krb5.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(_krb5_conf(realm, kdc, timeout))
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C",
               "KRB5_CONFIG": conf, "KRB5CCNAME": f"FILE:{tmp}/ccache", "KRB5_KTNAME": f"FILE:{tmp}/none.keytab"}
        argv = [nsenter, f"--net={NETNS_RUN_DIR / netns}", kinit, f"{principal}@{realm}"]
        try:
            proc = subprocess.run(argv, input=password + "\n", capture_output=True, text=True, env=env,
                                  timeout=timeout + 2, cwd=tmp)
        except subprocess.TimeoutExpired:
            return base(started_at=started, ok=False, meta=meta,
                        error=f"kinit got no answer from {kdc} within {timeout + 2:g} s")
        except OSError as exc:
            return base(started_at=started, ok=False, meta=meta, error=f"kinit could not run: {exc}")
    stderr = proc.stderr.replace(password, "(password)").strip()
    raw = f"rc={proc.returncode}\n{stderr}".strip()
    if proc.returncode == 0:
        outcome = "ticket"
    else:
        outcome = next((v for k, v in _REFUSED.items() if k in stderr), "")
        if not outcome:
            if any(u in stderr for u in _UNREACHABLE):
                return base(started_at=started, ok=False, raw=raw, meta=meta,
                            error=f"KDC {kdc} unreachable: {stderr.splitlines()[-1] if stderr else 'no answer'}")
            outcome = "refused"
    parsed = {"authenticated": proc.returncode == 0, "outcome": outcome, "rc": proc.returncode, "stderr": stderr}
    return base(started_at=started, ok=True, raw=raw, parsed=parsed, meta=meta)
