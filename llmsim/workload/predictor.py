"""Output-length predictors: what a policy may know about a request's output before it runs.

``bucketed`` models UELLM's fine-tuned profiler (policies.md §6.1 [ASSUMPTION]): the true length's
bucket (edges 256/512/1024/2048 tokens) is predicted with probability ``accuracy``, otherwise an
adjacent bucket; the prediction is that bucket's upper edge (the last bucket: twice its lower).
``trace`` takes the trace's own ``predicted_output_tokens`` column: a profiler's output recorded
beside the workload (an empty cell: no prediction for that request).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from llmsim.config_base import StrictModel
from llmsim.errors import InputError
from llmsim.request import Request


class PredictorConfig(StrictModel):
    kind: Literal["none", "oracle", "bucketed", "trace"] = "none"
    accuracy: float = Field(0.8, ge=0, le=1)
    edges_tokens: list[int] = Field([256, 512, 1024, 2048], min_length=1,
                                    description="bucket edges: positive, increasing")

    @field_validator("edges_tokens")
    @classmethod
    def _increasing(cls, edges: list[int]) -> list[int]:
        if edges[0] <= 0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError("edges must be positive and strictly increasing")
        return edges


def bucket_upper(edges: list[int], i: int) -> int:
    return edges[i] if i < len(edges) else 2 * edges[-1]


def apply_predictor(requests: list[Request], cfg: PredictorConfig, rng: np.random.Generator,
                    traced: list[float] | None = None) -> None:
    """``traced``: the workload's ``predicted_output_tokens`` column, if it has one."""
    if cfg.kind == "none":
        return
    if cfg.kind == "trace":
        if traced is None:
            raise InputError("predictor.kind: 'trace' needs a predicted_output_tokens column in "
                             "the workload's trace")
        for r, v in zip(requests, traced):
            r.predicted_output_tokens = int(v) if v == v else None  # NaN: an empty cell
        return
    if cfg.kind == "oracle":
        for r in requests:
            r.predicted_output_tokens = r.output_tokens
        return
    edges = sorted(cfg.edges_tokens)
    n_buckets = len(edges) + 1
    hits = rng.random(len(requests)) < cfg.accuracy
    sides = rng.random(len(requests)) < 0.5
    for r, hit, up in zip(requests, hits, sides):
        i = int(np.searchsorted(edges, r.output_tokens, side="left"))
        if not hit:
            if i == 0:
                i = 1
            elif i == n_buckets - 1:
                i -= 1
            else:
                i += 1 if up else -1
        r.predicted_output_tokens = bucket_upper(edges, i)
