"""The criteria catalog: it validates, it is consistent, and every text is verbatim in its seed."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from labkit.domain import criteria as cr
from labkit.errors import UserError
from labkit.models.criteria import Catalog
from labkit.settings import load_settings

# The ids labs/routing-multisite/lab.yaml maps its checks to, with the text each must quote.
ROUTING_LAB_IDS = {
    "igs-b1-interconnexions": (
        "Les interconnexions entre les sites sont opérationnelles et l'accord de niveau de service "
        "est respecté."
    ),
    "tssr-2.3-liens": (
        "Les liens réseaux sont fonctionnels en respectant le schéma réseau fourni et les ressources "
        "réseaux sont accessible par les utilisateurs."
    ),
    "tssr-1.3-interconnexion": (
        "L'interconnexion entre les différents matériels réseaux est établie et de qualité."
    ),
    "tssr-1.3-routage": (
        "Configurer le routage des différents réseaux pour assurer une communication optimale entre "
        "les différents sites de l'entreprise en respectant les contraintes de délai imposées."
    ),
    "tssr-3.1-redondance": (
        "La redondance des équipements du parc est contrôlée régulièrement pour vérifier la haute "
        "disponibilité des équipements lors de simulation de pannes en suivant des procédures "
        "préalablement établies."
    ),
    "afip-c3.4-supervision": (
        "La performance du système de supervision : les éléments du système d'information sont opérationnels."
    ),
    "igs-b3-acces": (
        "Les contrôles d'accès sont pertinents, justifiés, accessible et respectent les habilitations "
        "définies."
    ),
}

# Ids whose code part differs from `code`, with the reason (kept because labs reference them).
ID_SCHEME_EXCEPTIONS: dict[str, str] = {}


def _raw() -> dict:
    text = resources.files("labkit").joinpath("data", "criteria.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return cr.load_catalog()


@pytest.fixture(scope="module")
def seeds() -> Path:
    d = cr.seeds_dir()
    if d is None:
        pytest.skip(
            "referential seeds not found: set LABKIT_SEEDS or place them at <project>/../shared/seeds"
        )
    assert d.is_dir(), f"LABKIT_SEEDS points to {d}, which is not a directory"
    return d


# --------------------------------------------------------------------------- structure


def test_yaml_validates_into_catalog(catalog: Catalog) -> None:
    assert Catalog.model_validate(_raw()) == catalog
    assert 40 <= len(catalog.criteria) <= 70


def test_ids_are_unique() -> None:
    raw = _raw()
    ids = [c["id"] for c in raw["criteria"]]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    cert_ids = [c["id"] for c in raw["certifications"]]
    assert len(cert_ids) == len(set(cert_ids))


def test_every_referenced_certification_exists(catalog: Catalog) -> None:
    known = {c.id for c in catalog.certifications}
    assert {c.certification for c in catalog.criteria} <= known
    # and every certification is used, by at least a few entries
    for cert in catalog.certifications:
        assert sum(c.certification == cert.id for c in catalog.criteria) >= 3, cert.id
    assert cr.catalog_problems(catalog) == []


def test_certifications_map_the_five_seeds(catalog: Catalog) -> None:
    assert {c.id: c.seed[:3] for c in catalog.certifications} == {
        "igs": "000",
        "tssr": "001",
        "sio": "002",
        "expert": "003",
        "afip": "004",
    }


def test_ids_follow_the_scheme(catalog: Catalog) -> None:
    for c in catalog.criteria:
        code = ID_SCHEME_EXCEPTIONS.get(c.id, c.code)
        if c.id in ID_SCHEME_EXCEPTIONS:
            assert c.code == code
            continue
        prefix = f"{c.certification}-{c.code.lower()}-"
        assert c.id.startswith(prefix), f"{c.id} should start with {prefix}"
        assert re.fullmatch(r"[a-z][a-z-]*", c.id[len(prefix) :]), c.id


def test_texts_are_clean_quotes(catalog: Catalog) -> None:
    for c in catalog.criteria:
        assert c.text == c.text.strip() and "  " not in c.text, c.id
        assert not c.text.startswith(("•", "●", "▪", "■", "-")), c.id
        assert "<" not in c.text and "&" not in c.text, c.id


def test_duplicate_id_is_refused(tmp_path: Path) -> None:
    raw = _raw()
    raw["criteria"].append(dict(raw["criteria"][0]))
    path = tmp_path / "criteria.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(UserError, match="more than once"):
        cr.load_catalog(path)


def test_missing_catalog_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        cr.load_catalog(tmp_path / "absent.yaml")


# --------------------------------------------------------------------------- verbatim


def test_every_text_is_verbatim_in_its_seed(catalog: Catalog, seeds: Path) -> None:
    assert cr.verify_verbatim(catalog, seeds) == []


def test_every_block_title_is_verbatim_in_its_seed(catalog: Catalog, seeds: Path) -> None:
    bad = []
    for c in catalog.criteria:
        cert = catalog.certification(c.certification)
        assert cert is not None
        if not cr.contains_verbatim(cr.load_seed_text(seeds, cert.seed), cr.normalise_text(c.block)):
            bad.append(f"{c.id}: {c.block!r}")
    assert bad == []


def _with_text(catalog: Catalog, criterion_id: str, text: str) -> Catalog:
    crits = [c.model_copy(update={"text": text}) if c.id == criterion_id else c for c in catalog.criteria]
    return catalog.model_copy(update={"criteria": crits})


@pytest.mark.parametrize(
    "alter",
    [
        lambda t: t.replace("opérationnelles", "operationnelles"),  # accent dropped
        lambda t: t.replace("Les interconnexions", "les interconnexions"),  # capitalisation
        lambda t: t.replace("l'accord", "l’accord"),  # typographic apostrophe
        lambda t: t[1:],  # starts in the middle of a word
        lambda t: t.replace(" sites ", " agences "),  # a word changed
    ],
    ids=["accent", "case", "apostrophe", "mid-word", "word"],
)
def test_altered_text_is_reported(catalog: Catalog, seeds: Path, alter) -> None:
    original = catalog.get("igs-b1-interconnexions")
    assert original is not None
    altered = _with_text(catalog, original.id, alter(original.text))
    problems = cr.verify_verbatim(altered, seeds)
    assert len(problems) == 1 and problems[0].startswith("igs-b1-interconnexions:"), problems


def test_whitespace_and_final_period_do_not_matter(catalog: Catalog, seeds: Path) -> None:
    original = catalog.get("igs-b1-interconnexions")
    assert original is not None
    spaced = original.text.replace(" ", "\n  ").rstrip(".")
    assert cr.verify_verbatim(_with_text(catalog, original.id, spaced), seeds) == []


def test_verify_fails_and_passes_on_a_synthetic_seed(tmp_path: Path) -> None:
    (tmp_path / "seed.txt").write_text(
        '<ul style="list-style-type: none"> <li>• Les <b>sauvegardes</b> sont\n   testées'
        " &amp; restaurées.</li> </ul>\t<p>Autre cellule</p>",
        encoding="utf-8",
    )
    base = {"certification": "x", "block": "Bloc", "code": "1"}
    catalog = Catalog.model_validate(
        {
            "certifications": [{"id": "x", "seed": "seed.txt", "title": "X"}],
            "criteria": [
                {"id": "ok", "text": "Les sauvegardes sont testées & restaurées.", **base},
                {"id": "bad", "text": "Les sauvegardes sont testées et restaurées.", **base},
                {"id": "span", "text": "restaurées. Autre cellule", **base},
            ],
        }
    )
    problems = cr.verify_verbatim(catalog, tmp_path)
    assert [p.split(":")[0] for p in problems] == ["bad"]
    # a missing seed is reported per criterion, not raised
    missing = catalog.model_copy(
        update={"certifications": [catalog.certifications[0].model_copy(update={"seed": "nope.txt"})]}
    )
    assert len(cr.verify_verbatim(missing, tmp_path)) == 3


def test_normalise_text() -> None:
    assert cr.normalise_text("a<br/>b (<i>x</i>) &eacute;\n\t c") == "a b (x) é c"


# --------------------------------------------------------------------------- labs


@pytest.mark.parametrize("criterion_id", sorted(ROUTING_LAB_IDS))
def test_routing_lab_ids_exist_with_expected_text(catalog: Catalog, criterion_id: str) -> None:
    c = catalog.get(criterion_id)
    assert c is not None, criterion_id
    assert c.text == ROUTING_LAB_IDS[criterion_id]


def test_routing_routage_is_a_competency(catalog: Catalog) -> None:
    c = catalog.get("tssr-1.3-routage")
    assert c is not None and c.kind == "competency"
    assert {c.kind for c in catalog.criteria} == {"criterion", "competency"}


def test_every_lab_references_known_criteria(catalog: Catalog) -> None:
    labs = sorted(load_settings().labs.glob("*/lab.yaml"))
    assert labs, "no lab found"
    missing = []
    for lab in labs:
        spec = yaml.safe_load(lab.read_text(encoding="utf-8"))
        for check in spec.get("checks", []):
            missing += [
                f"{lab.parent.name}/{check['id']}: {i}"
                for i in check.get("criteria", [])
                if catalog.get(i) is None
            ]
    assert missing == []


# --------------------------------------------------------------------------- helpers


def test_seeds_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cr.SEEDS_ENV, str(tmp_path))
    assert cr.seeds_dir() == tmp_path


def test_format_catalog_rows(catalog: Catalog) -> None:
    rows = cr.format_catalog(catalog)
    assert len(rows) == len(catalog.criteria)
    assert set(rows[0]) == {"id", "certification", "code", "text"}
    assert cr.format_catalog(catalog, lang="en") == rows
    row = next(r for r in rows if r["id"] == "tssr-2.3-liens")
    assert row["certification"] == "tssr" and row["code"] == "2.3"


def test_load_catalog_is_cached() -> None:
    assert cr.load_catalog() is cr.load_catalog()
