"""labkit templates build use case against fakepve (separate process); the SSH step is replaced
by a recorder (no guest runs in fakepve)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import UnknownLabError, UserError
from labkit.settings import load_settings
from labkit.usecases.lifecycle import Context
from labkit.usecases.templates import build, wanted
from tests.adapters.proxmox.pvx import fake_wheel, pvx, pvx_home, single_node_site  # noqa: F401

URL = "https://mirror.example.org/debian-12-genericcloud-amd64.qcow2"

WHEEL = fake_wheel()


@pytest.fixture
def ctx(pvx, pvx_home: Path) -> Context:  # noqa: F811
    single_node_site(pvx, pvx_home, "ut")
    return Context(load_settings())


def test_every_lab_by_default(pvx, ctx: Context) -> None:  # noqa: F811
    scripts: list[str] = []
    results = build(
        ctx,
        "proxmox",
        image=URL,
        build_ip="10.250.255.2/16",
        labkit_wheel=WHEEL,
        apt_proxy="http://10.250.0.1:3142",
        provision=lambda *a: scripts.append(str(a[4])),
    )
    names = [r.name for r in results]
    assert names == [
        "lk-tpl-ut-ad-site",
        "lk-tpl-ut-backup-site",
        "lk-tpl-ut-supervision",
        "lk-tpl-ut-ct-three-sites",  # three-sites' nodes are containers: a CT template
        "lk-tpl-ut-two-sites-internet",
        "lk-tpl-ut-grader",
    ]
    assert all(r.outcome == "built" for r in results)
    assert names == [s.name for s in wanted(ctx, [])]
    assert len(scripts) == 6 and all('Acquire::http::Proxy "http://10.250.0.1:3142";' in s for s in scripts)
    made = {v["name"]: v for v in [*pvx.state()["vms"], *pvx.state()["cts"]] if v["name"].startswith("lk-tpl-ut-")}
    assert set(made) == set(names) and all(v["template"] for v in made.values())
    assert "snmpd" in dict((r.name, r.packages) for r in results)["lk-tpl-ut-supervision"]


def test_bad_build_ip_makes_nothing(pvx, ctx: Context) -> None:  # noqa: F811
    pvx.control("bodies", clear=True)
    with pytest.raises(UserError, match="--build-ip 10.1.1.1 has no prefix"):
        build(ctx, "proxmox", image=URL, labs=["routing-multisite"], build_ip="10.1.1.1", provision=lambda *a: None)
    assert not [p for m, p, _b in pvx.control("bodies") if m != "GET"]


def test_unknown_lab(ctx: Context) -> None:
    with pytest.raises(UnknownLabError, match="there is no lab 'nolab'"):
        build(
            ctx,
            "proxmox",
            image=URL,
            labs=["nolab"],
            build_ip="10.250.255.2/16",
            labkit_wheel=WHEEL,
            provision=lambda *a: None,
        )


def test_a_lab_with_network_devices_needs_no_proxmox_template(pvx, ctx: Context) -> None:  # noqa: F811
    pvx.control("bodies", clear=True)
    with pytest.raises(UserError, match="routing-multisite-devices has network devices, which the proxmox provider "
                                        "cannot host"):
        build(ctx, "proxmox", image=URL, labs=["routing-multisite-devices"], build_ip="10.250.255.2/16",
              labkit_wheel=WHEEL, provision=lambda *a: None)
    assert not [p for m, p, _b in pvx.control("bodies") if m != "GET"]
