"""The GNS3 test harness itself: a real gns3-server 3.0.6 in its own namespace, the stand-ins,
the relay, and a clean teardown (nothing in the host's root namespace, nothing left after)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.adapters.gns3.conftest import Gns3TestServer
from tests.adapters.gns3.g3server import NETNS_DIR, PREFIX, venv_dir

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[2]


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}


def _wait(pred, timeout: float = 20.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _node(c: httpx.Client, pid: str, template: str, name: str, x: int = 0) -> dict:
    tid = {t["name"]: t["template_id"] for t in c.get("/templates").json()}[template]
    r = c.post(f"/projects/{pid}/templates/{tid}", json={"x": x, "y": 0, "name": name, "compute_id": "local"})
    assert r.status_code == 201, r.text
    # gns3-server 3.0.6 ignores "name" when it makes a node from a template: rename it
    r = c.put(f"/projects/{pid}/nodes/{r.json()['node_id']}", json={"name": name})
    assert r.status_code == 200, r.text
    return r.json()


def _link(c: httpx.Client, pid: str, a: dict, pa: int, b: dict, pb: int) -> dict:
    r = c.post(f"/projects/{pid}/links", json={"nodes": [
        {"node_id": a["node_id"], "adapter_number": 0 if a["node_type"] == "ethernet_switch" else pa,
         "port_number": pa if a["node_type"] == "ethernet_switch" else 0},
        {"node_id": b["node_id"], "adapter_number": 0 if b["node_type"] == "ethernet_switch" else pb,
         "port_number": pb if b["node_type"] == "ethernet_switch" else 0}]})
    assert r.status_code == 201, r.text
    return r.json()


def _console(server: Gns3TestServer, port: int, prompt: bytes, command: bytes, answer: bytes) -> None:
    """Type ``command`` on a node's telnet console (through a relay into the GNS3 host)."""
    with socket.create_connection(("127.0.0.1", server.relay(port)), timeout=10) as s:
        s.settimeout(10)
        seen = b""

        def got(what: bytes) -> bool:
            nonlocal seen
            seen += s.recv(4096)
            return what in seen

        _wait(lambda: got(prompt), what=f"the console prompt {prompt!r}")
        seen = b""
        s.sendall(command + b"\r\n")
        _wait(lambda: got(answer), what=f"the console's answer to {command!r}")


def _ping(server: Gns3TestServer, address: str, expect: bool = True) -> None:
    r = server.ns_run(["ping", "-c", "2", "-i", "0.3", "-W", "1", address], timeout=30)
    assert (r.returncode == 0) == expect, r.stdout + r.stderr


def test_version_through_the_relay(gns3_server: Gns3TestServer) -> None:
    assert gns3_server.url.startswith("http://127.0.0.1:")
    r = httpx.get(f"{gns3_server.url}/v3/version", timeout=10)
    assert r.status_code == 200 and r.json()["version"] == "3.0.6"
    # the server itself listens inside the GNS3 host namespace only; in the root namespace only
    # the relay (this test process) listens, on 127.0.0.1
    assert "127.0.0.1:3080" in gns3_server.ns_run(["ss", "-Hltn"]).stdout
    root = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    assert f"pid={gns3_server.server_pid}," not in root
    port = gns3_server.url.rsplit(":", 1)[1]
    mine = [line for line in root.splitlines() if f":{port} " in line]
    assert mine and all(f"pid={os.getpid()}," in line and "127.0.0.1:" in line for line in mine), mine


def test_bad_login_is_refused(gns3_server: Gns3TestServer) -> None:
    with pytest.raises(httpx.HTTPStatusError) as err:
        gns3_server.client(password="wrong")
    assert err.value.response.status_code == 401


def test_templates_for_the_shipped_roles(gns3_server: Gns3TestServer) -> None:
    import yaml

    roles = set()
    for topo in (PROJECT / "topologies").glob("*.yaml"):
        for node in yaml.safe_load(topo.read_text(encoding="utf-8")).get("nodes", []):
            roles.add(node["role"])
    assert roles and roles <= set(gns3_server.templates)
    with gns3_server.client() as c:
        names = {t["name"]: t for t in c.get("/templates").json()}
    for role in roles:
        assert names[gns3_server.templates[role]]["template_type"] == gns3_server.template_type


def test_nodes_start_stop_capture_and_stay_in_the_namespace(gns3_server: Gns3TestServer) -> None:
    before = _root_links()
    bridge = "lkbt" + uuid.uuid4().hex[:8]
    assert gns3_server.ns_run(["ip", "link", "add", bridge, "type", "bridge"]).returncode == 0
    name = f"lk-harness-{uuid.uuid4().hex[:8]}"
    with gns3_server.client() as c:
        pid = c.post("/projects", json={"name": name}).json()["project_id"]
        try:
            sw = _node(c, pid, "Ethernet switch", "sw1")
            pc = _node(c, pid, "VPCS", "pc1", 100)
            node = _node(c, pid, gns3_server.templates["router"], "r1", 200)
            cloud = _node(c, pid, "Cloud", "grader", 300)
            r = c.put(f"/projects/{pid}/nodes/{cloud['node_id']}", json={"properties": {"ports_mapping": [
                {"name": bridge, "port_number": 0, "type": "ethernet", "interface": bridge}]}})
            assert r.status_code == 200, r.text
            l_pc = _link(c, pid, sw, 0, pc, 0)
            l_r1 = _link(c, pid, sw, 1, node, 0)
            _link(c, pid, sw, 2, cloud, 0)
            r = c.post(f"/projects/{pid}/nodes/start", json={})
            assert r.status_code == 204, r.text
            nodes = {n["name"]: n for n in c.get(f"/projects/{pid}/nodes").json()}
            assert {n: nodes[n]["status"] for n in nodes} == dict.fromkeys(("sw1", "pc1", "r1", "grader"), "started")

            # the stand-in uBridge got the commands: the VPCS tunnel, the cloud's TAP on the bridge
            log = gns3_server.ubridge_log()
            assert f"bridge create VPCS-{pc['node_id']}" in log
            assert any(line.startswith(f"bridge start VPCS-{pc['node_id']}") for line in log)
            assert any(line.startswith(f"brctl addif \"{bridge}\" \"gns3tap") for line in log)
            # the TAP is real, in the GNS3 host namespace, enslaved to the host bridge
            ns_links = gns3_server.ns_run(["ip", "-o", "link", "show", "master", bridge]).stdout
            assert "gns3tap" in ns_links

            # a link capture: the stand-in writes a pcap the API streams
            r = c.post(f"/projects/{pid}/links/{l_pc['link_id']}/capture/start", json={})
            assert r.status_code == 201, r.text
            # a ping through the switch to the VPCS stand-in: set its address on its console
            _console(gns3_server, nodes["pc1"]["console"], b"PC1>", b"ip 192.0.2.10/24", b"192.0.2.10")
            up = gns3_server.ns_run(["sh", "-c", f"ip addr add 192.0.2.1/24 dev {bridge} && ip link set {bridge} up"])
            assert up.returncode == 0, up.stderr
            _ping(gns3_server, "192.0.2.10")
            # a delay filter holds frames back (both ways: the VPCS side's uBridge bridge)
            r = c.put(f"/projects/{pid}/links/{l_pc['link_id']}", json={"filters": {"delay": [150]}})
            assert r.status_code == 200, r.text
            out = gns3_server.ns_run(["ping", "-c", "1", "-W", "3", "192.0.2.10"]).stdout
            rtt = float(re.search(r"time=([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
            assert rtt >= 280, out
            # an empty filter set would not reach the compute, nor would {"packet_loss": [0]} (the
            # controller drops zero-valued filters): a non-empty neutral one does (see conftest)
            r = c.put(f"/projects/{pid}/links/{l_pc['link_id']}", json={"filters": {"packet_loss": [0]}})
            assert r.status_code == 200 and r.json()["filters"] == {}, r.text
            assert gns3_server.ubridge_log()[-1] == f"bridge add_packet_filter VPCS-{pc['node_id']} filter0 delay 150"
            r = c.put(f"/projects/{pid}/links/{l_pc['link_id']}", json={"filters": {"bpf": ["ether proto 0x88b5"]}})
            assert r.status_code == 200, r.text
            assert gns3_server.ubridge_log()[-2:] == [
                f"bridge reset_packet_filters VPCS-{pc['node_id']}",
                f'bridge add_packet_filter VPCS-{pc["node_id"]} filter0 bpf "ether proto 0x88b5"']
            out = gns3_server.ns_run(["ping", "-c", "1", "-W", "3", "192.0.2.10"]).stdout
            assert float(re.search(r"time=([\d.]+) ms", out).group(1)) < 150, out  # type: ignore[union-attr]
            # the QEMU node (no guest OS) answers on adapter 0 once its console gave it an address
            if gns3_server.template_type == "qemu":
                _console(gns3_server, nodes["r1"]["console"], b"r1>", b"ip 0 192.0.2.20/24", b"192.0.2.20")
                _ping(gns3_server, "192.0.2.20")
                assert any(line.startswith("r1 argv ") and "-netdev socket,id=gns3-0" in line
                           for line in gns3_server.qemu_log())
                # a suspended link: gns3-server cuts the carrier (monitor) and drops frames (uBridge)
                r = c.put(f"/projects/{pid}/links/{l_r1['link_id']}", json={"suspend": True})
                assert r.status_code == 200, r.text
                assert "r1 set_link gns3-0 off" in gns3_server.qemu_log()
                _ping(gns3_server, "192.0.2.20", expect=False)
                r = c.put(f"/projects/{pid}/links/{l_r1['link_id']}", json={"suspend": False})
                assert r.status_code == 200 and r.json()["suspend"] is False, r.text
                # gns3-server 3.0.6 bug: the compute copies a NIO's suspend/filters only when they
                # are truthy (api/routes/compute/qemu_nodes.py "if nio_data.suspend:"), so resuming
                # re-sends "set_link ... off" and the old filter; the link stays cut ...
                assert gns3_server.qemu_log()[-1] == "r1 set_link gns3-0 off"
                _ping(gns3_server, "192.0.2.20", expect=False)
                # ... until the link is reset (its NIOs made again from the controller's state)
                r = c.post(f"/projects/{pid}/links/{l_r1['link_id']}/reset", json={})
                assert r.status_code == 200, r.text
                assert gns3_server.qemu_log()[-1] == "r1 set_link gns3-0 on"
                _ping(gns3_server, "192.0.2.20")
            data = b""
            with c.stream("GET", f"/projects/{pid}/links/{l_pc['link_id']}/capture/stream", timeout=10) as st:
                assert st.status_code == 200
                for chunk in st.iter_bytes():
                    data += chunk
                    if len(data) >= 24 + 16 + 98 * 2:
                        break
            magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", data[:24])
            assert (magic, linktype) == (0xA1B2C3D4, 1)
            assert len(data) > 24  # frames of the ping, not just the header
            r = c.post(f"/projects/{pid}/links/{l_pc['link_id']}/capture/stop", json={})
            assert r.status_code == 204, r.text
            assert any(line.startswith("nio bind_filter") and line.endswith("capture")
                       for line in gns3_server.dynamips_log())

            # suspend and filters reach the stand-in (on the filter side of the link: the VPCS)
            r = c.put(f"/projects/{pid}/links/{l_pc['link_id']}", json={"filters": {"packet_loss": [100]}})
            assert r.status_code == 200, r.text
            assert f"bridge add_packet_filter VPCS-{pc['node_id']} filter0 packet_loss 100" in gns3_server.ubridge_log()

            r = c.post(f"/projects/{pid}/nodes/stop", json={})
            assert r.status_code == 204, r.text
            nodes = {n["name"]: n["status"] for n in c.get(f"/projects/{pid}/nodes").json()}
            assert nodes["pc1"] == "stopped" and nodes["r1"] == "stopped"
        finally:
            c.post(f"/projects/{pid}/close", json={})
            c.delete(f"/projects/{pid}")
            gns3_server.ns_run(["ip", "link", "del", bridge])
    assert _root_links() == before  # nothing of GNS3's appeared in the host's root namespace
    assert not gns3_server.leftovers()


def _harness(*extra: str) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen([sys.executable, str(HERE / "g3server.py"), *extra], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    info = json.loads(line) if line else {"error": proc.stderr.read() if proc.stderr else ""}
    assert "error" not in info, info
    return proc, info


def _processes_of(scratch: str) -> list[str]:
    """Live processes whose command line or working directory names the run's scratch dir
    (gns3-server, and every uBridge/Dynamips/VPCS/QEMU it started: they work in its projects)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
            if "State:\tZ" in (proc / "status").read_text():
                continue
        except OSError:
            continue
        if scratch in cmd or cwd.startswith(scratch):
            found.append(f"{proc.name} {cmd[:120]}")
    return found


def _gone(info: dict) -> None:
    ns = info["namespace"]
    _wait(lambda: not (NETNS_DIR / ns).exists(), what=f"namespace {ns} removed")
    assert not Path(info["scratch"]).exists()
    assert not _processes_of(info["scratch"])


def _start_a_node(info: dict, project: str) -> None:
    """A started VPCS node (its VPCS and uBridge processes) in the harness run ``info``."""
    r = httpx.post(f"{info['url']}/v3/access/users/authenticate", timeout=30,
                   json={"username": info["admin_user"], "password": info["admin_password"]})
    with httpx.Client(base_url=f"{info['url']}/v3", timeout=30,
                      headers={"Authorization": f"Bearer {r.json()['access_token']}"}) as c:
        pid = c.post("/projects", json={"name": project}).json()["project_id"]
        tid = {t["name"]: t["template_id"] for t in c.get("/templates").json()}["VPCS"]
        node = c.post(f"/projects/{pid}/templates/{tid}", json={"x": 0, "y": 0, "compute_id": "local"}).json()
        assert c.post(f"/projects/{pid}/nodes/{node['node_id']}/start", json={}).status_code == 204
    assert len(_processes_of(info["scratch"])) >= 2  # gns3-server and the node's VPCS


def test_teardown_leaves_nothing(gns3_server: Gns3TestServer) -> None:
    before = _root_links()
    proc, info = _harness("--venv", str(venv_dir()))
    assert (NETNS_DIR / info["namespace"]).exists()
    assert httpx.get(f"{info['url']}/v3/version", timeout=10).json()["version"] == "3.0.6"
    _start_a_node(info, "lk-teardown")
    assert proc.stdin is not None
    proc.stdin.close()  # the harness stops when its stdin closes
    assert proc.wait(60) == 0
    _gone(info)
    assert _root_links() == before


def test_a_crashed_harness_is_cleaned_by_the_next_start(gns3_server: Gns3TestServer) -> None:
    proc, info = _harness("--venv", str(venv_dir()))
    try:
        _start_a_node(info, "lk-crash")  # a running node in the crashed run: swept too
        assert len(subprocess.run(["ip", "netns", "pids", info["namespace"]], capture_output=True,
                                  text=True).stdout.split()) >= 2  # gns3-server and the node's processes
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert (NETNS_DIR / info["namespace"]).exists()  # left behind by the crash
    assert Path(info["scratch"]).exists()
    # gns3-server got SIGTERM with its parent (PR_SET_PDEATHSIG); what it started may still run
    proc2, info2 = _harness("--venv", str(venv_dir()))
    try:
        _gone(info)  # the new start removed the dead run's namespace, processes and scratch dir
        assert not list(NETNS_DIR.glob(f"{PREFIX}{proc.pid}-*"))
    finally:
        assert proc2.stdin is not None
        proc2.stdin.close()
        proc2.wait(60)
    _gone(info2)


def test_relay_reaches_a_second_service_in_the_namespace(gns3_server: Gns3TestServer) -> None:
    """relay(port) is how tests reach a service of the GNS3 host (a console, the agent's SSH)."""
    def listen() -> socket.socket:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        return srv

    srv = gns3_server.in_netns(listen)
    port = srv.getsockname()[1]
    try:
        local = gns3_server.relay(port)
        with socket.create_connection(("127.0.0.1", local), timeout=10) as cli:
            conn, _ = srv.accept()
            with conn:
                cli.sendall(b"ping\n")
                assert conn.recv(16) == b"ping\n"
                conn.sendall(b"pong\n")
                assert cli.recv(16) == b"pong\n"
        # the listener is inside the namespace only: the same port of the root namespace is not it
        with socket.socket() as probe:
            probe.settimeout(2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                srv.settimeout(1)
                with pytest.raises(TimeoutError):
                    srv.accept()
    finally:
        srv.close()


def test_write_settings_gives_a_loadable_gns3_toml(gns3_server: Gns3TestServer, tmp_path: Path) -> None:
    from labkit.adapters.gns3.settings import load_gns3_settings

    path = gns3_server.write_settings(tmp_path, parallel=2, grader={"host": "127.0.0.1", "port": 2222})
    assert path == tmp_path / "gns3.toml"
    assert (tmp_path / "gns3-password").stat().st_mode & 0o777 == 0o600
    s = load_gns3_settings(tmp_path)
    assert (s.url, s.user, s.password) == (gns3_server.url, gns3_server.admin_user, gns3_server.admin_password)
    assert s.templates == gns3_server.templates and set(s.templates) >= {"router", "server", "workstation"}
    assert s.parallel == 2 and s.grader is not None and s.grader.port == 2222
    gns3_server.write_settings(tmp_path, templates=None)
    assert load_gns3_settings(tmp_path).templates == {}


def test_g3_ctx_is_a_private_home_configured_for_the_server(g3_ctx, gns3_server: Gns3TestServer) -> None:  # type: ignore[no-untyped-def]
    from labkit.adapters.gns3.settings import configured, load_gns3_settings

    home = g3_ctx.settings.home
    assert os.environ["LABKIT_HOME"] == str(home) and "LABKIT_GNS3_PASSWORD" not in os.environ
    assert configured(home) and load_gns3_settings(home).url == gns3_server.url
    assert g3_ctx.store.names() == []


def test_leftovers_lists_what_labkit_left(gns3_server: Gns3TestServer) -> None:
    tag = f"lk-left-{uuid.uuid4().hex[:6]}"
    made: list[tuple[str, str]] = []
    with gns3_server.client() as c:
        try:
            project = c.post("/projects", json={"name": tag}).json()
            made.append((f"/projects/{project['project_id']}", "project"))
            user = c.post("/access/users", json={"username": tag, "password": "lk-" + uuid.uuid4().hex}).json()
            made.append((f"/access/users/{user['user_id']}", "user"))
            pool = c.post("/pools", json={"name": tag}).json()
            made.append((f"/pools/{pool['resource_pool_id']}", "pool"))
            role = c.post("/access/roles", json={"name": tag}).json()
            made.append((f"/access/roles/{role['role_id']}", "role"))
            r = c.post("/access/acl", json={"ace_type": "user", "path": f"/pools/{pool['resource_pool_id']}",
                                             "user_id": user["user_id"], "role_id": role["role_id"]})
            assert r.status_code == 201, r.text
            made.insert(0, (f"/access/acl/{r.json()['ace_id']}", "ace"))
            found = gns3_server.leftovers()
            for kind in ("project", "user", "pool", "role"):
                assert f"{kind} {tag}" in found, found
            assert any(f.startswith(f"ace {r.json()['ace_id']}") for f in found), found
        finally:
            c.post(f"/projects/{project['project_id']}/close", json={})
            for url, _ in made:
                c.delete(url)
    assert not [f for f in gns3_server.leftovers() if tag in f]


def test_a_missing_venv_says_how_to_make_it(tmp_path: Path) -> None:
    from tests.adapters.gns3.g3server import G3Server, HarnessError

    with pytest.raises(HarnessError, match=r"scripts/gns3-venv\.sh .*LABKIT_GNS3_VENV"):
        G3Server(tmp_path / "no-venv")


def test_gns3_venv_script_is_idempotent() -> None:
    t0 = time.monotonic()
    out = subprocess.run(["bash", str(PROJECT / "scripts" / "gns3-venv.sh"), str(venv_dir())], capture_output=True,
                         text=True, timeout=600, check=True)
    assert out.stdout.strip() == str(venv_dir() / "bin" / "gns3server")
    assert time.monotonic() - t0 < 5  # the stamp is there: nothing installed again
