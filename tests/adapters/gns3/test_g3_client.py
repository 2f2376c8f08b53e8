"""Gns3Client against the real gns3-server (G1's harness): login, a new login once when the
token is refused (expired), a 403 and a 404 as Gns3ApiError with GNS3's message, a refused
login and an unreachable server as one sentence."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.adapters.gns3.client import Gns3ApiError, Gns3Client
from labkit.adapters.gns3.settings import Gns3Settings
from labkit.errors import ProviderError, UserError
from tests.adapters.gns3.g2lab import admin_client


@pytest.fixture
def g3srv(gns3_server: Any) -> Any:
    return gns3_server  # G1's session server (tests/adapters/gns3/conftest.py)


def test_login_and_relogin_once(g3srv: Any) -> None:
    with admin_client(g3srv) as c:
        assert c.get("/version")["version"] == "3.0.6" and c.requests == 2  # login + call
        c._token = "expired-or-forged"
        assert c.get("/access/users/me")["username"] == "admin"
        assert c.requests == 5  # refused call, new login, the call again


def test_errors(g3srv: Any) -> None:
    with admin_client(g3srv) as c:
        with pytest.raises(Gns3ApiError) as err:
            c.get("/projects/00000000-0000-0000-0000-000000000000")
        assert err.value.status == 404 and "\n" not in str(err.value)
        user = c.post("/access/users", {"username": "g2t-client-user", "password": "a-long-password-1"})
        try:
            with c.as_user("g2t-client-user", "a-long-password-1") as weak, pytest.raises(Gns3ApiError) as err:
                weak.post("/projects", {"name": "g2t-not-allowed"})
            assert err.value.status == 403 and "give that account the needed role" in str(err.value)
        finally:
            c.delete(f"/access/users/{user['user_id']}")
    bad = Gns3Client(Gns3Settings(url=g3srv.url, user="admin", password="wrong-password"))
    with bad, pytest.raises(UserError, match="refused the login of 'admin'; check the user and its password"):
        bad.get("/projects")
    gone = Gns3Client(Gns3Settings(url="http://127.0.0.1:9", user="admin", password="x"))
    with gone, pytest.raises(ProviderError, match="cannot reach the GNS3 server at http://127.0.0.1:9"):
        gone.get("/projects")
