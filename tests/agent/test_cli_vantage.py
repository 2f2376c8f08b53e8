"""``labkit grade|check --vantage``: asking for the agent on an instance made without it is
one clear sentence and exit 2, before anything is probed or recorded. The instance here is
only a state file (a real lab's plan, phase up, ``vantage: inprocess``): nothing is created."""

from __future__ import annotations

import pytest

from labkit.adapters.storage.state import utcnow
from labkit.domain.labs import instantiate
from labkit.models.instance import InstanceState
from labkit.usecases.lifecycle import Context, load_lab_checked
from tests.conftest import LabEnv


@pytest.mark.parametrize("command", ["grade", "check"])
def test_vantage_agent_on_an_instance_made_without_it_is_one_clear_error(lab_env: LabEnv, command: str) -> None:
    ctx = Context(lab_env.settings)
    lab = load_lab_checked(ctx, "vpn-site-to-site")
    now = utcnow()
    state = InstanceState(name="noagent", provider="netns", phase="up", created_at=now, updated_at=now,
                          plan=instantiate(lab, "noagent", 5, None), ssh_key="/nonexistent")
    ctx.store.save(state)  # lab_env's teardown brings it down (there is nothing to remove but state)
    proc = lab_env.labkit(command, "noagent", "--vantage", "agent", check=False)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "without the grader agent" in lines[0] and "--vantage agent" in lines[0], lines
    # nothing half-made: no run was recorded
    runs = lab_env.settings.runs
    assert not runs.exists() or not [p for p in runs.iterdir() if "noagent" in p.name]
    bad = lab_env.labkit(command, "noagent", "--vantage", "elsewhere", check=False)
    assert bad.returncode == 2 and "elsewhere" in bad.stderr
