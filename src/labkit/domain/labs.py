"""Labs as code: find a lab, load and validate it with every problem at once, instantiate it.

``load_lab`` reports all the problems it finds as :class:`labkit.errors.Issue` objects (file,
line, one-sentence message, hint) inside one :class:`LabDefinitionError`. Line numbers come from
the YAML node tree (PyYAML ``compose``), so a pydantic error location such as
``("checks", 2, "points")`` points at the line where ``points`` is written.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from labkit.domain.params import (
    ParamError,
    RenderError,
    check_parameter,
    generate_params,
    render,
)
from labkit.errors import Issue, LabDefinitionError, UnknownLabError, UserError
from labkit.models.capabilities import DESCRIPTIONS
from labkit.models.common import IFACE_RE, NAME_RE, PARAM_RE, I18n, is_iface, is_name
from labkit.models.instance import IfacePlan, InstancePlan, NodePlan, RoutePlan, VantagePlan, VolumePlan
from labkit.models.lab import CheckSpec, LabSpec
from labkit.models.topology import TopologySpec
from labkit.settings import Settings

LAB_FILE = "lab.yaml"
VALIDATION_SEEDS = (0, 1)

# Bounds on a lab or topology file, which is input (labkit runs as root): the biggest lab of
# the project is about 30 KiB and 2 000 YAML values.
MAX_FILE_BYTES = 1 << 20
MAX_YAML_VALUES = 100_000  # values once aliases are expanded
MAX_YAML_ALIASES = 200
MAX_YAML_DEPTH = 64

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedLab:
    """A lab that validated, with its topology and where both came from."""

    spec: LabSpec
    topology: TopologySpec
    lab_file: Path
    topology_file: Path
    dir: Path

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class LabSummary:
    """One row of ``list_labs``: a valid lab, or a folder whose lab.yaml has problems."""

    id: str
    lab_file: Path
    ok: bool
    version: int | None = None
    title: I18n | None = None
    summary: I18n | None = None
    topology: str | None = None
    checks: int = 0
    max_points: int = 0
    variants: int = 0
    cheats: int = 0
    problems: list[Issue] = field(default_factory=list)


# --------------------------------------------------------------------------- finding labs


def available_labs(settings: Settings) -> list[str]:
    """Ids of the labs under ``<project>/labs`` (folders holding a lab.yaml), sorted."""
    if not settings.labs.is_dir():
        return []
    return sorted(d.name for d in settings.labs.iterdir() if (d / LAB_FILE).is_file())


def find_lab(ref: str | Path, settings: Settings) -> Path:
    """The lab.yaml meant by ``ref``: a lab id, a lab.yaml path, or the folder holding one."""
    text = str(ref)
    if is_name(text):
        candidate = settings.labs / text / LAB_FILE
        if candidate.is_file():
            return candidate
    path = Path(text).expanduser()
    if path.is_dir() and (path / LAB_FILE).is_file():
        return path / LAB_FILE
    if path.is_file():
        return path
    ids = available_labs(settings)
    known = f"available labs: {', '.join(ids)}" if ids else f"there are no labs in {settings.labs}"
    close = difflib.get_close_matches(text, ids, n=1)
    guess = f"did you mean '{close[0]}'? " if close else ""
    raise UnknownLabError(
        f"there is no lab '{text}'; {guess}{known} (give a lab id or the path to a lab.yaml)"
    )


def list_labs(settings: Settings) -> list[LabSummary]:
    """Every lab of the project, valid or not; invalid ones carry their problems."""
    rows: list[LabSummary] = []
    for lab_id in available_labs(settings):
        lab_file = settings.labs / lab_id / LAB_FILE
        try:
            lab = load_lab(lab_file, settings)
        except LabDefinitionError as e:
            rows.append(LabSummary(id=lab_id, lab_file=lab_file, ok=False, problems=list(e.issues)))
            continue
        s = lab.spec
        rows.append(
            LabSummary(
                id=s.id,
                lab_file=lab_file,
                ok=True,
                version=s.version,
                title=s.title,
                summary=s.summary,
                topology=s.topology,
                checks=len(s.checks),
                max_points=sum(c.points for c in s.checks),
                variants=len(s.variants),
                cheats=len(s.cheats),
            )
        )
    return rows


# --------------------------------------------------------------------------- loading


def load_lab(
    path: str | Path,
    settings: Settings,
    *,
    known_graders: set[str] | None = None,
    known_criteria: set[str] | None = None,
) -> LoadedLab:
    """Load and validate a lab and its topology; LabDefinitionError lists every problem."""
    lab_file = Path(path).expanduser().resolve()
    if lab_file.is_dir():
        lab_file = lab_file / LAB_FILE
    return _Validator(settings, lab_file, known_graders, known_criteria).run()


class _Doc:
    """One YAML file: its data and node tree, for line numbers."""

    def __init__(self, path: Path, shown: str, data: Any, root: Node | None):
        self.path = path
        self.shown = shown
        self.data = data
        self.root = root

    def line(self, loc: Loc) -> int | None:
        return _line_of(self.root, loc)

    def node(self, loc: Loc) -> Node | None:
        return _node_at(self.root, loc)


class _Validator:
    def __init__(
        self,
        settings: Settings,
        lab_file: Path,
        known_graders: set[str] | None,
        known_criteria: set[str] | None,
    ):
        self.settings = settings
        self.lab_file = lab_file
        self.known_graders = known_graders
        self.known_criteria = known_criteria
        self.issues: list[tuple[int, Issue]] = []  # (file rank, issue)
        self.ranks: dict[str, int] = {}

    # ---- reporting

    def add(self, doc: _Doc | str, loc: Loc | int | None, message: str, hint: str = "") -> None:
        if isinstance(doc, _Doc):
            shown = doc.shown
            line = loc if isinstance(loc, int) or loc is None else doc.line(loc)
        else:
            shown = doc
            line = loc if isinstance(loc, int) else None
        rank = self.ranks.setdefault(shown, len(self.ranks))
        self.issues.append((rank, Issue(file=shown, line=line, message=message, hint=hint)))

    def shown(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.settings.project.resolve()))
        except ValueError:
            return str(path)

    # ---- driver

    def run(self) -> LoadedLab:
        lab_doc = self.read(self.lab_file, "lab")
        spec: LabSpec | None = None
        if lab_doc is not None:
            spec = self.validate_model(lab_doc, LabSpec)

        topo_doc: _Doc | None = None
        topo: TopologySpec | None = None
        topo_name = lab_doc.data.get("topology") if lab_doc is not None else None
        if isinstance(topo_name, str) and is_name(topo_name) and lab_doc is not None:
            topo_file = self.topology_file(topo_name)
            if topo_file is None:
                names = sorted(p.stem for p in self.settings.topologies.glob("*.yaml"))
                known = f"available topologies: {', '.join(names)}" if names else "there are none yet"
                self.add(
                    lab_doc,
                    ("topology",),
                    f"topology '{topo_name}' has no file {self.shown(self.settings.topologies)}/{topo_name}.yaml",
                    f"create it or name an existing topology; {known}",
                )
            else:
                topo_doc = self.read(topo_file, "topology")
                if topo_doc is not None:
                    topo = self.validate_model(topo_doc, TopologySpec)
                    if topo is not None:
                        self.check_topology(topo_doc, topo)

        if spec is not None and lab_doc is not None:
            self.check_lab(lab_doc, spec)
            if topo is not None:
                self.check_against_topology(lab_doc, spec, topo)

        if self.issues or spec is None or topo is None or topo_doc is None:
            ordered = sorted(self.issues, key=lambda ri: (ri[0], ri[1].line or 0))
            raise LabDefinitionError([i for _, i in ordered])
        return LoadedLab(
            spec=spec,
            topology=topo,
            lab_file=self.lab_file,
            topology_file=topo_doc.path.resolve(),
            dir=self.lab_file.parent,
        )

    def topology_file(self, name: str) -> Path | None:
        for ext in (".yaml", ".yml"):
            candidate = self.settings.topologies / f"{name}{ext}"
            if candidate.is_file():
                return candidate
        return None

    # ---- YAML and schema

    def read(self, path: Path, what: str) -> _Doc | None:
        shown = self.shown(path)
        self.ranks.setdefault(shown, len(self.ranks))
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:
                self.add(
                    shown,
                    None,
                    f"the {what} file is larger than {MAX_FILE_BYTES // (1 << 20)} MiB, which no {what} needs",
                    "check that this is the right file; split out or remove the bulk data it holds",
                )
                return None
            text = raw.decode("utf-8")
        except FileNotFoundError:
            self.add(shown, None, f"the {what} file does not exist", "check the path or the lab id")
            return None
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else "it is not UTF-8 text"
            self.add(shown, None, f"the {what} file cannot be read: {reason}", "check its permissions and encoding")
            return None
        loader = yaml.SafeLoader(text)
        try:
            try:
                root = loader.get_single_node()
            except RecursionError:
                self.add(
                    shown,
                    None,
                    f"the {what} file nests lists or mappings more than {MAX_YAML_DEPTH} levels deep",
                    "flatten the structure; a lab file needs a few levels only",
                )
                return None
            shape = _yaml_shape(root, what)
            if shape is not None:
                line, message, hint = shape
                self.add(shown, line, message, hint)
                return None
            data = loader.construct_document(root) if root is not None else None
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            problem = _yaml_words(e.problem or "the text cannot be parsed")
            context = ""
            if e.context and e.context_mark and e.problem_mark and e.context_mark.line != e.problem_mark.line:
                context = f" {_yaml_words(e.context)} (started on line {e.context_mark.line + 1})"
            elif e.context:
                context = f" {_yaml_words(e.context)}"
            self.add(
                shown,
                mark.line + 1 if mark else None,
                f"YAML syntax error{context}: {problem}",
                "check indentation, colons, quotes and brackets on this line and the one before",
            )
            return None
        except yaml.YAMLError as e:
            self.add(shown, None, f"YAML syntax error: {' '.join(str(e).split())}", "check the file's syntax")
            return None
        finally:
            loader.dispose()
        doc = _Doc(path, shown, data, root)
        if not isinstance(data, dict):
            self.add(
                doc,
                1,
                f"the {what} file must be a mapping of keys such as 'id:' and 'title:'",
                f"start from an existing {what} file",
            )
            return None
        for key_node in _duplicate_keys(root):
            self.add(
                doc,
                key_node.start_mark.line + 1,
                f"key '{key_node.value}' appears twice in the same mapping",
                "remove one of them; YAML silently keeps only the last",
            )
        return doc

    def validate_model(self, doc: _Doc, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(doc.data)
        except ValidationError as e:
            for err in e.errors(include_url=False):
                self.schema_issue(doc, model, err)
            return None

    def schema_issue(self, doc: _Doc, model: type[BaseModel], err: Any) -> None:
        loc: Loc = tuple(err["loc"])
        kind: str = err["type"]
        msg: str = err["msg"]
        value = err.get("input")
        ctx = err.get("ctx") or {}
        where = _loc_text(loc)
        schema = "labs/lab.schema.json" if model is LabSpec else "topologies/topology.schema.json"
        got = _short(value)

        if kind == "extra_forbidden":
            key = str(loc[-1])
            allowed = _model_keys(model, loc[:-1])
            close = difflib.get_close_matches(key, allowed, n=1)
            if value is None and " " in key:
                hint = "a comma inside a {…} mapping starts a new key; quote the text that holds the comma"
            elif close:
                hint = f"did you mean '{close[0]}'? allowed keys: {', '.join(allowed)}"
            elif allowed:
                hint = f"allowed keys: {', '.join(allowed)}"
            else:
                hint = f"see {schema}"
            self.add(doc, loc, f"{where}: unknown key", hint)
        elif kind == "missing":
            self.add(doc, loc, f"{where}: required key is missing", f"add '{loc[-1]}:' here; see {schema}")
        elif kind == "string_pattern_mismatch":
            self.add(doc, loc, f"{where}: {got} is not a valid name", _pattern_hint(str(ctx.get("pattern", ""))))
        elif kind in ("int_parsing", "int_type", "int_from_float", "float_parsing", "float_type", "bool_parsing"):
            base = msg.split(",")[0]
            what = {"i": "a whole number", "f": "a number", "b": "true or false"}[kind[0]]
            self.add(doc, loc, f"{where}: {base}", f"got {got}; write {what}")
        elif kind == "string_type":
            self.add(doc, loc, f"{where}: {msg}", f"got {got}; write text, in quotes if YAML reads it otherwise")
        elif kind == "list_type":
            self.add(doc, loc, f"{where}: {msg}", f"got {got}; write a YAML list such as [a, b]")
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            self.add(doc, loc, f"{where}: Input should be a mapping", f"got {got}; write 'key: value' pairs")
        elif kind == "literal_error":
            self.add(doc, loc, f"{where}: {msg}", f"got {got}")
        elif kind in ("too_short", "too_long"):
            self.add(doc, loc, f"{where}: {msg}", "add or remove items to match")
        elif kind == "value_error":
            text = msg.removeprefix("Value error, ")
            self.add(doc, loc, f"{where}: {text}", "fix the value as the message says")
        else:
            self.add(doc, loc, f"{where}: {msg}", f"got {got}; see {schema}" if got else f"see {schema}")

    # ---- topology on its own

    def check_topology(self, doc: _Doc, topo: TopologySpec) -> None:
        if topo.id != doc.path.stem:
            self.add(
                doc,
                ("id",),
                f"topology id '{topo.id}' differs from its file name '{doc.path.name}'",
                f"labs find topologies by file name; rename the file or set 'id: {doc.path.stem}'",
            )
        self.duplicates(doc, "node", [(("nodes", i, "name"), n.name) for i, n in enumerate(topo.nodes)])
        self.duplicates(
            doc,
            "segment or link",
            [(("segments", i, "name"), s.name) for i, s in enumerate(topo.segments)]
            + [(("links", i, "name"), ln.name) for i, ln in enumerate(topo.links)],
        )
        nodes = list(dict.fromkeys(n.name for n in topo.nodes))
        used: dict[str, str] = {}  # "node:iface" -> where it is used, for messages
        for loc, owner, endpoint in _endpoints(topo):
            node, _, iface = endpoint.partition(":")
            if not (is_name(node) and is_iface(iface)):
                self.add(
                    doc,
                    loc,
                    f"{owner}: endpoint '{endpoint}' is not NODE:IFACE with valid names",
                    "node names are like r-hq, interface names like eth0",
                )
                continue
            if node not in nodes:
                self.add(
                    doc, loc, f"{owner} names unknown node '{node}'", _choices_hint(node, nodes, "nodes")
                )
            if endpoint in used:
                self.add(
                    doc,
                    loc,
                    f"interface {endpoint} is used by both {used[endpoint]} and {owner}",
                    "an interface has one cable; give the node another interface",
                )
            else:
                used[endpoint] = owner

    # ---- lab on its own

    def check_lab(self, doc: _Doc, spec: LabSpec) -> None:
        lab_dir = self.lab_file.parent
        if lab_dir.parent.resolve() == self.settings.labs.resolve() and spec.id != lab_dir.name:
            self.add(
                doc,
                ("id",),
                f"lab id '{spec.id}' differs from its folder name '{lab_dir.name}'",
                f"labkit finds labs by folder; rename the folder or set 'id: {lab_dir.name}'",
            )
        self.duplicates(doc, "parameter", [(("parameters", i, "name"), p.name) for i, p in enumerate(spec.parameters)])
        self.duplicates(doc, "check", [(("checks", i, "id"), c.id) for i, c in enumerate(spec.checks)])
        self.duplicates(doc, "variant or cheat",
                        [(("variants", i, "id"), v.id) for i, v in enumerate(spec.variants)]
                        + [(("cheats", i, "id"), v.id) for i, v in enumerate(spec.cheats)])
        self.duplicates(doc, "vantage point", [(("vantage", i, "name"), v.name) for i, v in enumerate(spec.vantage)])

        check_ids = [c.id for c in spec.checks]
        for i, check in enumerate(spec.checks):
            if self.known_graders is not None and check.grader not in self.known_graders:
                self.add(
                    doc,
                    ("checks", i, "grader"),
                    f"check '{check.id}' uses unknown grader '{check.grader}'",
                    _choices_hint(check.grader, sorted(self.known_graders), "graders"),
                )
            if self.known_criteria is not None:
                for j, crit in enumerate(check.criteria):
                    if crit not in self.known_criteria:
                        self.add(
                            doc,
                            ("checks", i, "criteria", j),
                            f"check '{check.id}' cites criterion '{crit}', which is not in the catalog",
                            _choices_hint(crit, sorted(self.known_criteria), "criteria", show=False),
                        )
        if sum(c.points for c in spec.checks) == 0:
            self.add(
                doc,
                ("checks",),
                "the checks' points add up to 0, so no grade can be computed",
                "give at least one check some points",
            )
        for section, kind, items in (("variants", "variant", spec.variants), ("cheats", "cheat", spec.cheats)):
            for i, variant in enumerate(items):
                for j, failing in enumerate(variant.fails):
                    if failing not in check_ids:
                        self.add(
                            doc,
                            (section, i, "fails", j),
                            f"{kind} '{variant.id}' expects unknown check '{failing}' to fail",
                            _choices_hint(failing, check_ids, "checks"),
                        )
        for i, ready in enumerate(spec.ready):
            if ready not in check_ids:
                self.add(doc, ("ready", i), f"'ready' names unknown check '{ready}'",
                         _choices_hint(ready, check_ids, "checks"))
        if spec.solution.playbook is not None:
            self.playbook(doc, ("solution", "playbook"), "solution", spec.solution.playbook)
        if spec.solution.config is not None:
            self.config_set(doc, ("solution", "config"), "solution", spec.solution.config)
        if spec.setup is not None:
            self.playbook(doc, ("setup", "playbook"), "setup", spec.setup.playbook)
        for section, kind, items in (("variants", "variant", spec.variants), ("cheats", "cheat", spec.cheats)):
            for i, variant in enumerate(items):
                if variant.playbook is not None:
                    self.playbook(doc, (section, i, "playbook"), f"{kind} '{variant.id}'", variant.playbook)
                if variant.config is not None:
                    self.config_set(doc, (section, i, "config"), f"{kind} '{variant.id}'", variant.config)

        params_ok = True
        for i, p in enumerate(spec.parameters):
            try:
                check_parameter(p)
            except ParamError as e:
                self.add(doc, ("parameters", i), e.message, e.hint)
                params_ok = False
        if params_ok:
            self.check_templates(doc, spec)

    def playbook(self, doc: _Doc, loc: Loc, owner: str, rel: str) -> None:
        shown_dir = self.shown(self.settings.playbooks)
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            self.add(
                doc,
                loc,
                f"the {owner} playbook '{rel}' must be a path inside {shown_dir}/",
                "write it relative to the playbooks folder, e.g. my-lab/reference.yml",
            )
        elif not (self.settings.playbooks / rel).is_file():
            self.add(
                doc,
                loc,
                f"the {owner} playbook {shown_dir}/{rel} does not exist",
                "create it or fix the path, which is relative to the playbooks folder",
            )

    def config_set(self, doc: _Doc, loc: Loc, owner: str, rel: str) -> None:
        """A config set (network devices' CLI lines) is a file in the lab's folder."""
        lab_dir = self.lab_file.parent
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            self.add(doc, loc, f"the {owner} config set '{rel}' must be a path inside the lab's folder",
                     "write it relative to the lab's folder, e.g. configs/reference.cfg")
        elif not (lab_dir / rel).is_file():
            self.add(doc, loc, f"the {owner} config set {self.shown(lab_dir / rel)} does not exist",
                     "create it or fix the path, which is relative to the lab's folder")

    def duplicates(self, doc: _Doc, what: str, items: Sequence[tuple[Loc, str]]) -> None:
        first: dict[str, Loc] = {}
        for loc, name in items:
            if name in first:
                line = doc.line(first[name])
                self.add(
                    doc,
                    loc,
                    f"{what} '{name}' is declared twice",
                    f"rename or remove one; the first is on line {line}" if line else "rename or remove one",
                )
            else:
                first[name] = loc

    # ---- templates, rendered for two seeds

    def check_templates(self, doc: _Doc, spec: LabSpec) -> None:
        failed: set[Loc] = set()
        reported_dups: set[tuple[str, str]] = set()
        for seed in VALIDATION_SEEDS:
            try:
                params = generate_params(spec, seed)
            except ParamError as e:
                self.add(doc, ("parameters",), e.message, e.hint)
                return
            owners: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, tuple[str, Loc]] = {}
            for loc, text in _templates(spec):
                if loc in failed:
                    continue
                try:
                    out = render(text, params)
                except RenderError as e:
                    failed.add(loc)
                    self.add(doc, self.template_line(doc, loc, e.lineno), f"{_loc_text(loc)}: {e.message}", e.hint)
                    continue
                problem = _rendered_problem(loc, out)
                if problem is not None:
                    failed.add(loc)
                    self.add(doc, loc, f"{_loc_text(loc)}: {problem[0]}", problem[1])
                    continue
                owner = _address_owner(spec, loc)
                if owner is None:
                    continue
                ip = ipaddress.ip_interface(out).ip
                if ip in owners:
                    other, other_loc = owners[ip]
                    if (other, owner) not in reported_dups:
                        reported_dups.add((other, owner))
                        line = doc.line(other_loc)
                        self.add(
                            doc,
                            loc,
                            f"address {ip} (seed {seed}) is given to both {other} and {owner}",
                            f"give {owner} another host number; {other} is on line {line}",
                        )
                else:
                    owners[ip] = (owner, loc)
            for i, v in enumerate(spec.vantage):
                loc = ("vantage", i, "gateway")
                if v.gateway is None or loc in failed or ("vantage", i, "address") in failed:
                    continue
                net = ipaddress.ip_interface(render(v.address, params)).network
                gw = ipaddress.ip_address(render(v.gateway, params))
                if gw not in net:
                    failed.add(loc)
                    self.add(
                        doc,
                        loc,
                        f"vantage '{v.name}' has gateway {gw} (seed {seed}) outside its network {net}",
                        "use an address of the same subnet, e.g. {{ p.lan | host(1) }}",
                    )

    def template_line(self, doc: _Doc, loc: Loc, lineno: int | None) -> int | None:
        node = doc.node(loc)
        if lineno and isinstance(node, ScalarNode) and node.style in ("|", ">"):
            return node.start_mark.line + 1 + lineno
        return doc.line(loc)

    # ---- lab against its topology

    def check_against_topology(self, doc: _Doc, spec: LabSpec, topo: TopologySpec) -> None:
        nodes = [n.name for n in topo.nodes]
        wired = _wired_ifaces(topo)
        devices = [n.name for n in topo.nodes if n.platform is not None]
        if devices:  # network devices are configured through their CLI: config sets, not playbooks
            for loc, owner, ref in [(("solution",), "the solution", spec.solution),
                                    *((("variants", i), f"variant '{v.id}'", v) for i, v in enumerate(spec.variants)),
                                    *((("cheats", i), f"cheat '{v.id}'", v) for i, v in enumerate(spec.cheats))]:
                if getattr(ref, "config", None) is None:  # solution, variant and cheat all have it
                    self.add(doc, loc, f"{owner} has no config set, but topology '{topo.id}' has network devices "
                             f"({', '.join(devices)})",
                             "add 'config: configs/NAME.cfg' with a [node] section per device")
        for node, ifaces in spec.addressing.items():
            if node not in nodes:
                self.add(
                    doc,
                    ("addressing", node),
                    f"addressing names node '{node}', which topology '{topo.id}' does not have",
                    _choices_hint(node, nodes, "nodes"),
                )
                continue
            for iface in ifaces:
                if iface not in wired.get(node, []):
                    have = wired.get(node, [])
                    self.add(
                        doc,
                        ("addressing", node, iface),
                        f"addressing gives {node}:{iface} an address but no link or segment of "
                        f"topology '{topo.id}' connects that interface",
                        f"{node} has {', '.join(have)}" if have else f"{node} has no connected interface",
                    )
        for node in spec.routes:
            if node not in nodes:
                self.add(
                    doc,
                    ("routes", node),
                    f"routes names node '{node}', which topology '{topo.id}' does not have",
                    _choices_hint(node, nodes, "nodes"),
                )
        segments = [s.name for s in topo.segments]
        for i, v in enumerate(spec.vantage):
            if v.segment not in segments:
                self.add(
                    doc,
                    ("vantage", i, "segment"),
                    f"vantage '{v.name}' is on unknown segment '{v.segment}'",
                    _choices_hint(v.segment, segments, "segments"),
                )


# --------------------------------------------------------------------------- instantiate


def instantiate(lab: LoadedLab, name: str, seed: int, candidate: str | None) -> InstancePlan:
    """Render the lab for one seed into the plan a provider builds."""
    if not is_name(name):
        raise UserError(
            f"instance name '{name}' is not valid; use lowercase letters, digits and dashes, "
            "starting with a letter, at most 31 characters"
        )
    spec, topo = lab.spec, lab.topology
    params = generate_params(spec, seed)

    def r(loc: Loc, text: str) -> str:
        try:
            return render(text, params)
        except RenderError as e:
            raise LabDefinitionError(
                [Issue(str(lab.lab_file), None, f"{_loc_text(loc)}: {e.message}", e.hint)]
            ) from None

    ends: dict[str, dict[str, IfacePlan]] = {n.name: {} for n in topo.nodes}
    for seg in topo.segments:
        for ep in seg.members:
            node, _, iface = ep.partition(":")
            ends[node][iface] = IfacePlan(name=iface, segment=seg.name)
    for link in topo.links:
        a, b = link.endpoints
        for mine, peer in ((a, b), (b, a)):
            node, _, iface = mine.partition(":")
            ends[node][iface] = IfacePlan(name=iface, link=link.name, peer=peer)

    nodes: list[NodePlan] = []
    for n in topo.nodes:
        addressing = spec.addressing.get(n.name, {})
        interfaces = []
        for iface in sorted(ends[n.name], key=_natural):
            plan = ends[n.name][iface]
            if iface in addressing:
                plan.addresses = [r(("addressing", n.name, iface), addressing[iface])]
            interfaces.append(plan)
        routes = [
            RoutePlan(
                to=r(("routes", n.name, i, "to"), rt.to),
                via=r(("routes", n.name, i, "via"), rt.via),
            )
            for i, rt in enumerate(spec.routes.get(n.name, []))
        ]
        nodes.append(
            NodePlan(
                name=n.name,
                role=n.role,
                services=list(n.services),
                packages=list(n.packages),
                volumes=[VolumePlan(path=v.path, size=v.size) for v in n.volumes],
                interfaces=interfaces,
                routes=routes,
                platform=n.platform,
                container=n.container,
            )
        )
    vantage = [
        VantagePlan(
            name=v.name,
            segment=v.segment,
            address=r(("vantage", i, "address"), v.address),
            gateway=r(("vantage", i, "gateway"), v.gateway) if v.gateway is not None else None,
        )
        for i, v in enumerate(spec.vantage)
    ]
    return InstancePlan(
        name=name,
        lab_id=spec.id,
        lab_dir=str(lab.dir),
        topology_id=topo.id,
        seed=seed,
        params=params,
        secret_params=[p.name for p in spec.parameters if p.secret],
        nodes=nodes,
        segments={s.name: list(s.members) for s in topo.segments},
        links={ln.name: (ln.endpoints[0], ln.endpoints[1]) for ln in topo.links},
        vantage=vantage,
        candidate=candidate,
    )


@dataclass(frozen=True)
class CapabilityGap:
    """A check of a lab whose grader needs a capability the provider does not offer."""

    check: str
    grader: str
    capability: str

    def need(self) -> str:
        """The capability as the user reads it: its description (English) and its name."""
        desc = DESCRIPTIONS.get(self.capability, (self.capability, self.capability))[1]
        return f"{desc} ({self.capability})"


def capability_gaps(lab: LoadedLab | LabSpec, needs_of: Callable[[str], Iterable[str]],
                    offered: Iterable[str]) -> list[CapabilityGap]:
    """Every (check, capability) of ``lab`` that ``offered`` lacks, in check order; ``needs_of``
    gives a grader's needs from its name (``getattr(grader, "needs", frozenset())``)."""
    spec = lab.spec if isinstance(lab, LoadedLab) else lab
    have = set(offered)
    return [CapabilityGap(c.id, c.grader, cap)
            for c in spec.checks for cap in sorted(set(needs_of(c.grader)) - have)]


@dataclass(frozen=True)
class GraderNeeds:
    """What a grader declares of the provider. ``needs``: capabilities its check cannot do
    without (a provider lacking one is refused). ``wants``: capabilities it uses when the
    provider offers them and honestly does without otherwise, each with what then goes
    unchecked, (fr, en); without one, the check records a "not observed" evidence and its
    message says what was not checked. Only supporting evidence may be wanted: the decisive
    evidence is the grader's own (its packets, its wires), and a node's own answer may only
    take points away, never give them. One exception, said in its check's ``doc``: where the
    answer can only hold a nonce the grader sent and saw cross its own wire to that node
    (supervision's syslog read through the log server's exec, without ``node_fs``)."""

    needs: frozenset[str] = frozenset()
    wants: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, grader: object) -> GraderNeeds:
        """A grader's declarations (``needs``, ``wants``; both optional class attributes)."""
        needs = frozenset(getattr(grader, "needs", frozenset()) or ())
        wants = dict(getattr(grader, "wants", None) or {})
        return cls(needs, wants)


@dataclass(frozen=True)
class CapabilityShortfall(CapabilityGap):
    """A check that runs without a capability it wants: ``unchecked`` (fr, en) is what it
    then does not check."""

    unchecked: tuple[str, str]


def capability_shortfalls(lab: LoadedLab | LabSpec, of: Callable[[str], GraderNeeds],
                          offered: Iterable[str]) -> list[CapabilityShortfall]:
    """Every (check, wanted capability) of ``lab`` that ``offered`` lacks, in check order
    (``of`` gives a grader's :class:`GraderNeeds` from its name)."""
    spec = lab.spec if isinstance(lab, LoadedLab) else lab
    have = set(offered)
    out = []
    for c in spec.checks:
        wants = of(c.grader).wants
        out += [CapabilityShortfall(c.id, c.grader, cap, (wants[cap][0], wants[cap][1]))
                for cap in sorted(set(wants) - have)]
    return out


def capability_warning(lab_id: str, provider: str, shortfalls: Sequence[CapabilityShortfall]) -> str | None:
    """One line saying which checks of lab ``lab_id`` run on ``provider`` without a capability
    they want, and what they then do not check; None when nothing is missing."""
    if not shortfalls:
        return None
    parts = [f"check {s.check!r} runs without {s.need()}: not checked: {s.unchecked[1]}" for s in shortfalls]
    return f"lab {lab_id} on {provider}: " + "; ".join(parts) + "."


def capability_problem(lab_id: str, provider: str, gaps: Sequence[CapabilityGap]) -> str | None:
    """One sentence saying what ``provider`` lacks for lab ``lab_id``, for which checks, and
    what to do; None when nothing is missing."""
    if not gaps:
        return None
    by_cap: dict[str, list[CapabilityGap]] = {}
    for g in gaps:
        by_cap.setdefault(g.capability, []).append(g)
    parts = []
    for mine in by_cap.values():
        checks = list(dict.fromkeys(g.check for g in mine))
        parts.append(f"{mine[0].need()}, needed by check{'s' if len(checks) > 1 else ''} "
                     f"{', '.join(repr(c) for c in checks)}")
    n_checks = len({g.check for g in gaps})
    return (f"lab {lab_id} cannot be graded on provider {provider}, which does not offer {'; nor '.join(parts)}; "
            f"bring it up on a provider that offers {'it' if len(by_cap) == 1 else 'them'} ('labkit validate "
            f"{lab_id} --provider NAME' checks one), or take {'that check' if n_checks == 1 else 'those checks'} "
            "out of the lab.")


# Capabilities a provider may offer on some nodes and not others (Proxmox runs no command in
# a container node); a check that names a node in its arguments uses them on that node.
NODE_CAPABILITIES = frozenset({"node_exec", "node_fs", "node_kernel"})


@dataclass(frozen=True)
class NodeCapabilityGap(CapabilityGap):
    """A check whose grader needs or wants a node capability on ``node`` (named in its
    arguments), which the provider offers but not on that node, for the reason ``why``."""

    node: str = ""
    why: str = ""


def names_in(value: Any) -> set[str]:
    """Every dict key and whole string value inside ``value``, at any depth (where a check's
    arguments name nodes)."""
    if isinstance(value, dict):
        return {str(k) for k in value} | {x for v in value.values() for x in names_in(v)}
    if isinstance(value, list):
        return {x for v in value for x in names_in(v)}
    return {value} if isinstance(value, str) else set()


def node_capability_gaps(lab: LoadedLab, of: Callable[[str], GraderNeeds],
                         limits: Callable[[Any], tuple[frozenset[str], str] | None]) -> list[NodeCapabilityGap]:
    """Every (check, node, capability) where a check whose grader needs or wants a node
    capability (``NODE_CAPABILITIES``) names a topology node in its arguments, and ``limits``
    (the provider's ``node_limits``: the capabilities it does not offer on that node, and why)
    withholds it there. A want counts like a need here: the grader would use it on a node
    that cannot serve it."""
    nodes = {n.name: n for n in lab.topology.nodes}
    out: list[NodeCapabilityGap] = []
    for c in lab.spec.checks:
        decl = of(c.grader)
        uses = (set(decl.needs) | set(decl.wants)) & NODE_CAPABILITIES
        if not uses:
            continue
        for name in sorted(names_in(c.args) & set(nodes)):
            lim = limits(nodes[name])
            if lim is None:
                continue
            withheld, why = lim
            out += [NodeCapabilityGap(c.id, c.grader, cap, name, why) for cap in sorted(uses & withheld)]
    return out


def node_capability_problem(lab_id: str, provider: str, gaps: Sequence[NodeCapabilityGap]) -> str | None:
    """One sentence for the first gap: the check, the node, what it needs there, why the
    provider cannot, and what to do (the provider's ``why`` says it); None when none."""
    if not gaps:
        return None
    g = gaps[0]
    more = f" (and {len(gaps) - 1} more like it)" if len(gaps) > 1 else ""
    return (f"check {g.check!r} of lab {lab_id} needs {g.need()} on node {g.node}, which provider {provider} "
            f"cannot offer there{more}: {g.why}.")


def render_value(value: Any, params: dict[str, Any]) -> Any:
    """Render every string inside ``value`` (dict keys included) as a template."""
    if isinstance(value, str):
        return render(value, params)
    if isinstance(value, dict):
        return {render_value(k, params): render_value(v, params) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render_value(v, params) for v in value]
    return value


def rendered_checks(lab: LoadedLab | LabSpec, params: dict[str, Any]) -> list[CheckSpec]:
    """The lab's checks with their args rendered for these parameters."""
    spec = lab.spec if isinstance(lab, LoadedLab) else lab
    return [c.model_copy(update={"args": render_value(c.args, params)}) for c in spec.checks]


def render_brief(lab: LoadedLab | LabSpec, params: dict[str, Any], lang: str) -> str:
    """The candidate's brief in ``lang`` ("fr" or "en") with the parameters filled in."""
    spec = lab.spec if isinstance(lab, LoadedLab) else lab
    return render(spec.brief.get(lang), params)


# --------------------------------------------------------------------------- helpers


def _templates(spec: LabSpec) -> Iterator[tuple[Loc, str]]:
    for node, ifaces in spec.addressing.items():
        for iface, text in ifaces.items():
            yield ("addressing", node, iface), text
    for node, routes in spec.routes.items():
        for i, rt in enumerate(routes):
            yield ("routes", node, i, "to"), rt.to
            yield ("routes", node, i, "via"), rt.via
    for i, v in enumerate(spec.vantage):
        yield ("vantage", i, "address"), v.address
        if v.gateway is not None:
            yield ("vantage", i, "gateway"), v.gateway
    yield ("brief", "fr"), spec.brief.fr
    yield ("brief", "en"), spec.brief.en
    for i, c in enumerate(spec.checks):
        yield from _strings(("checks", i, "args"), c.args)


def _strings(loc: Loc, value: Any) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and ("{{" in k or "{%" in k):
                yield loc + (k,), k
            yield from _strings(loc + (str(k),), v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(loc + (i,), v)


def _rendered_problem(loc: Loc, out: str) -> tuple[str, str] | None:
    """What is wrong with a rendered address, route or gateway, if anything."""
    section, last = loc[0], loc[-1]
    if section == "addressing" or (section == "vantage" and last == "address"):
        try:
            iface = ipaddress.ip_interface(out)
        except ValueError:
            return f"renders to '{out}', which is not an address", "use the cidr filter, e.g. {{ p.lan | cidr(1) }}"
        if "/" not in out:
            return f"renders to '{out}', which has no prefix length", "use the cidr filter, e.g. {{ p.lan | cidr(1) }}"
        net = iface.network
        if net.num_addresses > 2 and iface.ip in (net.network_address, net.broadcast_address):
            return (
                f"renders to '{out}', which is not a host address of {net}",
                "use the cidr filter with a host number, e.g. {{ p.lan | cidr(1) }}",
            )
    elif section == "routes" and last == "to":
        if out != "default":
            try:
                ipaddress.ip_network(out, strict=True)
            except ValueError:
                return (f"renders to '{out}', which is neither 'default' nor a network",
                        "write a subnet, e.g. {{ p.lan }}")
    elif (section == "routes" and last == "via") or (section == "vantage" and last == "gateway"):
        try:
            ipaddress.ip_address(out)
        except ValueError:
            return f"renders to '{out}', which is not an address", "use the host filter, e.g. {{ p.lan | host(1) }}"
    return None


def _address_owner(spec: LabSpec, loc: Loc) -> str | None:
    if loc[0] == "addressing":
        return f"{loc[1]}:{loc[2]}"
    if loc[0] == "vantage" and loc[-1] == "address":
        index = loc[1]
        assert isinstance(index, int)
        return f"vantage point {spec.vantage[index].name}"
    return None


def _endpoints(topo: TopologySpec) -> Iterator[tuple[Loc, str, str]]:
    for i, seg in enumerate(topo.segments):
        for j, ep in enumerate(seg.members):
            yield ("segments", i, "members", j), f"segment '{seg.name}'", ep
    for i, link in enumerate(topo.links):
        for j, ep in enumerate(link.endpoints):
            yield ("links", i, "endpoints", j), f"link '{link.name}'", ep


def _wired_ifaces(topo: TopologySpec) -> dict[str, list[str]]:
    wired: dict[str, list[str]] = {}
    for _, _, ep in _endpoints(topo):
        node, _, iface = ep.partition(":")
        if not (is_name(node) and is_iface(iface)):
            continue
        wired.setdefault(node, [])
        if iface not in wired[node]:
            wired[node].append(iface)
    return {k: sorted(v, key=_natural) for k, v in wired.items()}


_YAML_TOKENS = {
    "<scalar>": "a value",
    "<block end>": "the end of an indented block",
    "<block mapping start>": "an indented mapping",
    "<block sequence start>": "an indented list",
    "<stream end>": "the end of the file",
    "<document start>": "'---'",
    "'?'": "a mapping key",
}


def _yaml_words(text: str) -> str:
    """A PyYAML problem on one line, its token names in words."""
    text = " ".join(str(text).split())
    for token, words in _YAML_TOKENS.items():
        if token[0] == "<":
            text = text.replace(f"'{token}'", words)
        text = text.replace(token, words)
    return re.sub(r"'?<([a-z ]+)>'?", r"\1", text)


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _choices_hint(name: str, known: list[str], what: str, *, show: bool = True) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    parts = []
    if close:
        parts.append(f"did you mean '{close[0]}'?")
    if show:
        parts.append(f"known {what}: {', '.join(known)}" if known else f"there are no {what}")
    elif not close:
        parts.append(f"use an id from the {what} catalog")
    return " ".join(parts)


def _pattern_hint(pattern: str) -> str:
    if pattern == NAME_RE:
        return "names are lowercase letters, digits and dashes, start with a letter and have at most 31 characters"
    if pattern == PARAM_RE:
        return ("parameter names are lowercase letters, digits and underscores, start with a letter "
                "and have at most 31 characters")
    if pattern == IFACE_RE:
        return "interface names are lowercase letters and digits, start with a letter and have at most 12 characters"
    return f"the value must match the pattern {pattern}"


def _loc_text(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += ("." if out else "") + str(part)
    return out


def _short(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"'{text}'"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _model_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the model found at ``loc`` under ``model`` (empty if none)."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if isinstance(part, str) and part in tp.model_fields:
                tp = tp.model_fields[part].annotation
                continue
            return []
        origin = get_origin(tp)
        args = get_args(tp)
        if origin in (list, tuple) and isinstance(part, int) and args:
            tp = args[0]
        elif origin is dict and len(args) == 2:
            tp = args[1]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is not None and getattr(origin, "__name__", "") == "Annotated":
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(tp) if a is not type(None)]
            if len(options) != 1:
                return tp
            tp = options[0]
        else:
            return tp


def _node_at(root: Node | None, loc: Loc) -> Node | None:
    node = root
    for part in loc:
        found = _child(node, part)
        if found is None:
            return None
        node = found[1]
    return node


def _line_of(root: Node | None, loc: Loc) -> int | None:
    """Line of the deepest node ``loc`` reaches: a mapping key's line, or a list item's."""
    if root is None:
        return None
    node: Node = root
    line = root.start_mark.line + 1
    for part in loc:
        if part == "[key]":
            break
        found = _child(node, part)
        if found is None:
            break
        anchor, node = found
        line = anchor.start_mark.line + 1
    return line


def _child(node: Node | None, part: str | int) -> tuple[Node, Node] | None:
    """(node giving the line, child node) for one step of a location."""
    if isinstance(node, MappingNode):
        hit = None
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == str(part):
                hit = (k, v)  # the last one wins, as in YAML
        return hit
    if isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return item, item
    return None


def _duplicate_keys(root: Node | None) -> Iterator[ScalarNode]:
    """Keys written twice in one mapping; each node is visited once (aliases share nodes)."""
    seen_nodes: set[int] = set()
    stack: list[Node] = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            seen: set[str] = set()
            for k, _ in node.value:
                if isinstance(k, ScalarNode) and k.value != "<<":
                    if k.value in seen:
                        yield k
                    seen.add(k.value)
            stack.extend(v for _, v in reversed(node.value))
        elif isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _yaml_shape(root: Node | None, what: str) -> tuple[int, str, str] | None:
    """(line, message, hint) when a composed YAML tree is refused: it refers to itself, nests
    too deeply, uses too many aliases or expands (aliases repeat their anchor's whole value)
    to too many values. Iterative and memoised: linear in the size of the text."""
    if root is None:
        return None
    size: dict[int, int] = {}  # expanded number of values under a finished node
    on_path: set[int] = set()
    aliases = 0
    # (node, depth, children not yet visited or None before the first visit)
    stack: list[tuple[Node, int, list[Node] | None]] = [(root, 1, None)]
    while stack:
        node, depth, todo = stack.pop()
        if todo is None:
            if depth > MAX_YAML_DEPTH:
                return (
                    node.start_mark.line + 1,
                    f"the {what} file nests lists or mappings more than {MAX_YAML_DEPTH} levels deep",
                    "flatten the structure; a lab file needs a few levels only",
                )
            on_path.add(id(node))
            todo = _children(node)
        if todo:
            child = todo.pop()
            stack.append((node, depth, todo))
            if id(child) in on_path:
                return (
                    child.start_mark.line + 1,
                    f"the {what} file has a value that contains itself through a YAML alias",
                    "replace the alias '*name' inside its own anchor '&name' with the data it should hold",
                )
            if id(child) in size:
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    return (
                        child.start_mark.line + 1,
                        f"the {what} file uses more than {MAX_YAML_ALIASES} YAML aliases",
                        "write the repeated parts out instead of '*name' aliases",
                    )
                continue
            stack.append((child, depth + 1, None))
            continue
        on_path.discard(id(node))
        total = 1 + sum(size[id(c)] for c in _children(node))
        if total > MAX_YAML_VALUES:
            return (
                node.start_mark.line + 1,
                f"the {what} file expands to more than {MAX_YAML_VALUES} values once its YAML aliases "
                "are repeated",
                "write the repeated parts out, or use fewer '*name' aliases of large anchors",
            )
        size[id(node)] = total
    return None
