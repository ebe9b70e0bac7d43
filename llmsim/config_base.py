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


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config models an annotation can hold (through Optional, unions, Annotated, lists,
    dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def _kind_of(model: type[BaseModel]) -> Any:
    f = model.model_fields.get("kind")
    return f.default if f is not None else None


def walk_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str], list[str]]:
    """A validation error's location as the user wrote it (union tags such as the policy kind
    and pydantic's internal steps dropped), and the field names accepted at its parent, for
    'did you mean' hints ([] where the path cannot be followed)."""
    candidates, shown = [model], []
    for i, part in enumerate(loc):
        by_field = [m.model_fields[part] for m in candidates
                    if isinstance(part, str) and part in m.model_fields]
        tagged = [m for m in candidates if _kind_of(m) == part]
        if by_field:
            candidates = [c for f in by_field for c in _models_in(f.annotation)]
        elif tagged:  # a union's tag (e.g. the policy kind) picks one of the candidates
            candidates = tagged
            continue
        else:
            candidates = [] if i < len(loc) - 1 else candidates
        text = str(part)
        if not text.startswith(("function-", "tagged-")) and not text[:1].isupper() \
                and text != "str":
            shown.append(text)
    return shown, sorted({name for m in candidates for name in m.model_fields})
