"""A candidate's own Proxmox account: the consoles of their instance's VMs, nothing else.

- user ``lk-<instance>@pve`` (realm pve: Proxmox's own password store), a random password,
  an expiry date, a comment naming the candidate;
- role ``LabkitCandidate`` = VM.Console + VM.Audit (see a VM and open its console; no config,
  no power, no snapshot, no network), made once and set back to exactly these privileges if
  someone changed it;
- one ACL: that role for that user on ``/pool/lk-<instance>`` (propagated to the pool's VMs,
  and to its containers: a container's console (``/nodes/{n}/lxc/{id}/termproxy``) asks the
  same VM.Console on ``/vms/{id}``).

PV's provider calls :func:`create_candidate_access` at ``up`` when the plan has a candidate and
:func:`remove_candidate_access` at ``down`` (also from the name alone, after a crash).
Privileges the token needs for this: Realm.AllocateUser on ``/access/realm/pve``, User.Modify
on ``/access/groups``, Permissions.Modify on ``/pool`` (see ``doctor.REQUIRED``), and
Sys.Modify on ``/access`` only the first time, to create the role (a centre may create it by hand:
``pveum role add LabkitCandidate --privs VM.Console,VM.Audit``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from labkit.adapters.proxmox.naming import pool_id
from labkit.errors import LabkitError

ROLE = "LabkitCandidate"
ROLE_PRIVS = ("VM.Audit", "VM.Console")
REALM = "pve"
DEFAULT_LIFETIME = 24 * 3600.0


class Api(Protocol):
    def call(self, method: str, path: str, /, **params: Any) -> Any: ...


@dataclass(frozen=True)
class CandidateCredentials:
    userid: str
    password: str = field(repr=False)
    pool: str
    expires: int  # epoch seconds


def candidate_userid(instance: str) -> str:
    return f"lk-{instance}@{REALM}"


def _missing(exc: LabkitError) -> bool:
    text = str(exc).lower()
    return "does not exist" in text or "no such" in text or "not found" in text


def ensure_role(api: Api) -> None:
    """The candidate role exists with exactly :data:`ROLE_PRIVS`."""
    roles = {r.get("roleid"): r for r in api.call("GET", "/access/roles") or []}
    wanted = ",".join(ROLE_PRIVS)
    if ROLE not in roles:
        api.call("POST", "/access/roles", roleid=ROLE, privs=wanted)
        return
    have = sorted(p for p in str(roles[ROLE].get("privs", "")).split(",") if p)
    if have != sorted(ROLE_PRIVS):
        api.call("PUT", f"/access/roles/{ROLE}", privs=wanted)  # replaces (no append)


def create_candidate_access(api: Api, instance: str, candidate: str,
                            lifetime: float = DEFAULT_LIFETIME) -> CandidateCredentials:
    """Make the candidate's user and its ACL on the instance's pool; returns the login."""
    ensure_role(api)
    userid = candidate_userid(instance)
    pool = pool_id(instance)
    password = secrets.token_urlsafe(18)
    expires = int(time.time() + lifetime)
    comment = f"labkit candidate {candidate} of instance {instance}"[:200]
    try:
        api.call("DELETE", f"/access/users/{userid}")  # a leftover of an earlier instance of that name
    except LabkitError as exc:
        if not _missing(exc):
            raise
    api.call("POST", "/access/users", userid=userid, password=password, comment=comment,
             expire=expires, enable=1)
    try:
        api.call("PUT", "/access/acl", path=f"/pool/{pool}", roles=ROLE, users=userid, propagate=1)
    except BaseException:
        remove_candidate_access(api, instance)
        raise
    return CandidateCredentials(userid, password, pool, expires)


def remove_candidate_access(api: Api, instance: str) -> list[str]:
    """Remove the candidate's ACL and user (idempotent); returns what was removed."""
    userid = candidate_userid(instance)
    removed = []
    try:
        api.call("PUT", "/access/acl", path=f"/pool/{pool_id(instance)}", roles=ROLE, users=userid, delete=1)
    except LabkitError as exc:
        if not _missing(exc):
            raise
    try:
        api.call("DELETE", f"/access/users/{userid}")
        removed.append(f"proxmox user {userid}")
    except LabkitError as exc:
        if not _missing(exc):
            raise
    return removed
