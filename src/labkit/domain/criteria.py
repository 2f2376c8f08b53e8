"""The criteria catalog: loading, checking against the referentials, formatting.

The catalog (``labkit/data/criteria.yaml``) lists the evaluation criteria and competencies of
the RNCP referentials in ``shared/seeds`` that labkit's labs can evidence. Every text is a
verbatim quote of its seed; :func:`verify_verbatim` proves it.
"""

from __future__ import annotations

import html
import os
import re
import unicodedata
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from labkit.errors import UserError
from labkit.models.criteria import Catalog
from labkit.settings import load_settings

SEEDS_ENV = "LABKIT_SEEDS"

# Tags that separate blocks of text: replaced by a space. Every other tag (<b>, <i>, <u>,
# <span>, ...) is inline and removed without a trace, so "(<i>helpdesk</i>)" reads "(helpdesk)".
_BLOCK_TAG = re.compile(
    r"</?(?:p|li|ul|ol|br|div|tr|td|th|table|thead|tbody|h[1-6])(?:\s[^<>]*)?/?>", re.IGNORECASE
)
_ANY_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_SPACES = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Visible text of an HTML-ish fragment: tags stripped, entities unescaped, NFC, spaces collapsed."""
    text = _BLOCK_TAG.sub(" ", text)
    text = _ANY_TAG.sub("", text)
    text = html.unescape(text)
    text = unicodedata.normalize("NFC", text)
    return _SPACES.sub(" ", text).strip()


def contains_verbatim(haystack: str, quote: str) -> bool:
    """True if ``quote`` occurs in ``haystack`` (both already normalised) on word boundaries."""
    if not quote:
        return False
    return re.search(r"(?<!\w)" + re.escape(quote) + r"(?!\w)", haystack) is not None


def _read_catalog(source: Path | None) -> tuple[str, str]:
    if source is None:
        res = resources.files("labkit").joinpath("data", "criteria.yaml")
        return str(res), res.read_text(encoding="utf-8")
    try:
        return str(source), source.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the criteria catalog {source}: {exc.strerror or exc}.") from exc


def catalog_problems(catalog: Catalog) -> list[str]:
    """Structural problems of a catalog: duplicate ids, unknown certifications."""
    problems: list[str] = []
    seen: set[str] = set()
    for cert in catalog.certifications:
        if cert.id in seen:
            problems.append(f"certification {cert.id!r} is defined more than once")
        seen.add(cert.id)
    seen = set()
    for crit in catalog.criteria:
        if crit.id in seen:
            problems.append(f"criterion {crit.id!r} is defined more than once")
        seen.add(crit.id)
        if catalog.certification(crit.certification) is None:
            problems.append(f"criterion {crit.id!r} names unknown certification {crit.certification!r}")
    return problems


@lru_cache(maxsize=8)
def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate the catalog; ``None`` means the one packaged with labkit. Cached."""
    where, raw = _read_catalog(path)
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise UserError(f"the criteria catalog {where} is not valid YAML; fix it: {exc}") from exc
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"the criteria catalog {where} does not validate; fix it:\n{exc}") from exc
    problems = catalog_problems(catalog)
    if problems:
        raise UserError(
            f"the criteria catalog {where} is inconsistent; fix it:\n" + "\n".join("  " + p for p in problems)
        )
    return catalog


def seeds_dir() -> Path | None:
    """Folder of the referentials: $LABKIT_SEEDS, else <project>/../shared/seeds if it exists."""
    env = os.environ.get(SEEDS_ENV)
    if env:
        return Path(env)
    candidate = load_settings().project.parent / "shared" / "seeds"
    return candidate if candidate.is_dir() else None


def load_seed_text(seeds: Path, seed_name: str) -> str:
    """Normalised visible text of one referential (see :func:`normalise_text`)."""
    return normalise_text((seeds / seed_name).read_text(encoding="utf-8"))


def verify_verbatim(catalog: Catalog, seeds_dir: Path) -> list[str]:
    """One problem per criterion whose text is not found verbatim in its seed; [] if all are."""
    problems: list[str] = []
    seed_texts: dict[str, str | None] = {}
    for crit in catalog.criteria:
        cert = catalog.certification(crit.certification)
        if cert is None:
            problems.append(f"{crit.id}: unknown certification {crit.certification!r}")
            continue
        if cert.seed not in seed_texts:
            try:
                seed_texts[cert.seed] = load_seed_text(seeds_dir, cert.seed)
            except OSError:
                seed_texts[cert.seed] = None
        seed = seed_texts[cert.seed]
        if seed is None:
            problems.append(f"{crit.id}: seed {cert.seed} not readable in {seeds_dir}")
        elif not contains_verbatim(seed, normalise_text(crit.text)):
            problems.append(f"{crit.id}: text not found verbatim in {cert.seed}: {crit.text!r}")
    return problems


def format_catalog(catalog: Catalog, lang: str = "fr") -> list[dict[str, str]]:
    """Rows for the CLI: id, certification, code, text.

    The texts are verbatim French quotes of the referentials, so they are the same in every
    ``lang``; the parameter is accepted so every listing command has the same signature.
    """
    del lang  # criteria are quoted in French whatever the interface language
    return [
        {"id": c.id, "certification": c.certification, "code": c.code, "text": c.text}
        for c in catalog.criteria
    ]
