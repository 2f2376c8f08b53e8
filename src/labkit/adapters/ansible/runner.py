"""Run a playbook against a lab instance with ansible-runner, quietly, keeping its artifacts.

Every run gets its own private data dir under ``artifact_dir`` (``<artifact_dir>/<ident>/``):
ansible-runner writes ``artifacts/<ident>/{status,rc,stdout,job_events/}`` there, next to the
``ansible.cfg`` the run used. Nothing is printed unless ``echo=True``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import MissingDependencyError, SolveError

PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"
CONNECTION_PLUGINS = PLUGIN_DIR / "connection"
FILTER_PLUGINS = PLUGIN_DIR / "filter"

__all__ = ["CONNECTION_PLUGINS", "FILTER_PLUGINS", "PlaybookResult", "ansible_env", "run_playbook"]

_TAIL_LINES = 40


@dataclass(frozen=True)
class PlaybookResult:
    rc: int
    status: str  # ansible-runner status: successful, failed, timeout, canceled
    failed_hosts: list[str]
    unreachable_hosts: list[str]
    duration: float
    stdout_tail: str
    artifacts: Path | None = None  # ansible-runner's artifact folder of this run
    changed_hosts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "successful" and not self.failed_hosts and not self.unreachable_hosts


def _ansible_bin_dir() -> Path:
    here = Path(sys.executable).parent
    if (here / "ansible-playbook").exists():
        return here
    found = shutil.which("ansible-playbook")
    if not found:
        raise MissingDependencyError(
            "ansible-playbook is not installed; install labkit with its dependencies (pip install -e .)."
        )
    return Path(found).parent


def ansible_env(local_temp: Path, config: Path | None = None) -> dict[str, str]:
    """Environment for ansible-playbook: labkit's plugins, no host key checks, no retry files."""
    env = {
        "ANSIBLE_CONNECTION_PLUGINS": str(CONNECTION_PLUGINS),
        "ANSIBLE_FILTER_PLUGINS": str(FILTER_PLUGINS),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_LOCAL_TEMP": str(local_temp),
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "PATH": os.pathsep.join([str(_ansible_bin_dir()), os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")]),
    }
    if config is not None:
        env["ANSIBLE_CONFIG"] = str(config)
    return env


def _config_text() -> str:
    return (
        "# Written by labkit for this run; the environment sets the same values.\n"
        "[defaults]\n"
        f"connection_plugins = {CONNECTION_PLUGINS}\n"
        f"filter_plugins = {FILTER_PLUGINS}\n"
        "host_key_checking = False\n"
        "retry_files_enabled = False\n"
        "nocolor = True\n"
        "[connection]\n"
        "pipelining = True\n"
    )


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def run_playbook(
    playbook: Path,
    inventory: Path,
    *,
    artifact_dir: Path,
    extravars: dict[str, Any] | None = None,
    timeout: int = 300,
    limit: str | None = None,
    echo: bool = False,
) -> PlaybookResult:
    """Run ``playbook`` on the hosts of ``inventory``; return what happened, never raise on failure.

    A failed task, an unreachable node or a timeout is a result (``status``/``rc``), not an
    exception; only a missing playbook/inventory or a missing ansible raise.
    """
    import ansible_runner  # deferred: importing it is slow and only runs need it

    playbook = Path(playbook).resolve()
    inventory = Path(inventory).resolve()
    if not playbook.is_file():
        raise SolveError(f"playbook {playbook} does not exist; check the lab's solution/variant path.")
    if not inventory.is_file():
        raise SolveError(f"inventory {inventory} does not exist; is the lab instance up ('labkit status')?")

    ident = f"{time.strftime('%Y%m%dT%H%M%S')}-{playbook.stem}-{uuid.uuid4().hex[:6]}"
    private = Path(artifact_dir).resolve() / ident
    private.mkdir(parents=True, mode=0o700)
    (private / "tmp").mkdir(mode=0o700)
    config = private / "ansible.cfg"
    config.write_text(_config_text(), encoding="utf-8")

    start = time.monotonic()
    r = ansible_runner.run(
        private_data_dir=str(private),
        ident=ident,
        playbook=str(playbook),
        inventory=str(inventory),
        extravars=dict(extravars or {}),
        envvars=ansible_env(private / "tmp", config),
        limit=limit,
        quiet=not echo,
        timeout=timeout,
        settings={"suppress_ansible_output": not echo},
    )
    duration = time.monotonic() - start

    stats: dict[str, dict[str, int]] = r.stats or {}
    artifacts = Path(r.config.artifact_dir)
    stdout = ""
    stdout_file = artifacts / "stdout"
    if stdout_file.exists():
        stdout = stdout_file.read_text(encoding="utf-8", errors="replace")
    rc = r.rc if isinstance(r.rc, int) else -1
    return PlaybookResult(
        rc=rc,
        status=str(r.status),
        failed_hosts=sorted(stats.get("failures", {})),
        unreachable_hosts=sorted(stats.get("dark", {})),
        duration=round(duration, 3),
        stdout_tail=_tail(stdout),
        artifacts=artifacts,
        changed_hosts=sorted(h for h, n in stats.get("changed", {}).items() if n),
    )
