"""Per-candidate Proxmox users against fakepve: fakepve checks every request against Proxmox's
schema but stores no user or ACL, so these tests read the requests it recorded."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from labkit.adapters.proxmox import access
from labkit.adapters.proxmox.client import PveClient
from labkit.adapters.proxmox.settings import load_proxmox_settings
from labkit.errors import LabkitError
from tests.adapters.proxmox.pvx import pvx, pvx_home  # noqa: F401


def _writes(pvx) -> list[tuple[str, str, dict[str, list[str]]]]:  # noqa: F811
    out = []
    for method, path, body in pvx.control("bodies"):
        if method in ("POST", "PUT", "DELETE") and path.startswith("/api2/json/access"):
            out.append((method, path[len("/api2/json"):], urllib.parse.parse_qs(body or "")))
    return out


def test_create_and_remove_candidate_access(pvx, pvx_home: Path) -> None:  # noqa: F811
    api = PveClient(load_proxmox_settings(pvx_home))
    creds = access.create_candidate_access(api, "acc1", "Alice Martin", lifetime=3600)
    assert creds.userid == "lk-acc1@pve" and creds.pool == "lk-acc1"
    assert len(creds.password) >= 20 and creds.password not in repr(creds)
    writes = _writes(pvx)
    methods = [(m, p) for m, p, _ in writes]
    assert ("POST", "/access/users") in methods and ("PUT", "/access/acl") in methods
    role = [b for m, p, b in writes if (m, p) == ("POST", "/access/roles")]
    # fakepve's role list (built-in roles) does not hold ours: made, with exactly VM.Audit + VM.Console
    assert role == [{"roleid": ["LabkitCandidate"], "privs": ["VM.Audit,VM.Console"]}]
    user = next(b for m, p, b in writes if (m, p) == ("POST", "/access/users"))
    assert user["userid"] == ["lk-acc1@pve"] and user["enable"] == ["1"]
    assert "Alice Martin" in user["comment"][0] and "acc1" in user["comment"][0]
    assert user["password"] == ["***"]  # sent, and redacted by fakepve's recorder
    assert int(user["expire"][0]) > 0
    acl = next(b for m, p, b in writes if (m, p) == ("PUT", "/access/acl"))
    assert acl == {"path": ["/pool/lk-acc1"], "roles": ["LabkitCandidate"], "users": ["lk-acc1@pve"],
                   "propagate": ["1"]}

    pvx.control("bodies", clear=True)
    removed = access.remove_candidate_access(api, "acc1")
    assert removed == ["proxmox user lk-acc1@pve"]
    writes = _writes(pvx)
    assert [(m, p) for m, p, _ in writes] == [("PUT", "/access/acl"), ("DELETE", "/access/users/lk-acc1@pve")]
    assert writes[0][2] == {"path": ["/pool/lk-acc1"], "roles": ["LabkitCandidate"], "users": ["lk-acc1@pve"],
                            "delete": ["1"]}


def test_acl_failure_removes_the_user(pvx, pvx_home: Path) -> None:  # noqa: F811
    api = PveClient(load_proxmox_settings(pvx_home))
    pvx.control("fail", method="PUT", suffix="/access/acl", status=500, message="acl write failed", times=1)
    with pytest.raises(LabkitError, match="acl write failed"):
        access.create_candidate_access(api, "acc2", "Bob")
    methods = [(m, p) for m, p, _ in _writes(pvx)]
    assert methods.index(("POST", "/access/users")) < len(methods) - 1
    assert methods[-1] == ("DELETE", "/access/users/lk-acc2@pve")


def test_role_privileges_are_set_back() -> None:
    calls: list[tuple[str, str, dict[str, object]]] = []

    class Api:
        def call(self, method: str, path: str, /, **params: object) -> object:
            calls.append((method, path, params))
            if method == "GET":
                return [{"roleid": "LabkitCandidate", "privs": "VM.Audit,VM.Console,VM.PowerMgmt"}]
            return None

    access.ensure_role(Api())
    assert calls[-1] == ("PUT", "/access/roles/LabkitCandidate", {"privs": "VM.Audit,VM.Console"})
    calls.clear()

    class Same(Api):
        def call(self, method: str, path: str, /, **params: object) -> object:
            calls.append((method, path, params))
            return [{"roleid": "LabkitCandidate", "privs": "VM.Console,VM.Audit"}]

    access.ensure_role(Same())
    assert [c[0] for c in calls] == ["GET"]
