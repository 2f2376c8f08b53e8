"""labkit doctor use case: proxmox against fakepve (separate process), netns through its own
preflight."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit.errors import UserError
from labkit.settings import load_settings
from labkit.usecases.doctor import doctor
from labkit.usecases.lifecycle import Context
from labkit.usecases.templates import build
from tests.adapters.proxmox.pvx import fake_wheel, pvx, pvx_home, single_node_site  # noqa: F401

URL = "https://mirror.example.org/debian-12-genericcloud-amd64.qcow2"

WHEEL = fake_wheel()


def _noop(*_a: object) -> None:
    return None


def test_proxmox_templates_missing_then_built(pvx, pvx_home: Path) -> None:  # noqa: F811
    single_node_site(pvx, pvx_home, "uc")
    ctx = Context(load_settings())
    report = doctor(ctx, "proxmox", ["routing-multisite"])
    bad = [line for line in report.lines if not line.ok]
    assert not report.ok
    assert [line.check for line in bad] == ["templates", "templates"]
    assert "template lk-tpl-uc-ct-three-sites is missing" in bad[0].message  # three-sites: containers
    assert "template lk-tpl-uc-grader is missing" in bad[1].message
    assert report.to_json()["ok"] is False

    results = build(
        ctx,
        "proxmox",
        image=URL,
        labs=["routing-multisite"],
        build_ip="10.250.255.2/16",
        labkit_wheel=WHEEL,
        provision=_noop,
    )
    assert [(r.name, r.outcome) for r in results] == [("lk-tpl-uc-ct-three-sites", "built"),
                                                      ("lk-tpl-uc-grader", "built")]
    assert "frr" in results[0].packages and "qemu-guest-agent" not in results[0].packages  # a CT template
    report = doctor(ctx, "proxmox", ["routing-multisite"])
    assert report.ok, [line.message for line in report.lines if not line.ok]
    again = build(
        ctx,
        "proxmox",
        image=URL,
        labs=["routing-multisite"],
        build_ip="10.250.255.2/16",
        labkit_wheel=WHEEL,
        provision=_noop,
    )
    assert [r.outcome for r in again] == ["kept", "kept"]


def test_proxmox_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.delenv("LABKIT_PROXMOX_CONFIG", raising=False)
    report = doctor(Context(load_settings()), "proxmox", ["routing-multisite"])
    assert not report.ok and len(report.lines) == 1
    assert report.lines[0].check == "config" and "Proxmox is not configured: write" in report.lines[0].message


def test_netns_uses_the_providers_preflight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LABKIT_IMAGE_DIR", str(tmp_path / "no-image"))
    report = doctor(Context(load_settings()), "netns", ["routing-multisite"])
    assert not report.ok and len(report.lines) == 1 and report.lines[0].check == "host"
    if os.geteuid() == 0:
        assert "the nodes' image is missing" in report.lines[0].message
        assert "make deps" in report.lines[0].message
    else:
        assert "needs root" in report.lines[0].message


@pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/var/lib/labkit/images/current").exists(),
    reason="needs root and the nodes' image (make deps)",
)
def test_netns_all_well_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LABKIT_IMAGE_DIR", raising=False)
    report = doctor(Context(load_settings()), "netns", ["routing-multisite"])
    assert report.ok, [line.message for line in report.lines]
    assert [line.check for line in report.lines] == ["host", "lab"]


def test_unknown_provider() -> None:
    with pytest.raises(UserError, match="there is no provider 'vsphere'"):
        doctor(Context(load_settings()), "vsphere")


def test_templates_only_for_proxmox() -> None:
    with pytest.raises(UserError, match="templates are built for the proxmox provider only"):
        build(Context(load_settings()), "netns", image=URL)
