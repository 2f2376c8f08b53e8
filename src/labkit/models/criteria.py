"""The criteria catalog built from the RNCP referentials in ``shared/seeds``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from labkit.models.common import Strict


class Certification(Strict):
    id: str
    seed: str  # file name of the referential in shared/seeds
    title: str
    rncp: str | None = None


class Criterion(Strict):
    id: str  # e.g. "tssr-2.3-liens"
    certification: str  # Certification.id
    block: str  # block or activity title, verbatim
    code: str  # activity / competency code, e.g. "A2.3" or "C3.4"
    text: str = Field(min_length=10)  # the criterion, verbatim from the referential
    kind: Literal["criterion", "competency"] = "criterion"  # evaluation criterion or competency


class Catalog(Strict):
    certifications: list[Certification]
    criteria: list[Criterion]

    def get(self, criterion_id: str) -> Criterion | None:
        return next((c for c in self.criteria if c.id == criterion_id), None)

    def certification(self, cert_id: str) -> Certification | None:
        return next((c for c in self.certifications if c.id == cert_id), None)
