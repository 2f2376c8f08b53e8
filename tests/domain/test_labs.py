"""Loading, validating and instantiating labs; golden texts of validation errors.

Golden files: ``tests/golden/validate/<case>.txt`` hold the exact message of the
LabDefinitionError raised for ``tests/fixtures/broken/<case>/lab.yaml``; run with
``UPDATE_GOLDEN=1`` to rewrite them after a deliberate change.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from labkit.domain.labs import (
    LoadedLab,
    find_lab,
    instantiate,
    list_labs,
    load_lab,
    render_brief,
    rendered_checks,
)
from labkit.domain.params import generate_params
from labkit.domain.schema import (
    LAB_SCHEMA,
    TOPOLOGY_SCHEMA,
    export_schemas,
    project_schema_files,
)
from labkit.errors import LabDefinitionError, UnknownLabError, UserError
from labkit.models.instance import InstancePlan
from labkit.models.lab import LabSpec
from labkit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
BROKEN = FIXTURES / "broken"
GOLDEN = ROOT / "tests" / "golden" / "validate"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

KNOWN_GRADERS = {"demo.ping", "demo.login"}
KNOWN_CRITERIA = {"demo-1", "demo-2"}
CASES = sorted(d.name for d in BROKEN.iterdir() if d.is_dir())

ROUTING = "routing-multisite"
ROUTERS = ["r-hq", "r-br1", "r-br2"]


def settings_for(project: Path, tmp: Path | None = None) -> Settings:
    base = tmp or Path("/nonexistent-labkit-test")
    return Settings(home=base / "home", run_dir=base / "run", project=project)


FIXTURE_SETTINGS = settings_for(FIXTURES)


def load_demo() -> LoadedLab:
    return load_lab(
        find_lab("demo", FIXTURE_SETTINGS),
        FIXTURE_SETTINGS,
        known_graders=KNOWN_GRADERS,
        known_criteria=KNOWN_CRITERIA,
    )


def referenced_playbooks(lab_file: Path) -> list[str]:
    data = yaml.safe_load(lab_file.read_text())
    return [data["solution"]["playbook"]] + [v["playbook"] for v in data.get("variants", []) + data.get("cheats", [])]


@pytest.fixture(scope="module")
def routing_settings(tmp_path_factory) -> Settings:
    """The project's real labs and topologies, with its playbooks; missing playbooks are stubbed
    here so this lab's own content is tested on its own (test_routing_playbooks_exist covers them)."""
    tmp = tmp_path_factory.mktemp("routing-project")
    (tmp / "labs").symlink_to(ROOT / "labs")
    (tmp / "topologies").symlink_to(ROOT / "topologies")
    for rel in referenced_playbooks(ROOT / "labs" / ROUTING / "lab.yaml"):
        dest = tmp / "playbooks" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        real = ROOT / "playbooks" / rel
        dest.write_text(real.read_text() if real.is_file() else "- hosts: all\n  tasks: []\n")
    return settings_for(tmp)


@pytest.fixture(scope="module")
def routing(routing_settings) -> LoadedLab:
    return load_lab(find_lab(ROUTING, routing_settings), routing_settings)


# --------------------------------------------------------------------------- the routing lab


def test_routing_lab_loads_cleanly(routing):
    assert routing.spec.id == ROUTING
    assert routing.topology.id == "three-sites"
    assert routing.lab_file == (ROOT / "labs" / ROUTING / "lab.yaml").resolve()
    assert routing.topology_file == (ROOT / "topologies" / "three-sites.yaml").resolve()
    assert routing.dir == routing.lab_file.parent
    assert sum(c.points for c in routing.spec.checks) == 100


def test_routing_playbooks_exist():
    missing = [rel for rel in referenced_playbooks(ROOT / "labs" / ROUTING / "lab.yaml")
               if not (ROOT / "playbooks" / rel).is_file()]
    assert missing == []


def _all_addresses(plan: InstancePlan) -> dict[str, ipaddress.IPv4Interface]:
    out = {}
    for node in plan.nodes:
        for iface in node.interfaces:
            for a in iface.addresses:
                out[f"{node.name}:{iface.name}"] = ipaddress.ip_interface(a)
    for v in plan.vantage:
        out[f"vantage:{v.name}"] = ipaddress.ip_interface(v.address)
    return out


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_routing_instance_shape(routing, seed):
    plan = instantiate(routing, "t1", seed, "alice")
    assert [n.name for n in plan.nodes] == ["r-hq", "r-br1", "r-br2", "pc-hq", "pc-br1", "pc-br2"]
    assert [v.name for v in plan.vantage] == ["v-hq", "v-br1", "v-br2"]
    assert plan.lab_id == ROUTING and plan.topology_id == "three-sites"
    assert plan.seed == seed and plan.candidate == "alice" and plan.name == "t1"
    assert plan.lab_dir == str(routing.dir)
    assert plan.params == generate_params(routing.spec, seed)
    assert plan.secret_params == ["snmp_auth_pass", "snmp_priv_pass"]
    assert plan.segments == {
        "lan-hq": ["r-hq:eth0", "pc-hq:eth0"],
        "lan-br1": ["r-br1:eth0", "pc-br1:eth0"],
        "lan-br2": ["r-br2:eth0", "pc-br2:eth0"],
    }
    assert plan.links == {
        "wan-a": ("r-hq:eth1", "r-br1:eth1"),
        "wan-b": ("r-hq:eth2", "r-br2:eth1"),
        "wan-c": ("r-br1:eth2", "r-br2:eth2"),
    }
    for r in ROUTERS:
        assert [i.name for i in plan.node(r).interfaces] == ["eth0", "eth1", "eth2"]
    hq = plan.node("r-hq")
    assert hq.services == ["ssh", "frr", "snmpd"] and hq.role == "router"
    assert hq.iface("eth0").segment == "lan-hq" and hq.iface("eth0").link is None
    assert hq.iface("eth1").link == "wan-a" and hq.iface("eth1").peer == "r-br1:eth1"
    assert plan.node("r-br2").iface("eth2").peer == "r-br1:eth2"


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 99])
def test_routing_addresses_distinct_and_inside_their_subnets(routing, seed):
    plan = instantiate(routing, "t1", seed, None)
    p = plan.params
    addrs = _all_addresses(plan)
    assert len(addrs) == 6 + 6 + 3  # router ifaces + workstations + vantage
    assert len({a.ip for a in addrs.values()}) == len(addrs)
    names = ("lan_hq", "lan_br1", "lan_br2", "wan_a", "wan_b", "wan_c")
    subnets = {name: ipaddress.ip_network(p[name]) for name in names}
    expected = {
        "r-hq:eth0": "lan_hq", "r-hq:eth1": "wan_a", "r-hq:eth2": "wan_b",
        "r-br1:eth0": "lan_br1", "r-br1:eth1": "wan_a", "r-br1:eth2": "wan_c",
        "r-br2:eth0": "lan_br2", "r-br2:eth1": "wan_b", "r-br2:eth2": "wan_c",
        "pc-hq:eth0": "lan_hq", "pc-br1:eth0": "lan_br1", "pc-br2:eth0": "lan_br2",
        "vantage:v-hq": "lan_hq", "vantage:v-br1": "lan_br1", "vantage:v-br2": "lan_br2",
    }
    for where, param in expected.items():
        net = subnets[param]
        a = addrs[where]
        assert a.network == net, where
        assert a.ip not in (net.network_address, net.broadcast_address), where
    # the ends of every cable and every LAN share a subnet
    for a, b in plan.links.values():
        assert addrs[a].network == addrs[b].network
    for members in plan.segments.values():
        assert len({addrs[m].network for m in members}) == 1
    for v in plan.vantage:
        assert ipaddress.ip_address(v.gateway) in subnets[expected[f"vantage:{v.name}"]]
        assert v.gateway == plan.node(f"r-{v.name[2:]}").first_address(v.segment)
    assert plan.node("pc-hq").routes[0].model_dump() == {"to": "default", "via": str(subnets["lan_hq"][1])}


def test_routing_seeds_give_different_instances(routing):
    a, b = instantiate(routing, "a", 0, None), instantiate(routing, "a", 1, None)
    assert a.params != b.params
    assert _all_addresses(a) != _all_addresses(b)
    assert instantiate(routing, "a", 0, None) == a  # and the same seed the same one


def test_routing_checks_and_brief_render(routing):
    plan = instantiate(routing, "t1", 3, None)
    checks = rendered_checks(routing, plan.params)
    assert [c.id for c in checks] == [c.id for c in routing.spec.checks]
    assert "{{" not in repr([c.args for c in checks])
    reach = next(c for c in checks if c.id == "lan-reachability")
    assert reach.args["hosts"] == {n: plan.node(n).first_address() for n in ("pc-hq", "pc-br1", "pc-br2")}
    snmp = next(c for c in checks if c.id == "snmpv3")
    assert snmp.args["user"] == plan.params["snmp_user"]
    assert snmp.args["auth"] == {"protocol": "SHA", "key": plan.params["snmp_auth_pass"]}
    assert next(c for c in checks if c.id == "wan-resilience").args["within"] == 10
    for lang in ("fr", "en"):
        brief = render_brief(routing, plan.params, lang)
        assert "{{" not in brief
        assert plan.params["lan_hq"] in brief and plan.params["snmp_priv_pass"] in brief
    assert "Plan d'adressage" in render_brief(routing, plan.params, "fr")
    assert "Addressing plan" in render_brief(routing, plan.params, "en")


# --------------------------------------------------------------------------- the demo fixture lab


def test_demo_lab_loads_with_known_graders_and_criteria():
    lab = load_demo()
    assert lab.spec.id == "demo" and lab.topology.id == "two-sites"


def test_rendered_checks_render_nested_values_and_keys():
    lab = load_demo()
    params = generate_params(lab.spec, 5)
    ping, login = rendered_checks(lab, params)
    lana = ipaddress.ip_network(params["lana"])
    assert ping.args["to"]["pc1"] == str(lana[10])
    assert ping.args["from"] == ["v1", "v2"] and ping.args["count"] == 3
    assert login.args[str(lana.network_address)] == str(lana.netmask)
    assert lab.spec.checks[0].args["to"]["pc1"].startswith("{{")  # the spec itself is untouched


def test_instantiate_rejects_bad_instance_names():
    with pytest.raises(UserError, match="instance name 'Bad.Name' is not valid"):
        instantiate(load_demo(), "Bad.Name", 0, None)


def test_rendered_checks_accept_a_lab_spec():
    lab = load_demo()
    params = generate_params(lab.spec, 0)
    assert rendered_checks(lab.spec, params) == rendered_checks(lab, params)


# --------------------------------------------------------------------------- finding and listing


def test_find_lab_by_id_folder_and_file():
    expected = FIXTURES / "labs" / "demo" / "lab.yaml"
    assert find_lab("demo", FIXTURE_SETTINGS) == expected
    assert find_lab(str(FIXTURES / "labs" / "demo"), FIXTURE_SETTINGS) == expected
    assert find_lab(expected, FIXTURE_SETTINGS) == expected


def test_find_lab_unknown_lists_available_ids():
    with pytest.raises(UnknownLabError) as e:
        find_lab("dmeo", FIXTURE_SETTINGS)
    assert str(e.value) == (
        "there is no lab 'dmeo'; did you mean 'demo'? available labs: demo "
        "(give a lab id or the path to a lab.yaml)"
    )


def test_list_labs_reports_valid_and_broken_labs(tmp_path):
    shutil.copytree(FIXTURES / "topologies", tmp_path / "topologies")
    shutil.copytree(FIXTURES / "playbooks", tmp_path / "playbooks")
    shutil.copytree(FIXTURES / "labs", tmp_path / "labs")
    broken = tmp_path / "labs" / "zero-points"
    broken.mkdir()
    shutil.copy(BROKEN / "zero-points" / "lab.yaml", broken / "lab.yaml")
    rows = list_labs(settings_for(tmp_path, tmp_path))
    assert [(r.id, r.ok) for r in rows] == [("demo", True), ("zero-points", False)]
    demo = rows[0]
    assert (demo.checks, demo.max_points, demo.variants, demo.topology) == (2, 15, 1, "two-sites")
    assert demo.title is not None and demo.title.en == "Two-site demo"
    assert "add up to 0" in rows[1].problems[0].message


def test_lab_id_must_match_its_folder_under_labs(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "p", ignore=shutil.ignore_patterns("broken"))
    (tmp_path / "p" / "labs" / "demo").rename(tmp_path / "p" / "labs" / "other")
    s = settings_for(tmp_path / "p", tmp_path)
    with pytest.raises(LabDefinitionError) as e:
        load_lab(find_lab("other", s), s)
    [issue] = e.value.issues
    assert (issue.file, issue.line) == ("labs/other/lab.yaml", 2)
    assert issue.message == "lab id 'demo' differs from its folder name 'other'"


def test_missing_lab_file_is_an_issue(tmp_path):
    with pytest.raises(LabDefinitionError) as e:
        load_lab(tmp_path / "nowhere" / "lab.yaml", FIXTURE_SETTINGS)
    [issue] = e.value.issues
    assert issue.message == "the lab file does not exist" and issue.line is None


# --------------------------------------------------------------------------- golden error texts


def validation_text(case: str) -> str:
    with pytest.raises(LabDefinitionError) as e:
        load_lab(
            BROKEN / case / "lab.yaml",
            FIXTURE_SETTINGS,
            known_graders=KNOWN_GRADERS,
            known_criteria=KNOWN_CRITERIA,
        )
    return str(e.value) + "\n"


@pytest.mark.parametrize("case", CASES)
def test_validation_golden(case):
    text = validation_text(case)
    golden = GOLDEN / f"{case}.txt"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"no golden file for {case}; run with UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


TRACEBACK_LIKE = re.compile(
    r"Traceback|File \"|line \d+, in |\b[A-Z]\w*(Error|Exception)\b|<[\w.]+ object at|errors\.pydantic\.dev|"
    r"\[type=|input_value=|jinja2|pydantic|yaml\.",
)


@pytest.mark.parametrize("case", CASES)
def test_validation_messages_are_clean_sentences(case):
    with pytest.raises(LabDefinitionError) as e:
        load_lab(BROKEN / case / "lab.yaml", FIXTURE_SETTINGS,
                 known_graders=KNOWN_GRADERS, known_criteria=KNOWN_CRITERIA)
    assert e.value.issues
    for issue in e.value.issues:
        for part in (issue.message, issue.hint):
            assert part and "\n" not in part
            assert not TRACEBACK_LIKE.search(part), part
        assert not issue.message.endswith(".")
        assert issue.line is not None and issue.line >= 1
        assert issue.file.startswith(("broken/", "topologies/"))


# Each problem kind load_lab reports, the fixture showing it, and a piece of its message.
PROBLEM_KINDS = {
    "YAML syntax error": ("yaml-syntax", "YAML syntax error while parsing a flow mapping (started on line 23)"),
    "duplicate YAML key": ("yaml-duplicate-key", "key 'topology' appears twice"),
    "file not a mapping": ("not-a-mapping", "must be a mapping of keys"),
    "unknown key": ("schema-unknown-key", "checks[0].pointz: unknown key (hint: did you mean 'points'?"),
    "comma in flow mapping": ("schema-unknown-key", "a comma inside a {…} mapping"),
    "missing field": ("schema-missing-field", "checks[1].grader: required key is missing"),
    "wrong type": ("schema-wrong-type", "checks[1].points: Input should be a valid integer"),
    "wrong literal": ("schema-wrong-type", "parameters[5].kind: Input should be 'subnet'"),
    "bad name": ("schema-wrong-type", "vantage[0].name: 'V1' is not a valid name"),
    "topology file missing": ("topology-missing", "topology 'three-site' has no file topologies/three-site.yaml"),
    "topology schema": ("topology-schema", "topologies/bad-schema.yaml:4: nodes[0].role"),
    "topology id vs file": ("topology-wiring", "topology id 'wiring-broken' differs from its file name"),
    "segment names unknown node": ("topology-wiring", "segment 'lan-a' names unknown node 'pc9'"),
    "link names unknown node": ("topology-wiring", "link 'wan' names unknown node 'r3'"),
    "interface used twice": ("topology-wiring", "interface r1:eth0 is used by both segment 'lan-a' and link 'lan-b'"),
    "duplicate node": ("topology-wiring", "node 'r1' is declared twice"),
    "addressing unknown node": ("unknown-node", "addressing names node 'r3'"),
    "routes unknown node": ("unknown-node", "routes names node 'pc-2'"),
    "addressing unconnected interface": ("iface-unconnected", "addressing gives pc1:eth1 an address but no link"),
    "duplicate address": ("duplicate-address", "is given to both r1:eth0 and pc1:eth0"),
    "unknown parameter": ("template-errors", "the template uses unknown parameter 'p.lanc'"),
    "template syntax": ("template-errors", "lab.yaml:11: brief.en: the template has a syntax error"),
    "filter out of range": ("template-errors", "host 300 is outside"),
    "address without host": ("template-errors", "which is not a host address"),
    "vantage unknown segment": ("vantage-unknown-segment", "vantage 'v2' is on unknown segment 'lan-c'"),
    "unknown grader": ("unknown-grader", "uses unknown grader 'demo.logon'"),
    "criterion not in catalog": ("unknown-criterion", "cites criterion 'tssr-9.9', which is not in the catalog"),
    "variant fails unknown check": ("variant-unknown-check", "expects unknown check 'pong' to fail"),
    "duplicate parameter": ("duplicate-ids", "parameter 'lana' is declared twice"),
    "duplicate check": ("duplicate-ids", "check 'ping' is declared twice"),
    "duplicate variant": ("duplicate-ids", "variant or cheat 'no-route' is declared twice"),
    "duplicate vantage": ("duplicate-ids", "vantage point 'v1' is declared twice"),
    "solution playbook missing": ("playbook-missing",
                                  "the solution playbook playbooks/demo/solution.yml does not exist"),
    "playbook outside playbooks/": ("playbook-missing", "must be a path inside playbooks/"),
    "points sum to 0": ("zero-points", "the checks' points add up to 0"),
    "incomplete parameter": ("parameter-specs", "needs both 'within' and 'prefix'"),
    "subnet pool exhausted": ("parameter-pool", "finds no free /23 left"),
}


@pytest.mark.parametrize("kind", sorted(PROBLEM_KINDS))
def test_every_problem_kind_has_a_golden_case(kind):
    case, fragment = PROBLEM_KINDS[kind]
    assert fragment in (GOLDEN / f"{case}.txt").read_text(encoding="utf-8")


def test_every_broken_case_has_a_golden_file_and_no_stale_ones():
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == CASES


def test_all_problems_are_reported_together():
    text = validation_text("topology-wiring")
    assert text.startswith("the lab definition has 9 errors;")
    assert "broken/topology-wiring/lab.yaml:" in text and "topologies/broken-wiring.yaml:" in text


# --------------------------------------------------------------------------- schemas


def test_committed_schemas_are_up_to_date():
    for path, text in project_schema_files(ROOT).items():
        assert path.is_file(), f"{path} is missing; run python -m labkit.domain.schema"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale; run python -m labkit.domain.schema"


def test_export_schemas_writes_both(tmp_path):
    written = export_schemas(tmp_path / "out")
    assert [p.name for p in written] == [LAB_SCHEMA, TOPOLOGY_SCHEMA]
    assert (tmp_path / "out" / LAB_SCHEMA).read_text() == (ROOT / "labs" / LAB_SCHEMA).read_text()
    assert (tmp_path / "out" / TOPOLOGY_SCHEMA).read_text() == (ROOT / "topologies" / TOPOLOGY_SCHEMA).read_text()
    assert '"additionalProperties": false' in (tmp_path / "out" / LAB_SCHEMA).read_text()
    assert LabSpec.model_json_schema()["title"] == "LabSpec"


def test_lab_and_topology_files_point_to_their_schema():
    assert (ROOT / "labs" / ROUTING / "lab.yaml").read_text().startswith(
        "# yaml-language-server: $schema=../lab.schema.json\n"
    )
    assert (ROOT / "topologies" / "three-sites.yaml").read_text().startswith(
        "# yaml-language-server: $schema=topology.schema.json\n"
    )


def test_routing_lab_cites_known_graders_and_criteria(routing_settings):
    from labkit.domain.criteria import load_catalog
    from labkit.domain.grading import GraderRegistry

    lab = load_lab(
        find_lab(ROUTING, routing_settings),
        routing_settings,
        known_graders=set(GraderRegistry.load().names()),
        known_criteria={c.id for c in load_catalog().criteria},
    )
    assert {c.grader for c in lab.spec.checks} <= GraderRegistry.load().names()


def test_capability_gaps_name_check_and_capability_in_check_order() -> None:
    from labkit.domain.labs import capability_gaps, capability_problem

    lab = load_lab(FIXTURES / "labs" / "demo" / "lab.yaml", FIXTURE_SETTINGS, known_graders=KNOWN_GRADERS,
                   known_criteria=KNOWN_CRITERIA)
    needs = {"demo.ping": frozenset({"vantage", "grader_echo"}), "demo.login": frozenset({"node_kernel", "node_fs"})}
    everything = {"vantage", "grader_echo", "node_fs", "node_kernel"}
    assert capability_gaps(lab, needs.__getitem__, everything) == []
    assert capability_problem("demo", "p", []) is None
    gaps = capability_gaps(lab, needs.__getitem__, {"vantage"})
    assert [(g.check, g.grader, g.capability) for g in gaps] == [
        ("ping", "demo.ping", "grader_echo"), ("login", "demo.login", "node_fs"),
        ("login", "demo.login", "node_kernel")]
    msg = capability_problem("demo", "pve", gaps) or ""
    assert msg == ("lab demo cannot be graded on provider pve, which does not offer echo between two grader "
                   "vantage points (grader_echo), needed by check 'ping'; nor node files read from outside the node "
                   "(node_fs), needed by check 'login'; nor node kernel state read from outside the node "
                   "(node_kernel), needed by check 'login'; bring it up on a provider that offers them ('labkit "
                   "validate demo --provider NAME' checks one), or take those checks out of the lab.")
    many = capability_gaps(lab, lambda g: frozenset({"node_fs"}), {"vantage"})
    assert capability_problem("demo", "pve", many) == (
        "lab demo cannot be graded on provider pve, which does not offer node files read from outside the node "
        "(node_fs), needed by checks 'ping', 'login'; bring it up on a provider that offers it ('labkit validate "
        "demo --provider NAME' checks one), or take those checks out of the lab.")
    # a grader that declares nothing needs nothing (older plugins)
    assert capability_gaps(lab.spec, lambda g: frozenset(), set()) == []


def test_wanted_capabilities_warn_and_never_refuse() -> None:
    from labkit.domain.labs import GraderNeeds, capability_gaps, capability_shortfalls, capability_warning

    lab = load_lab(FIXTURES / "labs" / "demo" / "lab.yaml", FIXTURE_SETTINGS, known_graders=KNOWN_GRADERS,
                   known_criteria=KNOWN_CRITERIA)

    class Ping:
        needs = frozenset({"vantage"})
        wants = {"node_kernel": ("les routes du nœud", "the node's routes"),
                 "capture": ("les trames", "the frames")}

    class Login:  # an older plugin: declares nothing
        pass

    graders = {"demo.ping": GraderNeeds.of(Ping()), "demo.login": GraderNeeds.of(Login())}
    assert graders["demo.login"] == GraderNeeds(frozenset(), {})
    assert capability_gaps(lab, lambda g: graders[g].needs, {"vantage"}) == []  # wants never refuse
    everything = {"vantage", "node_kernel", "capture"}
    assert capability_shortfalls(lab, graders.__getitem__, everything) == []
    assert capability_warning("demo", "pve", []) is None
    short = capability_shortfalls(lab, graders.__getitem__, {"vantage", "capture"})
    assert [(s.check, s.grader, s.capability, s.unchecked) for s in short] == [
        ("ping", "demo.ping", "node_kernel", ("les routes du nœud", "the node's routes"))]
    assert capability_warning("demo", "pve", short) == (
        "lab demo on pve: check 'ping' runs without node kernel state read from outside the node (node_kernel): "
        "not checked: the node's routes.")
    two = capability_shortfalls(lab, graders.__getitem__, {"vantage"})
    assert [s.capability for s in two] == ["capture", "node_kernel"]
    assert (capability_warning("demo", "pve", two) or "").count("check 'ping' runs without") == 2
