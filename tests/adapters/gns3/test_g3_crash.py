"""``kill -9`` in the middle of ``labkit up`` on the real gns3-server (G1's harness), then
``labkit down`` from a NEW process with the instance's state deleted: everything the dead
process made (project with nodes and links, pool, candidate user and ACE) is found from the
name and this home's mark alone, and removed; another home's instance of the same name is
left alone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.gns3 import naming
from labkit.usecases import lifecycle
from tests.adapters.gns3.g2lab import LAB_ID, admin_client, ensure_templates, home_objects, make_ctx

CHILD = """
import os, sys, time
from labkit.adapters.gns3.provider import Gns3Provider
real = Gns3Provider._candidate_access
def hang(self, state):
    real(self, state)  # the project, its nodes and links, the pool, the user and its ACE exist
    with open(os.environ["G2_MARK"], "w") as fh:
        fh.write(state.provider_data["project_id"])
    time.sleep(600)
Gns3Provider._candidate_access = hang
from labkit.usecases.lifecycle import Context, up
up(Context.default(), sys.argv[1], instance=sys.argv[2], seed=9, provider="gns3", candidate="Carol")
"""


@pytest.fixture
def g3srv(gns3_server: Any) -> Any:
    return gns3_server  # G1's session server (tests/adapters/gns3/conftest.py)


def _env(ctx: Any) -> dict[str, str]:
    return {**os.environ, "LABKIT_HOME": str(ctx.settings.home), "LABKIT_PROJECT": str(ctx.settings.project),
            "LABKIT_RUN_DIR": str(ctx.settings.run_dir)}


def test_kill_mid_up_then_down_from_a_new_process(g3srv: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with admin_client(g3srv) as admin:
        templates = ensure_templates(admin, g3srv)
        ctx = make_ctx(g3srv, tmp_path / "a", templates)
        other = make_ctx(g3srv, tmp_path / "b", templates)
        monkeypatch.setenv("LABKIT_PROJECT", str(ctx.settings.project))
        name = "g3-crash"
        kept = lifecycle.up(other, LAB_ID, instance=name, seed=9, provider="gns3")  # another home, same name
        mark = tmp_path / "mark"
        child = subprocess.Popen([sys.executable, "-c", CHILD, LAB_ID, name],
                                 env={**_env(ctx), "G2_MARK": str(mark)}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 180
            while not mark.exists():
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the child never got to the candidate's access"
                time.sleep(0.2)
            time.sleep(0.3)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=30)
        hid = naming.home_id(ctx.settings.home)
        pid = mark.read_text()
        made = home_objects(admin, hid)
        assert sorted(made) == sorted(f"{k} lk-{hid}-{name}" for k in ("project", "user", "pool")), made
        assert len(admin.get(f"/projects/{pid}/nodes")) == 6 and len(admin.get(f"/projects/{pid}/links")) == 5
        uid = next(u["user_id"] for u in admin.get("/access/users") if u["username"] == f"lk-{hid}-{name}")
        assert [a for a in admin.get("/access/acl") if a.get("user_id") == uid]  # the candidate's ACE
        shutil.rmtree(ctx.store.dir(name))  # the state file and the instance's folder: gone
        assert not ctx.store.exists(name)
        out = subprocess.run([sys.executable, "-m", "labkit", "down", name], env=_env(ctx), capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert home_objects(admin, hid) == []
        assert all(p["project_id"] != pid for p in admin.get("/projects"))
        assert not [a for a in admin.get("/access/acl") if a.get("user_id") == uid]
        # the other home's instance of the same name is untouched, and still runs
        ohid = naming.home_id(other.settings.home)
        assert sorted(home_objects(admin, ohid)) == [f"pool lk-{ohid}-{name}", f"project lk-{ohid}-{name}"]
        assert lifecycle.status(other, name).healthy
        assert admin.get(f"/projects/{kept.provider_data['project_id']}")["name"] == f"lk-{ohid}-{name}"
        lifecycle.down(other, name)
        assert home_objects(admin, ohid) == []
