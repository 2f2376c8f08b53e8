"""A cohort of TEN on the real gns3-server (G1's harness) through labkit's cohort use cases,
with a failure injected mid-cohort: seat 06's link creation fails after its project, nodes and
some links exist. That seat fails and is rolled back (nothing of it on the server), the nine
others come up with their candidates' accounts; cohort down leaves nothing of this home."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.gns3 import naming
from labkit.adapters.gns3.provider import Gns3Provider
from labkit.errors import ProviderError
from labkit.usecases import cohort as cohorts
from labkit.usecases import lifecycle
from tests.adapters.gns3.g2lab import LAB_ID, admin_client, ensure_templates, home_objects, make_ctx

SEATS = 10
FAILING = 6


@pytest.fixture
def g3srv(gns3_server: Any) -> Any:
    return gns3_server  # G1's session server (tests/adapters/gns3/conftest.py)


def test_cohort_of_ten_with_a_failed_seat(g3srv: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with admin_client(g3srv) as admin:
        ctx = make_ctx(g3srv, tmp_path, ensure_templates(admin, g3srv), parallel=4)
        monkeypatch.setenv("LABKIT_PROJECT", str(ctx.settings.project))
        bad = f"g3c-{FAILING:02d}"
        real_links = Gns3Provider._links
        injected: list[str] = []

        def links(self: Gns3Provider, state: Any) -> None:
            real_links(self, state)
            if state.name == bad:
                injected.append(state.provider_data["project_id"])
                raise ProviderError("injected: GNS3 refused the link (409: port in use).")

        monkeypatch.setattr(Gns3Provider, "_links", links)
        roster = tmp_path / "roster.txt"
        roster.write_text("".join(f"Candidate {i:02d}\n" for i in range(1, SEATS + 1)), encoding="utf-8")
        t0 = time.monotonic()
        result = cohorts.cohort_up(ctx, LAB_ID, roster, name="g3c", seed=42, parallel=5, provider="gns3")
        elapsed = time.monotonic() - t0
        try:
            assert elapsed < 600
            assert len(result.seats) == SEATS
            failed = [s for s in result.seats if s.status != "up"]
            assert [s.instance for s in failed] == [bad], "\n".join(s.detail for s in failed[:3])
            assert "injected: GNS3 refused the link" in failed[0].detail and "\n" not in failed[0].detail
            assert len(injected) == 1  # it really got that far: a project with nodes and links
            prov = ctx.provider("gns3")
            assert prov.leftovers(bad) == [] and not ctx.store.exists(bad)
            assert all(p["project_id"] != injected[0] for p in admin.get("/projects"))
            hid = naming.home_id(ctx.settings.home)
            ups = [s.instance for s in result.seats if s.status == "up"]
            projects = {p["name"]: p for p in admin.get("/projects")}
            assert sorted(n for n in projects if hid in n) == sorted(f"lk-{hid}-{i}" for i in ups)
            users = {u["username"] for u in admin.get("/access/users")}
            assert {f"lk-{hid}-{i}" for i in ups} <= users and f"lk-{hid}-{bad}" not in users
            for inst in ups:
                st = ctx.store.load(inst)
                nodes = admin.get(f"/projects/{st.provider_data['project_id']}/nodes")
                assert len(nodes) == 6 and len(admin.get(f"/projects/{st.provider_data['project_id']}/links")) == 5
                assert lifecycle.status(ctx, inst).healthy
            assert sorted(prov.instances()) == sorted(ups)
        finally:
            down = cohorts.cohort_down(ctx, "g3c")
        assert all(s.status == "removed" for s in down.seats)
        assert home_objects(admin, naming.home_id(ctx.settings.home)) == []


ALLOCATING = ("/links", "/nodes/start", "/reload", "/restore", "/reset")  # calls that make GNS3 allocate UDP ports


class InFlight:
    """Wraps Gns3Client._send: node and link creations in flight (``creating``), and calls that
    make the compute allocate UDP ports (``allocating``: link creations and resets, starts,
    reloads, restores), most at once of each. Each call is held 0.1 s so they overlap."""

    def __init__(self) -> None:
        from labkit.adapters.gns3.client import Gns3Client

        self.real = Gns3Client._send
        self.lock = threading.Lock()
        self.now = {"creating": 0, "allocating": 0}
        self.most = {"creating": 0, "allocating": 0}
        self.total = {"creating": 0, "allocating": 0}

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from labkit.adapters.gns3.client import Gns3Client

        monkeypatch.setattr(Gns3Client, "_send", lambda client, method, path, **kw: self.send(client, method, path,
                                                                                             **kw))

    def send(self, client: Any, method: str, path: str, **kw: Any) -> Any:
        kinds = []
        if method == "POST" and ("/templates/" in path or path.endswith("/links") or path.endswith("/nodes")):
            kinds.append("creating")
        if method == "POST" and path.endswith(ALLOCATING):
            kinds.append("allocating")
        if not kinds:
            return self.real(client, method, path, **kw)
        with self.lock:
            for k in kinds:
                self.now[k] += 1
                self.total[k] += 1
                self.most[k] = max(self.most[k], self.now[k])
        try:
            time.sleep(0.1)
            return self.real(client, method, path, **kw)
        finally:
            with self.lock:
                for k in kinds:
                    self.now[k] -= 1


def test_creations_bounded_by_parallel(g3srv: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """4 seats brought up 4 at once, ``parallel = 2`` in gns3.toml: node and link creations of
    the whole process are never more than 2 in flight (each held 0.1 s here, so they overlap),
    and they do reach 2 (the work is parallel, not serial). The calls that make gns3-server
    allocate UDP ports (link creations, starts) are never more than 1 at once on the server:
    its compute can hand one port out twice to concurrent calls (provider.py's doc)."""
    with admin_client(g3srv) as admin:
        ctx = make_ctx(g3srv, tmp_path, ensure_templates(admin, g3srv), parallel=2)
        monkeypatch.setenv("LABKIT_PROJECT", str(ctx.settings.project))
        seen = InFlight()
        seen.patch(monkeypatch)
        binds_before = len(g3srv.binds_log())
        roster = tmp_path / "roster.txt"
        roster.write_text("".join(f"Candidate {i}\n" for i in range(1, 5)), encoding="utf-8")
        try:
            result = cohorts.cohort_up(ctx, LAB_ID, roster, name="g3p", seed=7, parallel=4, provider="gns3")
            assert [s.status for s in result.seats] == ["up"] * 4, "\n".join(s.detail for s in result.seats)
            assert seen.total["creating"] == 4 * (6 + 5)  # 4 nodes + 2 switches, 5 links per seat
            assert seen.most["creating"] == 2
            assert seen.total["allocating"] >= 4 * (5 + 1)  # 5 links and a start per seat
            assert seen.most["allocating"] == 1
            assert g3srv.binds_log()[binds_before:] == []  # no emulator found its UDP port taken
        finally:
            cohorts.cohort_down(ctx, "g3p")
        assert home_objects(admin, naming.home_id(ctx.settings.home)) == []


def test_port_allocating_calls_overlap_without_the_lock(g3srv: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The control of the test above: with ``allocating_ports`` made a no-op, one instance's
    link creations (``parallel = 2``) do overlap, so that test's measure can see an overlap."""
    import contextlib

    with admin_client(g3srv) as admin:
        ctx = make_ctx(g3srv, tmp_path, ensure_templates(admin, g3srv), parallel=2)
        monkeypatch.setenv("LABKIT_PROJECT", str(ctx.settings.project))
        seen = InFlight()
        seen.patch(monkeypatch)
        monkeypatch.setattr(Gns3Provider, "allocating_ports", lambda self, what: contextlib.nullcontext())
        try:
            lifecycle.up(ctx, LAB_ID, instance="g3nolock", seed=8, provider="gns3")
            assert seen.most["allocating"] == 2
        finally:
            lifecycle.down(ctx, "g3nolock")
        assert home_objects(admin, naming.home_id(ctx.settings.home)) == []
