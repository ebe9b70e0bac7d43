"""A cost model's own error, as a perturbation of its step times: the measured held-out errors
of the profiled model (``profiles/<gpu>/_residuals/<engine>.json``, pooled over the models
profiled on that GPU) and a wrapper that scales every step of one run by a drawn error. One
draw holds for a whole run, per phase, and is shared by the configurations compared on it:
a systematic bias moves both alike."""
from __future__ import annotations

import json
from functools import cache

import numpy as np

from llmsim.latency.base import LatencyModel, StepShape
from llmsim.latency.domain import Domain
from llmsim.latency.profiled import PACKAGED_PROFILES


@cache
def heldout_errors(gpu: str, engine: str) -> dict[str, np.ndarray] | None:
    """Relative errors (predicted / measured - 1) per phase, or None where none were measured."""
    path = PACKAGED_PROFILES / gpu / "_residuals" / f"{engine}.json"
    if not path.exists():
        return None
    errs = json.loads(path.read_text())["relative_errors"]
    return {"prefill": np.array(errs["prefill"] + errs.get("mixed", [])),
            "decode": np.array(errs["decode"])}


def draw_factors(errors: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[float, float]:
    """(prefill, decode) step-time factors of one draw: if the model predicts p = m (1 + e), the
    step it prices takes m = p / (1 + e)."""
    prefill, decode = (float(1.0 / (1.0 + rng.choice(errors[ph]))) for ph in ("prefill", "decode"))
    return prefill, decode


class Perturbed(LatencyModel):
    """``inner``'s step times scaled by a drawn error: ``prefill`` for any step with prompt
    tokens, ``decode`` for decode-only steps."""

    def __init__(self, inner: LatencyModel, prefill: float, decode: float) -> None:
        self.inner, self.prefill, self.decode = inner, prefill, decode
        self.kind = inner.kind  # type: ignore[misc]

    def source(self) -> str:
        return (f"{self.inner.source()} x ({self.prefill:.4f} prefill, {self.decode:.4f} decode: "
                "a draw of its held-out error)")

    def domain(self) -> Domain | None:
        return self.inner.domain()

    def for_instance(self) -> LatencyModel:
        inner = self.inner.for_instance()
        return self if inner is self.inner else Perturbed(inner, self.prefill, self.decode)

    def advance(self, shape: StepShape, num_steps: int) -> None:
        self.inner.advance(shape, num_steps)

    def step_time_s(self, shape: StepShape) -> float:
        f = self.prefill if shape.prefill_chunks else self.decode
        return self.inner.step_time_s(shape) * f

    def decode_run_step_times_s(self, shape: StepShape, num_steps: int) -> np.ndarray:
        return self.inner.decode_run_step_times_s(shape, num_steps) * self.decode

    def decode_run_end_times_s(self, shape: StepShape, num_steps: int) -> np.ndarray:
        return np.cumsum(self.decode_run_step_times_s(shape, num_steps))
