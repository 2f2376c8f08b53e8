"""A candidate's own GNS3 account: their project, its nodes, links and consoles, nothing else.

Per candidate (one name, ``lk-<homeid>-<instance>``, for the user AND the pool, so that
:func:`remove` finds everything from that name alone, also after a crash):

- a user of that name, a random password written to a 0600 file of the instance (GNS3 3.0.6
  users have no expiry date: ``remove`` at ``down`` is what ends the access);
- a resource pool of that name holding the instance's project;
- one ACE: that user, path ``/pools/<pool_id>``, propagate, role :data:`ROLE`.

Why a pool and not an ACE on ``/projects/<id>``: in 3.0.6 ``GET /projects`` shows a user with
Project.Audit on ``/projects`` every project that is in NO pool (``api/routes/controller/
projects.py: get_projects``), and once a project is in a pool only pool ACEs count for paths
under it (``db/repositories/rbac.py: check_user_has_privilege``). So every labkit project is
put in a pool (:func:`ensure_pool`, also for instances without a candidate) and candidates get
privileges on their pool only. A consequence of the pool rule: privileges apply to the whole
project, there is no per-node or per-link exception (a deny ACE on a node is not consulted for
a path in a pool); hence a role without any write privilege.

The role ``LabkitCandidate`` (made once, set back to exactly :data:`PRIVILEGES` when someone
changed it; it is shared by every candidate of every labkit home and is KEPT when the last
instance goes: it grants nothing without an ACE, and deleting it while another home grants
would race; :func:`drop_role` deletes it when no ACE uses it). Privileges of 3.0.6
(``db/models/privileges.py``) and the routes that require them (``Depends(has_privilege(..))``):

==================  ====  ===============================================================
privilege           in?   why
==================  ====  ===============================================================
Project.Audit       in    GET the project, its stats, notifications (the web UI follows the
                          canvas through them), its files, its export: all of their own
                          project only (pool ACE)
Project.Modify      out   PUT /projects/{id} (rename, auto_close, ...), lock/unlock, write
                          project files: the grader's layout and the evidence must not move
Project.Allocate    out   create/delete/close/open/import/duplicate projects: deleting or
                          closing their own project would end the exam; duplicating needs it
Node.Audit          in    list and read the nodes (names, console ports, status)
Node.Console        in    the web console (``/nodes/{id}/console/ws``) and console reset
Node.PowerMgmt      out   start/stop/suspend/reload: the pool ACE cannot exclude the grader's
                          cloud node and the segment switches (the grader's ground), and a
                          device reboots from its own CLI (``reload``, ``reboot``) through the
                          console anyway; a node that is down stays down until the trainer
                          runs ``labkit start``/``reset`` (same rule as on Proxmox)
Node.Modify         out   PUT a node (ports, adapters, console type, MACs), post node files
Node.Allocate       out   create/delete/duplicate nodes, nodes from templates, disk images
Link.Audit          in    list and read links and their filters (the canvas draws them)
Link.Modify         out   suspend a link, set filters, reset, isolate/unisolate a node: the
                          grader's faults and its links to the cloud node must stay its own
Link.Allocate       out   create/delete links (rewiring, unplugging the grader)
Link.Capture        out   captures: a capture of the grader's link shows the grader's probes
Snapshot.Audit      in    list the project's snapshots (names and dates only; the web UI's
                          snapshot menu); harmless
Snapshot.Allocate   out   create/delete snapshots (``labkitbase`` is labkit's reset point)
Snapshot.Restore    out   restoring ``labkitbase`` would undo the candidate's own work behind
                          labkit's back (``labkit reset`` is the trainer's)
Drawing.Audit       in    the canvas' drawings (labels, notes labkit puts on it)
Drawing.Allocate    out   add/delete drawings: the exported project is evidence
Drawing.Modify      out   (same)
Template.*          out   server-wide objects (not under a pool path: the pool ACE would not
Compute.*           out   grant them anyway); the candidate makes nothing. Symbols' raw
Image.*             out   images (the node icons) need no privilege in 3.0.6
Appliance.*         out
Symbol.*            out
Pool.*              out   the candidate's own pool must not change (it is what isolates them)
User.*, Group.*     out   accounts are labkit's; a user changes their own password through
                          ``PUT /access/users/me``, which needs no privilege
Role.*, ACE.*       out   no self-granting
==================  ====  ===============================================================

Project.Audit also opens ``GET /projects/{id}/files/<path>`` on the candidate's own project,
and a link capture is written to ``project-files/captures/<capture_file_name>`` there (the name
is in the link, which Link.Audit shows): a capture the grader made on the candidate's project
can be read back by the candidate (checked on 3.0.6 with a local compute). :func:`scrub_captures`
blanks those files (the grader calls it once its capture is stopped and read); while a capture
runs, its file can be read.

Not covered by GNS3's RBAC: a node's telnet console is a plain TCP port of the compute with no
login; whoever reaches the compute's console port range reaches every node's console. A
centre keeps that range away from candidates (firewall) and gives them the web console.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.adapters.gns3.client import Gns3ApiError, Gns3Client
from labkit.adapters.gns3.settings import Gns3Settings
from labkit.errors import ProviderError, UserError

ROLE = "LabkitCandidate"
ROLE_DESCRIPTION = "labkit candidate: sees their own project, its nodes and links; node consoles"
PRIVILEGES: tuple[str, ...] = (
    "Project.Audit",
    "Node.Audit",
    "Node.Console",
    "Link.Audit",
    "Snapshot.Audit",
    "Drawing.Audit",
)
USER_PREFIX = "lk-"
_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{3,100}")  # GNS3's username pattern (schemas/controller/users.py)
_role_lock = threading.Lock()  # the provider grants in parallel threads: one role creation


def candidate_name(home_id: str, instance: str) -> str:
    """The name of an instance's candidate user and pool: ``lk-<homeid>-<instance>``."""
    return f"{USER_PREFIX}{home_id}-{instance}"


@dataclass(frozen=True)
class CandidateAccess:
    """What a candidate gets (and what ``labkit`` shows them); the password stays in its file."""

    server: str  # the GNS3 server's URL (its web interface)
    user: str
    password_file: Path
    project: str  # the project's name, as the web interface lists it
    project_id: str
    pool_id: str
    ace_id: str
    user_id: str = field(default="", repr=False)

    def lines(self) -> list[str]:
        return [
            f"GNS3 server:   {self.server}  (open it in a browser)",
            f"user:          {self.user}",
            f"password:      in {self.password_file}",
            f"your project:  {self.project}",
        ]

    def provider_data(self) -> dict[str, str]:
        """What the provider keeps in the instance's state (no secret)."""
        return {"candidate_user": self.user, "candidate_pool": self.pool_id,
                "candidate_password_file": str(self.password_file), "candidate_project": self.project}


def access_lines(server: str, provider_data: dict[str, Any]) -> list[str]:
    """What ``labkit`` shows about the candidate's GNS3 access, from the instance's state alone
    (:meth:`CandidateAccess.provider_data`); empty when the instance has no candidate account."""
    user = provider_data.get("candidate_user")
    if not user:
        return []
    project = str(provider_data.get("candidate_project") or provider_data.get("project") or "")
    return CandidateAccess(server=server, user=str(user),
                           password_file=Path(str(provider_data.get("candidate_password_file", ""))),
                           project=project, project_id=str(provider_data.get("project_id", "")),
                           pool_id=str(provider_data.get("candidate_pool", "")), ace_id="").lines()


def _check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise UserError(f"{name!r} cannot be a GNS3 user name (3-100 letters, digits, '-' or '_'); "
                        "choose a shorter instance name.")
    return name


def _by(items: Any, key: str, value: str) -> dict[str, Any] | None:
    for it in items or []:
        if isinstance(it, dict) and it.get(key) == value:
            return it
    return None


def _ignore_missing(fn: Any, *args: Any) -> bool:
    """Call ``fn``; False when GNS3 says the object is already gone (404)."""
    try:
        fn(*args)
    except Gns3ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


# ---------------------------------------------------------------------- role


def ensure_role(client: Gns3Client) -> str:
    """The role :data:`ROLE` exists with exactly :data:`PRIVILEGES`; its id."""
    with _role_lock:
        role = _by(client.get("/access/roles"), "name", ROLE)
        if role is None:
            try:
                client.post("/access/roles", {"name": ROLE, "description": ROLE_DESCRIPTION})
            except Gns3ApiError as exc:
                if exc.status != 400:  # 400: "already exists" (another labkit made it meanwhile)
                    raise
            role = _by(client.get("/access/roles"), "name", ROLE)
            if role is None:
                raise ProviderError(f"GNS3 did not keep the role {ROLE}; check the server's log.")
        role_id = str(role["role_id"])
        have = {p["name"]: str(p["privilege_id"]) for p in role.get("privileges") or []}
        if set(have) != set(PRIVILEGES):
            known = {p["name"]: str(p["privilege_id"]) for p in client.get("/access/privileges") or []}
            missing = [p for p in PRIVILEGES if p not in known]
            if missing:
                raise ProviderError(f"this GNS3 server has no privilege {', '.join(missing)}; labkit needs "
                                    "gns3-server 3.0 (check 'labkit doctor --provider gns3').")
            for name in PRIVILEGES:
                if name not in have:
                    client.put(f"/access/roles/{role_id}/privileges/{known[name]}")
            for name, pid in have.items():
                if name not in PRIVILEGES:
                    client.delete(f"/access/roles/{role_id}/privileges/{pid}")
        return role_id


def drop_role(client: Gns3Client) -> bool:
    """Delete the role when no ACE uses it (labkit keeps it otherwise); True if deleted."""
    with _role_lock:
        role = _by(client.get("/access/roles"), "name", ROLE)
        if role is None:
            return False
        if any(str(a.get("role_id")) == str(role["role_id"]) for a in client.get("/access/acl") or []):
            return False
        return _ignore_missing(client.delete, f"/access/roles/{role['role_id']}")


# ---------------------------------------------------------------------- pool


def ensure_pool(client: Gns3Client, name: str, project_id: str) -> str:
    """A pool ``name`` holding the project (and only it); its id. Every labkit project is put in
    a pool, candidate or not: a project in no pool is listed to any user holding Project.Audit
    on ``/projects`` (the built-in "User" role given server-wide, for instance)."""
    pool = _by(client.get("/pools"), "name", name)
    if pool is None:
        try:
            pool = client.post("/pools", {"name": name})
        except Gns3ApiError as exc:
            if exc.status != 400:  # 400: it exists (made meanwhile)
                raise
            pool = _by(client.get("/pools"), "name", name)
            if pool is None:
                raise
    pool_id = str(pool["resource_pool_id"])
    held = {str(r["resource_id"]) for r in client.get(f"/pools/{pool_id}/resources") or []}
    for rid in held - {project_id}:  # a project of an earlier instance of that name
        _ignore_missing(client.delete, f"/pools/{pool_id}/resources/{rid}")
    if project_id not in held:
        client.put(f"/pools/{pool_id}/resources/{project_id}")
    return pool_id


# ---------------------------------------------------------------------- grant / remove


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)  # an older file of that name may have had another mode
        fh.write(secret + "\n")


def grant(client: Gns3Client, settings: Gns3Settings, instance: str, project_id: str,
          password_file: Path, *, name: str | None = None, candidate: str = "") -> CandidateAccess:
    """Give the instance's candidate their account: user + pool ``name`` (default
    ``lk-<instance>``; the provider passes :func:`candidate_name` with its home id), the project
    in that pool, an ACE with :data:`ROLE` on the pool. A leftover user of the same name (an
    earlier instance that crashed) is removed first, a pool of that name is reused (the provider
    may have made it with the project: :func:`ensure_pool`). Anything failing midway is undone."""
    name = _check_name(name or f"{USER_PREFIX}{instance}")
    project = client.get(f"/projects/{project_id}")
    role_id = ensure_role(client)
    _remove_user(client, name)
    password = secrets.token_urlsafe(18)
    try:
        _write_secret(Path(password_file), password)
        full_name = f"labkit candidate {candidate} ({instance})" if candidate else f"labkit instance {instance}"
        user = client.post("/access/users", {"username": name, "password": password,
                                             "full_name": full_name[:100], "is_active": True})
        user_id = str(user["user_id"])
        pool_id = ensure_pool(client, name, project_id)
        ace = client.post("/access/acl", {"ace_type": "user", "path": f"/pools/{pool_id}", "propagate": True,
                                          "allowed": True, "user_id": user_id, "role_id": role_id})
    except BaseException:
        try:
            remove(client, name, password_file=Path(password_file))
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise
    return CandidateAccess(server=settings.url, user=name, password_file=Path(password_file),
                           project=str(project.get("name", "")), project_id=project_id, pool_id=pool_id,
                           ace_id=str(ace["ace_id"]), user_id=user_id)


def _remove_user(client: Gns3Client, name: str) -> list[str]:
    user = _by(client.get("/access/users"), "username", name)
    if not user:
        return []
    removed = []
    for ace in client.get("/access/acl") or []:
        if str(ace.get("user_id")) == str(user["user_id"]):
            if _ignore_missing(client.delete, f"/access/acl/{ace['ace_id']}"):
                removed.append(f"gns3 ACE {ace.get('path')} of {name}")
    if _ignore_missing(client.delete, f"/access/users/{user['user_id']}"):
        removed.append(f"gns3 user {name}")
    return removed


def remove(client: Gns3Client, name: str, *, password_file: Path | None = None) -> list[str]:
    """Remove the ACEs, pool and user named ``name`` (idempotent, from the name alone, also
    when only part of them exists); returns what was removed. The project itself is the
    provider's. The pool's resources are taken out first: GNS3 keeps a resource row (unique by
    project name) when a pool is deleted with it inside, and that row would refuse the same
    project name in a pool later."""
    _check_name(name)
    removed: list[str] = []
    user = _by(client.get("/access/users"), "username", name)
    pool = _by(client.get("/pools"), "name", name)
    user_id = str(user["user_id"]) if user else None
    pool_path = f"/pools/{pool['resource_pool_id']}" if pool else None
    for ace in client.get("/access/acl") or []:
        if (user_id and str(ace.get("user_id")) == user_id) or (pool_path and str(ace.get("path", "")) == pool_path):
            if _ignore_missing(client.delete, f"/access/acl/{ace['ace_id']}"):
                removed.append(f"gns3 ACE {ace.get('path')} of {name}")
    if pool:
        pid = pool["resource_pool_id"]
        for res in client.get(f"/pools/{pid}/resources") or []:
            _ignore_missing(client.delete, f"/pools/{pid}/resources/{res['resource_id']}")
        if _ignore_missing(client.delete, f"/pools/{pid}"):
            removed.append(f"gns3 pool {name}")
    if user:
        if _ignore_missing(client.delete, f"/access/users/{user_id}"):
            removed.append(f"gns3 user {name}")
    if password_file is not None and Path(password_file).exists():
        Path(password_file).unlink()
        removed.append(f"password file {password_file}")
    return removed


def leftovers(client: Gns3Client, name: str) -> list[str]:
    """What of ``name``'s access still exists on the server (empty once :func:`remove` ran)."""
    out: list[str] = []
    user = _by(client.get("/access/users"), "username", name)
    pool = _by(client.get("/pools"), "name", name)
    if user:
        out.append(f"gns3 user {name}")
    if pool:
        out.append(f"gns3 pool {name}")
    pool_path = f"/pools/{pool['resource_pool_id']}" if pool else None
    uid = str(user["user_id"]) if user else None
    for ace in client.get("/access/acl") or []:
        if (uid and str(ace.get("user_id")) == uid) or (pool_path and ace.get("path") == pool_path):
            out.append(f"gns3 ACE {ace.get('path')}")
    return out


# ---------------------------------------------------------------------- captures


def scrub_captures(client: Gns3Client, project_id: str) -> list[str]:
    """Blank the capture files of the project's links that are not capturing any more (their
    names come from the links), so the candidate cannot read the grader's captures back through
    ``GET /projects/{id}/files``; returns the files blanked. GNS3 has no call to delete a
    project file: labkit's account writes an empty one over it (Project.Modify)."""
    blanked = []
    for link in client.get(f"/projects/{project_id}/links") or []:
        name = link.get("capture_file_name")
        if not name or link.get("capturing"):
            continue
        if "/" in str(name) or str(name).startswith("."):
            continue  # GNS3 makes plain file names; anything else is not ours to write
        path = f"/projects/{project_id}/files/project-files/captures/{name}"
        if _ignore_missing(client.request, "POST", path):
            blanked.append(str(name))
    return blanked
