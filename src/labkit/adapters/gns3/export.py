"""The candidate's GNS3 project as evidence: a ``.gns3project`` archive in the run.

``GET /projects/{id}/export`` (gns3-server 3.0.6, ``api/routes/controller/projects.py``) with:

- ``include_images=false``: appliance images are the centre's, large, and the same for all;
- ``include_snapshots=false``: ``labkitbase`` is labkit's reset point, not the candidate's work;
- ``reset_mac_addresses=false``: the MACs in the archive are the ones the wire evidence saw;
- ``keep_compute_ids=false``: GNS3 then strips the computes' block (it may hold a compute's
  password) and the archive imports on any server;
- ``compression=zip`` (deflate): GNS3's default is zstd, which Python's ``zipfile`` before 3.14
  cannot read, so labkit could not check the archive.

GNS3 refuses to export a project whose nodes run ("Project must be stopped", 409), and grading
happens while they run. Then labkit writes an archive of its own with the same layout: the
project's live ``.gns3`` file (``GET /projects/{id}/files/<filename>``, which GNS3 rewrites on
every change) as ``project.gns3``, patched like GNS3's export does (computes stripped, nodes on
``local``), and ``labkit-export.txt`` saying that node files (configs, disks) are not in it.

The download is streamed to ``<dest>.part`` and bounded (``max_bytes`` and a time limit): over
the bound, the partial file is removed and a :class:`~labkit.errors.ProviderError` says so.
The finished archive is checked (a zip whose ``project.gns3`` is a GNS3 topology) before it is
renamed to ``dest``.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

from labkit.adapters.gns3.client import Gns3ApiError, Gns3Client
from labkit.errors import ProviderError

EXPORT_PARAMS = {
    "include_images": "false",
    "include_snapshots": "false",
    "reset_mac_addresses": "false",
    "keep_compute_ids": "false",
    "compression": "zip",
}
TOPOLOGY_ONLY_NOTE = (
    "labkit: the project's nodes were running when it was graded, and GNS3 exports only stopped\n"
    "projects; this archive holds the project's topology (project.gns3, as GNS3 kept it at that\n"
    "moment) but not the nodes' files (configurations, disks).\n"
)


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def export_project(client: Gns3Client, project_id: str, dest: Path, max_bytes: int, *,
                   time_limit: float = 600.0, running: str = "topology") -> Path:
    """Export the project to ``dest`` (a file path); returns ``dest``.

    ``running``: what to do when GNS3 refuses because nodes run: ``"topology"`` (the default:
    the topology-only archive described above) or ``"error"`` (a ProviderError)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        try:
            _download(client, project_id, part, max_bytes, time_limit)
        except Gns3ApiError as exc:
            if not (exc.status == 409 and "stopped" in exc.detail and running == "topology"):
                raise ProviderError(f"GNS3 did not export project {project_id} ({exc.status}: {exc.detail}); "
                                    "the run has no project archive.") from None
            _topology_only(client, project_id, part, max_bytes)
        check_archive(part, max_bytes)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _download(client: Gns3Client, project_id: str, part: Path, max_bytes: int, time_limit: float) -> None:
    deadline = time.monotonic() + time_limit
    size = 0
    with client.stream("GET", f"/projects/{project_id}/export", params=EXPORT_PARAMS) as resp, \
            open(part, "wb") as fh:
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise ProviderError(f"the GNS3 export of project {project_id} is larger than {_mb(max_bytes)} "
                                    "(export_max_mb in gns3.toml); it was not kept: raise export_max_mb if "
                                    "such projects are expected.")
            if time.monotonic() > deadline:
                raise ProviderError(f"the GNS3 export of project {project_id} took longer than "
                                    f"{time_limit:.0f} s ({_mb(size)} so far); it was not kept.")
            fh.write(chunk)


def _topology_only(client: Gns3Client, project_id: str, part: Path, max_bytes: int) -> None:
    project = client.get(f"/projects/{project_id}")
    filename = str(project.get("filename") or f"{project.get('name', 'project')}.gns3")
    topology = client.get(f"/projects/{project_id}/files/{filename}")
    if isinstance(topology, str):
        topology = json.loads(topology)
    if not isinstance(topology, dict) or not isinstance(topology.get("topology"), dict):
        raise ProviderError(f"GNS3's project file {filename} of project {project_id} is not a GNS3 topology; "
                            "the run has no project archive.")
    _patch_like_gns3(topology)
    data = json.dumps(topology).encode()
    if len(data) > max_bytes:
        raise ProviderError(f"the GNS3 project file of project {project_id} is larger than {_mb(max_bytes)} "
                            "(export_max_mb in gns3.toml); it was not kept.")
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("project.gns3", data)
        zf.writestr("labkit-export.txt", TOPOLOGY_ONLY_NOTE)


def _patch_like_gns3(topology: dict[str, Any]) -> None:
    """What GNS3's export does to project.gns3 with keep_compute_ids=false
    (``controller/export_project.py: _patch_project_file``)."""
    topo = topology["topology"]
    for node in topo.get("nodes") or []:
        node["compute_id"] = "local"
    topo["computes"] = []


def check_archive(path: Path, max_bytes: int) -> dict[str, Any]:
    """``path`` is a valid zip whose ``project.gns3`` is a GNS3 topology; that topology."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise ProviderError(f"the GNS3 export {path.name} is corrupt ({bad}); it was not kept.")
            try:
                info = zf.getinfo("project.gns3")
            except KeyError:
                raise ProviderError(f"the GNS3 export {path.name} has no project.gns3; it was not kept.") from None
            if info.file_size > max_bytes:
                raise ProviderError(f"project.gns3 in the GNS3 export is larger than {_mb(max_bytes)}; "
                                    "it was not kept.")
            topology = json.loads(zf.read(info))
    except (zipfile.BadZipFile, NotImplementedError, ValueError) as exc:
        raise ProviderError(f"the GNS3 export {path.name} is not a readable archive ({exc}); "
                            "it was not kept.") from None
    topo = topology.get("topology") if isinstance(topology, dict) else None
    if not isinstance(topo, dict) or not isinstance(topo.get("nodes"), list) or not isinstance(topo.get("links"), list):
        raise ProviderError(f"project.gns3 in the GNS3 export {path.name} is not a GNS3 topology; it was not kept.")
    return dict(topology)
