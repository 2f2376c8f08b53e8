"""Test graders that declare what they need (``needs``), a provider that offers less than
netns, and a copy of the demo fixture lab whose checks use those graders."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.netns.provider import NetnsProvider
from labkit.adapters.providers import base
from labkit.domain.grading import CheckContext, GraderRegistry
from labkit.models.capabilities import ALL_CAPABILITIES
from labkit.models.evidence import Evidence
from labkit.models.instance import InstancePlan, InstanceState
from labkit.models.results import Verdict
from labkit.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODULE = "tests.usecases.capability_fixture"


class _TestGrader:
    def __init__(self, name: str, needs: frozenset[str]):
        self.name, self.needs = name, needs

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        raise AssertionError("a capability test never grades")

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        raise AssertionError("a capability test never grades")


GRADERS = [
    _TestGrader("captest.ping", frozenset({"vantage", "grader_echo"})),
    _TestGrader("captest.files", frozenset({"node_fs", "node_exec"})),
]


class LesserProvider(NetnsProvider):
    """netns without node_fs and node_kernel, grading only through the agent (as Proxmox).
    It records whether anything was ever made."""

    name = "lesser"
    capabilities = ALL_CAPABILITIES - {"node_fs", "node_kernel"}
    vantage_modes = ("agent",)
    made: list[str] = []

    def preflight(self, plan: InstancePlan) -> None:
        LesserProvider.made.append(f"preflight {plan.name}")

    def create(self, state: InstanceState) -> None:
        LesserProvider.made.append(f"create {state.name}")
        raise AssertionError("a lab this provider cannot grade was created")


def make_project(tmp_path: Path) -> Settings:
    """A project with the demo lab (id captest) whose checks use the test graders:
    check 'ping' (captest.ping) and check 'login' (captest.files)."""
    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "topologies", project / "topologies")
    shutil.copytree(FIXTURES / "playbooks", project / "playbooks")
    text = (FIXTURES / "labs" / "demo" / "lab.yaml").read_text()
    text = text.replace("id: demo\n", "id: captest\n").replace("grader: demo.ping", "grader: captest.ping")
    text = text.replace("grader: demo.login", "grader: captest.files")
    text = text.replace("[demo-1]", "[igs-b1-interconnexions]").replace(
        "[demo-1, demo-2]", "[igs-b1-interconnexions]")
    (project / "labs" / "captest").mkdir(parents=True)
    (project / "labs" / "captest" / "lab.yaml").write_text(text)
    return Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=project)


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test graders (beside the built-in ones) and the provider 'lesser'."""
    real = GraderRegistry.load.__func__  # type: ignore[attr-defined]

    def load(cls: type[GraderRegistry], modules: Any = None) -> GraderRegistry:
        reg = real(cls) if modules is None else real(cls, modules)
        return GraderRegistry([*(reg.get(n) for n in sorted(reg.names())), *GRADERS])

    monkeypatch.setattr(GraderRegistry, "load", classmethod(load))
    monkeypatch.setitem(base.PROVIDERS, "lesser", f"{MODULE}:LesserProvider")
    LesserProvider.made = []


class FakeProvider:
    """A provider that makes nothing (no root needed): it records what it is asked, gives
    ssh connection variables, and reports ``left`` as its leftovers."""

    name = "fake"
    capabilities = ALL_CAPABILITIES
    calls: list[str] = []
    left: dict[str, list[str]] = {}

    def preflight(self, plan: InstancePlan) -> None:
        FakeProvider.calls.append(f"preflight {plan.name}")

    def create(self, state: InstanceState) -> None:
        FakeProvider.calls.append(f"create {state.name} {state.vantage}")
        FakeProvider.left[state.name] = [f"vm {state.name}"]

    def start(self, state: InstanceState) -> None:
        FakeProvider.calls.append(f"start {state.name}")

    def status(self, state: InstanceState) -> Any:
        raise NotImplementedError

    def exec(self, state: InstanceState, node: str, argv: list[str], *, input: str | None = None,
             timeout: float = 60.0) -> Any:
        raise NotImplementedError

    def console_argv(self, state: InstanceState, node: str) -> list[str]:
        raise NotImplementedError

    def destroy(self, name: str, state: InstanceState | None) -> list[str]:
        FakeProvider.calls.append(f"destroy {name} {'with' if state else 'without'} state")
        return FakeProvider.left.pop(name, [])

    def leftovers(self, name: str) -> list[str]:
        return list(FakeProvider.left.get(name, []))

    def ground(self, state: InstanceState, mode: str | None = None) -> Any:
        raise NotImplementedError

    def node_fs(self, state: InstanceState, node: str) -> Any:
        raise NotImplementedError

    def ansible_host_vars(self, state: InstanceState, node: str) -> dict[str, str]:
        return {"ansible_connection": "ssh", "ansible_host": f"192.0.2.{len(node)}", "ansible_user": "root"}


def install_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.PROVIDERS, "fake", f"{MODULE}:FakeProvider")
    FakeProvider.calls = []
    FakeProvider.left = {}
