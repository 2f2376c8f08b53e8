"""A tiny real instance for the agent's netns tests: one LAN segment, two vantage points, no
node (cheap: no image boot, no daemon but the agent's sshd), made with ``vantage: agent`` by
the netns provider itself, in a private LABKIT_HOME/LABKIT_RUN_DIR; destroyed at the end."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit.adapters.netns.provider import NetnsProvider
from labkit.adapters.storage.state import utcnow
from labkit.models.instance import InstancePlan, InstanceState, VantagePlan
from labkit.settings import Settings

PROJECT = Path(__file__).resolve().parents[3]


@dataclass
class Mini:
    provider: NetnsProvider
    state: InstanceState
    settings: Settings
    env: dict[str, str]


def mini_plan(name: str) -> InstancePlan:
    return InstancePlan(name=name, lab_id="mini", lab_dir="mini", topology_id="mini", seed=1, params={},
                        nodes=[], segments={"lan": []}, links={},
                        vantage=[VantagePlan(name="va", segment="lan", address="10.77.0.1/24"),
                                 VantagePlan(name="vb", segment="lan", address="10.77.0.2/24")])


@pytest.fixture
def mini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mini]:
    name = "agt" + secrets.token_hex(3)
    home = tmp_path / "home"
    run_dir = Path(f"/run/labkit-test-{os.getpid()}-{tmp_path.name[-12:]}")
    env = {**os.environ, "LABKIT_HOME": str(home), "LABKIT_RUN_DIR": str(run_dir), "LABKIT_PROJECT": str(PROJECT)}
    for k in ("LABKIT_HOME", "LABKIT_RUN_DIR", "LABKIT_PROJECT"):
        monkeypatch.setenv(k, env[k])
    settings = Settings(home=home, run_dir=run_dir, project=PROJECT)
    prov = NetnsProvider(settings)
    now = utcnow()
    state = InstanceState(name=name, provider="netns", phase="up", created_at=now, updated_at=now,
                          plan=mini_plan(name), ssh_key=str(tmp_path / "unused_key"), vantage="agent")
    try:
        prov.create(state)
        yield Mini(prov, state, settings, env)
    finally:
        prov.destroy(name, state)
