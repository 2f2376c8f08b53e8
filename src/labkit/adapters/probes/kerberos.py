"""Kerberos probes, from inside a lab namespace: ask a KDC for a ticket (AS exchange) with a
password, a series of such exchanges (lockout by effect), and an SMB session authenticated
by Kerberos only (the KDC issues a service ticket for the server, the server must accept it).

There is no Kerberos client library among labkit's dependencies, so this probe runs MIT
``kinit`` (Debian package krb5-user) as a subprocess. The probe thread is already in the
vantage namespace (a child process inherits the calling thread's namespaces); the command
is also wrapped in ``nsenter --net=/run/netns/<that namespace>`` so that it says where it
runs and can never run anywhere else. Only the network namespace is entered: the host's
files are used, with a temporary ``KRB5_CONFIG`` (this realm, this KDC, TCP only, no DNS)
and a temporary credential cache, both deleted afterwards. The password goes on stdin.

The SMB probe runs the host's ``smbclient`` the same way (network namespace only), with an
empty smb.conf, every Samba state directory in the temporary folder, Kerberos required and
SMB signing required: the session can only be set up by a server that holds the keys of its
account in the domain (it must decrypt the service ticket and sign with its session key).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from functools import partial
from typing import Any

from labkit.adapters.netns.nsutil import NETNS_RUN_DIR, assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import evidence, ip_literal, utcnow
from labkit.adapters.probes.registry import probe

__all__ = ["kinit_attempts", "kinit_password", "smb_kerberos"]

# kinit messages (MIT krb5 1.20) -> outcome. "refused" is an answer from the KDC.
_REFUSED = {
    "Preauthentication failed": "wrong-password",
    "Password incorrect": "wrong-password",
    "not found in Kerberos database": "unknown-principal",
    "credentials have been revoked": "revoked",
    "Password has expired": "password-expired",
}
_UNREACHABLE = ("Cannot contact any KDC", "Cannot find KDC", "Connection refused", "timed out")
_ENV_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_MAX_ATTEMPTS = 40


def _krb5_conf(realm: str, kdc: str, timeout: float) -> str:
    return (
        "[libdefaults]\n"
        f"    default_realm = {realm}\n"
        "    dns_lookup_kdc = false\n    dns_lookup_realm = false\n    rdns = false\n"
        "    udp_preference_limit = 1\n"  # TCP: a closed port answers at once
        f"    kdc_timeout = {int(timeout * 1000)}\n    max_retries = 1\n"
        "    dns_canonicalize_hostname = false\n"
        "[realms]\n"
        f"    {realm} = {{\n        kdc = {kdc}:88\n    }}\n"
        "[domain_realm]\n"
        f"    .{realm.lower()} = {realm}\n    {realm.lower()} = {realm}\n"
    )


def _check_inputs(kdc: str, realm: str, principal: str, timeout: float) -> None:
    ip_literal(kdc)
    if not 0 < timeout <= 60:
        raise ValueError("timeout must be between 0 and 60 s")
    plain_realm = realm.replace(".", "").replace("-", "").isalnum()
    if not principal or any(c in principal for c in "@/\n") or not plain_realm:
        raise ValueError(f"{principal!r}@{realm!r} is not a plain user principal")


class _Kinit:
    """A temporary Kerberos client set-up (config, credential cache) in ``tmp``, used from the
    vantage namespace ``netns`` only."""

    def __init__(self, tmp: str, netns: str, kdc: str, realm: str, timeout: float):
        self.tmp, self.netns, self.kdc, self.realm, self.timeout = tmp, netns, kdc, realm, timeout
        self.conf = os.path.join(tmp, "krb5.conf")
        with open(self.conf, "w", encoding="utf-8") as fh:
            fh.write(_krb5_conf(realm, kdc, timeout))
        self.env = {"PATH": _ENV_PATH, "LANG": "C", "LC_ALL": "C", "HOME": tmp,
                    "KRB5_CONFIG": self.conf, "KRB5CCNAME": f"FILE:{tmp}/ccache",
                    "KRB5_KTNAME": f"FILE:{tmp}/none.keytab"}

    def run(self, argv: list[str], stdin: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        return subprocess.run([nsenter, f"--net={NETNS_RUN_DIR / self.netns}", *argv], input=stdin,
                              capture_output=True, text=True, env=self.env, timeout=timeout, cwd=self.tmp)

    def kinit(self, principal: str, password: str) -> tuple[str, str, int]:
        """(outcome, stderr with the password masked, rc); outcome "" means unreachable."""
        kinit = shutil.which("kinit") or "kinit"
        proc = self.run([kinit, f"{principal}@{self.realm}"], password + "\n", self.timeout + 2)
        stderr = proc.stderr.replace(password, "(password)").strip() if password else proc.stderr.strip()
        if proc.returncode == 0:
            return "ticket", stderr, 0
        outcome = next((v for k, v in _REFUSED.items() if k in stderr), "")
        if not outcome and not any(u in stderr for u in _UNREACHABLE):
            outcome = "refused"
        return outcome, stderr, proc.returncode

    def service_tickets(self) -> list[str]:
        klist = shutil.which("klist") or "klist"
        proc = subprocess.run([klist, "-c", f"FILE:{self.tmp}/ccache"], capture_output=True, text=True,
                              env=self.env, timeout=5, cwd=self.tmp)
        return [line.split()[-1] for line in proc.stdout.splitlines()
                if "@" in line and line[:1].isdigit() and not line.split()[-1].startswith("krbtgt/")]


def _tools_missing(*names: str) -> str | None:
    missing = [n for n in names if shutil.which(n) is None]
    return (f"{', '.join(missing)} missing; install the Debian packages krb5-user, smbclient and util-linux"
            if missing else None)


@probe("kerberos.kinit_password")
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
        _check_inputs(kdc, realm, principal, timeout)
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    if (missing := _tools_missing("kinit", "nsenter")) is not None:
        return base(started_at=started, ok=False, meta=meta, error=missing)
    with tempfile.TemporaryDirectory(prefix="labkit-krb5-") as tmp:
        try:
            outcome, stderr, rc = _Kinit(tmp, netns, kdc, realm, timeout).kinit(principal, password)
        except subprocess.TimeoutExpired:
            return base(started_at=started, ok=False, meta=meta,
                        error=f"kinit got no answer from {kdc} within {timeout + 2:g} s")
        except OSError as exc:
            return base(started_at=started, ok=False, meta=meta, error=f"kinit could not run: {exc}")
    raw = f"rc={rc}\n{stderr}".strip()
    if not outcome:
        return base(started_at=started, ok=False, raw=raw, meta=meta,
                    error=f"KDC {kdc} unreachable: {stderr.splitlines()[-1] if stderr else 'no answer'}")
    parsed = {"authenticated": rc == 0, "outcome": outcome, "rc": rc, "stderr": stderr}
    return base(started_at=started, ok=True, raw=raw, parsed=parsed, meta=meta)


@probe("kerberos.kinit_attempts")
def kinit_attempts(
    kdc: str,
    realm: str,
    principal: str,
    attempts: list[tuple[str, str]],
    *,
    ev_id: str,
    source: str,
    check: str | None = None,
    timeout: float = 5.0,
) -> Evidence:
    """AS exchanges for ``principal``, one per ``(label, password)`` of ``attempts``, in order
    (e.g. wrong passwords then the right one, to see an account lock by effect).

    parsed: ``attempts``: ``[{"label", "outcome", "authenticated"}]`` (outcomes as in
    :func:`kinit_password`). A KDC unreachable at any attempt: ok=False. Passwords are never
    recorded.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    realm = realm.upper()
    labels = ", ".join(label for label, _ in attempts)
    action = (f"nsenter --net={NETNS_RUN_DIR / netns} kinit {principal}@{realm} x{len(attempts)} "
              f"(KDC {kdc}; {labels})")
    base = partial(evidence, ev_id=ev_id, check=check, kind="kerberos", source=source,
                   target=f"{kdc}:88", action=action)
    meta: dict[str, Any] = {"netns": netns, "principal": f"{principal}@{realm}"}
    try:
        _check_inputs(kdc, realm, principal, timeout)
        if not 0 < len(attempts) <= _MAX_ATTEMPTS:
            raise ValueError(f"between 1 and {_MAX_ATTEMPTS} attempts")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    if (missing := _tools_missing("kinit", "nsenter")) is not None:
        return base(started_at=started, ok=False, meta=meta, error=missing)
    done: list[dict[str, Any]] = []
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="labkit-krb5-") as tmp:
        client = _Kinit(tmp, netns, kdc, realm, timeout)
        for label, password in attempts:
            try:
                outcome, stderr, rc = client.kinit(principal, password)
            except (subprocess.TimeoutExpired, OSError) as exc:
                return base(started_at=started, ok=False, meta=meta, raw="\n".join(lines),
                            parsed={"attempts": done}, error=f"kinit ({label}) failed: {type(exc).__name__}")
            lines.append(f"{label}: rc={rc} {stderr.splitlines()[-1] if stderr else ''}".strip())
            if not outcome:
                return base(started_at=started, ok=False, meta=meta, raw="\n".join(lines),
                            parsed={"attempts": done}, error=f"KDC {kdc} unreachable at attempt {label}")
            done.append({"label": label, "outcome": outcome, "authenticated": rc == 0})
    return base(started_at=started, ok=True, raw="\n".join(lines), parsed={"attempts": done}, meta=meta)


_NT_STATUS = re.compile(r"NT_STATUS_[A-Z0-9_]+")


def _first_status(text: str, default: str = "failed") -> str:
    m = _NT_STATUS.search(text)
    return m.group(0).replace("NT_STATUS_", "STATUS_") if m else default


def parse_smbclient(out: str, marker: str, write_test: bool) -> dict[str, Any]:
    """What one ``smbclient -c "put; get; rm; ls"`` run says, step by step (``ok`` or a
    ``STATUS_...`` name; ``None``: not reached). ``read`` is judged by the caller from the file
    it got back."""
    parsed: dict[str, Any] = {"logon": "ok", "tree": None, "write": None, "delete": None}
    for line in out.splitlines():
        if "session setup failed" in line:
            parsed["logon"] = _first_status(line)
            return parsed
    for line in out.splitlines():
        if "tree connect failed" in line:
            parsed["tree"] = _first_status(line)
            return parsed
    parsed["tree"] = "ok"
    if not write_test:
        return parsed
    esc = re.escape("\\" + marker)
    put = re.search(rf"putting file \S+ as {esc}", out)
    if put:
        parsed["write"] = "ok"
    else:
        failed = [line for line in out.splitlines() if marker in line and "NT_STATUS" in line]
        parsed["write"] = _first_status(failed[0]) if failed else "failed"
        return parsed
    del_err = [line for line in out.splitlines() if "deleting remote file" in line and marker in line]
    listed_gone = any(("NO_SUCH_FILE" in line or "OBJECT_NAME_NOT_FOUND" in line) and "listing" in line
                      for line in out.splitlines())
    parsed["delete"] = _first_status(del_err[0]) if del_err else ("ok" if listed_gone else "failed")
    return parsed


@probe("kerberos.smb_kerberos")
def smb_kerberos(
    kdc: str,
    realm: str,
    principal: str,
    password: str,
    server: str,
    server_name: str,
    share: str,
    *,
    ev_id: str,
    source: str,
    check: str | None = None,
    write_test: bool = False,
    timeout: float = 5.0,
) -> Evidence:
    """Get a TGT for ``principal`` from ``kdc``, then open an SMB session on ``server`` (an
    address) as ``cifs/<server_name>.<realm>`` with Kerberos only and signing required, connect
    to ``share`` and, with ``write_test``, put a marker file, get it back and delete it.

    parsed: ``kinit`` (outcome of the AS exchange), ``logon`` (ok | STATUS_... | null when no
    TGT), ``tree``, ``write``, ``read``, ``delete`` (ok | STATUS_... | null), ``read_matches``,
    ``marker``, ``service_tickets`` (service principals in the credential cache afterwards).
    KDC or server unreachable, timeout, tools missing: ok=False.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    realm = realm.upper()
    host = f"{server_name.lower()}.{realm.lower()}"
    marker = f"labkit-probe-{secrets.token_hex(4)}.txt"
    unc = f"//{host}/{share}"
    steps = f"put/get/rm {marker}" if write_test else "tree connect"
    action = (f"nsenter --net={NETNS_RUN_DIR / netns} kinit {principal}@{realm} (KDC {kdc}); "
              f"smbclient {unc} -I {server} --use-kerberos=required, signing required; {steps}")
    base = partial(evidence, ev_id=ev_id, check=check, kind="smb", source=source, target=f"{server}:445 {unc}",
                   action=action)
    meta: dict[str, Any] = {"netns": netns, "principal": f"{principal}@{realm}", "share": share, "server": host}
    try:
        _check_inputs(kdc, realm, principal, timeout)
        ip_literal(server)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", server_name) \
                or not re.fullmatch(r"[A-Za-z0-9$][A-Za-z0-9_.$-]{0,79}", share):
            raise ValueError(f"{server_name!r} / {share!r}: plain server and share names only")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    if (missing := _tools_missing("kinit", "klist", "nsenter", "smbclient")) is not None:
        return base(started_at=started, ok=False, meta=meta, error=missing)
    parsed: dict[str, Any] = {"kinit": None, "logon": None, "tree": None, "write": None, "read": None,
                              "delete": None, "read_matches": False, "marker": marker, "service_tickets": []}
    with tempfile.TemporaryDirectory(prefix="labkit-smbk-") as tmp:
        client = _Kinit(tmp, netns, kdc, realm, timeout)
        try:
            outcome, stderr, _rc = client.kinit(principal, password)
        except (subprocess.TimeoutExpired, OSError) as exc:
            return base(started_at=started, ok=False, meta=meta, error=f"kinit failed: {type(exc).__name__}")
        if not outcome:
            return base(started_at=started, ok=False, meta=meta, raw=stderr,
                        error=f"KDC {kdc} unreachable: {stderr.splitlines()[-1] if stderr else 'no answer'}")
        parsed["kinit"] = outcome
        if outcome != "ticket":
            return base(started_at=started, ok=True, raw=f"kinit: {stderr}", parsed=parsed, meta=meta)
        payload = f"labkit probe {marker} {secrets.token_hex(8)}\n"
        with open(os.path.join(tmp, "up.txt"), "w", encoding="utf-8") as fh:
            fh.write(payload)
        conf = os.path.join(tmp, "smb.conf")
        open(conf, "w", encoding="utf-8").close()
        dirs = [f"--option={d}={tmp}" for d in ("cache directory", "lock directory", "state directory",
                                                  "private dir", "ncalrpc dir")]
        commands = f"put up.txt {marker}; get {marker} down.txt; rm {marker}; ls {marker}" if write_test else "exit"
        argv = [shutil.which("smbclient") or "smbclient", unc, "-I", server, "-N", "--use-kerberos=required",
                "-s", conf, *dirs, "--option=client signing=required", f"--option=realm={realm}",
                "-c", commands]
        try:
            proc = client.run(argv, None, timeout + 5)
        except subprocess.TimeoutExpired:
            return base(started_at=started, ok=False, meta=meta, parsed=parsed,
                        error=f"smbclient got no answer from {server} within {timeout + 5:g} s")
        except OSError as exc:
            return base(started_at=started, ok=False, meta=meta, error=f"smbclient could not run: {exc}")
        out = (proc.stdout + "\n" + proc.stderr).replace(password, "(password)")
        if re.search(r"Connection to \S+ failed", out):
            return base(started_at=started, ok=False, meta=meta, raw=out.strip(), parsed=parsed,
                        error=f"cannot connect to {server}:445: {_first_status(out, 'no answer')}")
        parsed.update(parse_smbclient(out, marker, write_test))
        if parsed["write"] == "ok":
            down = os.path.join(tmp, "down.txt")
            got = open(down, encoding="utf-8", errors="replace").read() if os.path.exists(down) else None
            parsed["read"] = "ok" if got is not None else "failed"
            parsed["read_matches"] = got == payload
        try:
            parsed["service_tickets"] = client.service_tickets()
        except (subprocess.TimeoutExpired, OSError):
            pass
    raw = f"kinit: ticket\nsmbclient rc={proc.returncode}\n{out.strip()}"
    return base(started_at=started, ok=True, raw=raw, parsed=parsed, meta=meta)
