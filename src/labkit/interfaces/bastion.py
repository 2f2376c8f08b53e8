"""SSH bastion: candidates reach the nodes of their own lab with any OpenSSH client.

``ssh -p 2222 LOGIN@host`` opens a root shell in the lab's workstation, ``LOGIN+NODE@host`` in
another node of the candidate's instance (the rules live in :mod:`labkit.usecases.access`).
The shell is the provider's confined console (``console_argv``) run in a real pseudo-terminal
on this host; bytes are relayed both ways by the event loop, with flow control, and every
session is recorded (asciicast v2). Nothing else an SSH server can do is offered: no port or
agent forwarding, no X11, no SFTP or other subsystem, no SCP.

The bastion runs inside an existing event loop (``labkit serve`` starts it next to the
portal): blocking work (argon2, database, reading state files) goes to worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import select
import signal
import struct
import termios
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncssh

from labkit.errors import UserError
from labkit.usecases import access
from labkit.usecases.access import AccessRefused, OpenRecording, SessionSource, Target
from labkit.usecases.lifecycle import Context

log = logging.getLogger("labkit.bastion")

HOST_KEY_NAME = "ssh_host_ed25519_key"
READ_SIZE = 65536
MAX_PENDING_INPUT = 65536  # typed before the shell has started
KILL_GRACE = 5.0  # seconds between SIGHUP and SIGKILL when a client vanishes
FORWARDING_REFUSED = "labkit: port forwarding is not allowed on this bastion"
_SPAWN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
# dispositions a child must not inherit from Python (SIGPIPE, SIGXFSZ are ignored by it)
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT,
                    signal.SIGTERM, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


# ------------------------------------------------------------------------ host key
def default_host_key_path(ctx: Context) -> Path:
    return ctx.settings.home / "bastion" / HOST_KEY_NAME


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """The bastion's ed25519 host key, made once (0600 in a 0700 folder): candidates' clients
    pin it, so it must survive restarts."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="labkit-bastion")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key.export_private_key())
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise UserError(f"cannot read the bastion host key {path} ({exc}); "
                        "remove the file to make a new one (clients will warn once).") from None


# -------------------------------------------------------------------------- child
@dataclass
class Child:
    """A console process: in a pseudo-terminal (``master``) or with three pipes."""

    pid: int
    pidfd: int
    out_fd: int
    in_fd: int | None
    err_fd: int | None = None

    @property
    def fds(self) -> list[int]:
        return sorted({fd for fd in (self.out_fd, self.in_fd, self.err_fd) if fd is not None})


def set_window(fd: int, cols: int, rows: int) -> None:
    if cols > 0 and rows > 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", min(rows, 0xFFFF), min(cols, 0xFFFF), 0, 0))


def _spawn(argv: list[str], actions: list[tuple[Any, ...]]) -> int:
    # posix_spawn: no Python code runs in the child (safe beside the portal's threads), and
    # setsid happens BEFORE the file actions, so opening the pty slave there makes it the
    # shell's controlling terminal (job control, ^C, ^Z work)
    return os.posix_spawnp(argv[0], argv, _SPAWN_ENV, file_actions=actions, setsid=True,
                           setsigdef=_DEFAULT_SIGNALS, setsigmask=())


def spawn_in_pty(argv: list[str], cols: int, rows: int) -> Child:
    master, slave = os.openpty()
    try:
        set_window(master, cols, rows)
        name = os.ttyname(slave)
        pid = _spawn(argv, [(os.POSIX_SPAWN_OPEN, 0, name, os.O_RDWR, 0),
                            (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)])
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return Child(pid=pid, pidfd=os.pidfd_open(pid), out_fd=master, in_fd=master)


def spawn_with_pipes(argv: list[str]) -> Child:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = _spawn(argv, [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                            (os.POSIX_SPAWN_DUP2, err_w, 2)])
    except BaseException:
        for fd in (in_w, out_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    for fd in (in_w, out_r, err_r):
        os.set_blocking(fd, False)
    return Child(pid=pid, pidfd=os.pidfd_open(pid), out_fd=out_r, in_fd=in_w, err_fd=err_r)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# ------------------------------------------------------------------------- consoles
class ConsoleClient(Protocol):
    """Where a console's bytes go: an SSH channel here, a browser's websocket for a web terminal."""

    def send(self, data: bytes, stderr: bool) -> None: ...

    def pause_input(self) -> None: ...

    def resume_input(self) -> None: ...

    def exited(self, code: int) -> None: ...  # the console ended; a negative code is -signal


@dataclass
class ConsoleHub:
    """Consoles of one process (bastion, portal): their background tasks and their processes,
    so that shutting down waits until every console is reaped and every recording finished."""

    ctx: Context
    db: SessionSource
    read_only_poll: float = 5.0
    consoles: set[Console] = field(default_factory=set)
    children: set[int] = field(default_factory=set)  # console pids not yet reaped
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background task kept referenced until done (asyncio only keeps weak ones)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("console task failed", exc_info=task.exception())

    async def wait_idle(self, timeout: float = KILL_GRACE + 5) -> None:
        for _ in range(int(timeout * 10)):
            if not self.consoles and not self.tasks and not self.children:
                return
            await asyncio.sleep(0.1)


class Console:
    """One candidate's console on one node for one client: the node's shell (or a single
    command) in a pty or pipes, relayed without blocking and with flow control both ways,
    recorded, read-only once the exam is over."""

    def __init__(self, hub: ConsoleHub, client: ConsoleClient, channel: str):
        self.hub, self.client, self.channel = hub, client, channel
        self.target: Target | None = None
        self.child: Child | None = None
        self.rec: OpenRecording | None = None
        self.read_only = False
        self.pending = bytearray()  # input not yet written to the child
        self.eof = False  # the client will send no more input
        self.out_open: set[int] = set()  # output fds not at end of file
        self.output_paused = False
        self.poller: asyncio.Task[None] | None = None
        self.done = False
        hub.consoles.add(self)

    # -- what the client calls
    async def open(self, username: str, term: str | None, size: tuple[int, int], command: str | None) -> None:
        """Resolve ``username`` (``LOGIN`` or ``LOGIN+NODE``, already authenticated) and start
        the console: a pty when ``term`` is given, else pipes. AccessRefused says why not."""
        hub = self.hub
        self.target = await asyncio.to_thread(access.open_target, hub.ctx, hub.db, username)
        argv = await asyncio.to_thread(access.session_argv, hub.ctx, self.target, term, command)
        if self.done:
            return
        self.rec = await asyncio.to_thread(access.start_recording, hub.ctx, hub.db, self.target, self.channel,
                                           size[0], size[1], term)
        if self.done:  # the client left while the recording was being opened
            hub.spawn_task(asyncio.to_thread(access.finish_recording, hub.db, self.rec))
            return
        self.rec.writer.input(bytes(self.pending))
        self.child = spawn_in_pty(argv, *size) if term is not None else spawn_with_pipes(argv)
        hub.children.add(self.child.pid)
        log.info("%s: %s console on %s/%s (pid %d)", username, self.channel, self.target.instance,
                 self.target.node, self.child.pid)
        asyncio.get_running_loop().add_reader(self.child.pidfd, self._on_exit)
        self.out_open = {fd for fd in (self.child.out_fd, self.child.err_fd) if fd is not None}
        self._watch_output(True)
        if self.target.read_only:
            self.become_read_only()
        else:
            self.poller = hub.spawn_task(self._poll_read_only())
        self._write_input()

    def feed(self, data: bytes) -> None:
        """What the candidate typed (dropped once the console is read-only)."""
        if self.read_only or self.done:
            return
        self.pending += data
        if self.rec is not None:
            self.rec.writer.input(data)
        if self.child is not None:
            self._write_input()
        elif len(self.pending) > MAX_PENDING_INPUT:
            self.client.pause_input()  # the shell is not there yet: the client waits

    def end_input(self) -> bool:
        """The client sends no more input. A command's stdin is closed once written; a terminal
        has no end of input, so the shell stays, unless nothing typed is relayed any more.
        Returns whether the client should stay connected."""
        self.eof = True
        if self.child is not None and self.child.err_fd is not None:
            self._write_input()
            return True
        return not self.read_only

    def resize(self, cols: int, rows: int) -> None:
        if self.child is not None and self.child.err_fd is None:
            with contextlib.suppress(OSError):
                set_window(self.child.out_fd, cols, rows)
        if self.rec is not None:
            self.rec.writer.resize(cols, rows)

    def pause_output(self) -> None:
        self.output_paused = True
        self._watch_output(False)

    def resume_output(self) -> None:
        self.output_paused = False
        self._watch_output(True)

    def hangup(self) -> None:
        """The client is gone."""
        self._end(hangup=True)

    def become_read_only(self) -> None:
        """The exam is over: what the candidate types is no longer relayed, output still is."""
        if self.done or self.read_only or self.target is None:
            return
        self.read_only = True
        self.pending.clear()
        banner = f"\r\n*** {access.message('read_only', self.target.locale)} ***\r\n".encode()
        self.client.send(banner, False)
        if self.rec is not None:
            self.rec.writer.marker("read-only")
            self.rec.writer.output(banner)

    async def _poll_read_only(self) -> None:
        assert self.target is not None
        while not self.done and not self.read_only:
            await asyncio.sleep(self.hub.read_only_poll)
            if await asyncio.to_thread(access.is_read_only, self.hub.db, self.target.cohort_id):
                self.become_read_only()

    # -- relay
    def _watch_output(self, on: bool) -> None:
        if self.child is None or self.done:
            return
        loop = asyncio.get_running_loop()
        for fd in self.out_open:
            if on and not self.output_paused:
                loop.add_reader(fd, self._on_output, fd)
            else:
                loop.remove_reader(fd)

    def _on_output(self, fd: int) -> None:
        assert self.child is not None
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: every holder of the pty slave has closed it
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(fd)
            self.out_open.discard(fd)
            return
        if self.rec is not None:
            self.rec.writer.output(data)
        self.client.send(data, fd == self.child.err_fd)

    def _write_input(self) -> None:
        """Write what is pending without blocking; when the child reads slower than the client
        types, stop reading from the client until it catches up."""
        child = self.child
        if child is None or child.in_fd is None or self.done:
            return
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                del self.pending[:os.write(child.in_fd, self.pending)]
        except BlockingIOError:
            loop.add_writer(child.in_fd, self._write_input)
            self.client.pause_input()
            return
        except OSError:
            self.pending.clear()  # the child is gone; its exit ends the console
        loop.remove_writer(child.in_fd)
        if self.eof and child.err_fd is not None:  # a command: close its stdin
            os.close(child.in_fd)
            child.in_fd = None
            return
        self.client.resume_input()  # last: it may deliver more input, and call this again, at once

    # -- end
    def _on_exit(self) -> None:
        assert self.child is not None
        try:
            pid, status = os.waitpid(self.child.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.child.pid, 0
        if pid == 0:
            return
        asyncio.get_running_loop().remove_reader(self.child.pidfd)
        os.close(self.child.pidfd)
        self.hub.children.discard(self.child.pid)
        self._drain()
        self.client.exited(os.waitstatus_to_exitcode(status))
        self._end(hangup=False, reaped=True)

    def _drain(self) -> None:
        """Output already in the pipes or the pty when the shell exited (bounded: a daemon the
        candidate left running may keep the pty open)."""
        for fd in list(self.out_open):
            for _ in range(64):
                if fd not in self.out_open or not select.select([fd], [], [], 0)[0]:
                    break
                self._on_output(fd)

    def _end(self, *, hangup: bool, reaped: bool = False) -> None:
        if self.done:
            return
        self.done = True
        loop = asyncio.get_running_loop()
        if self.poller is not None:
            self.poller.cancel()
        child = self.child
        if child is not None:
            for fd in child.fds:
                loop.remove_reader(fd)
                loop.remove_writer(fd)
                os.close(fd)
            if not reaped:
                self._reap_later(child, hangup)
        if self.rec is not None:
            self.hub.spawn_task(asyncio.to_thread(access.finish_recording, self.hub.db, self.rec))
        self.hub.consoles.discard(self)

    def _reap_later(self, child: Child, hangup: bool) -> None:
        """The client left first: closing the pty already hung the shell up; the group gets
        SIGHUP too, then SIGKILL if it lingers. Daemons the candidate detached are left alone,
        as sshd would."""
        loop = asyncio.get_running_loop()
        if hangup:
            _kill_group(child.pid, signal.SIGHUP)
        killer = loop.call_later(KILL_GRACE, _kill_group, child.pid, signal.SIGKILL)
        loop.add_reader(child.pidfd, _reaper(loop, child, killer, self.hub.children))


def _reaper(loop: asyncio.AbstractEventLoop, child: Child, killer: asyncio.TimerHandle,
            live: set[int]) -> Callable[[], None]:
    def reap() -> None:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(child.pid, os.WNOHANG)[0] == 0:
                return
        killer.cancel()
        live.discard(child.pid)
        loop.remove_reader(child.pidfd)
        os.close(child.pidfd)
    return reap


# ------------------------------------------------------------------------ bastion
@dataclass
class Bastion:
    """The running bastion: ``close()`` stops listening and ends every session (their shells
    get SIGHUP, as from sshd), ``wait_closed()`` waits until every console is reaped and every
    recording finished."""

    hub: ConsoleHub
    acceptor: asyncssh.SSHAcceptor | None = None
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)
    fingerprint: str = ""  # of the host key, for candidates to check on first login

    @property
    def db(self) -> SessionSource:
        return self.hub.db

    @property
    def port(self) -> int:
        assert self.acceptor is not None
        return self.acceptor.get_port()

    def close(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
        for conn in list(self.connections):
            conn.close()

    async def wait_closed(self) -> None:
        if self.acceptor is not None:
            await self.acceptor.wait_closed()
        await self.hub.wait_idle()

    async def __aenter__(self) -> Bastion:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def start_bastion(ctx: Context, db: SessionSource, host: str = "127.0.0.1", port: int = 2222,
                        host_key_path: Path | None = None, *, read_only_poll: float = 5.0) -> Bastion:
    """Listen for candidates on ``host:port``; ``port=0`` picks a free port (``.port``)."""
    key = await asyncio.to_thread(load_or_create_host_key, host_key_path or default_host_key_path(ctx))
    bastion = Bastion(ConsoleHub(ctx, db, read_only_poll), fingerprint=key.get_fingerprint("sha256"))
    try:
        bastion.acceptor = await asyncssh.create_server(
            lambda: BastionServer(bastion), host, port, server_host_keys=[key], encoding=None,
            line_editor=False, x11_forwarding=False, agent_forwarding=False, allow_scp=False,
            kbdint_auth=False, login_timeout=60, keepalive_interval=30, server_version="labkit")
    except OSError as exc:
        raise UserError(f"the SSH bastion cannot listen on {host}:{port} ({exc.strerror}); "
                        "choose another --ssh-port or stop what uses it.") from None
    log.info("SSH bastion listening on %s:%s, host key %s", host, bastion.port, bastion.fingerprint)
    return bastion


class BastionServer(asyncssh.SSHServer):
    """One client connection: authentication, then sessions (nothing else is accepted)."""

    def __init__(self, bastion: Bastion):
        self.bastion = bastion
        self.conn: asyncssh.SSHServerConnection | None = None
        self.source = "?"

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.bastion.connections.add(conn)
        peer = conn.get_extra_info("peername")
        self.source = str(peer[0]) if peer else "?"

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.bastion.connections.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        return True  # everyone authenticates

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        return await asyncio.to_thread(access.check_password, self.bastion.db, username, password, self.source)

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        offered = key.export_public_key("openssh").decode()
        return await asyncio.to_thread(access.check_public_key, self.bastion.db, username, offered, self.source)

    async def auth_completed(self) -> None:
        assert self.conn is not None
        username = str(self.conn.get_extra_info("username"))
        await asyncio.to_thread(access.record_attempt, self.bastion.db, username, self.source, True)
        log.info("%s logged in from %s", username, self.source)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, FORWARDING_REFUSED)

    def unix_connection_requested(self, dest_path: str) -> bool:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, FORWARDING_REFUSED)

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # -R: refused (a global request carries no message)

    def unix_server_requested(self, listen_path: str) -> bool:
        return False

    def session_requested(self) -> BastionSession:
        assert self.conn is not None
        return BastionSession(self.bastion, str(self.conn.get_extra_info("username")))


# ------------------------------------------------------------------------ session
class BastionSession(asyncssh.SSHServerSession[bytes]):
    """An SSH session: the channel side of a :class:`Console`."""

    def __init__(self, bastion: Bastion, username: str):
        self.hub = bastion.hub
        self.username = username
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.term: str | None = None
        self.size = (80, 24)
        self.command: str | None = None
        self.console = Console(self.hub, self, "ssh")

    # -- asyncssh callbacks
    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Mapping[int, int]) -> bool:
        self.term = term_type
        self.size = (term_size[0] or 80, term_size[1] or 24)
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        log.info("%s: subsystem %r refused", self.username, subsystem)
        return False

    def session_started(self) -> None:
        self.hub.spawn_task(self._start())

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.console.feed(data)

    def eof_received(self) -> bool:
        return self.console.end_input()

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self.size = (width, height)
        self.console.resize(width, height)

    def pause_writing(self) -> None:
        self.console.pause_output()

    def resume_writing(self) -> None:
        self.console.resume_output()

    def connection_lost(self, exc: Exception | None) -> None:
        self.console.hangup()

    async def _start(self) -> None:
        try:
            await self.console.open(self.username, self.term, self.size, self.command)
        except AccessRefused as exc:
            self._refuse(str(exc))
        except Exception:
            log.exception("%s: the session could not start", self.username)
            self._refuse("labkit: la session n'a pas pu démarrer ; prévenez le formateur "
                         "(the session could not start; tell your trainer).")

    def _refuse(self, text: str) -> None:
        log.info("%s: refused: %s", self.username, text)
        if self.chan is not None and not self.console.done:
            with contextlib.suppress(BrokenPipeError):
                self.chan.write_stderr((text + "\r\n").encode())
                self.chan.exit(1)

    # -- ConsoleClient
    def send(self, data: bytes, stderr: bool) -> None:
        if self.chan is None:
            return
        with contextlib.suppress(BrokenPipeError):  # the client is leaving; its loss ends the console
            if stderr:
                self.chan.write_stderr(data)
            else:
                self.chan.write(data)

    def pause_input(self) -> None:
        if self.chan is not None:
            self.chan.pause_reading()

    def resume_input(self) -> None:
        if self.chan is not None:
            self.chan.resume_reading()

    def exited(self, code: int) -> None:
        if self.chan is None:
            return
        with contextlib.suppress(BrokenPipeError):
            if code >= 0:
                self.chan.exit(code)
            else:
                self.chan.exit_with_signal(signal.Signals(-code).name.removeprefix("SIG"))
