"""A cohort of TEN on the real gns3-server (G1's harness) through labkit's cohort use cases,
with a failure injected mid-cohort: seat 06's link creation fails after its project, nodes and
some links exist. That seat fails and is rolled back (nothing of it on the server), the nine
others come up with their candidates' accounts; cohort down leaves nothing of this home."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from labkit.adapters.gns3 import naming
from labkit.adapters.gns3.provider import Gns3Provider
from labkit.errors import ProviderError
from labkit.usecases import cohort as cohorts
from labkit.usecases import lifecycle
from tests.adapters.gns3.g2lab import LAB_ID, admin_client, ensure_templates, home_objects, make_ctx, own_server

SEATS = 10
FAILING = 6


@pytest.fixture(scope="module")
def g3srv() -> Any:
    server = own_server()
    try:
        yield server
    finally:
        server.stop()


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
            assert [s.instance for s in failed] == [bad], [s.detail for s in failed][:3]
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
