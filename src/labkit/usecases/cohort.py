"""Cohorts: one isolated instance per candidate, each with its own parameters.

A roster is a text or CSV file with one candidate per line (first column: the name; lines
starting with '#' and a header line "name"/"nom"/"candidat" are skipped). Instances are
named ``<cohort>-01``, ``<cohort>-02``… and seeded from the cohort seed, so two candidates
never share an addressing plan or credentials, and the same roster and seed rebuild the same
cohort. The cohort file ``<home>/cohorts/<name>.json`` records who has which instance.

A failure on one candidate's instance is a result for that candidate, not the end of the
cohort: the others are brought up, graded or removed all the same.
"""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.adapters.storage.state import check_instance_name
from labkit.errors import LabkitError, UserError
from labkit.usecases.grade import grade
from labkit.usecases.lifecycle import Context, down, load_lab_checked, up

MAX_COHORT = 60
HEADER_WORDS = {"name", "nom", "candidat", "candidate", "stagiaire"}


@dataclass
class Seat:
    candidate: str
    instance: str
    seed: int
    status: str = "planned"  # up | failed | graded | removed
    detail: str = ""
    score: str | None = None
    run_id: str | None = None


@dataclass
class Cohort:
    name: str
    lab: str
    seed: int
    seats: list[Seat] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "lab": self.lab, "seed": self.seed,
                "seats": [seat.__dict__ for seat in self.seats]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cohort:
        return cls(data["name"], data["lab"], data["seed"], [Seat(**s) for s in data["seats"]])


def read_roster(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"roster {path} does not exist; give a text or CSV file with one candidate per line.") from None
    except UnicodeDecodeError:
        raise UserError(f"roster {path} is not UTF-8 text; save it as UTF-8 (CSV or plain text).") from None
    names: list[str] = []
    lines = text.splitlines()
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t").delimiter
    except csv.Error:  # one column: plain text
        delimiter = "\t"
    for i, row in enumerate(csv.reader(lines, delimiter=delimiter)):
        cell = row[0].strip() if row else ""
        if not cell or cell.startswith("#") or (i == 0 and cell.lower() in HEADER_WORDS):
            continue
        names.append(cell)
    if not names:
        raise UserError(f"roster {path} names no candidate; write one name per line.")
    if len(names) > MAX_COHORT:
        raise UserError(f"roster {path} names {len(names)} candidates; split it into cohorts of at most {MAX_COHORT}.")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"roster {path} names {', '.join(dupes)} twice; each candidate must appear once.")
    return names


def _cohort_file(ctx: Context, name: str) -> Path:
    return ctx.settings.home / "cohorts" / f"{check_instance_name(name)}.json"


def _save(ctx: Context, cohort: Cohort) -> None:
    path = _cohort_file(ctx, cohort.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cohort.to_json(), indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def load(ctx: Context, name: str) -> Cohort:
    path = _cohort_file(ctx, name)
    if not path.exists():
        raise UserError(
            f"there is no cohort named {name!r}; bring one up with 'labkit cohort up LAB ROSTER --name {name}'."
        )
    return Cohort.from_json(json.loads(path.read_text()))


def cohort_up(ctx: Context, lab_ref: str, roster: Path, *, name: str, seed: int | None = None) -> Cohort:
    check_instance_name(name)
    if len(name) > 27:
        raise UserError(f"cohort name {name!r} is too long; use at most 27 characters (instances add '-NN').")
    if _cohort_file(ctx, name).exists():
        raise UserError(f"cohort {name!r} already exists; run 'labkit cohort down {name}' or pick another --name.")
    lab = load_lab_checked(ctx, lab_ref)
    candidates = read_roster(roster)
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    rng = random.Random(seed)
    seeds: list[int] = []
    while len(seeds) < len(candidates):  # distinct seeds, reproducible from the cohort seed
        s = rng.randrange(2**31)
        if s not in seeds:
            seeds.append(s)
    seats = [Seat(candidate=c, instance=f"{name}-{i + 1:02d}", seed=s)
             for i, (c, s) in enumerate(zip(candidates, seeds, strict=True))]
    cohort = Cohort(name, lab.spec.id, seed, seats)
    _save(ctx, cohort)
    for seat in cohort.seats:
        try:
            up(ctx, str(lab.lab_file), instance=seat.instance, seed=seat.seed, candidate=seat.candidate)
            seat.status, seat.detail = "up", ""
        except LabkitError as exc:
            seat.status, seat.detail = "failed", str(exc)
        _save(ctx, cohort)
    return cohort


def cohort_grade(ctx: Context, name: str, *, mode: str = "grade") -> Cohort:
    cohort = load(ctx, name)
    for seat in cohort.seats:
        if seat.status not in ("up", "graded"):
            continue
        try:
            summary = grade(ctx, seat.instance, mode=mode)
            seat.status, seat.detail = "graded", ""
            seat.score, seat.run_id = f"{summary.score}/{summary.max_score}", summary.run_id
        except LabkitError as exc:
            seat.detail = str(exc)
        _save(ctx, cohort)
    return cohort


def cohort_down(ctx: Context, name: str) -> Cohort:
    cohort = load(ctx, name)
    for seat in cohort.seats:
        exists = ctx.store.exists(seat.instance) or (ctx.settings.run_dir / seat.instance).exists() \
            or any(Path("/run/netns").glob(f"lk-{seat.instance}.*"))
        try:
            if exists:
                down(ctx, seat.instance)
            seat.status, seat.detail = "removed", ""
        except LabkitError as exc:
            seat.detail = str(exc)
    if all(s.status == "removed" for s in cohort.seats):
        _cohort_file(ctx, name).unlink()
    else:
        _save(ctx, cohort)
    return cohort
