"""labkit doctor on the command line (fakepve in its own process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.interfaces.cli import main
from labkit.settings import load_settings
from labkit.usecases.lifecycle import Context
from labkit.usecases.templates import build
from tests.adapters.proxmox.pvx import fake_wheel, pvx, pvx_home, single_node_site  # noqa: F401

WHEEL = fake_wheel()


def test_doctor_exit_codes_and_json(pvx, pvx_home: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    single_node_site(pvx, pvx_home, "cd")
    assert main(["doctor", "--provider", "proxmox", "--lab", "vpn-site-to-site"]) == 1
    text = capsys.readouterr().out
    assert "FAIL templates    template lk-tpl-cd-two-sites-internet is missing; run 'labkit templates build" in text
    assert "ok   privileges" in text and text.rstrip().endswith("proxmox: 2 problem(s)")

    assert main(["doctor", "--provider", "proxmox", "--lab", "vpn-site-to-site", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["provider"] == "proxmox"
    assert [c["check"] for c in data["checks"] if not c["ok"]] == ["templates", "templates"]

    build(
        Context(load_settings()),
        "proxmox",
        image="https://m.example.org/debian-12.qcow2",
        labs=["vpn-site-to-site"],
        build_ip="10.250.255.2/16",
        labkit_wheel=WHEEL,
        provision=lambda *a: None,
    )
    assert main(["doctor", "--provider", "proxmox", "--lab", "vpn-site-to-site"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("proxmox: all is well")

    pvx.control("revoke_token")
    assert main(["doctor", "--provider", "proxmox", "--lab", "vpn-site-to-site"]) == 1
    out = capsys.readouterr().out
    assert "FAIL api" in out and "was refused (expired or revoked?)" in out and "Traceback" not in out


def test_doctor_bad_provider(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--provider", "vsphere"]) == 2
    assert "'vsphere' is not one of 'netns', 'proxmox'" in capsys.readouterr().err
