"""``labkit templates build --provider proxmox``: the templates the labs need (see
:mod:`labkit.adapters.proxmox.templates` for how a template is made and why over SSH)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from labkit.adapters.proxmox.templates import BuildOptions, Provisioner, TemplateSpec
from labkit.domain.labs import available_labs, instantiate
from labkit.errors import UserError
from labkit.usecases.lifecycle import Context, load_lab_checked


@dataclass(frozen=True)
class TemplateResult:
    name: str
    outcome: str  # "kept" | "built"
    packages: tuple[str, ...]


def wanted(ctx: Context, labs: list[str]) -> list[TemplateSpec]:
    """The templates the labs (default: every lab of the project) need on Proxmox."""
    from labkit.adapters.proxmox.settings import load_proxmox_settings
    from labkit.adapters.proxmox.templates import wanted_templates

    settings = load_proxmox_settings(ctx.settings.home)
    loaded = [load_lab_checked(ctx, ref) for ref in labs or available_labs(ctx.settings)]
    # network devices (platform:) are not Proxmox VMs labkit can make: such labs are refused
    # there (check_provider_fits), so they need no template; naming one is a mistake
    devices = [lab.spec.id for lab in loaded if any(n.platform for n in lab.topology.nodes)]
    if labs and devices:
        raise UserError(f"lab {', '.join(devices)} has network devices, which the proxmox provider cannot host; "
                        "leave it out of --lab.")
    plans = [instantiate(lab, "template", 0, None) for lab in loaded if lab.spec.id not in devices]
    return wanted_templates(settings, plans)


def build(ctx: Context, provider: str, *, image: str, labs: list[str] | None = None, node: str | None = None,
          image_storage: str = "local", bridge: str | None = None, build_ip: str = "",
          build_gw: str | None = None, apt_proxy: str | None = None, labkit_wheel: str | None = None,
          provision: Provisioner | None = None) -> list[TemplateResult]:
    if provider != "proxmox":
        raise UserError(f"templates are built for the proxmox provider only (not '{provider}'); "
                        "the netns provider uses the nodes' image made by 'make deps'.")
    from labkit.adapters.proxmox.client import PveClient
    from labkit.adapters.proxmox.settings import load_proxmox_settings
    from labkit.adapters.proxmox.templates import build_template, build_wheel, check_options, is_current, ssh_provision

    settings = load_proxmox_settings(ctx.settings.home)
    specs = wanted(ctx, list(labs or []))
    client = PveClient(settings)
    target = node or client.nodes_by_free_memory(settings.nodes or None)[0][0]
    opts = BuildOptions(image=image, node=target, image_storage=image_storage, bridge=bridge or "",
                        build_ip=build_ip, build_gw=build_gw, apt_proxy=apt_proxy,
                        labkit_wheel=labkit_wheel)
    check_options(opts)
    out = []
    with tempfile.TemporaryDirectory(prefix="lk-templates-") as tmp:
        for spec in specs:
            if spec.grader and not labkit_wheel and not is_current(client, spec):
                labkit_wheel = str(build_wheel(ctx.settings.project, Path(tmp)))
            outcome = build_template(client, settings, spec, replace(opts, labkit_wheel=labkit_wheel),
                                     provision or ssh_provision, home=ctx.settings.home)
            out.append(TemplateResult(spec.name, outcome, spec.packages))
    return out
