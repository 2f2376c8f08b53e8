"""Portal pages through each role's main path (FastAPI TestClient, real database, fake labs)."""

from __future__ import annotations

from tests.interfaces.web.conftest import Portal, csrf_of


def test_smoke(portal: Portal) -> None:
    t = portal.login("trainer")
    r = t.get("/cohorts")
    assert r.status_code == 200, r.text
    assert "bts1" in r.text
    r = t.get(f"/cohorts/{portal.cohort_id}")
    assert r.status_code == 200, r.text
    print(r.text[:3000])
