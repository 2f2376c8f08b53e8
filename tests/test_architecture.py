"""The layering contract (interfaces → usecases → domain → adapters → models) holds; graders
and the domain stay provider-neutral; every registered provider implements the contract."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import labkit
from labkit.adapters.providers.base import PROVIDERS, Provider, vantage_modes
from labkit.models.capabilities import ALL_CAPABILITIES
from labkit.settings import Settings
from labkit.usecases.lifecycle import Context

PROJECT = Path(__file__).resolve().parents[1]


def test_import_layers_are_kept() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists() and shutil.which("lint-imports") is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    res = subprocess.run([str(exe if exe.exists() else "lint-imports")], cwd=PROJECT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 kept, 0 broken" in res.stdout


def test_public_api_is_explicit() -> None:
    assert labkit.__all__ == ["__version__"]
    assert isinstance(labkit.__version__, str)


# Above the provider nothing names the netns provider: no namespace path, no import of it.
NEUTRAL = [PROJECT / "src" / "labkit" / d for d in ("usecases", "domain", "interfaces")] + [PROJECT / "graders"]


def _sources() -> list[Path]:
    files = sorted(p for d in NEUTRAL for p in d.rglob("*.py"))
    assert len(files) > 20  # the walk found the packages
    return files


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_nothing_above_the_provider_names_netns_paths() -> None:
    offenders = [f"{p.relative_to(PROJECT)}: {needle}" for p in _sources()
                 for needle in ("/run/netns", "nsenter", "labkit_netns") if needle in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_nothing_above_the_provider_imports_the_netns_provider() -> None:
    """(Proxmox-only use cases such as doctor and templates may use the Proxmox adapter; the
    domain and graders may not: import-linter's contracts.)"""
    offenders = [f"{p.relative_to(PROJECT)}: {name}" for p in _sources() for name in _imports(p)
                 if name.startswith("labkit.adapters.netns")]
    assert offenders == []


def test_the_source_checks_would_catch_a_regression(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import labkit.adapters.netns.nsutil\nfrom labkit.adapters.netns import provider\n"
                   "P = '/run/netns'\n")
    assert {"labkit.adapters.netns.nsutil", "labkit.adapters.netns.provider"} <= _imports(bad)
    assert "/run/netns" in bad.read_text()


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_registered_provider_implements_the_contract(name: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT)
    prov = Context(settings).provider(name)  # no configuration needed to build one
    assert isinstance(prov, Provider)
    assert prov.name == name
    assert prov.capabilities and prov.capabilities <= ALL_CAPABILITIES
    modes = vantage_modes(prov)
    assert modes and set(modes) <= {"inprocess", "agent"}
    assert prov.leftovers("lkarch-none") == []  # nothing of an unknown name; cheap when not configured
