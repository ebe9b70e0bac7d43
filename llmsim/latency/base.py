"""The latency-model interface every cost model implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from llmsim.config_base import StrictModel

if TYPE_CHECKING:  # a type only: domain imports StepShape from here
    from llmsim.latency.domain import Domain


@dataclass(frozen=True, slots=True)
class StepShape:
    """What one iteration computes, independent of which requests it belongs to.

    ``prefill_chunks``: one ``(num_new_tokens, num_context_tokens)`` per prompt chunk, where the
    context is the KV already present before the chunk. Decode sequences are summarised by their
    count and the sum/max of the KV length each attends over (including its new token).
    ``padded``: rows were padded to the batch maximum (static / HF-style execution); the shape
    already carries the padded sizes, the flag lets a profile pick the padded-attention kernel.
    """

    prefill_chunks: tuple[tuple[int, int], ...] = ()
    num_decode_seqs: int = 0
    decode_context_sum: int = 0
    decode_context_max: int = 0
    padded: bool = False
    # Rows that pass through the dense modules (QKV/O/MLP) but whose attention runs elsewhere
    # (CPU-offloaded requests piggybacking on this pass), as whole-model tokens: P per-layer hops
    # spread over L layers count P / L. They add dense work, no GPU attention, no KV on the GPU.
    dense_only_tokens: float = 0.0
    # derived once: the loop, the recorder and the cost model each read them on every step
    num_prefill_tokens: int = field(init=False, compare=False, repr=False)
    num_tokens: int = field(init=False, compare=False, repr=False)
    dense_tokens: float = field(init=False, compare=False, repr=False)
    """Tokens through the dense modules: the step's own plus piggybacked ones."""

    def __post_init__(self) -> None:
        prefill = sum(q for q, _ in self.prefill_chunks)
        object.__setattr__(self, "num_prefill_tokens", prefill)
        object.__setattr__(self, "num_tokens", prefill + self.num_decode_seqs)
        object.__setattr__(self, "dense_tokens", prefill + self.num_decode_seqs
                           + self.dense_only_tokens)

    @property
    def is_empty(self) -> bool:
        return not self.prefill_chunks and not self.num_decode_seqs and not self.dense_only_tokens

    @property
    def is_decode_only(self) -> bool:
        return not self.prefill_chunks and self.num_decode_seqs > 0


class LatencyConfigBase(StrictModel):
    """What every cost model's config shares: the ``kind`` it is registered under."""

    kind: str


class LatencyModel(ABC):
    """Seconds for a step. Instances are per (model, GPU, TP): TP is fixed at construction.

    Registered models (``llmsim.latency.registry``) set ``kind`` and ``Config`` and take
    ``(model, gpu, tp, config)``. ``step_time_s`` never changes state, so a policy may price
    candidate steps freely. A model whose cost depends on what ran before (warm caches, compiled
    shapes) keeps that state per instance through the two hooks below; stateless models ignore
    them.
    """

    kind: ClassVar[str]
    Config: ClassVar[type[LatencyConfigBase]]

    @abstractmethod
    def step_time_s(self, shape: StepShape) -> float: ...

    def source(self) -> str:
        """Where this model's numbers come from, in a line (results cite it)."""
        return self.kind

    def domain(self) -> Domain | None:
        """The step range this model was measured or fitted on (``latency.domain``); None for an
        analytic model, which has no measured range to leave."""
        return None

    def for_instance(self) -> LatencyModel:
        """The model one instance uses: a stateful model returns a copy with its own state;
        a stateless one is shared."""
        return self

    def advance(self, shape: StepShape, num_steps: int) -> None:
        """The instance ran ``num_steps`` steps from ``shape`` (decode runs: each one KV token
        longer): update any state that later step costs depend on."""

    def decode_run_step_times_s(self, shape: StepShape, num_steps: int) -> np.ndarray:
        """Durations of ``num_steps`` successive decode-only steps starting at ``shape``: each
        step every sequence gains one KV token. Override to vectorise (each value as
        ``step_time_s`` would give it, to rounding)."""
        return np.array([self.step_time_s(StepShape(
            (), shape.num_decode_seqs, shape.decode_context_sum + k * shape.num_decode_seqs,
            shape.decode_context_max + k, shape.padded)) for k in range(num_steps)])

    def decode_run_end_times_s(self, shape: StepShape, num_steps: int) -> np.ndarray:
        """Cumulative end times of the same run, relative to its start."""
        return np.cumsum(self.decode_run_step_times_s(shape, num_steps))
