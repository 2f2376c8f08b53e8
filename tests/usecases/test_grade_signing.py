"""``grade()`` signs the run it seals with the centre's active key, and seals it unsigned (with
a warning for the CLI) when the centre has no key.

This runs grade()'s own code and the real RunWriter, but not a lab: the instance, lab, graders
and artifact collection are replaced by a minimal stand-in (a lab with no checks), because the
signing is wired at the seal and a real lab takes minutes and root. The real lab path is
exercised by the end-to-end bundle test."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labkit.adapters.security.keyring import Keyring, Trust
from labkit.adapters.security.run_signature import run_signature
from labkit.adapters.storage.runs import open_run
from labkit.errors import UserError
from labkit.models.common import I18n
from labkit.settings import Settings
from labkit.usecases import grade as grade_mod
from labkit.usecases.keys import unsigned_warning


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = Settings(home=tmp_path / "home", run_dir=tmp_path / "run", project=tmp_path)
    plan = SimpleNamespace(lab_dir="tiny", params={}, secret_params=[], candidate="Camille Dupont", seed=7)
    state = SimpleNamespace(phase="up", plan=plan, provider="fake")
    store = SimpleNamespace(load=lambda name: state, load_baseline=lambda name, check: [])
    lab = SimpleNamespace(spec=SimpleNamespace(id="tiny", title=I18n(fr="Petit", en="Tiny"), version=1))
    monkeypatch.setattr(grade_mod, "load_lab_checked", lambda c, ref: lab)
    monkeypatch.setattr(grade_mod, "GraderRegistry", SimpleNamespace(load=lambda: None))
    monkeypatch.setattr(grade_mod, "load_catalog", lambda: SimpleNamespace(criteria=[]))
    monkeypatch.setattr(grade_mod, "rendered_checks", lambda lab, params: [])
    monkeypatch.setattr(grade_mod, "_collect_artifacts",
                        lambda state, ground, writer, **kw: writer.add_artifact("topology", {"nodes": []}))
    ground = SimpleNamespace(mode="inprocess", close=lambda: None)  # no check runs a probe here
    prov = SimpleNamespace(capabilities=frozenset(), ground=lambda state, vantage=None: ground)
    return SimpleNamespace(settings=settings, store=store, provider=lambda name: prov)


def test_grade_signs_with_the_active_key(ctx: Any) -> None:
    kr = Keyring(ctx.settings.home / "keys")
    first = kr.init("CFA Lyon")
    summary = grade_mod.grade(ctx, "tiny")
    run = open_run(ctx.settings.runs, summary.run_id)
    assert run.signature and run.key_fingerprint == first.fingerprint and run.centre == "CFA Lyon"
    assert run_signature(run, Trust.from_keyring(kr)).ok
    assert unsigned_warning(ctx, summary) is None
    second = kr.rotate()
    run2 = open_run(ctx.settings.runs, grade_mod.grade(ctx, "tiny", mode="selfcheck").run_id)
    assert run2.key_fingerprint == second.fingerprint
    old = run_signature(run, Trust.from_keyring(kr))
    assert old.ok and old.key and old.key.status == "retired"


def test_grade_without_a_key_is_unsigned_and_warns(ctx: Any) -> None:
    summary = grade_mod.grade(ctx, "tiny")
    run = open_run(ctx.settings.runs, summary.run_id)
    assert run.signature is None and run.key_fingerprint is None and run.centre is None
    assert not (run.path / "seal.json.sig").exists()
    warning = unsigned_warning(ctx, summary)
    assert warning and "\n" not in warning and "`labkit keys init --centre NAME`" in warning
    assert run_signature(run, Trust({})).status == "unsigned"


def test_an_unusable_key_stops_grading_before_anything_is_written(ctx: Any) -> None:
    kr = Keyring(ctx.settings.home / "keys")
    info = kr.init("CFA")
    kr.private_path(info.fingerprint).chmod(0o644)
    with pytest.raises(UserError, match="chmod 600"):
        grade_mod.grade(ctx, "tiny")
    assert not ctx.settings.runs.exists() or not any(ctx.settings.runs.iterdir())
