"""The base of every settings section: frozen, and an unknown field is an error naming it."""

from __future__ import annotations

import pydantic


class Frozen(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
