"""A thin client of the Proxmox VE API (proxmoxer, https backend, API token).

Every call goes through :meth:`PveClient.call`, which maps the API's failures to labkit's
errors (401: the token; 403: a privilege; anything else: :class:`ProviderError` naming the
call). Every task is waited for with :meth:`PveClient.wait_task`, which checks the task's
``exitstatus``: proxmoxer's own ``blocking_status`` does not, and returns ``None`` on timeout.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from labkit.adapters.proxmox.settings import ENV_SECRET, ProxmoxSettings
from labkit.errors import LabkitError, ProviderError, UserError

_PRIV = re.compile(r"Permission check failed \(([^,)]*),?\s*([^)]*)\)")


class PveApiError(ProviderError):
    """An API call failed; ``status`` is the HTTP status, ``text`` PVE's message."""

    def __init__(self, message: str, status: int, text: str):
        super().__init__(message)
        self.status = status
        self.text = text


class PveTaskError(ProviderError):
    """A task ended with an exit status other than OK, or did not end in time."""

    def __init__(self, message: str, upid: str, exitstatus: str | None):
        super().__init__(message)
        self.upid = upid
        self.exitstatus = exitstatus


class PveClient:
    def __init__(self, settings: ProxmoxSettings):
        from proxmoxer import ProxmoxAPI

        self.settings = settings
        host, port = settings.host_port
        user, _, token = settings.token_id.partition("!")
        verify: bool | str = settings.ca_file if settings.ca_file else settings.verify_tls
        self._api = ProxmoxAPI(host, port=port, user=user, token_name=token,
                               token_value=settings.token_secret, verify_ssl=verify,
                               timeout=settings.api_timeout, backend="https", service="PVE")
        self._lock = threading.Lock()
        self.requests = 0  # calls made by this client (the bench reads it)

    # ------------------------------------------------------------------ calls

    def call(self, method: str, path: str, /, **params: Any) -> Any:
        """``method`` GET/POST/PUT/DELETE on ``path`` (e.g. ``/nodes/pve1/qemu``); the answer's data."""
        from proxmoxer.core import ResourceException
        from requests import RequestException

        with self._lock:
            self.requests += 1
        res = self._api(path.strip("/"))
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            if method == "GET":
                return res.get(**clean)
            if method == "POST":
                return res.post(**clean)
            if method == "PUT":
                return res.put(**clean)
            if method == "DELETE":
                return res.delete(**clean)
        except ResourceException as exc:
            raise self._mapped(method, path, exc.status_code, str(exc.content or ""),
                               exc.errors) from None
        except RequestException as exc:
            raise PveApiError(f"the Proxmox API at {self.settings.url} did not answer {method} {path} "
                              f"({type(exc).__name__}); check that the cluster is up and reachable "
                              f"from this host.", 0, str(exc)) from None
        raise ValueError(f"unknown HTTP method {method}")

    def _mapped(self, method: str, path: str, status: int, text: str, errors: Any) -> LabkitError:
        text = text.strip()
        if status == 401:
            return UserError(
                f"the Proxmox API token {self.settings.token_id} was refused (expired or revoked?); "
                f"make a new one (Datacenter > Permissions > API Tokens) and put its secret in "
                f"{self.settings.token_secret_file or 'the environment variable ' + ENV_SECRET}.")
        if status == 403:
            m = _PRIV.search(text)
            what = f"privilege {m.group(2)} on {m.group(1)}" if m and m.group(2) else "a privilege"
            return UserError(
                f"the Proxmox API token {self.settings.token_id} lacks {what} ({method} {path}); "
                f"grant it to the token's role, or run 'labkit doctor --provider proxmox' for the full list.")
        detail = f"{text} {errors}" if errors else text
        return PveApiError(f"Proxmox refused {method} {path} ({status}: {detail or 'no message'}).",
                           status, detail)

    # ------------------------------------------------------------------ tasks

    def wait_task(self, node: str, upid: str, timeout: float | None = None, what: str = "") -> None:
        """Wait for a task to stop; raise :class:`PveTaskError` unless its exitstatus is OK."""
        limit = self.settings.task_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = 0.05
        label = what or upid
        while True:
            st = self.call("GET", f"/nodes/{node}/tasks/{upid}/status")
            if st.get("status") == "stopped":
                exitstatus = st.get("exitstatus")
                if exitstatus != "OK":
                    raise PveTaskError(f"the Proxmox task {label} on {node} failed: {exitstatus}.",
                                       upid, exitstatus)
                return
            if time.monotonic() >= deadline:
                raise PveTaskError(f"the Proxmox task {label} on {node} did not finish within {limit:.0f} s; "
                                   f"look at it in the task list of {node}.", upid, None)
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, self.settings.poll_interval)

    def run_task(self, method: str, path: str, node: str, /, what: str = "",
                 timeout: float | None = None, **params: Any) -> None:
        """Call an API method that starts a task, and wait for it (exitstatus checked)."""
        upid = self.call(method, path, **params)
        if isinstance(upid, str) and upid.startswith("UPID:"):
            self.wait_task(upid.split(":")[1], upid, timeout, what or f"{method} {path}")
        else:
            del node  # a synchronous answer (no task)

    # ------------------------------------------------------------------ nodes

    def nodes_by_free_memory(self, allowed: list[str] | None = None) -> list[tuple[str, int]]:
        """Online nodes (restricted to ``allowed`` when given), most free memory first."""
        out = []
        for n in self.call("GET", "/nodes") or []:
            if n.get("status") != "online" or (allowed and n["node"] not in allowed):
                continue
            out.append((str(n["node"]), int(n.get("maxmem", 0)) - int(n.get("mem", 0))))
        if not out:
            raise ProviderError("no online Proxmox node" + (f" among {', '.join(allowed)}" if allowed else "")
                                + "; check the cluster (or 'nodes' in proxmox.toml).")
        return sorted(out, key=lambda t: (-t[1], t[0]))
