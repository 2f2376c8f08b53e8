"""Fixtures of the probe tests; the topology helpers live in probe_testlib.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from probe_testlib import NetnsLab


@pytest.fixture(scope="session")
def probe_registry() -> dict[str, Any]:
    """Everything the probe tests created in this session (checked by test_probe_zz_cleanup)."""
    return {"namespaces": [], "pids": [], "tmpdirs": []}


@pytest.fixture(scope="module")
def make_lab(probe_registry: dict[str, Any]) -> Iterator[Any]:
    labs: list[NetnsLab] = []

    def factory(tag: str, subnet: int) -> NetnsLab:
        lab = NetnsLab(tag, subnet, probe_registry)
        labs.append(lab)
        try:
            return lab.up()
        except BaseException:
            lab.down()
            raise

    yield factory
    for lab in labs:
        lab.down()
