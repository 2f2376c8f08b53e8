"""Lab files (``labs/<id>/lab.yaml``): parameters, addressing, checks, solution, variants.

String values under ``addressing``, ``routes``, ``vantage``, ``brief`` and check ``args`` are
Jinja2 templates rendered with the instance's generated parameters (``p.NAME``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from labkit.models.common import I18n, IfaceName, Name, ParamName, Strict


class ParameterSpec(Strict):
    """A per-instance value generated from the instance seed."""

    name: ParamName  # a Jinja2 identifier: templates use p.NAME
    kind: Literal["subnet", "password", "word", "choice", "int"]
    within: str | None = None  # subnet: the pool, e.g. 10.0.0.0/8
    prefix: int | None = Field(default=None, ge=8, le=30)  # subnet: its length
    length: int = Field(default=16, ge=8, le=64)  # password / word
    prefix_text: str = ""  # word: a fixed beginning, e.g. "snmp-"
    choices: list[str] | None = None
    min: int | None = None
    max: int | None = None
    secret: bool = False  # not printed in reports


class RouteSpec(Strict):
    to: str  # "default" or a template giving a prefix
    via: str


class VantageSpec(Strict):
    """A grader-owned probe namespace attached to a LAN segment."""

    name: Name
    segment: Name
    address: str  # template, with prefix length: "{{ p.lan_hq | host(250) }}/24"
    gateway: str | None = None


class CheckSpec(Strict):
    id: Name
    title: I18n
    points: int = Field(ge=0, le=100)
    grader: str  # registry name, e.g. "routing.lan_reachability"
    args: dict[str, Any] = Field(default_factory=dict)
    criteria: list[str] = Field(min_length=1)
    doc: I18n | None = None  # how the check observes; says so when it reads node state
    timeout: float = Field(default=30.0, gt=0, le=600)


class PlaybookRef(Strict):
    playbook: str  # path relative to the project's playbooks/ directory


class SolutionRef(Strict):
    """How a solution reaches the nodes: an Ansible playbook for Linux hosts, a config set for
    network devices (topology nodes with ``platform:``), or both in a mixed lab."""

    playbook: str | None = None  # path relative to the project's playbooks/ directory
    # path relative to the lab's folder: a template of CLI lines, one [node] section per device
    config: str | None = None

    @model_validator(mode="after")
    def _something(self) -> SolutionRef:
        if self.playbook is None and self.config is None:
            raise ValueError("give a playbook (Linux hosts) or a config set (network devices), or both")
        return self


class VariantSpec(Strict):
    """A playbook that must make the listed checks fail: an honest mistake (``variants``)
    or a determined candidate's attempt to get the points without the work (``cheats``)."""

    id: Name
    title: I18n
    playbook: str | None = None  # Ansible, for Linux hosts
    config: str | None = None  # config set (lab folder), for network devices
    fails: list[Name] = Field(min_length=1)

    @model_validator(mode="after")
    def _something(self) -> VariantSpec:
        if self.playbook is None and self.config is None:
            raise ValueError("give a playbook (Linux hosts) or a config set (network devices), or both")
        return self


class LabSpec(Strict):
    id: Name
    version: int = 1
    title: I18n
    summary: I18n
    brief: I18n
    topology: Name
    parameters: list[ParameterSpec] = Field(default_factory=list)
    addressing: dict[Name, dict[IfaceName, str]] = Field(default_factory=dict)
    routes: dict[Name, list[RouteSpec]] = Field(default_factory=dict)
    vantage: list[VantageSpec] = Field(default_factory=list)
    checks: list[CheckSpec] = Field(min_length=1)
    setup: PlaybookRef | None = None  # base set-up applied by `up` (e.g. business data); not a solution
    # checks that tell `solve` the lab has settled (routing converged...): after a playbook,
    # `solve` waits until they pass, except those the applied variant declares to fail
    ready: list[Name] = Field(default_factory=list)
    solution: SolutionRef
    variants: list[VariantSpec] = Field(default_factory=list)
    # cheats: forged binaries, forged answers, exemptions for the probe, work skipped but its
    # traces faked; each must fail the checks it targets, like a faulty variant
    cheats: list[VariantSpec] = Field(default_factory=list)

    def check(self, check_id: str) -> CheckSpec | None:
        return next((c for c in self.checks if c.id == check_id), None)

    def variant(self, variant_id: str) -> VariantSpec | None:
        """A faulty variant or a cheat, by id (the two share one namespace of ids)."""
        return next((v for v in [*self.variants, *self.cheats] if v.id == variant_id), None)
