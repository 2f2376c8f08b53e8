"""``labkit doctor --provider gns3``: is this GNS3 server ready for labkit? One line per check.

- config: gns3.toml and the password can be read;
- server: reachable, the login works, version 3.x (the v3 API);
- account: labkit's account is the super admin or holds the role ``Administrator`` on ``/``
  (labkit makes projects, nodes, links, snapshots, users, pools, roles and ACEs);
- compute: the configured compute exists;
- templates: for each lab, a template per role of its nodes and the switch template;
- grader: the grader host (labkit's agent on the GNS3 host) answers on its port and presents the
  pinned host key (``[grader] host_key``).
"""

from __future__ import annotations

import socket
from typing import Any

from labkit.adapters.gns3.settings import Gns3Settings, config_path, load_gns3_settings
from labkit.adapters.proxmox.doctor import Line
from labkit.errors import LabkitError, UserError
from labkit.models.instance import InstancePlan
from labkit.settings import Settings

__all__ = ["Line", "run"]


def _account(client: Any, user: str) -> Line:
    me = client.get("/access/users/me") or {}
    if me.get("is_superadmin"):
        return Line("account", True, f"{user} is GNS3's super admin")
    roles = {str(r.get("role_id")): str(r.get("name")) for r in client.get("/access/roles") or []}
    aces = client.get("/access/acl") or []
    if any(str(a.get("user_id")) == str(me.get("user_id")) and a.get("path") == "/"
           and roles.get(str(a.get("role_id"))) == "Administrator" and a.get("allowed", True) for a in aces):
        return Line("account", True, f"{user} holds the role Administrator on /")
    return Line("account", False, f"the GNS3 account {user!r} is not an Administrator; give it the role "
                                  "Administrator on / (an ACE) or use the admin account.")


def _grader(g3: Gns3Settings, timeout: float = 10.0) -> Line:
    if g3.grader is None:
        return Line("grader", False, "gns3.toml has no [grader] (labkit's agent on the GNS3 host, which owns the "
                                     "vantage points): add host, port and host_key.")
    gh = g3.grader
    try:
        sock = socket.create_connection((gh.host, gh.port), timeout=timeout)
    except OSError as exc:
        return Line("grader", False, f"the grader agent at {gh.host}:{gh.port} does not answer "
                                     f"({exc.strerror or exc}); start it on the GNS3 host or fix [grader].")
    import paramiko

    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        seen = f"{key.get_name()} {key.get_base64()}"
    except (paramiko.SSHException, OSError) as exc:
        return Line("grader", False, f"{gh.host}:{gh.port} answers but not as an SSH server ({exc}); fix [grader] "
                                     "port.")
    finally:
        transport.close()
    pinned = " ".join(gh.host_key.split()[:2])
    if not pinned:
        return Line("grader", False, f"the grader agent at {gh.host}:{gh.port} answers but no host key is pinned; "
                                     f"set [grader] host_key = \"{seen}\" after checking it on the GNS3 host.")
    if pinned != seen:
        return Line("grader", False, f"the grader agent at {gh.host}:{gh.port} presents another host key than the "
                                     "pinned one; check the GNS3 host, then fix [grader] host_key.")
    return Line("grader", True, f"the grader agent at {gh.host}:{gh.port} answers with the pinned host key")


def run(settings: Settings, plans: list[InstancePlan]) -> list[Line]:
    """Every check, one line each; stops after the server check when the server cannot be used."""
    from labkit.adapters.gns3.provider import Gns3Provider

    try:
        g3 = load_gns3_settings(settings.home)
    except UserError as exc:
        return [Line("config", False, str(exc))]
    lines = [Line("config", True, f"{config_path(settings.home)} is readable")]
    prov = Gns3Provider(settings)
    prov._g3 = g3
    try:
        version = prov.server_version()
        lines.append(Line("server", True, f"GNS3 server {version} at {g3.url}, login of {g3.user} works"))
    except LabkitError as exc:
        prov.close()
        return [*lines, Line("server", False, str(exc))]
    try:
        try:
            lines.append(_account(prov.client, g3.user))
        except LabkitError as exc:
            lines.append(Line("account", False, str(exc)))
        try:
            prov.check_compute()
            lines.append(Line("compute", True, f"compute {g3.compute_id} exists"))
        except LabkitError as exc:
            lines.append(Line("compute", False, str(exc)))
        try:
            templates = prov._templates()
            for plan in plans:
                problems = prov.template_problems(plan, templates)
                lines += [Line("templates", False, p) for p in problems]
                if not problems:
                    lines.append(Line("templates", True, f"lab {plan.lab_id}: a template for every role "
                                                         f"({', '.join(sorted({n.role for n in plan.nodes}))})"))
        except LabkitError as exc:
            lines.append(Line("templates", False, str(exc)))
        lines.append(_grader(g3))
    finally:
        prov.close()
    return lines
