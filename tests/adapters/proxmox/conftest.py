"""fakepve for the Proxmox tests: a separate server process (fakepve is AGPL-3.0 and test-only;
it is never imported here), run with the venv of scripts/fakepve-venv.sh by our own launcher
tests/adapters/proxmox/fakepve_server.py.

Fixtures:
- ``fakepve`` (session): a :class:`FakePveServer` (url, cafile, token_id, token_secret,
  ``control(op, **args)`` for faults, SDN states, agent answers, recorded requests, state).
- ``pve_home`` (function): a private LABKIT_HOME whose proxmox.toml points at it (env
  LABKIT_HOME and LABKIT_PVE_TOKEN_SECRET set), failures cleared before and after.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[2]
LAUNCHER = HERE / "fakepve_server.py"
START_TIMEOUT = 60.0


@dataclass
class FakePveServer:
    url: str
    cafile: str
    token_id: str
    token_secret: str
    control_path: str
    proc: subprocess.Popen[str] = field(repr=False)

    def control(self, op: str, **args: Any) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(self.control_path)
            s.sendall((json.dumps({"op": op, **args}) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
        answer = json.loads(buf)
        if not answer["ok"]:
            raise AssertionError(f"fakepve control {op}: {answer['error']}")
        return answer["result"]

    def state(self) -> dict[str, Any]:
        return self.control("state")  # type: ignore[no-any-return]

    def leftovers(self, instance: str) -> list[str]:
        """Everything of ``instance`` fakepve still holds (VMs, containers, pool, VNets by alias)."""
        st = self.state()
        prefix = f"lk-{instance}-"
        out = [f"vm {v['vmid']} {v['name']}" for v in st["vms"] if v["name"].startswith(prefix)]
        out += [f"ct {c['vmid']} {c['name']}" for c in st.get("cts", []) if c["name"].startswith(prefix)]
        out += [f"pool {p}" for p in st["pools"] if p == f"lk-{instance}"]
        out += [f"vnet {k} {c.get('alias')}" for k, c in st["vnets"].items()
                if str(c.get("alias", "")).startswith(prefix)]
        return out

    def write_config(self, home: Path, **extra: Any) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {
            "url": self.url, "token_id": self.token_id, "ca_file": self.cafile, "storage": "local-lvm",
            "zone": "labkit", "mgmt_bridge": "vmbr1", "task_timeout": 20.0, "api_timeout": 10.0,
            "sdn_timeout": 5.0, "ready_timeout": 10.0, "poll_interval": 0.05, **extra}
        lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        path = home / "proxmox.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path


def venv_python() -> str:
    """The fakepve venv's python (made by scripts/fakepve-venv.sh if needed)."""
    out = subprocess.run(["bash", str(PROJECT / "scripts" / "fakepve-venv.sh")], capture_output=True, text=True,
                         timeout=600, check=True)
    return out.stdout.strip().splitlines()[-1]


def _venv_python() -> str | None:
    try:
        return venv_python()
    except (subprocess.SubprocessError, OSError) as exc:
        err = getattr(exc, "stderr", "") or str(exc)
        if os.environ.get("CI"):  # CI installs what it needs ('make test' makes the venv first)
            pytest.fail(f"the fakepve venv could not be made by scripts/fakepve-venv.sh: {err.strip()[-300:]}")
        pytest.skip(f"the fakepve venv could not be made by scripts/fakepve-venv.sh: {err.strip()[-300:]}")
        return None


@contextlib.contextmanager
def serving_fakepve(python: str, launcher: Path = LAUNCHER,
                    extra: tuple[str, ...] = ()) -> Iterator[FakePveServer]:
    """Start a launcher of ours (default fakepve_server.py; pvx.py passes pvx_server.py) with
    the fakepve venv's ``python``; stop it and remove its files at the end. Used by the fixture
    below, by pvx.py and by bench/proxmox.py."""
    tmp = tempfile.mkdtemp(prefix="lk-fakepve-")
    log = open(Path(tmp) / "fakepve.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([python, "-I", str(launcher), "--dir", tmp, *extra], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log, text=True,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(START_TIMEOUT):
            raise AssertionError("fakepve did not start within 60 s")
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"fakepve exited: {(Path(tmp) / 'fakepve.log').read_text()[-2000:]}")
        info = json.loads(line)
        yield FakePveServer(info["url"], info["cafile"], info["token_id"], info["token_secret"],
                            info["control"], proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        keep = os.environ.get("LABKIT_FAKEPVE_LOG")
        if keep:
            shutil.copy(Path(tmp) / "fakepve.log", keep)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def fakepve() -> Iterator[FakePveServer]:
    python = _venv_python()
    assert python
    with serving_fakepve(python) as server:
        yield server


@pytest.fixture
def pve_home(fakepve: FakePveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    fakepve.write_config(home)
    monkeypatch.setenv("LABKIT_HOME", str(home))
    monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("LABKIT_PVE_TOKEN_SECRET", fakepve.token_secret)
    monkeypatch.delenv("LABKIT_PROXMOX_CONFIG", raising=False)
    fakepve.control("clear_failures")
    fakepve.control("restore_token")
    yield home
    fakepve.control("clear_failures")
    fakepve.control("restore_token")




LAB_ID = "pvdemo"


def make_project(root: Path) -> Path:
    """A project with lab ``pvdemo``: the demo fixture lab (topology two-sites) with one check
    (routing.lan_reachability: vantage + grader_echo, no baseline) and no set-up playbook."""
    from tests.conftest import reach_lab_project

    return reach_lab_project(root, LAB_ID)


@pytest.fixture
def pv_ctx(fakepve: FakePveServer, pve_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A labkit Context on a private home whose proxmox.toml points at fakepve, with lab pvdemo;
    the grader guests' management addresses are on loopback with a closed port (nothing is sent
    anywhere when a test asks for the ground)."""
    from labkit.settings import Settings
    from labkit.usecases.lifecycle import Context

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    fakepve.write_config(pve_home, mgmt_cidr="127.88.0.0/16", agent_port=closed_port)
    fakepve.control("add_template", name="lk-tpl-two-sites")
    project = make_project(tmp_path)
    monkeypatch.setenv("LABKIT_PROJECT", str(project))
    return Context(Settings(home=pve_home, run_dir=tmp_path / "run", project=project))


# A child process that brings ``lab`` up as instance ``name`` (argv: home, run dir, project,
# name, lab, seed), for the crash tests.
UP_CHILD = """
import sys
from pathlib import Path
from labkit.settings import Settings
from labkit.usecases import lifecycle
home, run, project, name, lab, seed = sys.argv[1:7]
ctx = lifecycle.Context(Settings(home=Path(home), run_dir=Path(run), project=Path(project)))
lifecycle.up(ctx, lab, instance=name, seed=int(seed), provider="proxmox")
"""


def kill_up_midway(settings: Any, lab: str, name: str, seed: int, ready: Callable[[], bool], what: str,
                   timeout: float = 60.0) -> dict[str, str]:
    """Run ``labkit up`` of ``lab`` in a child process, wait until ``ready()`` (its guests are
    made and running: the grader's agent never answering keeps it waiting), then kill it with
    SIGKILL. Returns the environment a new labkit process needs for the same home."""
    env = {**os.environ, "LABKIT_HOME": str(settings.home), "LABKIT_PROJECT": str(settings.project),
           "LABKIT_RUN_DIR": str(settings.run_dir)}
    child = subprocess.Popen([sys.executable, "-c", UP_CHILD, str(settings.home), str(settings.run_dir),
                              str(settings.project), name, lab, str(seed)],
                             env=env, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                break
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            time.sleep(0.1)
        else:
            raise AssertionError(f"the child never got {what}")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return env
