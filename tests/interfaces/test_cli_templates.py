"""labkit templates build on the command line (fakepve in its own process). The CLI's real
SSH step cannot run here (no guest): the CLI is checked on templates already built (kept) and
on refused input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.interfaces.cli import main
from labkit.settings import load_settings
from labkit.usecases.lifecycle import Context
from labkit.usecases.templates import build
from tests.adapters.proxmox.pvx import fake_wheel, pvx, pvx_home, single_node_site  # noqa: F401

URL = "https://mirror.example.org/debian-12-genericcloud-amd64.qcow2"

WHEEL = fake_wheel()


@pytest.fixture
def home(pvx, pvx_home: Path) -> Path:  # noqa: F811
    single_node_site(pvx, pvx_home, "ct")
    return pvx_home


def test_kept_templates(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build(
        Context(load_settings()),
        "proxmox",
        image=URL,
        labs=["supervision-snmp"],
        build_ip="10.250.255.2/16",
        labkit_wheel=WHEEL,
        provision=lambda *a: None,
    )
    args = [
        "templates",
        "build",
        "--provider",
        "proxmox",
        "--image",
        URL,
        "--lab",
        "supervision-snmp",
        "--build-ip",
        "10.250.255.2/16",
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["kept", "lk-tpl-ct-supervision"], ["kept", "lk-tpl-ct-grader"]]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["outcome"] for d in data] == ["kept", "kept"] and "snmpd" in data[0]["packages"]


def test_bad_input_one_sentence(pvx, home: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    pvx.control("bodies", clear=True)
    assert (
        main(
            [
                "templates",
                "build",
                "--provider",
                "proxmox",
                "--image",
                "debian.iso",
                "--lab",
                "supervision-snmp",
                "--build-ip",
                "10.250.255.2/16",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "the image debian.iso is not a .qcow2, .raw or .vmdk disk image" in err and "Traceback" not in err
    assert main(["templates", "build", "--provider", "proxmox", "--image", URL, "--build-ip", "dhcp"]) == 2
    assert "--build-ip dhcp is not an address with its prefix" in capsys.readouterr().err
    assert not [p for m, p, _b in pvx.control("bodies") if m != "GET"]
    assert main(["templates", "build", "--provider", "netns", "--image", URL, "--build-ip", "10.0.0.2/24"]) == 2
    assert main(["templates", "build", "--provider", "proxmox", "--build-ip", "10.0.0.2/24"]) == 2
    assert "Missing option '--image'" in capsys.readouterr().err
