from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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
    return re.match(NAME_RE, value) is not None
