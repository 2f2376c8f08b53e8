"""A thin client of the GNS3 v3 controller API (plain httpx; gns3fy knows only v2).

Every call goes through :meth:`Gns3Client.request`, which logs in on first use
(``POST /v3/access/users/authenticate`` -> a bearer token), logs in again once on a 401 (tokens
expire), and maps failures to labkit's errors: a refused login or a 403 is a
:class:`~labkit.errors.UserError` saying what to fix; anything else a :class:`Gns3ApiError`
naming the call and GNS3's own message. ``Gns3Client.as_user`` gives a client with another
account's credentials (the candidates' accounts: tests prove what their tokens cannot do).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from labkit.adapters.gns3.settings import Gns3Settings
from labkit.errors import ProviderError, UserError

API = "/v3"


class Gns3ApiError(ProviderError):
    """An API call failed; ``status`` is the HTTP status, ``detail`` GNS3's message."""

    def __init__(self, message: str, status: int, detail: str):
        super().__init__(message)
        self.status = status
        self.detail = detail


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]


class Gns3Client:
    def __init__(self, settings: Gns3Settings, *, user: str | None = None, password: str | None = None):
        self.settings = settings
        self.user = user or settings.user
        self._password = password if password is not None else settings.password
        verify: bool | str = settings.ca_file if settings.ca_file else settings.verify_tls
        self._http = httpx.Client(base_url=settings.url + API, timeout=settings.api_timeout, verify=verify)
        self._token: str | None = None
        self._lock = threading.Lock()
        self.requests = 0  # calls made by this client (the bench reads it)

    def as_user(self, user: str, password: str) -> Gns3Client:
        return Gns3Client(self.settings, user=user, password=password)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Gns3Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ auth

    def _login(self) -> str:
        try:
            resp = self._http.post("/access/users/authenticate",
                                   json={"username": self.user, "password": self._password})
        except httpx.HTTPError as exc:
            raise ProviderError(f"cannot reach the GNS3 server at {self.settings.url} ({exc}); check url in "
                                "gns3.toml and that gns3-server runs.") from None
        self.requests += 1
        if resp.status_code == 401:
            raise UserError(f"the GNS3 server refused the login of {self.user!r}; check the user and its "
                            "password (password_file in gns3.toml).")
        if resp.status_code != 200:
            raise Gns3ApiError(f"GNS3 login of {self.user!r} failed ({resp.status_code}: {_detail(resp)}).",
                               resp.status_code, _detail(resp))
        token = str(resp.json()["access_token"])
        with self._lock:
            self._token = token
        return token

    def _auth(self) -> dict[str, str]:
        token = self._token or self._login()
        return {"Authorization": f"Bearer {token}"}

    # ------------------------------------------------------------------ calls

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                timeout: float | None = None) -> Any:
        """``method`` on ``path`` (under /v3, e.g. ``/projects``); the decoded JSON answer (None
        for an empty body)."""
        resp = self._send(method, path, json=json, params=params, timeout=timeout)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json={} if json is None else json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, json={} if json is None else json, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def _send(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
              timeout: float | None = None) -> httpx.Response:
        for attempt in (1, 2):
            try:
                resp = self._http.request(method, path, json=json, params=params, headers=self._auth(),
                                          timeout=timeout or self.settings.api_timeout)
            except httpx.TimeoutException:
                raise ProviderError(f"GNS3 did not answer {method} {path} within "
                                    f"{timeout or self.settings.api_timeout:.0f} s; retry, or raise api_timeout "
                                    "in gns3.toml.") from None
            except httpx.HTTPError as exc:
                raise ProviderError(f"cannot reach the GNS3 server at {self.settings.url} ({exc}); check url "
                                    "in gns3.toml and that gns3-server runs.") from None
            self.requests += 1
            if resp.status_code == 401 and attempt == 1:
                self._login()  # the token expired: once more with a new one
                continue
            break
        if resp.status_code == 403:
            raise Gns3ApiError(f"GNS3 refused {method} {path} to {self.user!r} ({_detail(resp)}); give that "
                               "account the needed role (see 'labkit doctor --provider gns3').",
                               403, _detail(resp))
        if resp.status_code >= 400:
            raise Gns3ApiError(f"GNS3 {method} {path} failed ({resp.status_code}: {_detail(resp)}).",
                               resp.status_code, _detail(resp))
        return resp

    @contextmanager
    def stream(self, method: str, path: str, *, params: dict[str, Any] | None = None,
               timeout: float | None = None) -> Iterator[httpx.Response]:
        """A streamed answer (project export, link capture); the caller reads ``iter_bytes()``."""
        with self._http.stream(method, path, params=params, headers=self._auth(),
                               timeout=timeout or self.settings.api_timeout) as resp:
            self.requests += 1
            if resp.status_code >= 400:
                resp.read()
                raise Gns3ApiError(f"GNS3 {method} {path} failed ({resp.status_code}: {_detail(resp)}).",
                                   resp.status_code, _detail(resp))
            yield resp
