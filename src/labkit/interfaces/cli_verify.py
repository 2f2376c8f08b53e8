"""``labkit verify RUN|BUNDLE``: check a run folder or a portfolio bundle offline."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.text import Text

from labkit.interfaces.cli import _ctx, _print_json, cli, out, plain


@cli.command("verify")
@click.argument("target")
@click.option("--key", "keys", multiple=True, type=click.Path(path_type=Path),
              help="A trusted key file (centre.pub, allowed_signers, revocations.json); repeatable. "
                   "Default: the centre's own keys.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(target: str, keys: tuple[Path, ...], as_json: bool) -> None:
    """Check a run (id or folder), a bundle .zip or an unzipped bundle folder: every signature,
    every file's hash, nothing missing or added. Exit 0 only when everything verifies with a
    trusted key that is not revoked."""
    from labkit.usecases.verify import verify

    report = verify(_ctx(), target, list(keys))
    if as_json:
        _print_json(report.to_json())
    else:
        for p in report.problems:
            style = "yellow" if p.severity == "warning" else "red"
            out.print(Text(plain(f"{p.severity}: {p.line()}"), style=style))
        out.print(Text(plain(report.verdict()), style="green" if report.ok else "red bold"))
    if not report.ok:
        sys.exit(1)
