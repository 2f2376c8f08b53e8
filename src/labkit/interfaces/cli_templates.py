"""``labkit templates build --provider proxmox --image FILE|URL [--lab LAB...] [--node N]``."""

from __future__ import annotations

import click

from labkit.interfaces.cli import _ctx, _print_json, cli, out, plain


@cli.group()
def templates() -> None:
    """VM templates a remote provider clones lab nodes from."""


@templates.command("build")
@click.option("--provider", required=True, type=click.Choice(["proxmox"]), help="Where to build them.")
@click.option("--image", required=True, help="The Debian cloud image (.qcow2): a local file or an http(s) URL.")
@click.option("--lab", "labs", multiple=True, help="Packages for this lab (repeatable; default: every lab).")
@click.option("--node", help="The Proxmox node to build on (default: the one with most free memory).")
@click.option("--image-storage", default="local", show_default=True,
              help="A file storage with content 'import' that receives the image.")
@click.option("--bridge", help="The build bridge (default: mgmt_bridge of proxmox.toml).")
@click.option("--build-ip", required=True,
              help="The build guest's address on the bridge, reachable from this host (e.g. 10.250.255.2/16).")
@click.option("--build-gw", help="The build guest's gateway towards a Debian mirror.")
@click.option("--apt-proxy", help="An HTTP proxy for apt in the build guest (e.g. http://10.250.0.1:3142).")
@click.option("--labkit-wheel", help="labkit's wheel for the grader template (default: built from this labkit).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def templates_build(provider: str, image: str, labs: tuple[str, ...], node: str | None, image_storage: str,
                    bridge: str | None, build_ip: str, build_gw: str | None, apt_proxy: str | None,
                    labkit_wheel: str | None, as_json: bool) -> None:
    """Build (or keep) the templates the labs need, from a Debian cloud image."""
    from labkit.usecases.templates import build

    results = build(_ctx(), provider, image=image, labs=list(labs), node=node, image_storage=image_storage,
                    bridge=bridge, build_ip=build_ip, build_gw=build_gw, apt_proxy=apt_proxy,
                    labkit_wheel=labkit_wheel)
    if as_json:
        _print_json([{"name": r.name, "outcome": r.outcome, "packages": list(r.packages)} for r in results])
        return
    for r in results:
        out.print(plain(f"{r.outcome:5} {r.name} ({len(r.packages)} packages: {', '.join(r.packages)})"))
