"""Helpers of G3's tests (candidates' access, export) against the real gns3-server.

A "lab project" here: four VPCS nodes (VPCS nodes need no uBridge/Dynamips to be created, so
these tests do not depend on the stand-ins): ``r1``-``r2`` joined by the lab's link, and
``h1``-``grader`` joined by the "grader" link (on a real instance the grader is a cloud node;
GNS3's RBAC is by path, the node type does not change what a candidate may do).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from labkit.adapters.gns3.client import Gns3ApiError, Gns3Client
from labkit.adapters.gns3.settings import Gns3Settings


def admin_settings(server: Any) -> Gns3Settings:
    return Gns3Settings(url=server.url, user=server.admin_user, password=server.admin_password)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class LabProject:
    project_id: str
    name: str
    nodes: dict[str, str] = field(default_factory=dict)  # name -> node_id
    links: dict[str, str] = field(default_factory=dict)  # "lab" | "grader" -> link_id
    snapshot_id: str = ""


def make_lab_project(admin: Gns3Client, name: str, *, snapshot: bool = True) -> LabProject:
    p = admin.post("/projects", {"name": name, "auto_close": False})
    lab = LabProject(project_id=p["project_id"], name=p["name"])
    pid = lab.project_id
    for node in ("r1", "r2", "h1", "grader"):
        n = admin.post(f"/projects/{pid}/nodes", {"name": node, "node_type": "vpcs", "compute_id": "local"})
        lab.nodes[node] = n["node_id"]
    for key, (a, b) in {"lab": ("r1", "r2"), "grader": ("h1", "grader")}.items():
        link = admin.post(f"/projects/{pid}/links", {"nodes": [
            {"node_id": lab.nodes[a], "adapter_number": 0, "port_number": 0},
            {"node_id": lab.nodes[b], "adapter_number": 0, "port_number": 0}]})
        lab.links[key] = link["link_id"]
    if snapshot:
        lab.snapshot_id = admin.post(f"/projects/{pid}/snapshots", {"name": "labkitbase"})["snapshot_id"]
    return lab


def delete_project(admin: Gns3Client, project_id: str) -> None:
    try:
        admin.delete(f"/projects/{project_id}")
    except Gns3ApiError as exc:
        if exc.status != 404:
            raise


def refused(client: Gns3Client, method: str, path: str, json: Any = None) -> int:
    """The HTTP status of a refused call; fails the test if GNS3 accepted it."""
    try:
        answer = client.request(method, path, json=json)
    except Gns3ApiError as exc:
        return exc.status
    raise AssertionError(f"{client.user} was allowed {method} {path}: {str(answer)[:200]}")
