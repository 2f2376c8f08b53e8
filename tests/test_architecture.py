"""The layering contract (interfaces → usecases → domain → adapters → models) holds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import labkit

PROJECT = Path(__file__).resolve().parents[1]


def test_import_layers_are_kept() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists() and shutil.which("lint-imports") is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    res = subprocess.run([str(exe if exe.exists() else "lint-imports")], cwd=PROJECT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


def test_public_api_is_explicit() -> None:
    assert labkit.__all__ == ["__version__"]
    assert isinstance(labkit.__version__, str)
