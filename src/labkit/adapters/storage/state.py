"""Instance state on disk: ``<home>/instances/<name>/state.json``, written atomically.

State is written before any resource is created and updated as the instance changes, so a
new process (``status``, ``exec``, ``grade``, ``down``) can act on it, and ``down`` can clean
up after a crash.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from labkit.errors import UnknownInstanceError, UserError
from labkit.models.evidence import Evidence
from labkit.models.instance import InstanceState

INSTANCE_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def check_instance_name(name: str) -> str:
    if not isinstance(name, str) or not INSTANCE_RE.fullmatch(name):
        raise UserError(
            f"{name!r} is not a valid instance name; use 1 to 31 lowercase letters, digits "
            "and dashes, starting with a letter (for example 'cand-07')."
        )
    return name


def utcnow() -> datetime:
    return datetime.now(UTC)


class InstanceStore:
    def __init__(self, instances_dir: Path):
        self.root = instances_dir

    def dir(self, name: str) -> Path:
        return self.root / check_instance_name(name)

    def state_file(self, name: str) -> Path:
        return self.dir(name) / "state.json"

    def exists(self, name: str) -> bool:
        return self.state_file(name).exists()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and INSTANCE_RE.fullmatch(p.name))

    def load(self, name: str) -> InstanceState:
        path = self.state_file(name)
        try:
            return InstanceState.model_validate_json(path.read_text())
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise UnknownInstanceError(
                f"no lab instance named {name!r} (instances: {known}); see 'labkit status'."
            ) from None
        except (ValidationError, json.JSONDecodeError) as exc:
            raise UnknownInstanceError(
                f"the state of instance {name!r} is unreadable ({path}); run 'labkit down {name}' "
                "to clean it up."
            ) from exc

    def save(self, state: InstanceState) -> None:
        state.updated_at = utcnow()
        d = self.dir(state.name)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / ".state.json.tmp"
        tmp.write_text(state.model_dump_json(indent=2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, d / "state.json")

    def save_baseline(self, name: str, check: str, evidence: list[Evidence]) -> None:
        """Reference evidence recorded at ``up`` for one check (see Grader.baseline)."""
        d = self.dir(name) / "baseline"
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = d / f".{check}.json.tmp"
        tmp.write_text(json.dumps([e.model_dump(mode="json") for e in evidence], indent=1))
        os.replace(tmp, d / f"{check}.json")

    def load_baseline(self, name: str, check: str) -> list[Evidence]:
        path = self.dir(name) / "baseline" / f"{check}.json"
        if not path.exists():
            return []
        return [Evidence.model_validate(e) for e in json.loads(path.read_text())]

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Serialise lifecycle operations on one instance across processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / f".{check_instance_name(name)}.lock"
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"another labkit process is working on instance {name!r}; wait for it to finish."
                ) from None
            yield
        finally:
            os.close(fd)

    def remove_lock(self, name: str) -> None:
        (self.root / f".{name}.lock").unlink(missing_ok=True)
