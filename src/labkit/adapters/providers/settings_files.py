"""What the remote providers' configuration files share: a TOML file validated into a typed
model, and a secret kept in a file of mode 0600 (never in the TOML, never on a command line).
Every problem is a :class:`UserError` that names the file and what to do."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from labkit.errors import UserError

M = TypeVar("M", bound=BaseModel)


def read_secret_file(path: Path, *, what: str, content: str, env: str) -> str:
    """The secret in ``path`` (``what``: e.g. "Proxmox token secret"; ``content``: what to write
    there), refused when the file is missing, readable by others or empty."""
    try:
        st = path.stat()
    except OSError as exc:
        raise UserError(f"cannot read the {what} file {path} ({exc.strerror}); write {content} there "
                        f"(mode 0600) or set {env}.") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UserError(f"the {what} file {path} is readable by others "
                        f"(mode {stat.S_IMODE(st.st_mode):04o}); run 'chmod 600 {path}'.")
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise UserError(f"the {what} file {path} is empty; write {content} in it.")
    return secret


def load_toml_model(path: Path, model: type[M], *, clear_key: str, clear_error: str) -> M:
    """``path`` parsed as TOML and validated into ``model``; a secret written in clear under
    ``clear_key`` is refused with ``clear_error``."""
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path} is not valid TOML ({exc}); fix it.") from None
    if clear_key in raw:
        raise UserError(clear_error)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors())
        raise UserError(f"{path} is invalid ({problems}); fix it.") from None
