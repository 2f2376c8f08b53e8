"""Bad input in lab files and names: sandboxed templates, bounded YAML, whole-text name
patterns, and an HTML report that never lets evidence text become markup (issue 8)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from labkit.adapters.storage.runs import is_safe_name
from labkit.adapters.storage.state import check_instance_name
from labkit.domain.labs import (
    MAX_FILE_BYTES,
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    find_lab,
    instantiate,
    load_lab,
)
from labkit.domain.params import RenderError, render
from labkit.errors import LabDefinitionError, UserError
from labkit.models.common import IfaceName, Name, ParamName, Strict, is_iface, is_name
from labkit.models.topology import VolumeSpec
from labkit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
DEMO = FIXTURES / "labs" / "demo" / "lab.yaml"
KNOWN_GRADERS = {"demo.ping", "demo.login"}
KNOWN_CRITERIA = {"demo-1", "demo-2"}
SETTINGS = Settings(home=Path("/nonexistent-labkit-test/home"), run_dir=Path("/nonexistent-labkit-test/run"),
                    project=FIXTURES)
PARAMS = {"lan": "10.1.2.0/24", "user": "op-abc"}
ESCAPED = Path("/tmp/labkit-sandbox-escaped")


def load(path: Path) -> Any:
    return load_lab(path, SETTINGS, known_graders=KNOWN_GRADERS, known_criteria=KNOWN_CRITERIA)


def lab_copy(tmp_path: Path, text: str) -> Path:
    """A project in tmp_path with the fixture topologies and playbooks and this lab text."""
    for sub in ("topologies", "playbooks"):
        shutil.copytree(FIXTURES / sub, tmp_path / sub)
    lab = tmp_path / "labs" / "demo" / "lab.yaml"
    lab.parent.mkdir(parents=True)
    lab.write_bytes(text.encode("utf-8"))
    return lab


def tmp_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=tmp_path)


def issues_of(lab: Path, settings: Settings) -> list[Any]:
    with pytest.raises(LabDefinitionError) as e:
        load_lab(lab, settings, known_graders=KNOWN_GRADERS, known_criteria=KNOWN_CRITERIA)
    return list(e.value.issues)


# --------------------------------------------------------------------------- 1. sandbox

ATTRIBUTE_WALKS = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "__class__"),
    ("{{ cycler.__init__.__globals__ }}", "__init__"),
    ("{{ cycler.__init__.__globals__.os.system('touch /tmp/labkit-sandbox-escaped') }}", "__init__"),
    ("{{ lipsum.__globals__['os'].popen('touch /tmp/labkit-sandbox-escaped').read() }}", "__globals__"),
    ("{{ joiner.__init__.__globals__ }}", "__init__"),
    ("{{ namespace.__init__ }}", "__init__"),
    ("{{ self.__init__.__globals__ }}", "__init__"),
    ("{{ p.lan.__class__.__base__ }}", "__class__"),
    ("{{ p._values }}", "_values"),
    ("{{ '{0.__class__.__mro__}'.format(p) }}", "__class__"),
    ("{{ ({}).update(a=1) }}", "update"),
]


@pytest.mark.parametrize("text,attr", ATTRIBUTE_WALKS)
def test_attribute_walks_are_refused_in_one_sentence(text: str, attr: str) -> None:
    with pytest.raises(RenderError) as e:
        render(text, PARAMS)
    assert e.value.message == f"the template reaches for '{attr}', which lab templates may not use"
    assert "p.NAME" in e.value.hint and "host, cidr" in e.value.hint
    assert not ESCAPED.exists()


@pytest.mark.parametrize("text", ["{% include '/etc/passwd' %}", "{% import '/etc/shadow' as x %}",
                                  "{% extends '/etc/passwd' %}"])
def test_templates_cannot_read_other_files(text: str) -> None:
    with pytest.raises(RenderError) as e:
        render(text, PARAMS)
    assert e.value.message == ("the template includes, imports or extends another file, which lab templates "
                               "may not do")


def test_the_custom_filters_still_work_in_the_sandbox() -> None:
    text = ("{{ p.lan | cidr(1) }} {{ p.lan | host(-1) }} {{ p.lan | prefixlen }} {{ p.lan | network }} "
            "{{ p.lan | netmask }} {{ p.user | upper }} {% for i in range(2) %}{{ i }}{% endfor %} {{ 2 ** 8 }}")
    assert render(text, PARAMS) == "10.1.2.1/24 10.1.2.254 24 10.1.2.0 255.255.255.0 OP-ABC 01 256"


@pytest.mark.parametrize("text,words", [
    ("{{ 'x' * 1000000000 }}", "'*' would build 1000000000 characters or items"),
    ("{{ [1] * 100000000 }}", "'*' would build 100000000 characters or items"),
    ("{{ 10 ** 100000 }}", "'**' would build a number too large to use"),
    ("{{ range(1000000000) | list }}", "a range of more than 100000 numbers"),
])
def test_templates_cannot_build_huge_values(text: str, words: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(RenderError) as e:
        render(text, PARAMS)
    assert words in e.value.message
    assert time.monotonic() - t0 < 2


def test_slow_templates_are_stopped() -> None:
    t0 = time.monotonic()
    with pytest.raises(RenderError) as e:
        render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", PARAMS)
    assert e.value.message == "the template takes more than 2 s to render"
    assert time.monotonic() - t0 < 5
    assert render("{{ p.lan | cidr(1) }}", PARAMS) == "10.1.2.1/24"  # the timer is gone afterwards
    time.sleep(2.2)  # and no stray SIGALRM arrives later


def test_huge_rendered_text_is_stopped() -> None:
    t0 = time.monotonic()
    with pytest.raises(RenderError) as e:
        render("{% for i in range(100000) %}{{ 'x' * 1000000 }}{% endfor %}", PARAMS)
    assert e.value.message == "the template renders to more than 1048576 characters"
    assert time.monotonic() - t0 < 5


def test_sandbox_fixture_reports_every_escape_with_file_and_line() -> None:
    issues = issues_of(FIXTURES / "broken" / "template-sandbox" / "lab.yaml", SETTINGS)
    refused = {(i.line, i.message.split(":")[0]) for i in issues if "lab templates may not use" in i.message}
    assert refused == {
        (12, "brief.en"),  # the line of the walk inside the block scalar, not the 'en:' line
        (25, "addressing.pc1.eth0"),
        (31, "routes.pc2[0].via"),
        (44, "checks[0].args.shell"),
        (46, "checks[0].args.fmt"),
    }
    assert not ESCAPED.exists()


def test_instantiate_refuses_a_walk_too(tmp_path: Path) -> None:
    """A template that validation never saw (written after loading) still runs sandboxed."""
    lab = load(DEMO)
    spec = lab.spec.model_copy(update={"vantage": [
        lab.spec.vantage[0].model_copy(update={"address": "{{ cycler.__init__.__globals__ }}"})]})
    bad = type(lab)(spec=spec, topology=lab.topology, lab_file=lab.lab_file, topology_file=lab.topology_file,
                    dir=lab.dir)
    with pytest.raises(LabDefinitionError) as e:
        instantiate(bad, "sbx-inst", 1, None)
    assert "lab templates may not use" in str(e.value)


# --------------------------------------------------------------------------- 2. YAML bounds


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for c in "bcdefghijklmnop"[: levels - 1]:
        lines.append(f"{c}: &{c} [" + ",".join([f"*{prev}"] * width) + "]")
        prev = c
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    text = _bomb()
    assert len(text) < 700
    lab = lab_copy(tmp_path, text)
    t0 = time.monotonic()
    [issue] = issues_of(lab, tmp_settings(tmp_path))
    assert time.monotonic() - t0 < 2
    assert issue.message == (f"the lab file expands to more than {MAX_YAML_VALUES} values once its YAML "
                             "aliases are repeated")
    assert issue.line == 6  # 'f:', the first anchor whose expansion passes the bound (9**6 values)


def test_merge_key_bomb_is_refused_fast(tmp_path: Path) -> None:
    """'<<' merges copy their anchor's pairs: doubling them at each level is a bomb too."""
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for i in range(1, 26):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: {i}}}")
    lab = lab_copy(tmp_path, "\n".join(lines) + "\n")
    t0 = time.monotonic()
    [issue] = issues_of(lab, tmp_settings(tmp_path))
    assert time.monotonic() - t0 < 2
    assert "values once its YAML aliases are repeated" in issue.message


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    text = "x: &x 1\nl: [" + ", ".join(["*x"] * (MAX_YAML_ALIASES + 1)) + "]\n"
    [issue] = issues_of(lab_copy(tmp_path, text), tmp_settings(tmp_path))
    assert issue.message == f"the lab file uses more than {MAX_YAML_ALIASES} YAML aliases"
    assert issue.hint == "write the repeated parts out instead of '*name' aliases"


@pytest.mark.parametrize("text,line", [
    ("id: demo\nchecks: &loop [*loop]\n", 2),
    ("id: demo\nargs: &m {self: *m}\n", 2),
    ("id: demo\nargs: &m {x: [1, {y: *m}]}\n", 2),
    ("&top {id: demo, again: *top}\n", 1),
])
def test_recursive_yaml_is_refused(tmp_path: Path, text: str, line: int) -> None:
    [issue] = issues_of(lab_copy(tmp_path, text), tmp_settings(tmp_path))
    assert issue.message == "the lab file has a value that contains itself through a YAML alias"
    assert issue.line == line


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 5000])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    text = "id: " + "[" * depth + "]" * depth + "\n"
    [issue] = issues_of(lab_copy(tmp_path, text), tmp_settings(tmp_path))
    assert issue.message == f"the lab file nests lists or mappings more than {MAX_YAML_DEPTH} levels deep"


def test_oversized_lab_file_is_refused_before_parsing(tmp_path: Path) -> None:
    text = DEMO.read_text() + "# " + "x" * MAX_FILE_BYTES + "\n"
    t0 = time.monotonic()
    [issue] = issues_of(lab_copy(tmp_path, text), tmp_settings(tmp_path))
    assert time.monotonic() - t0 < 2
    assert issue.message == "the lab file is larger than 1 MiB, which no lab needs"
    assert issue.line is None and "split out or remove" in issue.hint


def test_oversized_topology_file_is_refused(tmp_path: Path) -> None:
    lab = lab_copy(tmp_path, DEMO.read_text())
    topo = tmp_path / "topologies" / "two-sites.yaml"
    topo.write_text(topo.read_text() + "#" * (MAX_FILE_BYTES + 1) + "\n")
    issues = issues_of(lab, tmp_settings(tmp_path))
    assert [i.message for i in issues] == ["the topology file is larger than 1 MiB, which no topology needs"]
    assert issues[0].file == "topologies/two-sites.yaml"


def test_real_anchors_and_merges_still_load(tmp_path: Path) -> None:
    """Aliases within the bounds are fine (ad-gpo uses '<<: *users_args')."""
    text = DEMO.read_text().replace(
        '      to: {pc1: "{{ p.lana | host(10) }}"', '      to: &to {pc1: "{{ p.lana | host(10) }}"'
    ).replace('    args: {user: "{{ p.user }}",', '    args: {again: [*to, *to], user: "{{ p.user }}",')
    assert "*to" in text and "&to" in text
    lab = load_lab(lab_copy(tmp_path, text), tmp_settings(tmp_path),
                   known_graders=KNOWN_GRADERS, known_criteria=KNOWN_CRITERIA)
    assert lab.spec.checks[1].args["again"] == [lab.spec.checks[0].args["to"]] * 2


def test_every_project_lab_is_within_the_bounds() -> None:
    """The bounds leave room: the project's own labs and topologies are far below them."""
    for path in [*ROOT.glob("labs/*/lab.yaml"), *ROOT.glob("topologies/*.yaml")]:
        assert path.stat().st_size < MAX_FILE_BYTES // 8, path


# --------------------------------------------------------------------------- 3. whole-text names


class _Names(Strict):
    name: Name
    param: ParamName = "p"
    iface: IfaceName = "eth0"


@pytest.mark.parametrize("bad", ["demo\n", "demo\r\n", "\ndemo", "demo\nx", "demo ", "Demo", "a" * 32])
def test_names_match_the_whole_text(bad: str) -> None:
    assert not is_name(bad)
    with pytest.raises(ValidationError):
        _Names(name=bad)
    with pytest.raises(UserError):
        check_instance_name(bad)


@pytest.mark.parametrize("field,bad", [("param", "lan\n"), ("iface", "eth0\n"), ("param", "lan_hq\n")])
def test_param_and_iface_names_match_the_whole_text(field: str, bad: str) -> None:
    with pytest.raises(ValidationError):
        _Names(name="ok", **{field: bad})
    assert not is_iface("eth0\n") and is_iface("eth0")


@pytest.mark.parametrize("kw", [{"path": "/srv/data\n", "size": "16m"}, {"path": "/srv/data", "size": "16m\n"}])
def test_volume_patterns_match_the_whole_text(kw: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        VolumeSpec(**kw)


def test_good_names_still_pass() -> None:
    assert is_name("demo") and is_name("r-hq") and is_name("a" * 31)
    assert _Names(name="demo", param="lan_hq", iface="eth0").name == "demo"
    assert check_instance_name("cand-07") == "cand-07"
    assert is_safe_name("dupont-20261128T034455Z-0a1b") and not is_safe_name("dupont\n")


def test_instantiate_refuses_an_instance_name_with_a_newline() -> None:
    with pytest.raises(UserError) as e:
        instantiate(load(DEMO), "demo\n", 1, None)
    assert "is not valid" in str(e.value)


def test_find_lab_does_not_take_a_name_with_a_newline_for_a_lab_id(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        find_lab("demo\n", SETTINGS)


def test_topology_endpoint_with_a_newline_is_refused(tmp_path: Path) -> None:
    lab = lab_copy(tmp_path, DEMO.read_text())
    topo = tmp_path / "topologies" / "two-sites.yaml"
    text = topo.read_text()
    assert "r1:eth1" in text
    topo.write_text(text.replace('"r1:eth1"', '"r1:eth1\\n"', 1))
    messages = [i.message for i in issues_of(lab, tmp_settings(tmp_path))]
    assert any(re.search(r"endpoint 'r1:eth1\n' is not NODE:IFACE", m) for m in messages), messages


# --------------------------------------------------------------------------- 4. HTML report

XSS = "<script>alert('pwned')</script>"
IMG = '<img src=x onerror="alert(1)">'


def test_html_report_escapes_candidate_text_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.adapters.storage.runs import RunWriter, open_run
    from labkit.domain.report import render_html, render_json
    from labkit.models.results import GradeSummary
    from tests.domain import test_report as tr

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    evidence = [
        tr._ev("snmp.sysname", "ospf-adjacency", "snmp", 1, target=f"r-hq {IMG}", action=f"get sysName {XSS}",
               raw=f"sysName = {XSS}", parsed={"sysName": XSS, XSS: IMG}, meta={"banner": IMG}),
        tr._ev("alert.payload", "wan-resilience", "tcp", 2, ok=False, error=f"alert {XSS} refused",
               raw=f'{{"alertname": "{XSS}"}}', parsed={"alerts": [{"name": XSS}]}),
        tr._ev("shared.banner", None, "tcp", 3, raw=IMG, action=XSS),
    ]
    checks = [c.model_copy(update={"message": tr.I18n(fr=f"sysName {XSS}", en=f"sysName {XSS}")})
              for c in tr.CHECKS]
    checks[1] = checks[1].model_copy(update={"evidence": ["snmp.sysname"]})
    checks[2] = checks[2].model_copy(update={"evidence": ["alert.payload"]})
    info = tr.make_info(candidate=f"Camille {XSS}", params={"banner": IMG, "lan_hq": "10.1.2.0/24"})
    summary = GradeSummary(run_id=tr.RUN_ID, lab_id=info.lab_id, instance=info.instance, candidate=info.candidate,
                           score=25, max_score=60, started_at=info.started_at, ended_at=info.ended_at,
                           checks=checks)
    runs = tmp_path / "runs"
    w = RunWriter(runs, tr.RUN_ID)
    for ev in evidence:
        w.add_evidence(ev)
    w.add_artifact("topology", tr.TOPOLOGY)
    w.add_artifact("addressing", [{"node": "r-hq", "iface": "eth0", "state": XSS, "addresses": [IMG]}])
    w.add_artifact("routes-r-hq", [{"dst": XSS, "gateway": IMG, "dev": "eth0", "protocol": "ospf", "metric": 1}])
    w.seal(info, summary, tr.CRITERIA, now=tr._t(43))
    run = open_run(runs, tr.RUN_ID)
    report = render_json(run, "en")
    assert XSS in str(report)  # the JSON keeps the text as it was: only the HTML escapes it
    for lang in ("fr", "en"):
        html = render_html(run, lang)
        lowered = html.lower()
        assert "<script" not in lowered and "<img" not in lowered and "onerror=\"" not in lowered
        assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
