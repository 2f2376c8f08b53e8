"""SMB probes (smbprotocol, NTLM): log on to a server, try a share, read files, from inside a
lab namespace.

The TCP socket is opened by smbprotocol in the calling (probe) thread, so it belongs to the
vantage namespace; smbprotocol's receiver thread only reads from that socket. Everything is
bounded by ``timeout`` (connect and every request).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from functools import partial
from typing import Any

from smbprotocol.connection import Connection
from smbprotocol.header import NtStatus
from smbprotocol.exceptions import SMBAuthenticationError, SMBException, SMBResponseException
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    Open,
    ShareAccess,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from labkit.adapters.netns.nsutil import assert_in_lab_netns
from labkit.models.evidence import Evidence

from ._common import describe_exc, evidence, ip_literal, utcnow
from labkit.adapters.probes.registry import probe

__all__ = ["smb_read_files", "smb_share_access"]

_MAX_READ = 1 << 20
_STATUS_NAMES = {v: k for k, v in vars(NtStatus).items() if k.startswith("STATUS_") and isinstance(v, int)}


class _Unreachable(Exception):
    pass


def _status(exc: BaseException) -> str:
    """A short name for an SMB failure: STATUS_ACCESS_DENIED, STATUS_LOGON_FAILURE, ..."""
    if isinstance(exc, SMBResponseException):
        status = int(getattr(exc, "status", 0) or 0)
        return _STATUS_NAMES.get(status, f"0x{status:08x}")
    if isinstance(exc, SMBAuthenticationError):
        return "STATUS_LOGON_FAILURE"
    return type(exc).__name__


def _logon(host: str, username: str, password: str, timeout: float) -> tuple[Connection, Session | None, str]:
    """Connect and authenticate; (connection, session or None, logon outcome)."""
    conn = Connection(uuid.uuid4(), host, 445, require_signing=True)
    try:
        conn.connect(timeout=timeout)
    except (ValueError, OSError, SMBException) as exc:
        raise _Unreachable(f"cannot connect to {host}:445: {describe_exc(exc)}") from exc
    session = Session(conn, username, password, require_encryption=False, auth_protocol="ntlm")
    try:
        session.connect()
    except (SMBResponseException, SMBAuthenticationError) as exc:
        return conn, None, _status(exc)
    except SMBException as exc:
        if "guest" in str(exc).lower():  # signing required, but the server made us a guest
            return conn, None, "GUEST"
        raise
    except Exception as exc:  # noqa: BLE001 - spnego raises its own errors for a refused logon
        if "logon" in str(exc).lower() or "auth" in type(exc).__name__.lower():
            return conn, None, "STATUS_LOGON_FAILURE"
        raise
    return conn, session, "ok"


def _close(conn: Connection | None) -> None:
    if conn is None:
        return
    try:
        conn.disconnect(True)
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass


@probe("smb.smb_share_access")
def smb_share_access(
    host: str,
    share: str,
    *,
    username: str,
    password: str,
    ev_id: str,
    source: str,
    check: str | None = None,
    write_test: bool = True,
    timeout: float = 5.0,
) -> Evidence:
    """Log on as ``username`` (``DOMAIN\\user``), connect to ``share``, and with ``write_test``
    create a marker file, write, read it back and delete it.

    parsed: ``logon`` (ok | GUEST | STATUS_...), ``tree`` (ok | STATUS_... | null if not tried),
    ``write`` / ``read`` / ``delete`` (ok | STATUS_... | null), ``marker`` (file name),
    ``read_matches`` (bool). Server unreachable or timeout: ok=False.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    marker = f"labkit-probe-{secrets.token_hex(4)}.txt"
    unc = rf"\\{host}\{share}"
    action = f"smb logon {username} on {host}; tree connect {unc}" + (f"; create/write/read/delete {marker}"
                                                                        if write_test else "")
    base = partial(evidence, ev_id=ev_id, check=check, kind="smb", source=source, target=unc, action=action)
    meta: dict[str, Any] = {"netns": netns, "user": username, "share": share}
    try:
        ip_literal(host)
        if not 0 < timeout <= 60:
            raise ValueError("timeout must be between 0 and 60 s")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    parsed: dict[str, Any] = {"logon": None, "tree": None, "write": None, "read": None, "delete": None,
                              "marker": marker, "read_matches": False}
    conn: Connection | None = None
    try:
        conn, session, parsed["logon"] = _logon(host, username, password, timeout)
        if session is not None:
            tree = TreeConnect(session, unc)
            try:
                tree.connect()
                parsed["tree"] = "ok"
            except SMBResponseException as exc:
                parsed["tree"] = _status(exc)
            if parsed["tree"] == "ok" and write_test:
                _write_read_delete(tree, marker, parsed)
    except _Unreachable as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    except (SMBException, OSError, ValueError) as exc:
        return base(started_at=started, ok=False, error=f"SMB exchange failed: {describe_exc(exc)}", meta=meta,
                    parsed=parsed)
    finally:
        _close(conn)
    raw = "; ".join(f"{k}={v}" for k, v in parsed.items())
    return base(started_at=started, ok=True, raw=raw, parsed=parsed, meta=meta)


def _write_read_delete(tree: TreeConnect, marker: str, parsed: dict[str, Any]) -> None:
    payload = f"labkit probe {marker}\n".encode()
    handle = Open(tree, marker)
    try:
        handle.create(ImpersonationLevel.Impersonation,
                      FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
                      | FilePipePrinterAccessMask.DELETE,
                      FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
                      CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE)
    except SMBResponseException as exc:
        parsed["write"] = _status(exc)
        return
    try:
        handle.write(payload, 0)
        parsed["write"] = "ok"
        data = handle.read(0, len(payload))
        parsed["read"] = "ok"
        parsed["read_matches"] = data == payload
    except SMBResponseException as exc:
        key = "read" if parsed["write"] == "ok" else "write"
        parsed[key] = _status(exc)
    finally:
        try:
            handle.close()
        except SMBException:
            pass
    deleter = Open(tree, marker)
    try:
        deleter.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.DELETE,
                       FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_DELETE,
                       CreateDisposition.FILE_OPEN,
                       CreateOptions.FILE_NON_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE)
        deleter.close()
        parsed["delete"] = "ok"
    except SMBResponseException as exc:
        parsed["delete"] = _status(exc)


@probe("smb.smb_read_files")
def smb_read_files(
    host: str,
    share: str,
    paths: list[str],
    *,
    username: str,
    password: str,
    ev_id: str,
    source: str,
    check: str | None = None,
    timeout: float = 5.0,
) -> Evidence:
    """Log on as ``username``, connect to ``share`` and read each of ``paths`` (backslashes,
    relative to the share; at most 1 MiB each).

    parsed: ``logon``, ``tree`` (as in :func:`smb_share_access`), ``files``:
    ``{path: {"status": ok | STATUS_..., "size": n, "data_b64": ...}}``. Unreachable: ok=False.
    """
    netns = assert_in_lab_netns()  # raises NamespaceSafetyError before anything is sent
    started = utcnow()
    unc = rf"\\{host}\{share}"
    action = f"smb logon {username} on {host}; read " + ", ".join(rf"{unc}\{p}" for p in paths)
    base = partial(evidence, ev_id=ev_id, check=check, kind="smb", source=source, target=unc, action=action)
    meta: dict[str, Any] = {"netns": netns, "user": username, "share": share}
    try:
        ip_literal(host)
        if not 0 < timeout <= 60:
            raise ValueError("timeout must be between 0 and 60 s")
    except ValueError as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    parsed: dict[str, Any] = {"logon": None, "tree": None, "files": {}}
    lines: list[str] = []
    conn: Connection | None = None
    try:
        conn, session, parsed["logon"] = _logon(host, username, password, timeout)
        if session is not None:
            tree = TreeConnect(session, unc)
            try:
                tree.connect()
                parsed["tree"] = "ok"
            except SMBResponseException as exc:
                parsed["tree"] = _status(exc)
            if parsed["tree"] == "ok":
                for path in paths:
                    parsed["files"][path] = _read_one(tree, path)
                    lines.append(f"{path}: {parsed['files'][path]['status']} ({parsed['files'][path]['size']} bytes)")
    except _Unreachable as exc:
        return base(started_at=started, ok=False, error=str(exc), meta=meta)
    except (SMBException, OSError, ValueError) as exc:
        return base(started_at=started, ok=False, error=f"SMB exchange failed: {describe_exc(exc)}", meta=meta,
                    parsed=parsed)
    finally:
        _close(conn)
    raw = f"logon={parsed['logon']} tree={parsed['tree']}\n" + "\n".join(lines)
    return base(started_at=started, ok=True, raw=raw, parsed=parsed, meta=meta)


def _read_one(tree: TreeConnect, path: str) -> dict[str, Any]:
    handle = Open(tree, path)
    try:
        handle.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.GENERIC_READ,
                      FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE)
    except SMBResponseException as exc:
        return {"status": _status(exc), "size": 0, "data_b64": None}
    try:
        size = min(int(handle.end_of_file), _MAX_READ)
        data = handle.read(0, size) if size else b""
        return {"status": "ok", "size": len(data), "data_b64": base64.b64encode(data).decode()}
    except SMBResponseException as exc:
        return {"status": _status(exc), "size": 0, "data_b64": None}
    finally:
        try:
            handle.close()
        except SMBException:
            pass
