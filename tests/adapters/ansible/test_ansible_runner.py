"""run_playbook: quiet, artifacts kept, failures are results. Only controller-side action
plugins (debug, fail) run here: nothing executes on any host."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.adapters.ansible.runner import CONNECTION_PLUGINS, FILTER_PLUGINS, ansible_env, run_playbook
from labkit.errors import SolveError

INVENTORY = "localhost ansible_connection=local\n"
OK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.debug:
        msg: "seen {{ '10.1.2.0/24' | host(7) }} {{ greeting }}"
"""
FAIL = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.fail:
        msg: broken on purpose
"""


def _files(tmp_path: Path, book: str) -> tuple[Path, Path]:
    pb = tmp_path / "book.yml"
    pb.write_text(book)
    inv = tmp_path / "hosts"
    inv.write_text(INVENTORY)
    return pb, inv


def test_plugin_dirs_ship_with_the_package() -> None:
    assert (CONNECTION_PLUGINS / "labkit_netns.py").is_file()
    assert (FILTER_PLUGINS / "labkit.py").is_file()
    env = ansible_env(Path("/tmp/x"))
    assert env["ANSIBLE_CONNECTION_PLUGINS"] == str(CONNECTION_PLUGINS)
    assert env["ANSIBLE_FILTER_PLUGINS"] == str(FILTER_PLUGINS)
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert env["ANSIBLE_RETRY_FILES_ENABLED"] == "False"


def test_success_is_quiet_and_leaves_artifacts(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    pb, inv = _files(tmp_path, OK)
    res = run_playbook(pb, inv, artifact_dir=tmp_path / "art", extravars={"greeting": "hello"}, timeout=120)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert res.ok and res.rc == 0 and res.status == "successful"
    assert res.failed_hosts == [] and res.unreachable_hosts == []
    assert "seen 10.1.2.7 hello" in res.stdout_tail  # filter plugin and extravars reached the play
    assert res.artifacts is not None and (res.artifacts / "rc").read_text().strip() == "0"
    assert res.artifacts.is_relative_to(tmp_path / "art")
    assert not list(tmp_path.glob("*.retry"))
    assert res.duration > 0


def test_failure_is_a_result(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    pb, inv = _files(tmp_path, FAIL)
    res = run_playbook(pb, inv, artifact_dir=tmp_path / "art", timeout=120)
    assert capfd.readouterr().out == ""
    assert not res.ok
    assert res.status == "failed" and res.rc != 0
    assert res.failed_hosts == ["localhost"]
    assert "broken on purpose" in res.stdout_tail


def test_missing_files_raise(tmp_path: Path) -> None:
    pb, inv = _files(tmp_path, OK)
    with pytest.raises(SolveError, match="playbook"):
        run_playbook(tmp_path / "nope.yml", inv, artifact_dir=tmp_path / "art")
    with pytest.raises(SolveError, match="inventory"):
        run_playbook(pb, tmp_path / "nope", artifact_dir=tmp_path / "art")
