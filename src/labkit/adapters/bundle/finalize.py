"""Seal a bundle folder (SHA256SUMS, its signature, allowed_signers) and write its signed zip."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from labkit.adapters.bundle.container import build_zip
from labkit.adapters.bundle.sums import ALLOWED_SIGNERS, SUMS, SUMS_SIG, allowed_signers_line, render_sums, sign_sums
from labkit.adapters.security.signing import CentreSigner
from labkit.adapters.storage.files import write_atomic
from labkit.adapters.storage.runs import is_safe_name, read_tree
from labkit.errors import UserError

__all__ = ["finalize_bundle"]


def finalize_bundle(tree: Path, out_zip: Path, signer: CentreSigner, when: datetime) -> Path:
    """Write ``allowed_signers``, ``SHA256SUMS`` and ``SHA256SUMS.sig`` into the bundle folder
    ``tree``, then the signed deterministic zip ``out_zip`` (every entry under ``<stem>/``,
    the stem of ``out_zip``). The zip is written to a temporary file next to ``out_zip`` and
    renamed only when complete: on any error or Ctrl-C there is no half-made zip."""
    tree, out_zip = Path(tree), Path(out_zip)
    top = out_zip.name[: -len(".zip")] if out_zip.name.endswith(".zip") else ""
    if not is_safe_name(top):
        raise UserError(f"{out_zip.name!r} is not a bundle file name; give NAME.zip with letters, digits, "
                        "'.', '_' or '-' in NAME")
    if not tree.is_dir():
        raise UserError(f"{tree} is not a folder; pass the bundle folder to seal")
    if out_zip.resolve().is_relative_to(tree.resolve()):
        raise UserError(f"{out_zip} is inside the bundle folder {tree}; write the zip outside the folder it packs")
    if not out_zip.parent.is_dir():
        raise UserError(f"the folder {out_zip.parent} does not exist; make it or write the bundle elsewhere")
    write_atomic(tree / ALLOWED_SIGNERS, allowed_signers_line(signer))
    files = read_tree(tree)
    odd = sorted(rel for rel, data in files.items() if data is None)
    if odd:
        raise UserError(f"the bundle folder {tree} holds links or special files ({', '.join(odd[:5])}); "
                        "a bundle holds regular files only")
    content = {rel: data for rel, data in files.items() if data is not None and rel not in (SUMS, SUMS_SIG)}
    try:
        sums = render_sums(content)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    sig = sign_sums(sums, signer)
    write_atomic(tree / SUMS, sums)
    write_atomic(tree / SUMS_SIG, sig)
    try:
        data = build_zip({**content, SUMS: sums, SUMS_SIG: sig}, top, when, signer)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    write_atomic(out_zip, data)
    return out_zip
