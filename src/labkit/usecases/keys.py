"""The training centre's signing key: thin use cases over :class:`Keyring` (``<home>/keys``)."""

from __future__ import annotations

from pathlib import Path

from labkit.adapters.security.keyring import KeyInfo, Keyring
from labkit.adapters.storage.runs import SEAL_SIG
from labkit.models.results import GradeSummary
from labkit.usecases.lifecycle import Context

__all__ = ["export_keys", "init_key", "keyring", "list_keys", "revoke_key", "rotate_key", "unsigned_warning"]


def keyring(ctx: Context) -> Keyring:
    return Keyring(ctx.settings.home / "keys")


def init_key(ctx: Context, centre: str) -> KeyInfo:
    return keyring(ctx).init(centre)


def list_keys(ctx: Context) -> list[KeyInfo]:
    """Every key, oldest first; UserError when the centre has none yet."""
    kr = keyring(ctx)
    keys = kr.keys()
    if not keys:
        kr.require_signer()  # raises the "no centre key: run `labkit keys init`" error
    return keys


def rotate_key(ctx: Context) -> KeyInfo:
    return keyring(ctx).rotate()


def revoke_key(ctx: Context, fingerprint: str, reason: str) -> KeyInfo:
    return keyring(ctx).revoke(fingerprint, reason)


def export_keys(ctx: Context, folder: Path) -> list[Path]:
    return keyring(ctx).export(folder)


def unsigned_warning(ctx: Context, summary: GradeSummary) -> str | None:
    """One line for the CLI when the run just graded was sealed without a signature.

    None when it is signed, or when ``ctx`` has no settings to find the run with (a stand-in
    context of a test that replaces grade(): there is no run folder to look at)."""
    runs = getattr(getattr(ctx, "settings", None), "runs", None)
    if not isinstance(runs, Path) or (runs / summary.run_id / SEAL_SIG).exists():
        return None
    return (f"warning: run {summary.run_id} is not signed because the centre has no key; run "
            "`labkit keys init --centre NAME` once so that later runs are signed.")
