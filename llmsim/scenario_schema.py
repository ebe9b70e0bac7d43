"""The scenario file's JSON Schema, for editors (completion and checking as you type): the
``latency:`` section as the union of every registered cost model's config, keyed by ``kind``."""
from __future__ import annotations

import operator
from functools import reduce
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from llmsim.latency.registry import latency_kinds
from llmsim.scenario import Scenario

REF = "#/$defs/{model}"


def scenario_schema() -> dict[str, Any]:
    schema = Scenario.model_json_schema(ref_template=REF)
    schema["properties"].pop("base_dir", None)  # set from the file's location, not written
    configs = tuple(m.Config for m in latency_kinds().values())
    union: Any = Annotated[reduce(operator.or_, configs), Field(discriminator="kind")]
    latency = TypeAdapter(union).json_schema(ref_template=REF)
    schema["$defs"].update(latency.pop("$defs", {}))
    schema["$defs"].pop("LatencyConfigBase", None)
    default = schema["properties"]["latency"].get("default")
    schema["properties"]["latency"] = {**latency, "description": "the cost model: a registered "
                                       "kind and its knobs", "default": default}
    schema["title"] = "llmsim scenario"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
