"""down and down --all across providers: a provider that cannot answer (proxmox.toml written,
the cluster unreachable) is one warning line and does not keep netns from cleaning up.

No lab is brought up: a netns instance left by a crash is its run-directory entry (what netns's
``leftovers``/``instances`` find from the name alone); the "cluster" is a closed port on
127.0.0.1 (nothing is sent anywhere)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from labkit.errors import ProviderError
from labkit.settings import Settings
from labkit.usecases import lifecycle


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> lifecycle.Context:
    """A private home whose proxmox.toml names a cluster nobody answers for."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "home"
    home.mkdir()
    (home / "proxmox.toml").write_text(
        f'url = "https://127.0.0.1:{port}"\ntoken_id = "labkit@pve!t"\napi_timeout = 2.0\n', encoding="utf-8")
    monkeypatch.setenv("LABKIT_PVE_TOKEN_SECRET", "not-used")
    monkeypatch.delenv("LABKIT_PROXMOX_CONFIG", raising=False)
    return lifecycle.Context(Settings(home=home, run_dir=tmp_path / "run", project=tmp_path / "project"))


def _crashed_netns(ctx: lifecycle.Context, name: str) -> Path:
    d = ctx.settings.run_dir / name
    d.mkdir(parents=True)
    (d / "hosts").write_text("x\n", encoding="utf-8")
    return d


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_down_of_a_netns_instance_with_proxmox_unreachable(ctx: lifecycle.Context,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    d = _crashed_netns(ctx, "lfp-one")
    caplog.set_level(logging.WARNING)
    removed = lifecycle.down(ctx, "lfp-one")
    assert f"dir {d}" in removed and not d.exists()
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith("warning: instance lfp-one removed from netns, but proxmox could not be asked")
    assert "labkit down lfp-one" in warnings[0]


def test_down_of_nothing_here_with_proxmox_unreachable_is_an_error(ctx: lifecycle.Context) -> None:
    """Nothing of the name on this host: it may live on the cluster alone, so it is not 'done'."""
    with pytest.raises(ProviderError, match="could not ask every provider what is left of 'lfp-none'.*again"):
        lifecycle.down(ctx, "lfp-none")


def test_down_all_with_proxmox_unreachable_cleans_netns(ctx: lifecycle.Context,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    dirs = [_crashed_netns(ctx, n) for n in ("lfp-a", "lfp-b")]
    caplog.set_level(logging.WARNING)
    done = lifecycle.down_all(ctx)
    assert set(done) == {"lfp-a", "lfp-b"} and not any(d.exists() for d in dirs)
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings  # one line for the cluster, not one per instance
    assert warnings[0].startswith("warning: could not list the proxmox instances (")


def test_down_all_without_proxmox_lists_the_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """No proxmox.toml: netns alone, as before (its run dir), and no warning."""
    monkeypatch.delenv("LABKIT_PROXMOX_CONFIG", raising=False)
    c = lifecycle.Context(Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=tmp_path / "p"))
    d = _crashed_netns(c, "lfp-c")
    assert c.provider("netns").instances() == ["lfp-c"]  # type: ignore[attr-defined]
    assert c.provider("proxmox").instances() == []  # type: ignore[attr-defined]
    caplog.set_level(logging.WARNING)
    assert list(lifecycle.down_all(c)) == ["lfp-c"] and not d.exists()
    assert _warnings(caplog) == []
    assert lifecycle.down_all(c) == {}
