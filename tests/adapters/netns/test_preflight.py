"""Preflight errors: not root, missing packages — one sentence, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.adapters.netns import provider as prov
from labkit.errors import MissingDependencyError, NotRootError
from labkit.models.instance import InstancePlan, NodePlan
from labkit.settings import Settings

PLAN = InstancePlan(name="pf", lab_id="l", lab_dir="/", topology_id="t", seed=0, params={},
                    nodes=[NodePlan(name="r1", role="router", services=["ssh", "frr", "snmpd"])],
                    segments={}, links={})


def _provider(tmp_path: Path) -> prov.NetnsProvider:
    return prov.NetnsProvider(Settings(home=tmp_path / "h", run_dir=tmp_path / "r", project=tmp_path,
                                       images=tmp_path / "images"))


def _image(tmp_path: Path, binaries: list[str]) -> Path:
    """A stand-in nodes' image holding only ``binaries`` (and the mark build-node-image.sh writes)."""
    img = tmp_path / "images" / "node-test"
    for b in binaries:
        (img / b.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (img / b.lstrip("/")).touch()
    (img / ".labkit-image").write_text("name=node-test\n")
    (tmp_path / "images" / "current").symlink_to("node-test")
    return img


def test_not_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov.os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="needs root"):
        _provider(tmp_path).preflight(PLAN)
    assert not (tmp_path / "h").exists() and not (tmp_path / "r").exists()


def test_missing_package_names_it_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service whose binary is not in the nodes' image: the package and the fix are named."""
    monkeypatch.setattr(prov.os, "geteuid", lambda: 0)
    _image(tmp_path, ["/usr/sbin/sshd", "/usr/sbin/snmpd"])  # no /usr/lib/frr/zebra
    with pytest.raises(MissingDependencyError) as exc:
        _provider(tmp_path).preflight(PLAN)
    assert "package frr" in str(exc.value) and "make deps" in str(exc.value)
    assert "sshd" not in str(exc.value) and "snmpd" not in str(exc.value)
    assert str(exc.value).count("\n") == 0


def test_missing_image_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov.os, "geteuid", lambda: 0)
    with pytest.raises(MissingDependencyError, match="nodes' image is missing.*make deps"):
        _provider(tmp_path).preflight(PLAN)
    assert not (tmp_path / "h").exists() and not (tmp_path / "r").exists()


def test_complete_image_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov.os, "geteuid", lambda: 0)
    img = _image(tmp_path, ["/usr/sbin/sshd", "/usr/sbin/snmpd", "/usr/lib/frr/zebra"])
    p = _provider(tmp_path)
    p.preflight(PLAN)
    assert p.image() == img.resolve()
