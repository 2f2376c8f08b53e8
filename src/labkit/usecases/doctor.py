"""``labkit doctor --provider NAME``: can this provider run labs here? One line per check.

- netns: the provider's own preflight (root, tools, the nodes' image, the packages each lab's
  topology needs in that image), for every lab given (or every lab of the project).
- proxmox: API reachable and its version, the token's privileges against the exact list in
  :mod:`labkit.adapters.proxmox.doctor`, storage, SDN zone, management bridge, templates.
- gns3: server reachable, version 3.x, labkit's account an Administrator, the compute, a
  template per role of each lab, the grader agent on the GNS3 host and its pinned key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from labkit.adapters.proxmox.doctor import Line
from labkit.domain.labs import available_labs, instantiate
from labkit.errors import LabkitError, UserError
from labkit.models.instance import InstancePlan
from labkit.usecases.lifecycle import Context, load_lab_checked

PROVIDERS = ("netns", "proxmox", "gns3")


@dataclass
class DoctorReport:
    provider: str
    lines: list[Line] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.lines) and all(line.ok for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "ok": self.ok, "checks": [asdict(line) for line in self.lines]}


def _plans(ctx: Context, labs: list[str]) -> list[tuple[str, InstancePlan]]:
    out = []
    for ref in labs or available_labs(ctx.settings):
        lab = load_lab_checked(ctx, ref)
        out.append((lab.spec.id, instantiate(lab, "doctor", 0, None)))
    return out


def _empty_plan() -> InstancePlan:
    return InstancePlan(name="doctor", lab_id="-", lab_dir="", topology_id="", seed=0, params={},
                        nodes=[], segments={}, links={})


def _netns(ctx: Context, labs: list[str]) -> list[Line]:
    prov = ctx.provider("netns")
    lines: list[Line] = []
    try:
        prov.preflight(_empty_plan())  # root, tools, the nodes' image
        lines.append(Line("host", True, "root, tools and the nodes' image are present"))
    except LabkitError as exc:
        return [Line("host", False, str(exc))]
    for lab_id, plan in _plans(ctx, labs):
        try:
            prov.preflight(plan)
            lines.append(Line("lab", True, f"lab {lab_id}: every package its topology needs is in the image"))
        except LabkitError as exc:
            lines.append(Line("lab", False, f"lab {lab_id}: {exc}"))
    return lines


def _proxmox(ctx: Context, labs: list[str], image_storage: str = "local") -> list[Line]:
    from labkit.adapters.proxmox import doctor as pve_doctor
    from labkit.adapters.proxmox.client import PveClient
    from labkit.adapters.proxmox.settings import load_proxmox_settings
    from labkit.adapters.proxmox.templates import wanted_templates

    try:
        settings = load_proxmox_settings(ctx.settings.home)
    except UserError as exc:
        return [Line("config", False, str(exc))]
    names = [t.name for t in wanted_templates(settings, [p for _, p in _plans(ctx, labs)])]
    return pve_doctor.run(PveClient(settings), token_id=settings.token_id, storage=settings.storage,
                          zone=settings.zone, mgmt_bridge=settings.mgmt_bridge, nodes=settings.nodes,
                          templates=names, image_storage=image_storage, ct_ostemplate=settings.ct_ostemplate)


def doctor(ctx: Context, provider: str, labs: list[str] | None = None, *,
           image_storage: str = "local") -> DoctorReport:
    if provider not in PROVIDERS:
        raise UserError(f"there is no provider '{provider}'; pick one of: {', '.join(PROVIDERS)}.")
    if provider == "netns":
        return DoctorReport(provider, _netns(ctx, list(labs or [])))
    if provider == "gns3":
        from labkit.adapters.gns3 import doctor as g3_doctor

        return DoctorReport(provider, g3_doctor.run(ctx.settings, [p for _, p in _plans(ctx, list(labs or []))]))
    return DoctorReport(provider, _proxmox(ctx, list(labs or []), image_storage))
