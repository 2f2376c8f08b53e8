"""``labkit doctor --provider netns|proxmox|gns3 [--lab LAB...] [--json]``: can this provider run labs?

One line per check; a problem's line says what to do. Exit 0 only when every check passes.
"""

from __future__ import annotations

import sys

import click

from labkit.interfaces.cli import _ctx, _print_json, cli, out, plain


@cli.command()
@click.option("--provider", "provider", required=True, type=click.Choice(["netns", "proxmox", "gns3"]),
              help="The provider to check.")
@click.option("--lab", "labs", multiple=True,
              help="Check what this lab needs (repeatable; default: every lab of the project).")
@click.option("--image-storage", default="local", show_default=True,
              help="proxmox: the file storage 'templates build' puts the cloud image on.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor(provider: str, labs: tuple[str, ...], image_storage: str, as_json: bool) -> None:
    """Check that a provider is ready for labkit (exit 0 only when all is well)."""
    from labkit.usecases.doctor import doctor as run_doctor

    report = run_doctor(_ctx(), provider, list(labs), image_storage=image_storage)
    if as_json:
        _print_json(report.to_json())
    else:
        for line in report.lines:
            out.print(plain(f"{'ok' if line.ok else 'FAIL':4} {line.check:12} {line.message}"))
        bad = sum(1 for line in report.lines if not line.ok)
        out.print(plain(f"{provider}: all is well" if report.ok else f"{provider}: {bad} problem(s)"))
    if not report.ok:
        sys.exit(1)
