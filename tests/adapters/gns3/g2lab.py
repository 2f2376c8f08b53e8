"""Test helpers of the GNS3 provider's tests (engineer G2): a project holding lab ``g3demo``
(the demo fixture lab on topology two-sites, one check needing vantage + grader_echo, no
baseline, no set-up playbook), and the templates its roles use on the test server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[3]
LAB_ID = "g3demo"
ROUTER_TEMPLATE = "g2t-router"  # an Ethernet-switch-type template: 8 ports, telnet console, no guest


def make_project(root: Path) -> Path:
    from tests.conftest import reach_lab_project

    return reach_lab_project(root, LAB_ID)


def ensure_templates(client: Any, server: Any = None) -> dict[str, str]:
    """The roles of g3demo -> template names: routers from the harness's QEMU template (8
    adapters, the stand-in qemu) when it has one, else from an Ethernet-switch-type template
    (made when missing; its name does not start with "lk-": the harness counts those as
    labkit's leftovers); workstations from the built-in VPCS (its stand-in answers on its
    console and on its link)."""
    if server is not None and getattr(server, "template_type", "") == "qemu":
        return {"router": server.templates["router"], "workstation": "VPCS"}
    names = {t["name"] for t in client.get("/templates")}
    if ROUTER_TEMPLATE not in names:
        client.post("/templates", {"name": ROUTER_TEMPLATE, "template_type": "ethernet_switch",
                                   "compute_id": "local", "console_type": "telnet",
                                   "default_name_format": "R{0}"})
    return {"router": ROUTER_TEMPLATE, "workstation": "VPCS"}

# ---------------------------------------------------------------------- fixtures' helpers

def admin_client(server: Any) -> Any:
    from labkit.adapters.gns3.client import Gns3Client
    from labkit.adapters.gns3.settings import Gns3Settings

    return Gns3Client(Gns3Settings(url=server.url, user=server.admin_user, password=server.admin_password))


def write_config(server: Any, home: Path, templates: dict[str, str], **extra: Any) -> Path:
    """gns3.toml + a 0600 password file for the labkit home ``home``."""
    import json

    home.mkdir(parents=True, exist_ok=True)
    pw = home / "gns3-password"
    pw.write_text(server.admin_password, encoding="utf-8")
    pw.chmod(0o600)
    grader = extra.pop("grader", None)
    top = {"url": server.url, "user": server.admin_user, "password_file": str(pw), "start_timeout": 60,
           "api_timeout": 60, **extra}  # extra keys override the defaults
    lines = [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    lines.append("[templates]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in templates.items()]
    if grader:
        lines.append("[grader]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in grader.items()]
    path = home / "gns3.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_ctx(server: Any, root: Path, templates: dict[str, str], **extra: Any) -> Any:
    """A labkit Context on a private home under ``root`` configured for ``server``, lab g3demo."""
    from labkit.settings import Settings
    from labkit.usecases.lifecycle import Context

    project = root / "project"
    if not project.exists():
        make_project(root)
    home = root / "home"
    write_config(server, home, templates, **extra)
    return Context(Settings(home=home, run_dir=root / "run", project=project))


def home_objects(admin: Any, home_mark: str) -> list[str]:
    """Every project, user and pool on the server whose name carries ``home_mark``."""
    out = [f"project {p['name']}" for p in admin.get("/projects") if home_mark in str(p.get("name"))]
    out += [f"user {u['username']}" for u in admin.get("/access/users") if home_mark in str(u.get("username"))]
    out += [f"pool {p['name']}" for p in admin.get("/pools") if home_mark in str(p.get("name"))]
    return out



def own_server() -> Any:
    """A gns3-server of G1's harness (g3server.G3Server) for one test module: the provider's
    tests use the harness directly, so they do not depend on the state of the shared session
    fixture; stopped (namespace and scratch removed) by the caller."""
    from tests.adapters.gns3.g3server import G3Server, venv_dir

    return G3Server(venv_dir()).start()
