"""Test helpers of the GNS3 provider's tests (engineer G2): a project holding lab ``g3demo``
(the demo fixture lab on topology two-sites, one check needing vantage + grader_echo, no
baseline, no set-up playbook), and the templates its roles use on the test server."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[3]
FIXTURES = PROJECT / "tests" / "fixtures"
LAB_ID = "g3demo"
ROUTER_TEMPLATE = "lk-test-router"  # an Ethernet-switch-type template: 8 ports, no guest needed


def make_project(root: Path) -> Path:
    project = root / "project"
    shutil.copytree(FIXTURES / "topologies", project / "topologies")
    shutil.copytree(FIXTURES / "playbooks", project / "playbooks")
    text = (FIXTURES / "labs" / "demo" / "lab.yaml").read_text(encoding="utf-8")
    head, _, rest = text.partition("checks:\n")
    _, _, tail = rest.partition("solution:")
    check = ("checks:\n  - id: reach\n    title: {fr: Joignabilité, en: Reachability}\n    points: 10\n"
             "    grader: routing.lan_reachability\n    args:\n      vantage: [v1, v2]\n"
             '      hosts: {pc1: "{{ p.lana | host(10) }}", pc2: "{{ p.lanb | host(10) }}"}\n'
             "    criteria: [igs-b1-interconnexions]\n")
    lab = head.replace("id: demo\n", f"id: {LAB_ID}\n") + check + "solution:" + tail.replace(
        "fails: [ping]", "fails: [reach]")
    (project / "labs" / LAB_ID).mkdir(parents=True)
    (project / "labs" / LAB_ID / "lab.yaml").write_text(lab, encoding="utf-8")
    return project


def ensure_templates(client: Any) -> dict[str, str]:
    """The roles of g3demo -> template names, the router template made when missing."""
    names = {t["name"] for t in client.get("/templates")}
    if ROUTER_TEMPLATE not in names:
        client.post("/templates", {"name": ROUTER_TEMPLATE, "template_type": "ethernet_switch",
                                   "compute_id": "local", "console_type": "telnet",
                                   "default_name_format": "R{0}"})
    return {"router": ROUTER_TEMPLATE, "workstation": "VPCS"}
