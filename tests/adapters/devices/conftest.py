"""One routing-multisite-devices instance per test module: its routers are FRR devices whose
CLI (vtysh) the driver tests reach through netmiko, from the grader's vantage namespace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit.models.instance import InstanceState
from labkit.settings import Settings
from tests.conftest import PROJECT, leftovers, namespace_inodes


@dataclass
class DeviceLab:
    ctx: object
    state: InstanceState

    @property
    def provider(self):  # noqa: ANN201 - the netns provider
        return self.ctx.provider(self.state.provider)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def device_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeviceLab]:
    from labkit.usecases.lifecycle import Context, down, up

    tmp = tmp_path_factory.mktemp("devlab")
    home = tmp / "home"
    run_dir = Path(f"/run/labkit-test-{os.getpid()}-dev{tmp.name[-6:]}")
    mp = pytest.MonkeyPatch()
    for k, v in (("LABKIT_HOME", str(home)), ("LABKIT_RUN_DIR", str(run_dir)), ("LABKIT_PROJECT", str(PROJECT))):
        mp.setenv(k, v)
    settings = Settings(home=home, run_dir=run_dir, project=PROJECT)
    ctx = Context(settings)
    name = "devdrv"
    try:
        state = up(ctx, "routing-multisite-devices", instance=name, seed=21)
        yield DeviceLab(ctx, state)
    finally:
        inodes = namespace_inodes(name)
        if name in ctx.store.names():
            down(ctx, name)
        assert leftovers(settings, name, inodes) == []
        mp.undo()
