"""Parameter generation and the template filters."""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

import pytest
import yaml

from labkit.domain.params import (
    PASSWORD_DIGITS,
    PASSWORD_LOWER,
    PASSWORD_UPPER,
    ParamError,
    RenderError,
    generate_params,
    render,
    template_env,
)
from labkit.models.lab import LabSpec, ParameterSpec

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
AMBIGUOUS = set("0O1lIo")


def demo_spec() -> LabSpec:
    return LabSpec.model_validate(yaml.safe_load((FIXTURES / "labs/demo/lab.yaml").read_text()))


def spec_with(*params: dict) -> LabSpec:
    data = yaml.safe_load((FIXTURES / "labs/demo/lab.yaml").read_text())
    data["parameters"] = list(params)
    return LabSpec.model_validate(data)


def test_same_seed_same_values():
    spec = demo_spec()
    assert generate_params(spec, 42) == generate_params(spec, 42)


def test_different_seeds_different_values():
    spec = demo_spec()
    seen = {tuple(sorted(generate_params(spec, seed).items())) for seed in range(20)}
    assert len(seen) == 20


def test_values_follow_their_spec():
    spec = demo_spec()
    for seed in range(50):
        p = generate_params(spec, seed)
        lana, lanb = ipaddress.ip_network(p["lana"]), ipaddress.ip_network(p["lanb"])
        wan = ipaddress.ip_network(p["wan"])
        assert lana.prefixlen == 24 and lana.subnet_of(ipaddress.ip_network("10.0.0.0/8"))
        assert wan.prefixlen == 30 and wan.subnet_of(ipaddress.ip_network("172.16.0.0/12"))
        assert not lana.overlaps(lanb)
        assert isinstance(p["lana"], str) and p["lana"] == str(lana)
        assert p["user"].startswith("op-") and len(p["user"]) == 3 + 8
        assert p["user"][3:].isalpha() and p["user"][3:].islower()
        assert p["colour"] in {"red", "green", "blue"}
        assert isinstance(p["port"], int) and 2000 <= p["port"] <= 2999


def test_passwords_have_every_class_and_no_ambiguous_character():
    spec = demo_spec()
    for seed in range(200):
        pw = generate_params(spec, seed)["secret"]
        assert len(pw) == 12
        assert pw.isalnum()
        assert not AMBIGUOUS & set(pw)
        assert set(pw) & set(PASSWORD_LOWER)
        assert set(pw) & set(PASSWORD_UPPER)
        assert set(pw) & set(PASSWORD_DIGITS)


def test_subnets_never_overlap_even_when_the_pool_is_tight():
    # eight /27 in a /24: every seed must find the one arrangement that fits
    spec = spec_with(*({"name": f"n{i}", "kind": "subnet", "within": "192.168.0.0/24", "prefix": 27} for i in range(8)))
    for seed in range(30):
        nets = [ipaddress.ip_network(v) for v in generate_params(spec, seed).values()]
        for a, b in itertools.combinations(nets, 2):
            assert not a.overlaps(b)


def test_subnets_of_mixed_sizes_in_one_pool_do_not_overlap():
    spec = spec_with(
        {"name": "big", "kind": "subnet", "within": "10.0.0.0/16", "prefix": 17},
        *({"name": f"s{i}", "kind": "subnet", "within": "10.0.0.0/16", "prefix": 24} for i in range(20)),
    )
    for seed in range(30):
        nets = [ipaddress.ip_network(v) for v in generate_params(spec, seed).values()]
        for a, b in itertools.combinations(nets, 2):
            assert not a.overlaps(b)


def test_exhausted_pool_is_a_param_error():
    spec = spec_with(
        {"name": "a", "kind": "subnet", "within": "10.0.0.0/24", "prefix": 25},
        {"name": "b", "kind": "subnet", "within": "10.0.0.0/24", "prefix": 25},
        {"name": "c", "kind": "subnet", "within": "10.0.0.0/24", "prefix": 25},
    )
    with pytest.raises(ParamError, match="no free /25 left in 10.0.0.0/24"):
        generate_params(spec, 0)


@pytest.mark.parametrize(
    "param, text",
    [
        ({"name": "x", "kind": "subnet", "within": "10.0.0.0/8"}, "needs both 'within' and 'prefix'"),
        ({"name": "x", "kind": "subnet", "within": "10.0.0.0/25", "prefix": 24}, "asks for /24 subnets"),
        ({"name": "x", "kind": "choice"}, "has no choices"),
        ({"name": "x", "kind": "int", "min": 3}, "needs 'min' and 'max'"),
    ],
)
def test_incomplete_parameters_are_param_errors(param, text):
    with pytest.raises(ParamError, match=text):
        generate_params(spec_with(param), 0)


def test_choice_and_int_are_drawn_from_their_range():
    spec = spec_with(
        {"name": "c", "kind": "choice", "choices": ["a", "b", "c"]},
        {"name": "i", "kind": "int", "min": 1, "max": 3},
    )
    values = [generate_params(spec, s) for s in range(100)]
    assert {v["c"] for v in values} == {"a", "b", "c"}
    assert {v["i"] for v in values} == {1, 2, 3}


def test_parameter_spec_length_is_the_random_part_of_a_word():
    spec = spec_with({"name": "w", "kind": "word", "length": 10})
    assert len(generate_params(spec, 1)["w"]) == 10
    assert ParameterSpec(name="w", kind="word").length == 16


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{{ '10.1.2.0/24' | host(1) }}", "10.1.2.1"),
        ("{{ '10.1.2.0/24' | host(254) }}", "10.1.2.254"),
        ("{{ '10.1.2.0/24' | host(-1) }}", "10.1.2.254"),
        ("{{ '10.1.2.0/24' | cidr(1) }}", "10.1.2.1/24"),
        ("{{ '10.1.2.7/24' | cidr(10) }}", "10.1.2.10/24"),
        ("{{ '172.16.0.4/30' | host(2) }}", "172.16.0.6"),
        ("{{ '10.0.0.0/31' | host(0) }}", "10.0.0.0"),
        ("{{ '10.1.2.0/24' | prefixlen }}", "24"),
        ("{{ '10.1.2.0/24' | network }}", "10.1.2.0"),
        ("{{ '10.1.2.9/24' | network }}", "10.1.2.0"),
        ("{{ '10.1.2.0/24' | netmask }}", "255.255.255.0"),
        ("{{ '172.16.0.4/30' | netmask }}", "255.255.255.252"),
        ("{{ 'fd00::/64' | host(1) }}", "fd00::1"),
    ],
)
def test_filters(template, expected):
    assert render(template, {}) == expected


@pytest.mark.parametrize("n", [0, 255, 300, -255])
def test_host_out_of_range_is_an_error(n):
    with pytest.raises(RenderError, match=r"host -?\d+ is outside 10.1.2.0/24, whose hosts are 1 to 254"):
        render("{{ '10.1.2.0/24' | host(" + str(n) + ") }}", {})


def test_filter_on_something_that_is_not_a_network():
    with pytest.raises(RenderError, match="'hello' is not an IP network"):
        render("{{ 'hello' | cidr(1) }}", {})


def test_templates_see_parameters_as_p():
    params = {"lan": "10.9.8.0/24", "user": "bob"}
    assert render("{{ p.lan | cidr(1) }} {{ p['user'] }}", params) == "10.9.8.1/24 bob"


def test_parameters_named_like_dict_methods_are_reachable():
    assert render("{{ p.items }}-{{ p.keys }}", {"items": "a", "keys": "b"}) == "a-b"


def test_unknown_parameter_says_which():
    with pytest.raises(RenderError) as e:
        render("{{ p.lna | cidr(1) }}", {"lan": "10.9.8.0/24"})
    assert e.value.message == "the template uses unknown parameter 'p.lna'"
    assert "did you mean 'p.lan'?" in e.value.hint


def test_unknown_variable_suggests_p():
    with pytest.raises(RenderError) as e:
        render("{{ lan }}", {"lan": "10.9.8.0/24"})
    assert e.value.message == "the template uses unknown variable 'lan'"
    assert "p.lan" in e.value.hint


def test_syntax_error_carries_the_template_line():
    with pytest.raises(RenderError) as e:
        render("line one\n{{ p.lan }", {"lan": "x"})
    assert e.value.message.startswith("the template has a syntax error")
    assert e.value.lineno == 2


def test_environment_is_strict_and_does_not_escape():
    env = template_env()
    assert env.from_string("{{ x }}").render(x="<a & b>") == "<a & b>"
    with pytest.raises(Exception, match="unknown variable 'y'"):
        env.from_string("{{ y }}").render()


def test_routing_lab_seeds_give_different_values():
    data = yaml.safe_load((ROOT / "labs" / "routing-multisite" / "lab.yaml").read_text())
    spec = LabSpec.model_validate(data)
    a, b = generate_params(spec, 0), generate_params(spec, 1)
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a)  # every single value differs for these two seeds
    nets = [ipaddress.ip_network(a[k]) for k in ("lan_hq", "lan_br1", "lan_br2", "wan_a", "wan_b", "wan_c")]
    for x, y in itertools.combinations(nets, 2):
        assert not x.overlaps(y)
