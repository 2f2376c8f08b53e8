"""SSH password-login probe (paramiko), run inside a lab namespace: which authentication
methods the server offers, and whether a password login is accepted."""

from __future__ import annotations

from functools import partial
from typing import Any

import paramiko

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from .tcp import open_tcp_socket
from labkit.adapters.probes.registry import probe

__all__ = ["password_login"]


@probe("sshauth.password_login")
def password_login(
    host: str,
    *,
    user: str,
    password: str,
    ev_id: str,
    source: str,
    check: str | None = None,
    port: int = 22,
    timeout: float = 5.0,
) -> Evidence:
    """Ask the server for ``user``'s allowed methods ("none" auth), then try ``password``
    (and keyboard-interactive, answering every prompt with it) when offered.

    parsed: ``allowed`` (methods the server lists), ``password`` and ``keyboard_interactive``
    (accepted | rejected | not-offered), ``server_version``. The password is not recorded.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    base = partial(evidence, ev_id=ev_id, check=check, kind="ssh", source=source, target=f"{host}:{port}",
                   action=f"ssh password login attempt as {user!r} (paramiko)")
    meta: dict[str, Any] = {"netns": netns, "user": user}
    try:
        ip_literal(host)
        sock = open_tcp_socket(host, port, timeout)
    except (ValueError, OSError) as exc:
        return base(started_at=started, ok=False, error=f"cannot connect to {host}:{port}: {describe_exc(exc)}",
                    meta=meta)
    transport = paramiko.Transport(sock)
    parsed: dict[str, Any] = {"allowed": [], "password": "not-offered", "keyboard_interactive": "not-offered"}
    try:
        transport.start_client(timeout=timeout)
        parsed["server_version"] = transport.remote_version
        try:
            transport.auth_none(user)
            parsed["allowed"] = ["none"]  # the server let us in without credentials
        except paramiko.BadAuthenticationType as exc:
            parsed["allowed"] = list(exc.allowed_types)
        if "password" in parsed["allowed"]:
            try:
                transport.auth_password(user, password, fallback=False)
                parsed["password"] = "accepted"
            except paramiko.AuthenticationException:
                parsed["password"] = "rejected"
        if "keyboard-interactive" in parsed["allowed"] and parsed["password"] != "accepted" \
                and transport.is_active():
            try:
                transport.auth_interactive(user, lambda _t, _i, prompts: [password for _ in prompts])
                parsed["keyboard_interactive"] = "accepted"
            except paramiko.AuthenticationException:
                parsed["keyboard_interactive"] = "rejected"
    except (paramiko.SSHException, OSError, EOFError) as exc:
        return base(started_at=started, ok=False, error=f"SSH session with {host}:{port} failed: {describe_exc(exc)}",
                    meta=meta, parsed=parsed)
    finally:
        transport.close()
        sock.close()
    raw = (f"server {parsed.get('server_version')}; methods offered to {user!r}: {', '.join(parsed['allowed'])}; "
           f"password: {parsed['password']}; keyboard-interactive: {parsed['keyboard_interactive']}")
    return base(started_at=started, ok=True, raw=raw, parsed=parsed, meta=meta)
