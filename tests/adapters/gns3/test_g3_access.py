"""Candidates' access on the REAL gns3-server 3.0.6 (G1's ``gns3_server`` fixture): what
candidate A's token can and cannot do on A's project and on B's, and that ``remove`` leaves
nothing. Every refusal is checked by its HTTP status."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets

from labkit.adapters.gns3 import access
from labkit.adapters.gns3.client import Gns3ApiError, Gns3Client
from tests.adapters.gns3.g3cand import LabProject, admin_settings, delete_project, make_lab_project, refused, unique

PREFIX = "lkt-g3acc-"  # every object these tests make
FORBIDDEN_IN_ROLE = {
    "Node.Allocate", "Node.Modify", "Node.PowerMgmt", "Link.Allocate", "Link.Modify", "Link.Capture",
    "Project.Modify", "Project.Allocate", "Snapshot.Restore", "Snapshot.Allocate",
    "Drawing.Allocate", "Drawing.Modify",
}
FORBIDDEN_FAMILIES = ("Template.", "Compute.", "Image.", "Appliance.", "Symbol.", "Pool.", "User.", "Group.",
                      "Role.", "ACE.")


@dataclass
class Seat:
    lab: LabProject
    grant: access.CandidateAccess
    client: Gns3Client  # the candidate's own token


@pytest.fixture(scope="module")
def admin(gns3_server) -> Iterator[Gns3Client]:
    with Gns3Client(admin_settings(gns3_server)) as c:
        yield c


@pytest.fixture(scope="module", autouse=True)
def nothing_left_at_the_end(admin) -> Iterator[None]:
    """After the module: no project, user, pool or ACE of these tests stays on the server."""
    yield
    users = {u["user_id"]: u["username"] for u in admin.get("/access/users")}
    left = [f"project {p['name']}" for p in admin.get("/projects") if p["name"].startswith(PREFIX)]
    left += [f"user {n}" for n in users.values() if n.startswith(PREFIX)]
    left += [f"pool {p['name']}" for p in admin.get("/pools") if p["name"].startswith(PREFIX)]
    left += [f"ACE {a['path']}" for a in admin.get("/access/acl")
             if str(users.get(a.get("user_id"), "")).startswith(PREFIX)]
    assert left == []


@pytest.fixture(scope="module")
def seats(gns3_server, admin, tmp_path_factory) -> Iterator[dict[str, Seat]]:
    d = tmp_path_factory.mktemp("g3access")
    made: dict[str, Seat] = {}
    try:
        for who in ("a", "b"):
            name = unique(f"lkt-g3acc-{who}")
            lab = make_lab_project(admin, name)
            grant = access.grant(admin, admin.settings, name, lab.project_id, d / f"{who}.pw", name=name,
                                 candidate=f"candidate {who}")
            pw = grant.password_file.read_text().strip()
            made[who] = Seat(lab, grant, admin.as_user(grant.user, pw))
        yield made
    finally:
        for seat in made.values():
            seat.client.close()
            access.remove(admin, seat.grant.user, password_file=seat.grant.password_file)
            delete_project(admin, seat.lab.project_id)
            assert access.leftovers(admin, seat.grant.user) == []


# ---------------------------------------------------------------------- the role


def test_role_is_narrower_than_the_builtin_user_and_is_set_back(admin):
    role_id = access.ensure_role(admin)
    roles = {r["name"]: r for r in admin.get("/access/roles")}
    ours = {p["name"] for p in roles[access.ROLE]["privileges"]}
    builtin_user = {p["name"] for p in roles["User"]["privileges"]}
    assert ours == set(access.PRIVILEGES)
    assert ours < builtin_user
    assert not ours & FORBIDDEN_IN_ROLE
    assert not [p for p in ours if p.startswith(FORBIDDEN_FAMILIES)]
    # someone widens the role by hand: the next ensure_role narrows it again, same role
    privs = {p["name"]: p["privilege_id"] for p in admin.get("/access/privileges")}
    admin.put(f"/access/roles/{role_id}/privileges/{privs['Link.Modify']}")
    admin.delete(f"/access/roles/{role_id}/privileges/{privs['Node.Console']}")
    assert access.ensure_role(admin) == role_id
    again = {p["name"] for p in admin.get(f"/access/roles/{role_id}/privileges")}
    assert again == set(access.PRIVILEGES)


# ---------------------------------------------------------------------- what a candidate gets


def test_grant_writes_a_private_password_and_shows_no_secret(seats, gns3_server):
    g = seats["a"].grant
    mode = stat.S_IMODE(os.stat(g.password_file).st_mode)
    assert mode == 0o600
    password = g.password_file.read_text().strip()
    assert len(password) >= 20
    text = "\n".join(g.lines())
    assert gns3_server.url in text and g.user in text and str(g.password_file) in text
    assert seats["a"].lab.name in text
    assert password not in text and password not in str(g) and password not in str(g.provider_data())
    assert access.access_lines(gns3_server.url, g.provider_data()) == g.lines()  # from the state alone
    assert access.access_lines(gns3_server.url, {"project": "x"}) == []
    me = seats["a"].client.get("/access/users/me")
    assert me["username"] == g.user and me["is_superadmin"] is False


@pytest.mark.parametrize("who", ["a", "b"])
def test_candidate_reads_own_project_nodes_and_links(seats, who):
    seat, lab = seats[who], seats[who].lab
    c, pid = seat.client, lab.project_id
    assert [p["project_id"] for p in c.get("/projects")] == [pid]
    assert c.get(f"/projects/{pid}")["name"] == lab.name
    assert {n["name"] for n in c.get(f"/projects/{pid}/nodes")} == set(lab.nodes)
    assert c.get(f"/projects/{pid}/nodes/{lab.nodes['r1']}")["name"] == "r1"
    assert {link["link_id"] for link in c.get(f"/projects/{pid}/links")} == set(lab.links.values())
    assert c.get(f"/projects/{pid}/links/{lab.links['grader']}")["suspend"] is False
    assert [s["name"] for s in c.get(f"/projects/{pid}/snapshots")] == ["labkitbase"]
    assert c.get(f"/projects/{pid}/drawings") == []


@pytest.mark.parametrize(("who", "other"), [("a", "b"), ("b", "a")])
def test_candidate_cannot_list_or_read_the_other_project(seats, who, other):
    c, lab = seats[who].client, seats[other].lab
    pid = lab.project_id
    assert pid not in {p["project_id"] for p in c.get("/projects")}
    assert refused(c, "GET", f"/projects/{pid}") == 403
    assert refused(c, "GET", f"/projects/{pid}/nodes") == 403
    assert refused(c, "GET", f"/projects/{pid}/nodes/{lab.nodes['r1']}") == 403
    assert refused(c, "GET", f"/projects/{pid}/links") == 403
    assert refused(c, "GET", f"/projects/{pid}/links/{lab.links['lab']}") == 403
    assert refused(c, "GET", f"/projects/{pid}/nodes/{lab.nodes['r1']}/links") == 403
    assert refused(c, "GET", f"/projects/{pid}/snapshots") == 403
    assert refused(c, "GET", f"/projects/{pid}/files/project-files") == 403
    assert refused(c, "GET", f"/projects/{pid}/export") == 403
    assert refused(c, "GET", f"/pools/{seats[other].grant.pool_id}") == 403


@pytest.mark.parametrize(("who", "target"), [("a", "a"), ("a", "b"), ("b", "b"), ("b", "a")])
def test_candidate_cannot_touch_any_link(seats, admin, who, target):
    c, lab = seats[who].client, seats[target].lab
    pid = lab.project_id
    for key, lid in lab.links.items():
        base = f"/projects/{pid}/links/{lid}"
        assert refused(c, "PUT", base, {"suspend": True}) == 403, key
        assert refused(c, "PUT", base, {"filters": {"packet_loss": [100]}}) == 403, key
        assert refused(c, "POST", f"{base}/reset", {}) == 403, key
        assert refused(c, "DELETE", base) == 403, key
        assert refused(c, "POST", f"{base}/capture/start", {}) == 403, key
        assert refused(c, "POST", f"{base}/capture/stop", {}) == 403, key
        assert refused(c, "GET", f"{base}/capture/stream") == 403, key
    assert refused(c, "POST", f"/projects/{pid}/links", {"nodes": [
        {"node_id": lab.nodes["r1"], "adapter_number": 0, "port_number": 0},
        {"node_id": lab.nodes["grader"], "adapter_number": 0, "port_number": 0}]}) == 403
    assert refused(c, "POST", f"/projects/{pid}/nodes/{lab.nodes['grader']}/isolate", {}) == 403
    # and nothing changed: both links still there, not suspended, no filter
    links = {link["link_id"]: link for link in admin.get(f"/projects/{pid}/links")}
    assert set(links) == set(lab.links.values())
    assert all(not link["suspend"] and not link.get("filters") for link in links.values())


@pytest.mark.parametrize(("who", "target"), [("a", "a"), ("a", "b"), ("b", "b"), ("b", "a")])
def test_candidate_cannot_add_delete_modify_or_power_nodes(seats, admin, who, target):
    c, lab = seats[who].client, seats[target].lab
    pid, r1 = lab.project_id, lab.nodes["r1"]
    assert refused(c, "POST", f"/projects/{pid}/nodes",
                   {"name": "intruder", "node_type": "vpcs", "compute_id": "local"}) == 403
    assert refused(c, "DELETE", f"/projects/{pid}/nodes/{r1}") == 403
    assert refused(c, "PUT", f"/projects/{pid}/nodes/{r1}", {"name": "renamed"}) == 403
    assert refused(c, "POST", f"/projects/{pid}/nodes/{r1}/duplicate", {"x": 0, "y": 0}) == 403
    vpcs = next(t for t in admin.get("/templates") if t["name"] == "VPCS")
    assert refused(c, "POST", f"/projects/{pid}/templates/{vpcs['template_id']}", {"x": 0, "y": 0}) == 403
    for op in ("start", "stop", "suspend", "reload"):
        assert refused(c, "POST", f"/projects/{pid}/nodes/{r1}/{op}", {}) == 403, op
        assert refused(c, "POST", f"/projects/{pid}/nodes/{op}", {}) == 403, op
    nodes = {n["name"] for n in admin.get(f"/projects/{pid}/nodes")}
    assert nodes == set(lab.nodes)


@pytest.mark.parametrize(("who", "target"), [("a", "a"), ("a", "b"), ("b", "b"), ("b", "a")])
def test_candidate_cannot_snapshot_restore_or_modify_the_project(seats, admin, who, target):
    c, lab = seats[who].client, seats[target].lab
    pid = lab.project_id
    assert refused(c, "POST", f"/projects/{pid}/snapshots", {"name": "mine"}) == 403
    assert refused(c, "POST", f"/projects/{pid}/snapshots/{lab.snapshot_id}/restore", {}) == 403
    assert refused(c, "DELETE", f"/projects/{pid}/snapshots/{lab.snapshot_id}") == 403
    assert refused(c, "PUT", f"/projects/{pid}", {"name": "renamed"}) == 403
    assert refused(c, "DELETE", f"/projects/{pid}") == 403
    assert refused(c, "POST", f"/projects/{pid}/close", {}) == 403
    assert refused(c, "POST", f"/projects/{pid}/lock", {}) == 403
    assert refused(c, "POST", f"/projects/{pid}/duplicate", {"name": unique("lkt-g3acc-dup")}) == 403
    assert refused(c, "POST", f"/projects/{pid}/drawings",
                   {"svg": "<svg height=\"10\" width=\"10\"></svg>", "x": 0, "y": 0}) == 403
    assert refused(c, "POST", "/projects", {"name": unique("lkt-g3acc-new")}) == 403
    assert admin.get(f"/projects/{pid}")["name"] == lab.name
    assert [s["name"] for s in admin.get(f"/projects/{pid}/snapshots")] == ["labkitbase"]


@pytest.mark.parametrize("who", ["a", "b"])
def test_candidate_cannot_grant_itself_anything(seats, admin, who):
    seat, other = seats[who], seats["b" if who == "a" else "a"]
    c = seat.client
    role_id = access.ensure_role(admin)
    privs = {p["name"]: p["privilege_id"] for p in admin.get("/access/privileges")}
    admin_role = next(r for r in admin.get("/access/roles") if r["name"] == "Administrator")
    assert refused(c, "POST", "/access/acl", {"ace_type": "user", "path": "/", "propagate": True, "allowed": True,
                                              "user_id": seat.grant.user_id, "role_id": admin_role["role_id"]}) == 403
    assert refused(c, "POST", "/access/acl", {"ace_type": "user", "path": f"/pools/{other.grant.pool_id}",
                                              "user_id": seat.grant.user_id, "role_id": role_id}) == 403
    assert refused(c, "PUT", f"/access/acl/{seat.grant.ace_id}", {"ace_type": "user", "path": "/",
                                                                  "user_id": seat.grant.user_id,
                                                                  "role_id": admin_role["role_id"]}) == 403
    assert refused(c, "DELETE", f"/access/acl/{other.grant.ace_id}") == 403
    assert refused(c, "GET", "/access/acl") == 403
    assert refused(c, "PUT", f"/access/roles/{role_id}/privileges/{privs['Link.Modify']}") == 403
    assert refused(c, "POST", "/access/roles", {"name": unique("lkt-g3acc-role")}) == 403
    assert refused(c, "GET", "/access/users") == 403
    assert refused(c, "PUT", f"/access/users/{seat.grant.user_id}", {"is_active": True}) == 403
    assert refused(c, "PUT", f"/access/users/{other.grant.user_id}", {"password": "x" * 20}) == 403
    admins = next(g for g in admin.get("/access/groups") if g["name"] == "Administrators")
    assert refused(c, "PUT", f"/access/groups/{admins['user_group_id']}/members/{seat.grant.user_id}") == 403
    assert refused(c, "POST", "/pools", {"name": unique("lkt-g3acc-pool")}) == 403
    assert refused(c, "PUT", f"/pools/{seat.grant.pool_id}/resources/{other.lab.project_id}") == 403
    assert refused(c, "DELETE", f"/pools/{seat.grant.pool_id}/resources/{seat.lab.project_id}") == 403
    ace = next(a for a in admin.get("/access/acl") if a["ace_id"] == seat.grant.ace_id)
    assert ace["path"] == f"/pools/{seat.grant.pool_id}" and ace["role_id"] == role_id


def _console(url: str, token: str, lab: LabProject, node: str) -> tuple[bytes, str]:
    """What the web console of ``node`` (GNS3's ``/console/ws``) gives within a few seconds:
    (the console's bytes, how the connection ended)."""
    ws_url = f"{url.replace('http://', 'ws://')}/v3/projects/{lab.project_id}/nodes/{lab.nodes[node]}/console/ws"

    async def talk() -> tuple[bytes, str]:
        got = b""
        try:
            async with websockets.connect(f"{ws_url}?token={token}", open_timeout=15) as ws:
                await ws.send("\r\n")
                end = time.monotonic() + 8
                while time.monotonic() < end and b"PC1>" not in got:
                    try:
                        msg = await asyncio.wait_for(ws.recv(), 1)
                    except TimeoutError:
                        continue
                    got += msg if isinstance(msg, bytes) else msg.encode()
                return got, "open"
        except websockets.ConnectionClosed as exc:
            return got, f"closed ({exc})"

    return asyncio.run(talk())


def test_candidate_uses_its_own_web_console_only(seats, admin, gns3_server):
    """Node.Console: A's token opens the web console of A's node (the stand-in VPCS prompt) and
    not B's. GNS3 accepts the WebSocket before checking the privilege, so the refusal has no
    HTTP status: the server closes the connection and no console byte comes through."""
    started = []
    try:
        for seat in seats.values():
            admin.post(f"/projects/{seat.lab.project_id}/nodes/{seat.lab.nodes['r1']}/start", {})
            started.append(seat.lab)
        for who, other in (("a", "b"), ("b", "a")):
            g = seats[who].grant
            token = httpx.post(f"{gns3_server.url}/v3/access/users/authenticate", timeout=30, json={
                "username": g.user, "password": g.password_file.read_text().strip()}).json()["access_token"]
            own, how = _console(gns3_server.url, token, seats[who].lab, "r1")
            assert b"PC1>" in own and how == "open", (own, how)
            theirs, how = _console(gns3_server.url, token, seats[other].lab, "r1")
            assert theirs == b"" and how.startswith("closed"), (theirs, how)
    finally:
        for lab in started:
            admin.post(f"/projects/{lab.project_id}/nodes/{lab.nodes['r1']}/stop", {})


def test_telnet_consoles_are_outside_gns3_rbac(seats, admin, gns3_server):
    """What the RBAC does NOT cover (documented in access.py): a node's telnet console is a
    bare TCP port of the compute, with no login. Whoever reaches the compute's console address
    gets any node's console, B's included, with no GNS3 account at all; a centre keeps the
    console port range away from candidates and gives them the web console."""
    lab = seats["b"].lab
    admin.post(f"/projects/{lab.project_id}/nodes/{lab.nodes['r1']}/start", {})
    try:
        node = admin.get(f"/projects/{lab.project_id}/nodes/{lab.nodes['r1']}")
        assert node["console_type"] == "telnet"

        def peek() -> bytes:
            import socket

            got = b""
            with socket.create_connection((node["console_host"], node["console"]), timeout=5) as sk:
                sk.sendall(b"\r\n")
                end = time.monotonic() + 8
                while time.monotonic() < end and b"PC1>" not in got:
                    try:
                        chunk = sk.recv(4096)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    got += chunk
            return got

        assert b"PC1>" in gns3_server.in_netns(peek)  # no token, no user: the console answers
    finally:
        admin.post(f"/projects/{lab.project_id}/nodes/{lab.nodes['r1']}/stop", {})


def _token(url: str, grant: access.CandidateAccess) -> str:
    return str(httpx.post(f"{url}/v3/access/users/authenticate", timeout=30, json={
        "username": grant.user, "password": grant.password_file.read_text().strip()}).json()["access_token"])


def test_the_graders_capture_files_are_blanked_for_the_candidate(seats, admin, gns3_server):
    """Project.Audit lets A read files of A's project, the captures of A's links included (the
    file name is in the link): scrub_captures blanks them once the capture is over. B never
    reads A's (403)."""
    lab, pid = seats["a"].lab, seats["a"].lab.project_id
    lid = lab.links["grader"]
    admin.post(f"/projects/{pid}/nodes/start", {})
    try:
        name = admin.post(f"/projects/{pid}/links/{lid}/capture/start", {})["capture_file_name"]
        time.sleep(1)
        admin.post(f"/projects/{pid}/links/{lid}/capture/stop", {})
        path = f"{gns3_server.url}/v3/projects/{pid}/files/project-files/captures/{name}"
        as_a = {"Authorization": f"Bearer {_token(gns3_server.url, seats['a'].grant)}"}
        as_b = {"Authorization": f"Bearer {_token(gns3_server.url, seats['b'].grant)}"}
        before = httpx.get(path, headers=as_a, timeout=30)
        assert before.status_code == 200 and before.content[:4] == bytes.fromhex("d4c3b2a1")  # a pcap
        assert httpx.get(path, headers=as_b, timeout=30).status_code == 403
        assert access.scrub_captures(admin, pid) == [name]
        after = httpx.get(path, headers=as_a, timeout=30)
        assert after.status_code == 200 and after.content == b""
        assert refused(seats["a"].client, "POST", f"/projects/{pid}/files/project-files/captures/{name}") == 403
    finally:
        admin.post(f"/projects/{pid}/nodes/stop", {})


def test_a_project_in_no_pool_is_invisible_to_candidates(seats, admin):
    outside = make_lab_project(admin, unique("lkt-g3acc-nopool"), snapshot=False)
    try:
        for who in ("a", "b"):
            c = seats[who].client
            assert outside.project_id not in {p["project_id"] for p in c.get("/projects")}
            assert refused(c, "GET", f"/projects/{outside.project_id}") == 403
            assert refused(c, "GET", f"/projects/{outside.project_id}/nodes") == 403
            assert refused(c, "GET", f"/projects/{outside.project_id}/links") == 403
    finally:
        delete_project(admin, outside.project_id)


# ---------------------------------------------------------------------- remove


def _login_status(url: str, user: str, password: str) -> int:
    return httpx.post(f"{url}/v3/access/users/authenticate", json={"username": user, "password": password},
                      timeout=30).status_code


def test_remove_leaves_nothing_and_the_name_can_be_granted_again(gns3_server, admin, tmp_path):
    name = unique("lkt-g3acc-rm")
    lab = make_lab_project(admin, name, snapshot=False)
    try:
        g = access.grant(admin, admin.settings, name, lab.project_id, tmp_path / "pw", name=name)
        pw = g.password_file.read_text().strip()
        assert _login_status(gns3_server.url, name, pw) == 200
        assert len(access.leftovers(admin, name)) == 3  # user, pool, ACE
        removed = access.remove(admin, name, password_file=g.password_file)
        assert len(removed) == 4, removed  # ACE, pool, user, password file
        assert access.leftovers(admin, name) == []
        assert not g.password_file.exists()
        assert g.ace_id not in {a["ace_id"] for a in admin.get("/access/acl")}
        assert _login_status(gns3_server.url, name, pw) == 401
        assert access.remove(admin, name) == []  # idempotent
        # a new project of the same name in a pool of the same name: GNS3 keeps no stale resource
        delete_project(admin, lab.project_id)
        lab = make_lab_project(admin, name, snapshot=False)
        g2 = access.grant(admin, admin.settings, name, lab.project_id, tmp_path / "pw", name=name)
        with admin.as_user(name, g2.password_file.read_text().strip()) as c:
            assert [p["project_id"] for p in c.get("/projects")] == [lab.project_id]
        access.remove(admin, name, password_file=g2.password_file)
        assert access.leftovers(admin, name) == []
    finally:
        access.remove(admin, name)
        delete_project(admin, lab.project_id)


def test_remove_from_the_name_alone_when_only_part_exists(admin):
    name = unique("lkt-g3acc-half")
    lab = make_lab_project(admin, name, snapshot=False)
    try:
        # only a user (a crash right after creating it)
        admin.post("/access/users", {"username": name, "password": "p" * 20})
        assert access.leftovers(admin, name) == [f"gns3 user {name}"]
        assert access.remove(admin, name) == [f"gns3 user {name}"]
        # only a pool holding the project (a crash before the user)
        pool_id = access.ensure_pool(admin, name, lab.project_id)
        assert [r["resource_id"] for r in admin.get(f"/pools/{pool_id}/resources")] == [lab.project_id]
        assert access.remove(admin, name) == [f"gns3 pool {name}"]
        assert access.leftovers(admin, name) == []
        # the project can go into a pool again (its resource row went with the pool's content)
        pool_id = access.ensure_pool(admin, name, lab.project_id)
        assert access.remove(admin, name) == [f"gns3 pool {name}"]
    finally:
        access.remove(admin, name)
        delete_project(admin, lab.project_id)


class _FailingAce(Gns3Client):
    """Labkit's admin client whose ACE creation fails (a grant broken midway)."""

    def request(self, method, path, **kw):  # type: ignore[override]
        if method == "POST" and path == "/access/acl":
            raise Gns3ApiError("injected", 500, "injected failure")
        return super().request(method, path, **kw)


def test_a_grant_failing_midway_leaves_nothing(gns3_server, tmp_path):
    name = unique("lkt-g3acc-fail")
    with Gns3Client(admin_settings(gns3_server)) as admin, _FailingAce(admin_settings(gns3_server)) as broken:
        lab = make_lab_project(admin, name, snapshot=False)
        try:
            with pytest.raises(Gns3ApiError) as err:
                access.grant(broken, broken.settings, name, lab.project_id, tmp_path / "pw", name=name)
            assert err.value.status == 500
            assert access.leftovers(admin, name) == []
            assert not (tmp_path / "pw").exists()
        finally:
            access.remove(admin, name)
            delete_project(admin, lab.project_id)


def test_a_bad_name_is_refused_before_anything_is_made(admin, tmp_path):
    from labkit.errors import UserError

    with pytest.raises(UserError, match="cannot be a GNS3 user name"):
        access.grant(admin, admin.settings, "x", "00000000-0000-4000-8000-000000000000", tmp_path / "pw",
                     name="lk.bad name")
    assert not (tmp_path / "pw").exists()


def test_password_file_mode_is_fixed_when_it_existed(admin, tmp_path):
    name = unique("lkt-g3acc-mode")
    lab = make_lab_project(admin, name, snapshot=False)
    pw = Path(tmp_path / "pw")
    pw.write_text("old\n")
    pw.chmod(0o644)
    try:
        g = access.grant(admin, admin.settings, name, lab.project_id, pw, name=name)
        assert stat.S_IMODE(pw.stat().st_mode) == 0o600
        assert pw.read_text().strip() != "old"
        assert g.project == name
    finally:
        access.remove(admin, name, password_file=pw)
        delete_project(admin, lab.project_id)


def test_the_shared_role_is_kept_while_an_ace_uses_it(seats, admin):
    assert access.drop_role(admin) is False
    assert access.ROLE in {r["name"] for r in admin.get("/access/roles")}


class _RolesOnly:
    """A client stand-in for drop_role's deletion branch (the real server keeps the role while
    other tests' ACEs use it)."""

    def __init__(self, aces: list[dict]):
        self.aces = aces
        self.deleted: list[str] = []

    def get(self, path: str) -> list[dict]:
        return {"/access/roles": [{"name": access.ROLE, "role_id": "r-1"}], "/access/acl": self.aces}[path]

    def delete(self, path: str) -> None:
        self.deleted.append(path)


def test_drop_role_deletes_the_role_only_when_no_ace_uses_it():
    busy = _RolesOnly([{"role_id": "r-1", "path": "/pools/p"}])
    assert access.drop_role(busy) is False and busy.deleted == []  # type: ignore[arg-type]
    idle = _RolesOnly([{"role_id": "other", "path": "/pools/p"}])
    assert access.drop_role(idle) is True and idle.deleted == ["/access/roles/r-1"]  # type: ignore[arg-type]
