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
    return prov.NetnsProvider(Settings(home=tmp_path / "h", run_dir=tmp_path / "r", project=tmp_path))


def test_not_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov.os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="needs root"):
        _provider(tmp_path).preflight(PLAN)
    assert not (tmp_path / "h").exists() and not (tmp_path / "r").exists()


def test_missing_package_names_it_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov.os, "geteuid", lambda: 0)
    real_exists = prov.os.path.exists
    monkeypatch.setattr(prov.os.path, "exists", lambda p: False if p == "/usr/lib/frr/zebra" else real_exists(p))
    with pytest.raises(MissingDependencyError) as exc:
        _provider(tmp_path).preflight(PLAN)
    assert "package frr" in str(exc.value) and "make deps" in str(exc.value)
    assert str(exc.value).count("\n") == 0
