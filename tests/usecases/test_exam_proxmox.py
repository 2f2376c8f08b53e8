"""Exam day on Proxmox (against fakepve, a separate server process: see
tests/adapters/proxmox/conftest.py): a portal cohort on provider proxmox is launched by the
exam use case, the candidate's console (what the bastion and the browser terminal run, from
the instance's state) is the serial bridge of their node, and the cohort's removal leaves
nothing in the cluster."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any


from labkit.adapters.db import repo
from labkit.adapters.db.models import Cohort
from labkit.usecases import access
from labkit.usecases.exam import Exam, RealLabOps
from tests.adapters.proxmox.conftest import LAB_ID, FakePveServer, fakepve, pv_ctx, pve_home  # noqa: F401
from tests.interfaces.web.conftest import cheap_argon2, make_db  # noqa: F401


def test_a_proxmox_cohort_launches_gives_serial_consoles_and_leaves_nothing(
        fakepve: FakePveServer, pv_ctx: Any, tmp_path: Path) -> None:  # noqa: F811
    db = make_db(tmp_path)
    exam = Exam(pv_ctx, db, ops=RealLabOps(pv_ctx))
    instance = "pvx-01"
    try:
        assert exam.lab.providers() == ["netns", "proxmox"]  # pv_ctx's home has a proxmox.toml
        cohort_id, creds = exam.create_cohort(LAB_ID, "Alice Martin\n", "pvx", created_by=None, seed=23,
                                              provider="proxmox")
        assert [c.instance for c in creds] == [instance]
        with db.session() as s:
            cohort = s.get(Cohort, cohort_id)
            assert (cohort.provider, cohort.vantage) == ("proxmox", "agent")
        exam.launch(cohort_id)
        exam.wait_idle(300)
        with db.session() as s:
            cand = repo.candidates_of(s, cohort_id)[0]
            assert (cand.status, cand.detail) == ("up", "")
        state = pv_ctx.store.load(instance)
        assert (state.provider, state.vantage, state.phase) == ("proxmox", "agent", "up")
        assert fakepve.leftovers(instance)  # the pool, its VMs and VNets are in the cluster

        # the bastion's and the terminal's path: the seat -> the node -> the provider's console
        target = access.open_target(pv_ctx, db, f"{creds[0].login}+r1")
        assert (target.instance, target.node, target.read_only) == (instance, "r1", False)
        argv = access.session_argv(pv_ctx, target, None, None)
        assert argv[1:] == ["-m", "labkit.adapters.proxmox.console", "--instance", instance, "--node", "r1",
                            "--config", str(pv_ctx.settings.home / "proxmox.toml")]
        res = subprocess.run(argv, input=b"hello exam\n", capture_output=True, timeout=60, env=dict(os.environ))
        assert res.returncode == 0, res.stderr
        assert b"starting serial terminal on interface serial0" in res.stdout
        assert res.stdout.endswith(b"hello exam\n")

        exam.teardown(cohort_id)
        exam.wait_idle(300)
        with db.session() as s:
            assert repo.candidates_of(s, cohort_id)[0].status == "removed"
        assert fakepve.leftovers(instance) == []
        assert not pv_ctx.store.exists(instance)
    finally:
        exam.wait_idle(300)
        if pv_ctx.store.exists(instance) or fakepve.leftovers(instance):
            from labkit.usecases.lifecycle import down

            down(pv_ctx, instance)
        exam.close()
        db.dispose()


def test_the_bastion_spawn_environment_reaches_the_proxmox_console(
        fakepve: FakePveServer, pv_ctx: Any, tmp_path: Path) -> None:  # noqa: F811
    """The bastion starts consoles with PATH alone: the console's argv names the home's
    proxmox.toml, whose token_secret_file holds the secret (an env-only secret cannot reach it)."""
    from labkit.interfaces.bastion import _SPAWN_ENV
    from labkit.usecases.lifecycle import down, up

    secret = tmp_path / "pve-token"
    secret.write_text(fakepve.token_secret)
    secret.chmod(0o600)
    config = pv_ctx.settings.home / "proxmox.toml"
    config.write_text(config.read_text() + f'token_secret_file = "{secret}"\n')
    instance = "pvy-01"
    up(pv_ctx, LAB_ID, instance=instance, seed=29, provider="proxmox", candidate="Bob")
    try:
        argv = pv_ctx.provider("proxmox").console_argv(pv_ctx.store.load(instance), "r1")
        # --trace: each step's time on stderr, so a slow or stuck step is named if this fails
        try:
            res = subprocess.run([*argv, "--trace"], input=b"hello bastion\n", capture_output=True, timeout=180,
                                 env=dict(_SPAWN_ENV))
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the console did not end within 180 s; its stderr: {exc.stderr!r}") from None
        assert res.returncode == 0, res.stderr
        assert res.stdout.endswith(b"hello bastion\n")
    finally:
        down(pv_ctx, instance)
    assert fakepve.leftovers(instance) == []
