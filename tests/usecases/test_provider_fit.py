"""A lab is refused, before anything is made, on a provider that lacks what its checks need or
cannot grade with the vantage mode asked; the vantage mode is stored in the instance; which
provider holds an instance's leftovers is asked of the providers (no root: fake providers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labkit.adapters.providers import base
from labkit.errors import UserError
from labkit.models.capabilities import ALL_CAPABILITIES
from labkit.usecases import lifecycle
from labkit.usecases.lifecycle import (
    Context,
    check_provider_fits,
    down,
    instance_exists,
    leftovers_by_provider,
    load_lab_checked,
    up,
)
from tests.usecases.capability_fixture import FakeProvider, LesserProvider, install, install_fake, make_project


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    install(monkeypatch)
    install_fake(monkeypatch)
    return Context(make_project(tmp_path))


def test_netns_offers_everything_and_grades_in_process_by_default(ctx: Context) -> None:
    lab = load_lab_checked(ctx, "captest")
    assert check_provider_fits(ctx, lab, "netns") == "inprocess"
    assert check_provider_fits(ctx, lab, "netns", "agent") == "agent"


def test_a_missing_capability_is_one_sentence_naming_lab_check_capability_provider(ctx: Context) -> None:
    lab = load_lab_checked(ctx, "captest")
    with pytest.raises(UserError) as info:
        check_provider_fits(ctx, lab, "lesser")
    msg = str(info.value)
    assert msg.startswith("lab captest cannot be graded on provider lesser, which does not offer node files read "
                          "from outside the node (node_fs), needed by check 'login';")  # DESCRIPTIONS, English
    assert "'ping'" not in msg  # vantage and grader_echo are offered
    assert "labkit validate captest --provider NAME" in msg and msg.count("\n") == 0


def test_a_vantage_mode_the_provider_cannot_do_is_refused(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LesserProvider, "capabilities", ALL_CAPABILITIES)
    lab = load_lab_checked(ctx, "captest")
    assert check_provider_fits(ctx, lab, "lesser") == "agent"  # its only mode is its default
    with pytest.raises(UserError, match=r"provider lesser cannot grade with vantage 'inprocess' \(it grades "
                                        r"with: agent\); use --vantage agent"):
        check_provider_fits(ctx, lab, "lesser", "inprocess")


def test_a_provider_whose_code_does_not_load_is_one_clear_error(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.PROVIDERS, "ghost", "tests.usecases.no_such_module:Ghost")
    lab = load_lab_checked(ctx, "captest")
    with pytest.raises(UserError, match="provider ghost cannot be used here: its code does not load"):
        check_provider_fits(ctx, lab, "ghost")
    with pytest.raises(UserError, match="unknown provider 'nope'"):
        check_provider_fits(ctx, lab, "nope")


def test_a_lab_with_network_devices_is_refused_by_a_provider_that_cannot_drive_them(tmp_path: Path) -> None:
    from labkit.settings import load_settings

    real = Context(load_settings())  # the shipped labs; nothing is made
    lab = load_lab_checked(real, "routing-multisite-devices")
    assert check_provider_fits(real, lab, "netns") == "inprocess"
    with pytest.raises(UserError) as err:
        check_provider_fits(real, lab, "proxmox")
    msg = str(err.value)
    assert "routing-multisite-devices" in msg and "frr" in msg and "proxmox" in msg and msg.count(".") >= 1
    # the same provider takes the Linux-only lab
    assert check_provider_fits(real, load_lab_checked(real, "routing-multisite"), "proxmox") == "agent"


def test_up_refuses_before_anything_is_made(ctx: Context) -> None:
    with pytest.raises(UserError, match="needed by check 'login'"):
        up(ctx, "captest", instance="capt1", seed=1, provider="lesser")
    assert LesserProvider.made == []  # not even preflight
    assert ctx.store.names() == [] and not ctx.store.dir("capt1").exists()
    assert not lifecycle.inventory_path(ctx, "capt1").exists()


def test_up_stores_the_vantage_and_takes_the_providers_host_vars(ctx: Context) -> None:
    state = up(ctx, "captest", instance="capt2", seed=3, provider="fake", vantage="agent")
    assert state.vantage == "agent" and ctx.store.load("capt2").vantage == "agent"
    assert "create capt2 agent" in FakeProvider.calls  # the provider sees the mode at create
    inv = yaml.safe_load(Path(state.inventory or "").read_text())
    r1 = inv["all"]["children"]["routers"]["hosts"]["r1"]
    assert r1["ansible_connection"] == "ssh" and r1["ansible_host"] == "192.0.2.2"
    assert not any(k in r1 for k in ("labkit_netns", "labkit_mnt"))
    assert up(ctx, "captest", instance="capt3", seed=3, provider="fake").vantage == "inprocess"  # default
    assert down(ctx, "capt2") and down(ctx, "capt3")
    assert "destroy capt2 with state" in FakeProvider.calls and FakeProvider.left == {}


def test_leftovers_are_asked_of_the_providers(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.PROVIDERS, "ghost", "tests.usecases.no_such_module:Ghost")  # not installed: skipped
    assert leftovers_by_provider(ctx, "capt4") == {}
    assert not instance_exists(ctx, "capt4")
    with pytest.raises(UserError, match="there is no instance named 'capt4'"):
        down(ctx, "capt4")
    FakeProvider.left["capt4"] = ["vm capt4", "vnet capt4"]  # a crash: no state, things left
    assert leftovers_by_provider(ctx, "capt4") == {"fake": ["vm capt4", "vnet capt4"]}
    assert instance_exists(ctx, "capt4") and instance_exists(ctx, "capt4", "fake")
    assert not instance_exists(ctx, "capt4", "netns")
    assert down(ctx, "capt4") == ["vm capt4", "vnet capt4"]
    assert "destroy capt4 without state" in FakeProvider.calls and not instance_exists(ctx, "capt4")


def test_up_refuses_a_name_whose_leftovers_are_still_there(ctx: Context) -> None:
    FakeProvider.left["capt5"] = ["vm capt5"]
    with pytest.raises(UserError, match="already exists"):
        up(ctx, "captest", instance="capt5", seed=1, provider="fake")
    assert not any(c.startswith("create") for c in FakeProvider.calls)


def test_the_real_labs_on_netns_and_on_a_provider_without_node_fs_and_node_kernel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every grader of every lab declares what it needs; netns offers it all; a provider that
    cannot read a node from outside (as Proxmox) refuses exactly the labs that need it, and
    warns, one line per lab, for the labs whose checks only want it (routing-multisite)."""
    from labkit.domain.grading import GraderRegistry
    from labkit.domain.labs import available_labs
    from labkit.settings import Settings
    from tests.conftest import PROJECT

    install(monkeypatch)
    monkeypatch.setattr(LesserProvider, "capabilities", ALL_CAPABILITIES - {"node_fs", "node_kernel"})
    ctx = Context(Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT))
    registry = GraderRegistry.load()
    outside = {"node_fs", "node_kernel"}
    expected, refused, warned_of = set(), {}, set()
    warned: dict[str, list[str]] = {}
    labs = available_labs(ctx.settings)
    assert len(labs) >= 5
    for lab_id in labs:
        lab = load_lab_checked(ctx, lab_id)
        for check in lab.spec.checks:
            needs = getattr(registry.get(check.grader), "needs", None)
            wants = getattr(registry.get(check.grader), "wants", {})
            assert isinstance(needs, frozenset) and needs <= ALL_CAPABILITIES, (lab_id, check.id, needs)
            assert set(wants) <= ALL_CAPABILITIES and not set(wants) & needs, (lab_id, check.id, wants)
            assert all(isinstance(w, tuple) and len(w) == 2 and all(w) for w in wants.values())
            if needs & outside:
                expected.add(lab_id)
            elif set(wants) & outside:
                warned_of.add(lab_id)
        on_netns: list[str] = []
        assert check_provider_fits(ctx, lab, "netns", warn=on_netns.append) == "inprocess"
        assert on_netns == []  # netns offers everything: no warning
        lines: list[str] = []
        try:
            assert check_provider_fits(ctx, lab, "lesser", warn=lines.append) == "agent"
        except UserError as exc:
            refused[lab_id] = str(exc)
        if lines:
            warned[lab_id] = lines
    assert set(refused) == expected and expected and expected != set(labs)
    assert "routing-multisite" not in refused and set(warned) == warned_of - expected and "routing-multisite" in warned
    (line,) = warned["routing-multisite"]
    assert line == ("lab routing-multisite on lesser: check 'ospf-lan-routes' runs without node kernel state read "
                    "from outside the node (node_kernel): not checked: the routers' own routing tables (a static "
                    "route to another site's LAN).")
    for lab_id, msg in refused.items():
        assert msg.startswith(f"lab {lab_id} cannot be graded on provider lesser, which does not offer node ")
        assert "(node_fs)" in msg or "(node_kernel)" in msg


def test_down_without_state_goes_on_when_one_provider_cannot_answer(ctx: Context, monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    from labkit.errors import ProviderError

    def unreachable(self: LesserProvider, name: str) -> list[str]:
        raise ProviderError("the Proxmox API at https://192.0.2.1:8006 did not answer")

    monkeypatch.setattr(LesserProvider, "leftovers", unreachable)
    FakeProvider.left["capt6"] = ["vm capt6"]
    with caplog.at_level("WARNING", logger="labkit.usecases.lifecycle"):
        assert down(ctx, "capt6") == ["vm capt6"]  # something was here: removed, and one warning
    assert FakeProvider.left == {}  # the fake provider's part was removed all the same
    assert [r.getMessage() for r in caplog.records] == [
        "warning: instance capt6 removed from fake, but lesser could not be asked what is left of it (the Proxmox "
        "API at https://192.0.2.1:8006 did not answer); if it had anything there, run 'labkit down capt6' again "
        "once it answers."]
    with pytest.raises(ProviderError, match="did not answer"):
        leftovers_by_provider(ctx, "capt6")  # without errors=, a provider's failure is raised
    with pytest.raises(ProviderError, match=r"could not ask every provider what is left of 'capt7' \(lesser: the "
                                            r"Proxmox API .* did not answer\); run 'labkit down capt7' again"):
        down(ctx, "capt7")  # nothing found here, one provider silent: not "no such instance", an error


def test_validate_prints_one_warning_line_per_lab_for_what_a_provider_will_not_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from labkit.interfaces.cli import cli
    from tests.conftest import PROJECT

    install(monkeypatch)
    monkeypatch.setattr(LesserProvider, "capabilities", ALL_CAPABILITIES - {"node_fs", "node_kernel"})
    env = {"LABKIT_HOME": str(tmp_path / "home"), "LABKIT_RUN_DIR": str(tmp_path / "run"),
           "LABKIT_PROJECT": str(PROJECT)}
    res = CliRunner().invoke(cli, ["validate", "routing-multisite", "ad-gpo", "--provider", "lesser"], env=env)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].endswith("routing-multisite, 6 checks, 6 variants, 4 cheats; graded on lesser (agent)")
    assert lines[1] == ("! lab routing-multisite on lesser: check 'ospf-lan-routes' runs without node kernel state "
                        "read from outside the node (node_kernel): not checked: the routers' own routing tables (a "
                        "static route to another site's LAN).")
    assert len(lines) == 3 and "ad-gpo" in lines[2] and not any(ln.startswith("!") for ln in lines[2:])
    # on netns nothing is missing: no warning
    res = CliRunner().invoke(cli, ["validate", "routing-multisite", "--provider", "netns"], env=env)
    assert res.exit_code == 0 and "!" not in res.output and "graded on netns (inprocess)" in res.output


def test_supervision_is_graded_on_proxmox_and_still_refused_where_the_wiring_is_unknown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """supervision-snmp on Proxmox: the alerts find mon's port from the provider's wiring
    (port_map) and syslog reads the collector through its own exec, so ``validate`` accepts it
    with one warning line saying what syslog then does not check. A provider without port_map
    (GNS3 today) still refuses it, naming the alert checks."""
    from click.testing import CliRunner

    from labkit.interfaces.cli import cli
    from tests.conftest import PROJECT

    env = {"LABKIT_HOME": str(tmp_path / "home"), "LABKIT_RUN_DIR": str(tmp_path / "run"),
           "LABKIT_PROJECT": str(PROJECT)}
    res = CliRunner().invoke(cli, ["validate", "supervision-snmp", "--provider", "proxmox"], env=env)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].endswith("supervision-snmp, 10 checks, 5 variants, 5 cheats; graded on proxmox (agent)")
    assert lines[1:] == [
        "! lab supervision-snmp on proxmox: check 'syslog-central' runs without node files read from outside the "
        "node (node_fs): not checked: that the line is filed in the collector's files as read from outside the node "
        "(the collector's own system shows its files; it can only show the random user name if the line reached it)."]
    install(monkeypatch)
    monkeypatch.setattr(LesserProvider, "capabilities", ALL_CAPABILITIES - {"node_fs", "node_kernel", "port_map"})
    res = CliRunner().invoke(cli, ["validate", "supervision-snmp", "--provider", "lesser"], env=env)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "segment bridge ports known from the grader's own wiring (port_map)" in res.output
    assert "'alert-device-down'" in res.output and "'syslog-central'" not in res.output
