from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Patterns are written ^...$ because pydantic (Rust regex) and JSON Schema (ECMAScript) read
# '$' as the end of the text; Python's re.match would also accept a trailing newline after
# '$', so Python code checks them with re.fullmatch only (is_name, is_iface).
NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"
Name = Annotated[str, StringConstraints(pattern=NAME_RE)]
PARAM_RE = r"^[a-z][a-z0-9_]{0,30}$"
ParamName = Annotated[str, StringConstraints(pattern=PARAM_RE)]
IFACE_RE = r"^[a-z][a-z0-9]{0,11}$"
IfaceName = Annotated[str, StringConstraints(pattern=IFACE_RE)]


class Strict(BaseModel):
    """Base for input models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class I18n(Strict):
    """A text in French and English."""

    fr: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, lang: str) -> str:
        return self.en if lang == "en" else self.fr


def is_name(value: str) -> bool:
    """A node, segment, lab or instance name: the whole text, no trailing newline."""
    return isinstance(value, str) and re.fullmatch(NAME_RE, value) is not None


def is_iface(value: str) -> bool:
    """An interface name: the whole text, no trailing newline."""
    return isinstance(value, str) and re.fullmatch(IFACE_RE, value) is not None
