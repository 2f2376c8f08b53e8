"""The project export (``export.export_project``) against the REAL gns3-server 3.0.6 (G1's
``gns3_server`` fixture): a valid archive naming the project's nodes and links, MACs kept,
no snapshots, no images; bounded; a running project gives a topology-only archive that says so;
a candidate's token exports only its own project."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.adapters.gns3 import access, export
from labkit.adapters.gns3.client import Gns3ApiError, Gns3Client
from labkit.errors import ProviderError
from tests.adapters.gns3.g3cand import LabProject, admin_settings, delete_project, make_lab_project, unique


@pytest.fixture(scope="module")
def admin(gns3_server) -> Iterator[Gns3Client]:
    with Gns3Client(admin_settings(gns3_server)) as c:
        yield c


@pytest.fixture(scope="module")
def lab(admin) -> Iterator[LabProject]:
    lab = make_lab_project(admin, unique("lkt-g3exp"))  # with the snapshot labkitbase
    try:
        yield lab
    finally:
        delete_project(admin, lab.project_id)


def _topology(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return json.loads(zf.read("project.gns3"))


def test_export_is_a_valid_archive_naming_nodes_and_links(admin, lab, tmp_path):
    dest = tmp_path / "runs" / "project.gns3project"
    out = export.export_project(admin, lab.project_id, dest, 50_000_000)
    assert out == dest and dest.is_file()
    assert list(tmp_path.rglob("*.part")) == []
    with zipfile.ZipFile(dest) as zf:
        names = zf.namelist()
        assert {i.compress_type for i in zf.infolist()} <= {zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED}
    assert "project.gns3" in names
    assert not [n for n in names if "snapshots" in n], names  # snapshots out
    assert not [n for n in names if n.startswith("images/")], names  # images out
    assert "labkit-export.txt" not in names  # the real export, not the fallback
    topo = _topology(dest)
    assert topo["project_id"] == lab.project_id and topo["name"] == lab.name
    nodes = {n["node_id"]: n for n in topo["topology"]["nodes"]}
    assert {n["name"] for n in nodes.values()} == set(lab.nodes)
    assert {lk["link_id"] for lk in topo["topology"]["links"]} == set(lab.links.values())
    grader_link = next(lk for lk in topo["topology"]["links"] if lk["link_id"] == lab.links["grader"])
    assert {nodes[e["node_id"]]["name"] for e in grader_link["nodes"]} == {"h1", "grader"}
    assert topo["topology"]["computes"] == []  # a compute's credentials never leave the server
    # node properties as the server has them (reset_mac_addresses=false keeps a node's MAC;
    # VPCS nodes have no MAC property: a qemu node's was not observed here)
    for node in admin.get(f"/projects/{lab.project_id}/nodes"):
        assert nodes[node["node_id"]]["properties"] == node["properties"]


def test_export_over_the_bound_is_an_error_and_leaves_no_file(admin, lab, tmp_path):
    dest = tmp_path / "project.gns3project"
    with pytest.raises(ProviderError, match=r"larger than 0\.0 MB \(export_max_mb in gns3.toml\)"):
        export.export_project(admin, lab.project_id, dest, 100)
    assert list(tmp_path.iterdir()) == []


def test_export_over_the_time_limit_is_an_error_and_leaves_no_file(admin, lab, tmp_path):
    dest = tmp_path / "project.gns3project"
    with pytest.raises(ProviderError, match=r"took longer than 0 s .* it was not kept"):
        export.export_project(admin, lab.project_id, dest, 50_000_000, time_limit=0.0)
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_missing_project_is_an_error_and_leaves_no_file(admin, tmp_path):
    dest = tmp_path / "project.gns3project"
    with pytest.raises(ProviderError, match="did not export project .* \\(404"):
        export.export_project(admin, "00000000-0000-4000-8000-000000000000", dest, 50_000_000)
    assert list(tmp_path.iterdir()) == []


def test_a_running_project_gives_a_topology_only_archive_that_says_so(admin, tmp_path):
    lab = make_lab_project(admin, unique("lkt-g3exp-run"), snapshot=False)
    try:
        admin.post(f"/projects/{lab.project_id}/nodes/{lab.nodes['r1']}/start", {})
        assert admin.get(f"/projects/{lab.project_id}/nodes/{lab.nodes['r1']}")["status"] == "started"
        # GNS3 itself refuses (409), hence the fallback
        with pytest.raises(Gns3ApiError) as err, admin.stream("GET", f"/projects/{lab.project_id}/export"):
            pass
        assert err.value.status == 409 and "stopped" in err.value.detail
        with pytest.raises(ProviderError, match="409"):
            export.export_project(admin, lab.project_id, tmp_path / "strict.gns3project", 50_000_000,
                                  running="error")
        out = export.export_project(admin, lab.project_id, tmp_path / "p.gns3project", 50_000_000)
        with zipfile.ZipFile(out) as zf:
            assert sorted(zf.namelist()) == ["labkit-export.txt", "project.gns3"]
            assert "running" in zf.read("labkit-export.txt").decode()
        topo = _topology(out)
        assert {n["name"] for n in topo["topology"]["nodes"]} == set(lab.nodes)
        assert {lk["link_id"] for lk in topo["topology"]["links"]} == set(lab.links.values())
        assert topo["topology"]["computes"] == []
        assert {n["compute_id"] for n in topo["topology"]["nodes"]} == {"local"}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["p.gns3project"]
    finally:
        try:
            admin.post(f"/projects/{lab.project_id}/nodes/stop", {})
        finally:
            delete_project(admin, lab.project_id)


def test_check_archive_refuses_what_is_not_a_gns3_project(tmp_path):
    junk = tmp_path / "junk.gns3project"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ProviderError, match="not a readable archive"):
        export.check_archive(junk, 1000)
    nozip = tmp_path / "empty.gns3project"
    with zipfile.ZipFile(nozip, "w") as zf:
        zf.writestr("other.txt", "x")
    with pytest.raises(ProviderError, match="has no project.gns3"):
        export.check_archive(nozip, 1000)
    notopo = tmp_path / "notopo.gns3project"
    with zipfile.ZipFile(notopo, "w") as zf:
        zf.writestr("project.gns3", json.dumps({"topology": {"nodes": "x"}}))
    with pytest.raises(ProviderError, match="not a GNS3 topology"):
        export.check_archive(notopo, 1000)
    big = tmp_path / "big.gns3project"
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("project.gns3", json.dumps({"topology": {"nodes": [], "links": []}, "pad": "0" * 5000}))
    with pytest.raises(ProviderError, match="larger than"):
        export.check_archive(big, 1000)


def test_a_candidate_exports_only_its_own_project(admin, tmp_path):
    mine = make_lab_project(admin, unique("lkt-g3exp-a"), snapshot=False)
    other = make_lab_project(admin, unique("lkt-g3exp-b"), snapshot=False)
    try:
        g = access.grant(admin, admin.settings, mine.name, mine.project_id, tmp_path / "pw", name=mine.name)
        with admin.as_user(g.user, g.password_file.read_text().strip()) as cand:
            out = export.export_project(cand, mine.project_id, tmp_path / "mine.gns3project", 50_000_000)
            assert _topology(out)["project_id"] == mine.project_id
            with pytest.raises(ProviderError, match=r"\(403"):
                export.export_project(cand, other.project_id, tmp_path / "other.gns3project", 50_000_000)
        assert not (tmp_path / "other.gns3project").exists()
    finally:
        access.remove(admin, mine.name)
        delete_project(admin, mine.project_id)
        delete_project(admin, other.project_id)


# ---------------------------------------------------------------------- through grading


def test_a_graded_instance_keeps_its_project_in_the_sealed_run(gns3_server, admin, tmp_path, monkeypatch):
    """lab g3demo up on GNS3 (G2's provider) with labkit's grader agent in the GNS3 host
    (G4's ground), graded: the run holds attachments/project.gns3project, listed in the sealed
    manifest, a valid zip whose project.gns3 names the instance's nodes and links."""
    from labkit.adapters.storage.runs import MANIFEST, open_run
    from labkit.usecases import lifecycle
    from labkit.usecases.grade import grade
    from tests.adapters.gns3.g2lab import LAB_ID, ensure_templates, make_ctx
    from tests.adapters.gns3.g4lab import AgentHost

    agent = AgentHost(gns3_server.namespace, tmp_path / "agent", gns3_server.relay)
    name = unique("g3exp").replace("-", "x")[:20]
    ctx = None
    try:
        agent.start()
        grader = {"host": "127.0.0.1", "port": agent.port, "host_key": agent.host_pub,
                  "client_key_file": str(agent.client_key)}
        ctx = make_ctx(gns3_server, tmp_path, ensure_templates(admin, gns3_server), parallel=4, grader=grader)
        monkeypatch.setenv("LABKIT_PROJECT", str(ctx.settings.project))
        state = lifecycle.up(ctx, LAB_ID, instance=name, seed=11, provider="gns3", candidate="Alice")
        pid = state.provider_data["project_id"]
        summary = grade(ctx, name)
        run = ctx.settings.runs / summary.run_id
        open_run(ctx.settings.runs, summary.run_id)  # the seal holds (raises on any change)
        manifest = json.loads((run / MANIFEST).read_text())
        stored = run / "attachments" / "project.gns3project"
        assert "attachments/project.gns3project" in manifest["files"]
        rows = json.loads((run / "artifacts" / "attachments.json").read_text())
        assert [r["name"] for r in rows] == ["project.gns3project"], rows
        topo = _topology(stored)
        assert topo["project_id"] == pid and topo["name"] == state.provider_data["project"]
        nodes = admin.get(f"/projects/{pid}/nodes")
        links = admin.get(f"/projects/{pid}/links")
        assert {n["name"] for n in topo["topology"]["nodes"]} == {n["name"] for n in nodes}
        assert {"r1", "r2", "pc1", "pc2", "grader"} <= {n["name"] for n in nodes}
        assert {lk["link_id"] for lk in topo["topology"]["links"]} == {lk["link_id"] for lk in links}
        with zipfile.ZipFile(stored) as zf:  # graded while running: the topology-only archive
            assert "labkit-export.txt" in zf.namelist()
        lifecycle.down(ctx, name)
        assert ctx.provider("gns3").leftovers(name) == []
        assert pid not in {p["project_id"] for p in admin.get("/projects")}
    finally:
        try:
            if ctx is not None and ctx.store.exists(name):
                lifecycle.down(ctx, name)
        finally:
            agent.stop()
