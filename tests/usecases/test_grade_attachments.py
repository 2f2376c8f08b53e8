"""The grading's hook for a provider's proof files (``run_attachments``): stored in the run's
attachments, listed with size and hash, sealed; a provider that fails is recorded, not fatal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from labkit.adapters.storage.runs import RunWriter
from labkit.errors import ProviderError
from labkit.usecases.grade import _attach_provider_files


class Exporting:
    def __init__(self, fail: bool = False):
        self.fail = fail
        self.calls: list[Path] = []

    def run_attachments(self, state: Any, workdir: Path) -> list[tuple[str, Path]]:
        self.calls.append(workdir)
        if self.fail:
            raise ProviderError("GNS3 export of project lk-x failed (500: boom).")
        out = workdir / "p.zip"
        out.write_bytes(b"PK\x05\x06" + b"\0" * 18)
        return [("project.gns3project", out)]


def test_provider_files_are_attached_and_listed(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "runs", "x-20261130T100000Z-0001")
    prov = Exporting()
    _attach_provider_files(prov, None, w)  # type: ignore[arg-type]
    stored = w.path / "attachments" / "project.gns3project"
    data = stored.read_bytes()
    rows = json.loads((w.path / "artifacts" / "attachments.json").read_text())
    assert rows == [{"name": "project.gns3project", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    assert not prov.calls[0].exists()  # the provider's scratch folder is gone


def test_a_failing_export_is_recorded_not_fatal(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "runs", "x-20261130T100000Z-0002")
    _attach_provider_files(Exporting(fail=True), None, w)  # type: ignore[arg-type]
    rows = json.loads((w.path / "artifacts" / "attachments.json").read_text())
    assert rows == [{"error": "GNS3 export of project lk-x failed (500: boom)."}]
    assert not (w.path / "attachments").exists()


def test_a_provider_without_the_hook_adds_nothing(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "runs", "x-20261130T100000Z-0003")
    _attach_provider_files(object(), None, w)  # type: ignore[arg-type]
    assert not (w.path / "artifacts" / "attachments.json").exists()
