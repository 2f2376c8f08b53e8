"""``labkit verify``: check a run or a portfolio bundle offline against the trusted keys.

The trust is the key files passed with ``--key`` (a jury's ``centre.pub``, ``allowed_signers``,
``revocations.json``), else the local key store. Nothing else of labkit's state is needed: a
run id is looked up in the runs folder, anything else is a path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from labkit.adapters.bundle.verify import VerifyReport, verify_path
from labkit.adapters.security.keyring import Keyring, Trust
from labkit.adapters.storage.runs import is_safe_name
from labkit.errors import UnknownRunError
from labkit.usecases.lifecycle import Context

__all__ = ["resolve_target", "trust_for", "verify"]


def trust_for(ctx: Context, keys: Sequence[Path]) -> Trust:
    """The ``--key`` files when given (only them), else the centre's own key store."""
    if keys:
        return Trust.from_files([Path(k) for k in keys])
    return Trust.from_keyring(Keyring(ctx.settings.home / "keys"))


def resolve_target(ctx: Context, target: str) -> Path:
    """A path that exists, else a run id under the runs folder."""
    path = Path(target).expanduser()
    if path.exists():
        return path
    if is_safe_name(target) and (ctx.settings.runs / target).is_dir():
        return ctx.settings.runs / target
    raise UnknownRunError(
        f"{target!r} is neither a file, a folder nor a run id in {ctx.settings.runs}; pass a run id, a run "
        "folder, a bundle .zip or the folder a bundle was unzipped into"
    )


def verify(ctx: Context, target: str, keys: Sequence[Path] = ()) -> VerifyReport:
    """Verify a run (id or folder), a bundle zip or an unzipped bundle folder."""
    trust = trust_for(ctx, keys)
    return verify_path(resolve_target(ctx, target), trust)
