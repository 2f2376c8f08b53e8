"""Verdicts and grading runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from labkit.models.common import I18n

Status = Literal["pass", "fail", "error"]


class Verdict(BaseModel):
    """What a pure judge function returns from evidence."""

    status: Status
    message: I18n
    evidence: list[str] = Field(default_factory=list)
    ratio: float = Field(default=1.0, ge=0, le=1)  # share of points on pass (partial credit)

    @classmethod
    def passed(cls, fr: str, en: str, evidence: list[str] | None = None) -> Verdict:
        return cls(status="pass", message=I18n(fr=fr, en=en), evidence=evidence or [])

    @classmethod
    def failed(cls, fr: str, en: str, evidence: list[str] | None = None) -> Verdict:
        return cls(status="fail", message=I18n(fr=fr, en=en), evidence=evidence or [])

    @classmethod
    def errored(cls, fr: str, en: str, evidence: list[str] | None = None) -> Verdict:
        return cls(status="error", message=I18n(fr=fr, en=en), evidence=evidence or [])

    @classmethod
    def from_problems(cls, problems: list[tuple[str, str]], ok_fr: str, ok_en: str,
                      evidence: list[str] | None = None) -> Verdict:
        """``fail`` listing each (French, English) problem once, in order; ``pass`` with the
        given message when there is none."""
        if not problems:
            return cls.passed(ok_fr, ok_en, evidence)
        unique = list(dict.fromkeys(problems))
        return cls.failed("; ".join(p[0] for p in unique) + ".", "; ".join(p[1] for p in unique) + ".", evidence)


class CheckResult(BaseModel):
    id: str
    title: I18n
    grader: str
    status: Status
    points: int
    max_points: int
    message: I18n
    criteria: list[str]
    evidence: list[str]
    doc: I18n | None = None
    duration_s: float | None = None  # time spent collecting and judging


class RunInfo(BaseModel):
    """``run.json`` in a run folder: what was graded, by whom, when."""

    run_id: str
    mode: Literal["grade", "selfcheck"]
    lab_id: str
    lab_title: I18n
    lab_version: int
    instance: str
    candidate: str | None
    provider: str
    seed: int
    params: dict[str, Any]  # secrets removed
    started_at: datetime
    ended_at: datetime
    labkit_version: str
    checks: list[dict[str, Any]]  # the check specs as run (args rendered)
    vantage: str = "inprocess"  # where the grader's probes ran: inprocess | agent


class GradeSummary(BaseModel):
    run_id: str
    lab_id: str
    instance: str
    candidate: str | None
    score: int
    max_score: int
    started_at: datetime
    ended_at: datetime
    checks: list[CheckResult]
    manifest_sha256: str | None = None

    def to_public(self, lang: str = "fr") -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "lab": self.lab_id,
            "instance": self.instance,
            "candidate": self.candidate,
            "score": self.score,
            "max_score": self.max_score,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "manifest_sha256": self.manifest_sha256,
            "checks": [
                {
                    "id": c.id,
                    "status": c.status,
                    "points": c.points,
                    "max_points": c.max_points,
                    "message": c.message.get(lang),
                    "criteria": c.criteria,
                    "evidence": c.evidence,
                }
                for c in self.checks
            ],
        }
