"""A step-time formula with published coefficients: a paper's or a simulator's own fit of its
engine (DistServe's artifact fits its engines this way on an A100-80GB).

Per TP degree, in milliseconds:
  prefill  a + b * sum(new tokens) + c * sum(new tokens * (new tokens + context))
  decode   a + b * sum(KV length each row attends over, its new token included) + c * rows
with a second decode triple from ``large_batch_rows`` rows on. For whole prompts (no context)
the prefill's last term is DistServe's sum of squared prompt lengths. A step with both
prefills and decodes costs the sum of the two [ASSUMPTION: DistServe's engines never mix them].
The scenario states where the coefficients come from (``source``); the model has no domain of
its own (it is someone else's fit: its range is not known here).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, FiniteFloat, model_validator

from llmsim.config_base import StrictModel
from llmsim.errors import InputError
from llmsim.latency.base import LatencyConfigBase, LatencyModel, StepShape
from llmsim.models.specs import GPUSpec, ModelSpec

# a fit may hold a small negative term (DistServe's vLLM OPT-66B TP 2 prefill does); a step the
# formula prices at zero or less is refused where it happens
Triple = tuple[FiniteFloat, FiniteFloat, FiniteFloat]


class FormulaCoefficients(StrictModel):
    prefill_ms: Triple = Field(description="a, b per new token, c per new token x its span")
    decode_ms: Triple = Field(description="a, b per KV token read, c per row")
    decode_large_ms: Triple | None = Field(None, description="decode from large_batch_rows on")
    large_batch_rows: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _large(self) -> FormulaCoefficients:
        if (self.decode_large_ms is None) != (self.large_batch_rows is None):
            raise ValueError("decode_large_ms and large_batch_rows go together")
        return self


class FormulaConfig(LatencyConfigBase):
    kind: Literal["formula"] = "formula"
    source: str = Field(min_length=1, description="where the coefficients come from")
    by_tp: dict[int, FormulaCoefficients] = Field(min_length=1, description="per TP degree")


class FormulaLatency(LatencyModel):
    kind = "formula"
    Config = FormulaConfig

    def __init__(self, model: ModelSpec, gpu: GPUSpec, tp: int, config: FormulaConfig) -> None:
        if tp not in config.by_tp:
            raise InputError(f"latency.by_tp: no coefficients for TP {tp} (have "
                             f"{', '.join(map(str, sorted(config.by_tp)))})")
        c = config.by_tp[tp]
        self._prefill = np.array(c.prefill_ms) / 1e3
        self._decode = np.array(c.decode_ms) / 1e3
        self._large = None if c.decode_large_ms is None else np.array(c.decode_large_ms) / 1e3
        self._large_rows = c.large_batch_rows or 0
        self._source = f"formula (TP {tp}): {config.source}"

    def source(self) -> str:
        return self._source

    def _decode_s(self, rows: int, kv_sum: int | np.ndarray) -> float | np.ndarray:
        a, b, c = self._large if self._large is not None and rows >= self._large_rows \
            else self._decode
        return a + b * kv_sum + c * rows

    def step_time_s(self, shape: StepShape) -> float:
        t = 0.0
        if shape.prefill_chunks:
            a, b, c = self._prefill
            span = sum(q * (q + k) for q, k in shape.prefill_chunks)
            t += a + b * shape.num_prefill_tokens + c * span
        if shape.num_decode_seqs:
            t += float(self._decode_s(shape.num_decode_seqs, shape.decode_context_sum))
        if t <= 0 and not shape.is_empty:
            self._refuse(shape, t)
        return t

    def _refuse(self, shape: StepShape, t: float) -> None:
        raise InputError(f"latency (formula): {self._source} prices a step of "
                         f"{shape.num_prefill_tokens} prompt tokens and {shape.num_decode_seqs} "
                         f"decode rows at {t:.3g} s: its coefficients give no positive time there")

    def decode_run_step_times_s(self, shape: StepShape, num_steps: int) -> np.ndarray:
        rows = shape.num_decode_seqs
        kv = shape.decode_context_sum + rows * np.arange(num_steps)
        out = np.asarray(self._decode_s(rows, kv), dtype=float)
        if rows and out.min() <= 0:
            self._refuse(shape, float(out.min()))
        return out
