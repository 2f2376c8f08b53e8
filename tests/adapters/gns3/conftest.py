"""A REAL gns3-server 3.0.6 for labkit's GNS3 tests (GPL-3.0, test-only: a separate process
from its own venv, never imported here), run by tests/adapters/gns3/g3server.py in a "GNS3 host"
network namespace ``lkt-g3-<pid>-<n>``; the project's stand-ins (tests/adapters/gns3/standins/:
``ubridge``, ``dynamips`` for the Ethernet switch/hub, ``vpcs``) move real frames inside it.

HOW TO USE (any test module in tests/adapters/gns3/ gets these fixtures)::

    def test_x(gns3_server, g3_ctx):
        gns3_server.url              # "http://127.0.0.1:PORT" (a relay into the namespace)
        gns3_server.admin_user, gns3_server.admin_password   # an Administrator account
        gns3_server.namespace        # "lkt-g3-...": the GNS3 host's network namespace
        gns3_server.server_pid       # gns3-server's pid
        gns3_server.templates        # lab role -> template name made on the server (see below)
        gns3_server.ubridge_log()    # every command the stand-in uBridge got, in order
        gns3_server.dynamips_log()   # same for the stand-in Dynamips (switches, link captures)
        gns3_server.qemu_log()       # stand-in QEMU: "<vm> argv ..." per start, "<vm> <monitor cmd>"
        gns3_server.relay(port)      # a 127.0.0.1 port of the root namespace -> 127.0.0.1:port
                                     # inside the GNS3 host (a console, labkit's agent SSH server)
        gns3_server.in_netns(fn)     # run fn() in a thread inside the GNS3 host namespace
        gns3_server.ns_run(["ip", "-o", "link"])  # a command inside it (CompletedProcess)
        gns3_server.write_settings(home, **overrides)  # <home>/gns3.toml + a 0600 password file
        gns3_server.leftovers()      # projects/users/pools/roles/ACEs/templates named "lk-..."
        gns3_server.client()         # an httpx.Client on <url>/v3, logged in as admin
        g3_ctx                       # a usecases Context on a private LABKIT_HOME with gns3.toml

- Everything GNS3 listens on (the API on 3080, node consoles, uBridge/Dynamips hypervisors,
  the links' UDP ports) is on 127.0.0.1 INSIDE the namespace: the same port of the root
  namespace is something else (or nothing). Reach a console with ``relay(node["console"])``.
  ``write_settings`` writes ``console_host = "127.0.0.1"`` (what gns3-server reports).
- ``gns3_server`` is session-scoped (one server per xdist worker, ~6 s to start). Tests share
  it: name what you make with unique names and remove it (``leftovers()`` must stay empty).
- Templates (made once per server, names ``lkt-<role>``) for the roles of the shipped labs'
  topologies (router, server, workstation): QEMU templates (``adapters = 8``, a qcow2 disk) run
  by the stand-in ``qemu-system-x86_64`` when it is available (``gns3_server.template_type``
  says ``"qemu"``), otherwise VPCS templates (one adapter only). The node types that start:
  Ethernet switch/hub, cloud, VPCS, QEMU (stand-ins; no guest OS runs: a QEMU node answers
  nothing on its links, a VPCS node answers ARP and ping for the address set on its console).
- ``g3_ctx`` (function scope): ``Context(Settings(home=tmp/home, run_dir=tmp/run,
  project=<this checkout>))``, LABKIT_HOME/LABKIT_RUN_DIR set, LABKIT_GNS3_CONFIG and
  LABKIT_GNS3_PASSWORD unset, gns3.toml written by ``write_settings``; instances left in the
  store are brought down at the end.
- The gns3-server venv comes from ``scripts/gns3-venv.sh`` (path: env LABKIT_GNS3_VENV, default
  /var/lib/labkit/gns3-venv). If it is missing, the fixture FAILS (never skips) saying how to
  make it.
- Debugging: LABKIT_G3_KEEP_LOGS=<dir> keeps the server's log and the stand-ins' logs there;
  LABKIT_G3_DEBUG=1 runs gns3-server with --debug (port allocations and releases are logged).

GNS3-SERVER 3.0.6 BEHAVIOUR SEEN WITH THIS HARNESS (read its sources to confirm; tests rely on it):
- ``POST /projects/{id}/templates/{tid}`` ignores ``name``: rename with ``PUT /nodes/{id}
  {"name": ...}``. Pass ``compute_id: "local"`` (templates made without one otherwise pick "a
  connected compute", none at all during the first second of the server).
- Un-suspending a link or clearing its filters does NOT reach the compute: the compute copies a
  NIO's ``suspend``/``filters`` only when truthy (api/routes/compute/{qemu,vpcs,cloud,...}_nodes.py
  ``if nio_data.filters:`` / ``if nio_data.suspend:``), so ``PUT /links/{id} {"suspend": false}``
  or ``{"filters": {}}`` re-applies the OLD filter (and QEMU gets ``set_link gns3-N off`` again):
  the link stays cut. ``POST /links/{id}/reset`` (same link id; NIOs made again from the
  controller's state) restores it; test_g3_harness.py shows both. The controller also drops
  zero-valued filters (``{"packet_loss": [0]}`` becomes ``{}``); a non-empty filter that
  drops nothing (a BPF expression no frame matches, as adapters/gns3/wire.py uses) does replace
  an old filter (the stand-in uBridge accepts ``bpf`` filters without applying them: it cannot
  prove an expression matches nothing). But once a QEMU link was
  suspended, its compute NIO keeps ``suspend = true`` (every later update, and every node start,
  sends ``set_link gns3-N off`` again) until the link is reset.
- Link filters/suspend act on the link's "filter node" (the first of vpcs/qemu/cloud/nat/...;
  never the Ethernet switch): uBridge ``bridge add_packet_filter <bridge> filter0 <type> <args>``
  (suspend = ``frequency_drop -1``). Link captures run on the switch side when there is one
  (Dynamips ``nio bind_filter <nio> 2 capture`` + ``nio setup_filter ... en10mb "<file>"``),
  otherwise on the node's uBridge (``bridge start_capture``).
- Capture stop answers 204, capture start 201, node start/stop 204, PUT link 200.
- A cloud port on a Linux bridge of the GNS3 host (``{"type": "ethernet", "interface": BR}``)
  becomes a TAP ``gns3tap<i>-<port>`` enslaved to BR (``brctl addif``), in the GNS3 host
  namespace; the cloud lists only the interfaces of that namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adapters.gns3.g3server import G3Server, HarnessError, in_netns, venv_dir

PROJECT = Path(__file__).resolve().parents[3]
ROLES = ("router", "server", "workstation")  # the roles of topologies/*.yaml
TEMPLATE_PREFIX = "lkt-"
LEFTOVER_PREFIX = "lk-"
QEMU_DISK = "lkt-base.qcow2"


class Gns3TestServer:
    """The facts and helpers tests use (see the module's docstring)."""

    def __init__(self, server: G3Server):
        self._server = server
        self.url = server.url
        self.admin_user = server.admin_user
        self.admin_password = server.admin_password
        self.namespace = server.namespace
        self.server_pid = server.proc.pid if server.proc else None
        self.templates: dict[str, str] = {}
        self.template_type = ""

    # -- logs and namespace
    def ubridge_log(self) -> list[str]:
        return self._server.ubridge_log()

    def dynamips_log(self) -> list[str]:
        return self._server.dynamips_log()

    def qemu_log(self) -> list[str]:
        return self._server.qemu_log()

    def binds_log(self) -> list[str]:
        return self._server.binds_log()

    def server_log(self) -> str:
        return self._server.server_log()

    def relay(self, port: int) -> int:
        return self._server.relay(port)

    def in_netns(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        return in_netns(self.namespace, fn, timeout)

    def ns_run(self, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *argv], capture_output=True, text=True,
                              timeout=timeout, check=False)

    # -- API
    def client(self, user: str | None = None, password: str | None = None) -> httpx.Client:
        r = httpx.post(f"{self.url}/v3/access/users/authenticate", timeout=60,
                       json={"username": user or self.admin_user, "password": password or self.admin_password})
        r.raise_for_status()
        return httpx.Client(base_url=f"{self.url}/v3", timeout=60,
                            headers={"Authorization": f"Bearer {r.json()['access_token']}"})

    def write_settings(self, home: Path, **overrides: Any) -> Path:
        """``<home>/gns3.toml`` pointing at this server (admin account, password in
        ``<home>/gns3-password`` mode 0600, ``[templates]`` for every role); keyword arguments
        replace keys (``templates={...}``, ``grader={"host": ..., "port": ...}``, ``parallel=2``;
        a value None removes the key)."""
        home.mkdir(parents=True, exist_ok=True)
        pw = home / "gns3-password"
        pw.write_text(self.admin_password + "\n", encoding="utf-8")
        pw.chmod(0o600)
        values: dict[str, Any] = {"url": self.url, "user": self.admin_user, "password_file": str(pw),
                                  "compute_id": "local", "console_host": "127.0.0.1", "api_timeout": 60.0,
                                  "start_timeout": 60.0, "templates": dict(self.templates), **overrides}
        values = {k: v for k, v in values.items() if v is not None}
        path = home / "gns3.toml"
        path.write_text(_toml(values), encoding="utf-8")
        return path

    def leftovers(self, prefix: str = LEFTOVER_PREFIX) -> list[str]:
        """What labkit made and left: projects, users, pools, custom roles, templates whose name
        starts with ``prefix``, and ACEs that name such a user, pool or role."""
        with self.client() as c:
            out = [f"project {p['name']}" for p in c.get("/projects").json() if p["name"].startswith(prefix)]
            users = {u["user_id"]: u["username"] for u in c.get("/access/users").json()}
            out += [f"user {n}" for n in users.values() if n.startswith(prefix)]
            pools = {p["resource_pool_id"]: p["name"] for p in c.get("/pools").json()}
            out += [f"pool {n}" for n in pools.values() if n.startswith(prefix)]
            roles = {r["role_id"]: r for r in c.get("/access/roles").json()}
            out += [f"role {r['name']}" for r in roles.values() if not r.get("is_builtin")
                    and r["name"].startswith(prefix)]
            out += [f"template {t['name']}" for t in c.get("/templates").json() if t["name"].startswith(prefix)]
            for ace in c.get("/access/acl").json():
                user = users.get(ace.get("user_id") or "", "")
                pool_ids = [p for p in pools if ace["path"].startswith(f"/pools/{p}")]
                role = roles.get(ace["role_id"], {}).get("name", "")
                if user.startswith(prefix) or any(pools[p].startswith(prefix) for p in pool_ids) \
                        or (role.startswith(prefix) and not roles.get(ace["role_id"], {}).get("is_builtin")):
                    out.append(f"ace {ace['ace_id']} {ace['path']} user={user or ace.get('user_id')} role={role}")
        return out

    # -- set-up
    def make_templates(self) -> None:
        with self.client() as c:
            qemu = self._server.qemu_available()
            self.template_type = "qemu" if qemu else "vpcs"
            if qemu:  # a blank qcow2 base disk, made by the server with the stand-in qemu-img
                r = c.post(f"/images/qemu/{QEMU_DISK}", json={"format": "qcow2", "size": 64})
                if r.status_code != 201:
                    raise HarnessError(f"cannot create the disk image {QEMU_DISK}: {r.status_code} {r.text[:300]}")
            for role in ROLES:
                name = f"{TEMPLATE_PREFIX}{role}"
                if qemu:
                    body = {"name": name, "template_type": "qemu", "compute_id": "local", "adapters": 8,
                            "adapter_type": "virtio-net-pci", "ram": 256, "console_type": "telnet",
                            "qemu_path": qemu, "hda_disk_image": QEMU_DISK,
                            "default_name_format": "{name}-{0}"}
                else:
                    body = {"name": name, "template_type": "vpcs", "compute_id": "local"}
                r = c.post("/templates", json=body)
                if r.status_code != 201:
                    raise HarnessError(f"cannot create template {name}: {r.status_code} {r.text[:300]}")
                self.templates[role] = name


def _toml(values: dict[str, Any]) -> str:
    """TOML for flat keys plus one level of tables (JSON strings/numbers/bools are valid TOML)."""
    flat = [f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict)]
    tables = [f"\n[{k}]\n" + "".join(f"{json.dumps(kk)} = {json.dumps(vv)}\n" for kk, vv in v.items())
              for k, v in values.items() if isinstance(v, dict)]
    return "\n".join(flat) + "\n" + "".join(tables)


@pytest.fixture(scope="session")
def gns3_server() -> Iterator[Gns3TestServer]:
    if os.geteuid() != 0:
        pytest.fail("the GNS3 tests need root (they make a network namespace for the GNS3 host)")
    try:
        server = G3Server(venv_dir())
    except HarnessError as exc:
        pytest.fail(str(exc))
    try:
        server.start()
        facade = Gns3TestServer(server)
        facade.make_templates()
    except BaseException:
        server.stop()
        raise
    try:
        yield facade
    finally:
        server.stop()


@pytest.fixture
def g3_ctx(gns3_server: Gns3TestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from labkit.settings import Settings
    from labkit.usecases.lifecycle import Context, down

    home, run_dir = tmp_path / "home", tmp_path / "run"
    monkeypatch.setenv("LABKIT_HOME", str(home))
    monkeypatch.setenv("LABKIT_RUN_DIR", str(run_dir))
    monkeypatch.setenv("LABKIT_PROJECT", str(PROJECT))
    monkeypatch.delenv("LABKIT_GNS3_CONFIG", raising=False)
    monkeypatch.delenv("LABKIT_GNS3_PASSWORD", raising=False)
    gns3_server.write_settings(home)
    ctx = Context(Settings(home=home, run_dir=run_dir, project=PROJECT))
    yield ctx
    for name in ctx.store.names():
        down(ctx, name)
