"""The base of every config model: unknown keys, booleans given for numbers and non-finite
floats are errors that name the field (YAML reads ``yes``/``true`` as booleans and ``.inf`` as
infinity; pydantic would take them as 1 and inf)."""
from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def _is_number_type(annotation: Any) -> bool:
    """int or float (possibly optional or in a union), but not bool."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(a in (int, float) for a in args)
    if typing.get_origin(annotation) is typing.Annotated:
        return _is_number_type(typing.get_args(annotation)[0])
    return False


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        """A boolean given for a number is passed on as its text, so the field's own check
        rejects it under the field's name."""
        if not isinstance(data, dict):
            return data
        bad = [k for k, v in data.items() if isinstance(v, bool) and k in cls.model_fields
               and _is_number_type(cls.model_fields[k].annotation)]
        return {**data, **{k: str(data[k]).lower() for k in bad}} if bad else data
