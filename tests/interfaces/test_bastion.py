"""The SSH bastion, driven by the real OpenSSH client (/usr/bin/ssh).

Two groups:
- ``real lab`` (root): a routing-multisite instance is up; candidates land in its nodes,
  ``hostname`` says where, other instances and nodes are refused, sessions are recorded.
- mechanics (no lab): the node console is replaced by a local bash so that relaying, exit
  status, stdin/stderr, window size, refusals of forwarding and subsystems, lockout and
  read-only can be checked in seconds. Only ``access.console_argv`` is replaced; the
  authentication, the rules, the pty, the relay and the recording are the real ones.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select as sql_select

from labkit.adapters.db.database import Database
from labkit.adapters.db.models import Candidate, Cohort, Recording, User
from labkit.adapters.recording.asciicast import read_events
from labkit.adapters.security.passwords import hash_password
from labkit.adapters.storage.state import utcnow
from labkit.domain.labs import instantiate
from labkit.interfaces.bastion import Bastion, start_bastion
from labkit.models.instance import InstanceState
from labkit.settings import Settings
from labkit.usecases import access
from labkit.usecases.lifecycle import Context, load_lab_checked
from tests.conftest import PROJECT, LabEnv

SSH = "/usr/bin/ssh"
pytestmark = pytest.mark.skipif(not os.path.exists(SSH), reason="needs the OpenSSH client (openssh-client)")


# ------------------------------------------------------------------ the bastion in a thread
class BastionThread:
    """A bastion on 127.0.0.1:<free port> in its own event loop, as ``labkit serve`` runs it."""

    def __init__(self, ctx: Context, db: Database, poll: float):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.bastion: Bastion = self.call(start_bastion(ctx, db, "127.0.0.1", 0, read_only_poll=poll))
        self.port = self.bastion.port

    def call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        async def _stop() -> None:
            self.bastion.close()
            await self.bastion.wait_closed()

        try:
            self.call(_stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


@dataclass
class World:
    ctx: Context
    db: Database
    bastion: BastionThread
    tmp: Path
    key: Path
    cohort_id: int
    askpass: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ssh_argv(self, login: str, *args: str, key: bool = True) -> list[str]:
        auth = (["-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey"]
                if key else ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
                             "-o", "NumberOfPasswordPrompts=1"])
        return [SSH, "-p", str(self.bastion.port), "-F", "/dev/null", *auth, "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20",
                *([] if not key else ["-o", "BatchMode=yes"]), *args, f"{login}@127.0.0.1"]

    def env(self, password: str | None = None) -> dict[str, str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.tmp), "LANG": "C.UTF-8", "TERM": "xterm-256color"}
        if password is not None:
            env |= {"SSH_ASKPASS": str(self.askpass), "SSH_ASKPASS_REQUIRE": "force", "LK_TEST_PW": password,
                    "DISPLAY": ":0"}
        return env

    def ssh(self, login: str, *args: str, command: list[str] | None = None, input: bytes = b"",
            password: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        argv = self.ssh_argv(login, *args, key=password is None) + (command or [])
        return subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=self.env(password))

    def popen(self, login: str, *args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(self.ssh_argv(login, *args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.env())
        self.procs.append(p)
        return p

    def end_exam(self) -> None:
        with self.db.session() as s:
            s.get_one(Cohort, self.cohort_id).exam_end = datetime.now(UTC) - timedelta(seconds=1)

    def recordings(self, login: str) -> list[Recording]:
        with self.db.session() as s:
            user = s.scalars(sql_select(User).where(User.login == login)).one()
            cand = s.scalars(sql_select(Candidate).where(Candidate.user_id == user.id)).one()
            return list(s.scalars(sql_select(Recording).where(Recording.candidate_id == cand.id)
                                  .order_by(Recording.id)))

    def wait_recordings_closed(self, login: str, count: int, timeout: float = 15) -> list[Recording]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.recordings(login)
            if len(rows) >= count and all(r.ended_at is not None for r in rows):
                return rows
            time.sleep(0.1)
        raise AssertionError(f"recordings of {login} not closed: {self.recordings(login)}")


def _save_state(ctx: Context, instance: str, seed: int) -> None:
    plan = instantiate(load_lab_checked(ctx, "routing-multisite"), instance, seed, None)
    now = utcnow()
    ctx.store.save(InstanceState(name=instance, provider="netns", phase="up", created_at=now, updated_at=now,
                                 plan=plan, ssh_key="/nonexistent"))


def _make_world(tmp: Path, ctx: Context, poll: float) -> Iterator[World]:
    """Cohort 'bsh': alice (key + password) on instance bsh-01, bob on bsh-02, carol on bsh-03."""
    db = Database(f"sqlite:///{tmp / 'labkit.db'}")
    db.upgrade()
    key = tmp / "id_alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@test", "-f", str(key)], check=True)
    askpass = tmp / "askpass.sh"
    askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$LK_TEST_PW"\n')
    askpass.chmod(0o700)
    with db.session() as s:
        cohort = Cohort(name="bsh", lab_id="routing-multisite", seed=7)
        s.add(cohort)
        for i, login in enumerate(["alice", "bob", "carol"], start=1):
            user = User(login=login, display_name=login.title(), role="candidate",
                        password_hash=hash_password(f"pw-{login}-secret"),
                        ssh_public_key=key.with_suffix(".pub").read_text() if login == "alice" else None)
            s.add(Candidate(cohort=cohort, user=user, name=login.title(), instance=f"bsh-0{i}", seed=i, status="up"))
        s.flush()
        cohort_id = cohort.id
    bastion = BastionThread(ctx, db, poll)
    world = World(ctx, db, bastion, tmp, key, cohort_id, askpass)
    try:
        yield world
    finally:
        for p in world.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        bastion.stop()
        db.dispose()
    assert _shells_left() == [], "the bastion left console processes behind"


def _shells_left() -> list[str]:
    """Console processes still children of this test process (the bastion spawns them here)."""
    kids: list[str] = []
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm in ("bash", "env", "nsenter"):
                kids.append(f"{pid} {comm}")
    return kids


def _read_until(proc: subprocess.Popen[bytes], needle: bytes | re.Pattern[bytes], timeout: float = 20,
                stream: str = "stdout") -> bytes:
    """Read the process's stdout (or stderr) until ``needle`` (bytes or a regex) appears, or
    fail after ``timeout``."""
    found = needle.search if isinstance(needle, re.Pattern) else (lambda out: needle in out)
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    out = b""
    deadline = time.monotonic() + timeout
    fd = pipe.fileno()
    while not found(out):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"{needle!r} not seen; got {out!r}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"{needle!r} not seen before the end; got {out!r}")
        out += chunk
    return out


def _stop(proc: subprocess.Popen[bytes]) -> bytes:
    """End an interactive ssh (a read-only session has no 'exit') and return the rest of its output."""
    assert proc.stdout is not None
    proc.kill()  # (SIGTERM sometimes leaves OpenSSH 9.2 waiting in poll)
    proc.wait(timeout=10)
    out = b""
    while chunk := os.read(proc.stdout.fileno(), 65536):
        out += chunk
    return out


# ---------------------------------------------------------------------- mechanics (no lab)
LOCAL_SHELL = ["/usr/bin/env", "-i", "TERM=dumb", "PS1=lk$ ", "HOME=/tmp", "/bin/bash", "-l"]


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    ctx = Context(Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT))
    _save_state(ctx, "bsh-01", 1)
    # the node console replaced by a local bash (bash -l: exactly the shape console_argv returns)
    monkeypatch.setattr(access, "console_argv", lambda c, inst, node: list(LOCAL_SHELL))
    yield from _make_world(tmp_path, ctx, poll=0.3)


def test_host_key_made_once_and_private(local: World) -> None:
    path = local.ctx.settings.home / "bastion" / "ssh_host_ed25519_key"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    before = path.read_bytes()
    again = BastionThread(local.ctx, local.db, 1.0)
    again.stop()
    assert path.read_bytes() == before


def test_exec_status_stdout_stderr_stdin(local: World) -> None:
    r = local.ssh("alice", command=["echo out-$((2+3)); echo err >&2; exit 7"])
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out-5\n", b"err\n"), r
    r = local.ssh("alice", command=["tr a-z A-Z"], input=b"typed on stdin\n")
    assert (r.returncode, r.stdout) == (0, b"TYPED ON STDIN\n"), r
    r = local.ssh("alice", "-tt", command=["tty; exit 4"])  # a command in a terminal
    assert r.returncode == 4 and r.stdout.startswith(b"/dev/pts/"), r
    r = local.ssh("alice", "-v", command=["kill -TERM $$"])
    assert r.returncode == 255 and b"rtype exit-signal" in r.stderr, r


def test_bulk_both_ways_nothing_lost(local: World) -> None:
    """Megabytes through the relay: flow control, not buffering, keeps every byte."""
    r = local.ssh("alice", command=["seq 1 300000"], timeout=120)
    assert r.returncode == 0 and r.stdout == b"".join(b"%d\n" % i for i in range(1, 300001)), r.stderr
    blob = os.urandom(3 * 1024 * 1024)
    r = local.ssh("alice", command=["sha256sum"], input=blob, timeout=120)
    import hashlib

    assert r.returncode == 0 and r.stdout.split()[0].decode() == hashlib.sha256(blob).hexdigest(), r.stderr


def test_password_auth_and_failures(local: World) -> None:
    r = local.ssh("alice", command=["echo in"], password="pw-alice-secret")
    assert (r.returncode, r.stdout) == (0, b"in\n"), r
    r = local.ssh("alice", command=["echo in"], password="wrong")
    assert r.returncode == 255 and b"Permission denied" in r.stderr, r
    r = local.ssh("nobody", command=["echo in"], password="pw-alice-secret")
    assert r.returncode == 255 and b"Permission denied" in r.stderr, r
    r = local.ssh("bob", command=["echo in"])  # bob has no key
    assert r.returncode == 255 and b"Permission denied" in r.stderr, r


def test_lockout_then_the_right_password_is_refused(local: World) -> None:
    for _ in range(access.MAX_FAILURES):
        assert local.ssh("bob", command=["true"], password="guess").returncode == 255
    r = local.ssh("bob", command=["echo in"], password="pw-bob-secret")
    assert r.returncode == 255 and b"Permission denied" in r.stderr, r


def test_disabled_user_refused(local: World) -> None:
    with local.db.session() as s:
        s.scalars(sql_select(User).where(User.login == "alice")).one().disabled = True
    r = local.ssh("alice", command=["echo in"])
    assert r.returncode == 255 and b"Permission denied" in r.stderr, r


def test_unknown_node_and_stopped_lab_get_one_clear_line(local: World) -> None:
    r = local.ssh("alice+bsh-02", command=["echo in"])
    assert r.returncode == 1 and r.stdout == b"", r
    assert r.stderr.decode().strip().startswith("Votre lab bsh-01 n'a pas de machine « bsh-02 ». Vos machines : r-hq")
    r = local.ssh("bob", command=["echo in"], password="pw-bob-secret")
    assert r.returncode == 1 and r.stderr.decode().strip() == \
        "Votre lab bsh-02 n'est pas démarré ; prévenez le formateur.", r


def test_forwarding_and_subsystems_refused(local: World) -> None:
    r = local.ssh("alice", "-v", "-W", "127.0.0.1:22")
    assert r.returncode == 255 and b"stdio forwarding failed" in r.stderr, r
    assert b"open failed: administratively prohibited: labkit: port forwarding is not allowed" in r.stderr
    r = local.ssh("alice", "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22", timeout=30)
    assert r.returncode == 255 and b"forwarding failed" in r.stderr, r
    env = local.env() | {"DISPLAY": ":0"}
    r = subprocess.run(local.ssh_argv("alice", "-X") + ["echo in"], capture_output=True, env=env, timeout=60)
    assert r.stdout == b"in\n" and b"X11 forwarding request failed" in r.stderr, r
    r = local.ssh("alice", "-s", command=["sftp"])
    assert r.returncode != 0 and b"subsystem request failed" in r.stderr, r
    # -L: ssh listens here, but the bastion refuses to open the channel
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
    p = local.popen("alice", "-N", "-v", "-L", f"127.0.0.1:{lport}:127.0.0.1:22")
    deadline = time.monotonic() + 20
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", lport), timeout=5)
            break
        except OSError:
            assert time.monotonic() < deadline and p.poll() is None, "ssh -L did not start"
            time.sleep(0.2)
    with c:
        c.settimeout(10)
        assert c.recv(100) == b""  # closed at once: no SSH banner of anything behind it
    _read_until(p, b"open failed: administratively prohibited: labkit: port forwarding is not allowed",
                stream="stderr")


def test_pty_session_window_size_and_recording(local: World) -> None:
    r = local.ssh("alice+r-hq", "-tt", input=b"stty size; echo T=$TERM; tty\nseq 1 100000\nexit 3\n")
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 3, r
    assert "T=xterm-256color" in out, out  # the client's TERM, not the bastion's
    assert "/dev/pts/" in out and "24 80" in out, out  # no size from a client without a terminal: 80x24
    assert "\r\n".join(str(i) for i in range(1, 100001)) in out  # a pty's worth of output, in order
    (row,) = local.wait_recordings_closed("alice", 1)
    assert row.node == "r-hq" and row.channel == "ssh" and row.size_bytes > 0
    path = local.ctx.settings.home / "recordings" / row.path
    assert row.path.startswith("bsh/alice/") and row.path.endswith("-r-hq-ssh.cast")
    assert (path.stat().st_mode & 0o777) == 0o640
    events = list(read_events(path))
    typed = "".join(e.data for e in events if e.code == "i")
    shown = "".join(e.data for e in events if e.code == "o")
    assert "stty size; echo T=$TERM; tty\nseq 1 100000\nexit 3\n" in typed
    assert "/dev/pts/" in shown
    times = [e.time for e in events]
    assert times == sorted(times)


def test_a_shell_that_ignores_the_hangup_is_killed(local: World) -> None:
    """The client vanishes; the console ignores SIGHUP: SIGKILL after the grace period."""
    from labkit.interfaces.bastion import KILL_GRACE

    p = local.popen("alice", "-tt")
    assert p.stdin is not None
    p.stdin.write(b"trap '' HUP; echo PID=$$; exec sleep 120\n")
    p.stdin.flush()
    out = _read_until(p, re.compile(rb"PID=(\d+)\r"))
    pid = int(re.findall(rb"PID=(\d+)\r", out)[0])
    time.sleep(0.5)
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
    p.kill()
    deadline = time.monotonic() + KILL_GRACE + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "the console outlived its session"


def test_window_size_changes_reach_the_shell(local: World) -> None:
    """OpenSSH sends window changes only from a real terminal: asyncssh's client plays it."""
    import asyncssh

    async def run() -> tuple[str, str]:
        async with asyncssh.connect("127.0.0.1", local.bastion.port, username="alice", known_hosts=None,
                                    client_keys=[str(local.key)], agent_path=None) as conn:
            proc = await conn.create_process(term_type="xterm", term_size=(100, 30))
            proc.stdin.write("stty size\n")
            first = await asyncio.wait_for(proc.stdout.readuntil("30 100"), 20)
            proc.change_terminal_size(132, 50)
            proc.stdin.write("stty size\n")
            second = await asyncio.wait_for(proc.stdout.readuntil("50 132"), 20)
            proc.stdin.write("exit\n")
            await asyncio.wait_for(proc.wait(), 20)
            return first, second

    first, second = asyncio.run(run())
    assert first.endswith("30 100") and second.endswith("50 132")
    (row,) = local.wait_recordings_closed("alice", 1)
    events = list(read_events(local.ctx.settings.home / "recordings" / row.path))
    assert ("r", "132x50") in [(e.code, e.data) for e in events]


def test_read_only_new_session(local: World) -> None:
    local.end_exam()
    p = local.popen("alice", "-tt")
    assert p.stdin is not None
    p.stdin.write(b"echo RO-$((6*7))\n")
    p.stdin.flush()
    out = _read_until(p, "L'examen est terminé : cette session est en lecture seule".encode())
    time.sleep(1.0)  # time enough for the shell to answer, if the line had reached it
    out += _stop(p)
    assert b"RO-" not in out, out
    r = local.ssh("alice", command=["echo RO-$((6*7))"])
    assert r.returncode == 1 and "aucune commande n'est plus exécutée" in r.stderr.decode(), r


def test_session_becomes_read_only_when_the_exam_ends(local: World) -> None:
    p = local.popen("alice", "-tt")
    assert p.stdin is not None
    p.stdin.write(b"echo A-$((1+1))\n")
    p.stdin.flush()
    _read_until(p, b"A-2")
    local.end_exam()
    _read_until(p, b"lecture seule")
    p.stdin.write(b"echo B-$((2+2))\n")
    p.stdin.flush()
    time.sleep(1.0)
    out = _stop(p)
    assert b"B-" not in out, out
    (row,) = local.wait_recordings_closed("alice", 1)
    events = list(read_events(local.ctx.settings.home / "recordings" / row.path))
    assert ("m", "read-only") in [(e.code, e.data) for e in events]
    assert "B-" not in "".join(e.data for e in events if e.code == "i")


# ---------------------------------------------------------------------------- real lab
@pytest.fixture
def lab(lab_env: LabEnv) -> Iterator[World]:
    from labkit.usecases.lifecycle import up

    ctx = Context(lab_env.settings)
    up(ctx, "routing-multisite", instance="bsh-01", seed=9101)
    up(ctx, "routing-multisite", instance="bsh-02", seed=9102)
    yield from _make_world(lab_env.settings.home.parent, ctx, poll=0.5)


@pytest.mark.root
@pytest.mark.slow
def test_real_lab(lab: World) -> None:
    # the workstation, by key
    r = lab.ssh("alice", "-tt", input=b"echo H=$(hostname)\nexit\n")
    assert r.returncode == 0 and b"H=pc-hq" in r.stdout, r
    assert b"no job control" not in r.stdout, r  # the pty is the shell's controlling terminal
    # another node of her own instance, by password
    r = lab.ssh("alice+r-br1", "-tt", input=b"echo H=$(hostname)\nexit\n", password="pw-alice-secret")
    assert r.returncode == 0 and b"H=r-br1" in r.stdout, r
    r = lab.ssh("alice+r-hq", command=["hostname; ip -o link show eth2 | cut -d: -f2"])
    assert r.returncode == 0 and r.stdout.startswith(b"r-hq\n eth2@"), r  # the node's own links
    # nowhere else: not bob's instance, not a namespace name, not a node of no lab
    for login in ("alice+bsh-02", "alice+lk-bsh-01.r-hq", "alice+r-hq.bsh-02", "alice+nonode"):
        r = lab.ssh(login, command=["hostname"])
        assert r.returncode == 1 and r.stdout == b"" and b"n'a pas de machine" in r.stderr, (login, r)
    # same node names in every instance: each candidate lands in their own (own addressing plan)
    for login, inst in (("alice", "bsh-01"), ("bob", "bsh-02")):
        plan = lab.ctx.store.load(inst).plan
        node_ip = next(i.addresses[0] for i in plan.nodes[0].interfaces if i.addresses)
        r = lab.ssh(f"{login}+{plan.nodes[0].name}", command=["ip -4 -o addr show"], password=f"pw-{login}-secret")
        assert r.returncode == 0 and f" {node_ip} ".encode() in r.stdout, (login, node_ip, r)
    assert lab.ctx.store.load("bsh-01").plan.params["lan_hq"] != lab.ctx.store.load("bsh-02").plan.params["lan_hq"]
    # carol's lab is not up: one line, then the session closes
    r = lab.ssh("carol", "-tt", password="pw-carol-secret")
    assert r.returncode == 1 and b"n'est pas d\xc3\xa9marr\xc3\xa9" in r.stdout + r.stderr, r
    # the recordings: typed input and the node's output, in time order
    rows = lab.wait_recordings_closed("alice", 4)
    assert len(rows) == 4
    first = list(read_events(lab.ctx.settings.home / "recordings" / rows[0].path))
    assert rows[0].node == "pc-hq" and rows[1].node == "r-br1"
    assert "echo H=$(hostname)" in "".join(e.data for e in first if e.code == "i")
    assert "H=pc-hq" in "".join(e.data for e in first if e.code == "o")
    assert [e.time for e in first] == sorted(e.time for e in first)
    assert len(list((lab.ctx.settings.home / "recordings" / "bsh").glob("bob/*.cast"))) == 1
    assert not (lab.ctx.settings.home / "recordings" / "bsh" / "carol").exists()
