"""ssh_provision (the templates build's SSH step) against a small paramiko SSH server on
127.0.0.1 that plays the build guest: key auth for user labkit, SFTP into a temporary folder,
and an exec that records the script it is given (nothing is run on this host)."""

from __future__ import annotations

import io
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from labkit.adapters.proxmox.templates import UPLOAD_DIR, _new_key, ssh_provision
from labkit.errors import ProviderError


class _Sftp(paramiko.SFTPServerInterface):
    root: Path

    def _real(self, path: str) -> str:
        return str(self.root / path.lstrip("/"))

    def mkdir(self, path: str, attr: Any) -> int:
        os.makedirs(self._real(path), exist_ok=True)
        return paramiko.SFTP_OK

    def open(self, path: str, flags: int, attr: Any) -> Any:
        fh = paramiko.SFTPHandle(flags)
        f = open(self._real(path), "wb")  # noqa: SIM115 - owned by the handle
        fh.writefile = f
        fh.filename = self._real(path)
        return fh

    def chattr(self, path: str, attr: Any) -> int:
        os.chmod(self._real(path), attr.st_mode & 0o7777)
        return paramiko.SFTP_OK


class Guest:
    def __init__(self, root: Path, pubkey: paramiko.PKey, exit_status: int = 0, user: str = "labkit") -> None:
        self.root, self.pubkey, self.exit_status, self.user = root, pubkey, exit_status, user
        self.commands: list[str] = []
        self.scripts: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.host_key = paramiko.Ed25519Key.from_private_key(io.StringIO(_new_key()[0]))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        guest = self

        class Server(paramiko.ServerInterface):
            def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
                ok = username == guest.user and key.get_base64() == guest.pubkey.get_base64()
                return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

            def get_allowed_auths(self, username: str) -> str:
                return "publickey"

            def check_channel_request(self, kind: str, chanid: int) -> int:
                refused = paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
                return paramiko.OPEN_SUCCEEDED if kind == "session" else refused

            def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
                guest.commands.append(command.decode())

                def run() -> None:
                    data = b""
                    while True:
                        chunk = channel.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    guest.scripts.append(data)
                    if guest.exit_status:
                        channel.sendall_stderr(b"E: Unable to locate package nosuchpkg\n")
                    channel.send_exit_status(guest.exit_status)
                    channel.close()
                threading.Thread(target=run, daemon=True).start()
                return True

        t = paramiko.Transport(conn)
        t.add_server_key(self.host_key)
        _Sftp.root = self.root
        t.set_subsystem_handler("sftp", paramiko.SFTPServer, _Sftp)
        t.start_server(server=Server())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def key() -> tuple[str, paramiko.PKey]:
    pem, _pub = _new_key()
    return pem, paramiko.Ed25519Key.from_private_key(io.StringIO(pem))


@pytest.fixture
def guest(tmp_path: Path, key: tuple[str, paramiko.PKey]) -> Iterator[Guest]:
    g = Guest(tmp_path / "guest", key[1])
    (tmp_path / "guest").mkdir()
    yield g
    g.close()


def test_uploads_then_runs_the_script_with_sudo(guest: Guest, key: tuple[str, paramiko.PKey]) -> None:
    files = {"labkit-agent": (b"#!/bin/sh\nexit 0\n", 0o755), "labkit-0.1.0-py3-none-any.whl": (b"PK", 0o644)}
    ssh_provision("127.0.0.1", guest.port, "labkit", key[0], "set -eu\necho hi\n", 30, files)
    assert guest.commands == ["sudo sh -s"] and guest.scripts == [b"set -eu\necho hi\n"]
    up = guest.root / UPLOAD_DIR.lstrip("/")
    assert (up / "labkit-agent").read_bytes() == b"#!/bin/sh\nexit 0\n"
    assert (up / "labkit-agent").stat().st_mode & 0o777 == 0o755
    assert (up / "labkit-0.1.0-py3-none-any.whl").stat().st_mode & 0o777 == 0o644


def test_root_runs_the_script_without_sudo(guest: Guest, key: tuple[str, paramiko.PKey]) -> None:
    """A CT template's build container is reached as root: Debian's system container image has
    no sudo, so the script runs in sh itself."""
    guest.user = "root"
    ssh_provision("127.0.0.1", guest.port, "root", key[0], "set -eu\necho hi\n", 30, {})
    assert guest.commands == ["sh -s"] and guest.scripts == [b"set -eu\necho hi\n"]


def test_failed_script_is_one_clear_error(guest: Guest, key: tuple[str, paramiko.PKey]) -> None:
    guest.exit_status = 100
    with pytest.raises(ProviderError, match=r"failed in the build guest \(exit 100\): E: Unable to locate package"):
        ssh_provision("127.0.0.1", guest.port, "labkit", key[0], "apt-get install nosuchpkg\n", 30, {})


def test_another_key_is_refused_at_once(guest: Guest) -> None:
    other = _new_key()[0]
    with pytest.raises(ProviderError, match="refused labkit's throwaway key for user labkit"):
        ssh_provision("127.0.0.1", guest.port, "labkit", other, "true\n", 30, {})
    assert guest.commands == []


def test_nobody_answering_until_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(ProviderError, match="did not answer SSH within 2 s"):
            ssh_provision("127.0.0.1", port, "labkit", _new_key()[0], "true\n", 2, {})
