"""Shared fixtures. Tests that need root and real namespaces are marked ``root``; they use
their own LABKIT_HOME and LABKIT_RUN_DIR so they never touch a trainer's instances."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import pytest

from labkit.adapters.storage.runs import StoredRun
from labkit.models.results import GradeSummary
from labkit.settings import Settings
from labkit.usecases.solve import SolveOutcome

PROJECT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0 and sys.platform.startswith("linux"):
        return
    skip = pytest.mark.skip(reason="needs root and Linux network namespaces")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@dataclass
class LabEnv:
    settings: Settings
    env: dict[str, str]

    def labkit(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "labkit", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=PROJECT)
        if check and proc.returncode != 0:
            raise AssertionError(f"labkit {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabEnv]:
    """A private labkit home and run dir; every instance left at the end is brought down."""
    home = tmp_path / "home"
    run_dir = Path(f"/run/labkit-test-{os.getpid()}-{tmp_path.name[-12:]}")
    env = {**os.environ, "LABKIT_HOME": str(home), "LABKIT_RUN_DIR": str(run_dir),
           "LABKIT_PROJECT": str(PROJECT)}
    for k in ("LABKIT_HOME", "LABKIT_RUN_DIR", "LABKIT_PROJECT"):
        monkeypatch.setenv(k, env[k])
    settings = Settings(home=home, run_dir=run_dir, project=PROJECT)
    le = LabEnv(settings, env)
    yield le
    from labkit.usecases.lifecycle import Context, down

    ctx = Context(settings)
    for name in ctx.store.names():
        down(ctx, name)


class NsSnapshot(set[int]):
    """Namespace inodes of an instance, with the moment they were read (clock ticks since
    boot): the kernel reuses namespace inode numbers, so a process born afterwards in another
    test's new namespace must not count as this instance's leak."""

    def __init__(self, inodes: set[int]):
        super().__init__(inodes)
        self.ticks = _uptime_ticks()

    def __or__(self, other: object) -> NsSnapshot:
        """The union keeps a snapshot time: the earlier of the two, when both have one."""
        merged = NsSnapshot(set(self) | set(other))  # type: ignore[call-overload]
        merged.ticks = min(self.ticks, getattr(other, "ticks", self.ticks))
        return merged


def _uptime_ticks() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


def _start_ticks(pid: str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def leftovers(settings: Settings, name: str, inodes: set[int] | None = None) -> list[str]:
    """Everything of instance ``name`` still on the machine (empty means no leak)."""
    found = [f"netns {p.name}" for p in Path("/run/netns").glob(f"lk-{name}.*")]
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4]
            if mp.startswith(str(settings.run_dir / name)) or mp.startswith(str(settings.instances / name)):
                found.append(f"mount {mp}")
    for p in (settings.instances / name, settings.run_dir / name, settings.inventories / f"{name}.yml"):
        if p.exists():
            found.append(f"file {p}")
    if inodes:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            for kind in ("net", "mnt"):
                try:
                    if os.stat(f"/proc/{pid}/ns/{kind}").st_ino in inodes:
                        born_after = isinstance(inodes, NsSnapshot) and _start_ticks(pid) > inodes.ticks
                        if not born_after:
                            found.append(f"process {pid}")
                        break
                except OSError:
                    break
    return found


def namespace_inodes(name: str) -> NsSnapshot:
    return NsSnapshot({os.stat(p).st_ino for p in Path("/run/netns").glob(f"lk-{name}.*")})


# -- the end-to-end shape every lab's test shares ---------------------------------------------
def lab_variants(lab: str, section: str = "variants") -> list[Any]:
    """``pytest.param(variant, declared_fails, id=variant)`` for each faulty variant of ``lab``
    (``section="cheats"``: for each of its cheats)."""
    from labkit.settings import load_settings
    from labkit.usecases.lifecycle import Context, load_lab_checked

    spec = load_lab_checked(Context(load_settings()), lab).spec
    return [pytest.param(v.id, frozenset(v.fails), id=v.id) for v in getattr(spec, section)]


def lab_cheats(lab: str) -> list[Any]:
    """``pytest.param(cheat, targeted_checks, id=cheat)`` for each cheat variant of ``lab``."""
    return lab_variants(lab, "cheats")


def down_leaves_nothing(lab_env: LabEnv, name: str) -> None:
    """Bring ``name`` down and assert nothing of it is left: namespaces, mounts, files, processes."""
    from labkit.usecases.lifecycle import Context, down

    inodes = namespace_inodes(name)
    down(Context(lab_env.settings), name)
    assert leftovers(lab_env.settings, name, inodes) == []


def full_marks(lab_env: LabEnv, lab: str, name: str, *, seed: int, wait: float,
               candidate: str | None = None) -> tuple[SolveOutcome, GradeSummary, StoredRun]:
    """Up ``lab`` as ``name``, apply the reference solution, grade; assert every check passes
    with 100/100. Returns what solving, grading and the stored run say, for the lab's own
    asserts."""
    from labkit.adapters.storage.runs import open_run
    from labkit.usecases.grade import grade
    from labkit.usecases.lifecycle import Context, up
    from labkit.usecases.solve import solve

    ctx = Context(lab_env.settings)
    up(ctx, lab, instance=name, seed=seed, candidate=candidate)
    solved = solve(ctx, name, wait=wait)
    summary = grade(ctx, name)
    assert {c.id: c.message.en for c in summary.checks if c.status != "pass"} == {}
    assert summary.score == summary.max_score == 100
    return solved, summary, open_run(lab_env.settings.runs, summary.run_id)


def variant_fails_what_it_declares(lab_env: LabEnv, lab: str, name: str, variant: str, declared: frozenset[str],
                                   *, seed: int, wait: float) -> None:
    """Up ``lab``, apply ``variant``, grade: exactly the ``declared`` checks fail, none is in
    error, and ``down`` leaves nothing."""
    from labkit.usecases.grade import grade
    from labkit.usecases.lifecycle import Context, up
    from labkit.usecases.solve import solve

    ctx = Context(lab_env.settings)
    up(ctx, lab, instance=name, seed=seed)
    solve(ctx, name, variant=variant, wait=wait)
    summary = grade(ctx, name)
    assert {c.id: c.message.en for c in summary.checks if c.status == "error"} == {}
    failed = {c.id for c in summary.checks if c.status == "fail"}
    assert failed == declared, {c.id: c.message.en for c in summary.checks if (c.id in failed) != (c.id in declared)}
    down_leaves_nothing(lab_env, name)


def reach_lab_project(root: Path, lab_id: str) -> Path:
    """A project under ``root`` with one lab ``lab_id``: the demo fixture lab (topology
    two-sites) whose only check is routing.lan_reachability (vantage + grader_echo, no
    baseline), for the remote providers' tests (Proxmox, GNS3)."""
    import shutil

    fixtures = PROJECT / "tests" / "fixtures"
    project = root / "project"
    shutil.copytree(fixtures / "topologies", project / "topologies")
    shutil.copytree(fixtures / "playbooks", project / "playbooks")
    text = (fixtures / "labs" / "demo" / "lab.yaml").read_text(encoding="utf-8")
    head, _, rest = text.partition("checks:\n")
    _, _, tail = rest.partition("solution:")
    check = ("checks:\n  - id: reach\n    title: {fr: Joignabilité, en: Reachability}\n    points: 10\n"
             "    grader: routing.lan_reachability\n    args:\n      vantage: [v1, v2]\n"
             '      hosts: {pc1: "{{ p.lana | host(10) }}", pc2: "{{ p.lanb | host(10) }}"}\n'
             "    criteria: [igs-b1-interconnexions]\n")
    lab = head.replace("id: demo\n", f"id: {lab_id}\n") + check + "solution:" + tail.replace(
        "fails: [ping]", "fails: [reach]")
    (project / "labs" / lab_id).mkdir(parents=True)
    (project / "labs" / lab_id / "lab.yaml").write_text(lab, encoding="utf-8")
    return project
