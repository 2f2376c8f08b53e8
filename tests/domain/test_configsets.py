"""Config sets: templates of CLI lines with one [node] section per device."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.domain.configsets import render_config_set, split_sections
from labkit.errors import UserError


def test_sections_rendered_with_the_params(tmp_path: Path) -> None:
    f = tmp_path / "set.cfg"
    f.write_text("! comment\n[r1]\nrouter ospf\n network {{ p.lan }} area 0\nexit\n\n[r2]\n"
                 "ip route {{ p.lan }} {{ p.lan | host(1) }}\n")
    assert render_config_set(f, {"lan": "10.9.8.0/24"}) == {
        "r1": ["router ospf", " network 10.9.8.0/24 area 0", "exit"],
        "r2": ["ip route 10.9.8.0/24 10.9.8.1"],
    }


def test_bad_config_sets_are_one_sentence_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"line 1: 'router ospf' comes before any \[node\] header"):
        split_sections("router ospf\n[r1]\n")
    with pytest.raises(UserError, match=r"section \[r1\] appears twice"):
        split_sections("[r1]\na\n[r1]\nb\n")
    f = tmp_path / "bad.cfg"
    f.write_text("[r1]\n{{ p.nope }}\n")
    with pytest.raises(UserError, match="config set"):
        render_config_set(f, {"lan": "10.0.0.0/24"})
    with pytest.raises(UserError, match="cannot read the config set"):
        render_config_set(tmp_path / "missing.cfg", {})


def test_a_device_lab_without_config_sets_does_not_validate(tmp_path: Path) -> None:
    import shutil

    from labkit.domain.labs import load_lab
    from labkit.errors import LabDefinitionError
    from labkit.settings import Settings
    from tests.conftest import PROJECT

    lab = tmp_path / "routing-multisite-devices"
    shutil.copytree(PROJECT / "labs" / "routing-multisite-devices", lab)
    text = (lab / "lab.yaml").read_text()
    text = text.replace("  config: configs/reference.cfg", "  playbook: routing-multisite/reference.yml")
    text = text.replace("    config: configs/wrong-area.cfg", "    playbook: routing-multisite/variants/wrong-area.yml")
    (lab / "lab.yaml").write_text(text)
    (lab / "configs" / "static-routes.cfg").unlink()
    settings = Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=PROJECT)
    with pytest.raises(LabDefinitionError) as err:
        load_lab(lab / "lab.yaml", settings)
    text = str(err.value) + "".join(f"\n{i.message}" for i in err.value.issues)
    assert "the solution has no config set, but topology 'three-sites-devices' has network devices" in text
    assert "variant 'wrong-area' has no config set" in text
    assert "config set" in text and "static-routes.cfg does not exist" in text
