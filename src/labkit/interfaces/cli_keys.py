"""``labkit keys init|show|rotate|revoke|export``: the training centre's signing key.

Only public keys and fingerprints are printed; the private key never leaves ``<home>/keys``.
"""

from __future__ import annotations

from pathlib import Path

import click

from labkit.adapters.security.keyring import KeyInfo
from labkit.interfaces.cli import _ctx, _print_json, cli, out, plain


def _describe(k: KeyInfo) -> str:
    when = f"created {k.created_at}"
    if k.retired_at:
        when += f", retired {k.retired_at}"
    if k.status == "revoked":
        when += f", revoked {k.revoked_at}: {k.reason}"
    return f"{k.status:8} {k.fingerprint}  {k.centre}  ({when})"


@cli.group()
def keys() -> None:
    """The training centre's signing key (runs and bundles are signed with it)."""


@keys.command("init")
@click.option("--centre", required=True, help="The training centre's name, written in every signed run.")
def keys_init(centre: str) -> None:
    """Make the centre's signing key (once)."""
    from labkit.usecases.keys import init_key, keyring

    info = init_key(_ctx(), centre)
    out.print(plain(f"centre key made: {info.fingerprint} ({info.centre})"))
    out.print(plain(f"private key: {keyring(_ctx()).private_path(info.fingerprint)} (mode 600; keep a backup "
                    "in a safe place, never share it)"))
    out.print(plain(f"public key (give it to juries): {info.pub_line()}"))


@keys.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--pub", "pub_only", is_flag=True,
              help="Print only the trusted public keys, as a centre.pub file (for `labkit verify --key`).")
def keys_show(as_json: bool, pub_only: bool) -> None:
    """The centre's keys: public line, fingerprint, centre, dates and status."""
    from labkit.usecases.keys import list_keys

    infos = list_keys(_ctx())
    if pub_only and as_json:
        _print_json([k.pub_line() for k in infos if k.trusted])
    elif pub_only:
        for k in infos:
            if k.trusted:
                click.echo(k.pub_line())
    elif as_json:
        _print_json([{**k.to_public(), "public_line": k.pub_line()} for k in infos])
    else:
        for k in infos:
            out.print(plain(_describe(k)))
            out.print(plain(f"         {k.pub_line()}"))


@keys.command("rotate")
def keys_rotate() -> None:
    """Make a new active key; the old one is retired (old runs still verify with it)."""
    from labkit.usecases.keys import rotate_key

    info = rotate_key(_ctx())
    out.print(plain(f"new centre key: {info.fingerprint}; the previous key is retired (its private key is "
                    "deleted, runs it signed still verify); give juries the new `labkit keys export`"))


@keys.command("revoke")
@click.argument("fingerprint")
@click.option("--reason", required=True, help="Why (e.g. the key was stolen); shown by every verification.")
def keys_revoke(fingerprint: str, reason: str) -> None:
    """Revoke a retired key: whatever it signed is reported as revoked."""
    from labkit.usecases.keys import revoke_key

    info = revoke_key(_ctx(), fingerprint, reason)
    out.print(plain(f"revoked {info.fingerprint} on {info.revoked_at}: {info.reason}; "
                    "give juries the new revocations.json (`labkit keys export DIR`)"))


@keys.command("export")
@click.argument("folder", type=click.Path(path_type=Path))
def keys_export(folder: Path) -> None:
    """Write centre.pub, allowed_signers and revocations.json for juries into FOLDER."""
    from labkit.usecases.keys import export_keys

    for path in export_keys(_ctx(), folder):
        out.print(plain(f"wrote {path}"))
