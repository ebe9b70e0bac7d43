"""Typed workload configuration (the ``workload:`` block of a scenario)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from llmsim.config_base import StrictModel

TraceFormat = Literal["llmsim", "azure", "mooncake", "burstgpt", "sharegpt_lengths"]




class FixedLength(StrictModel):
    kind: Literal["fixed"] = "fixed"
    tokens: int = Field(gt=0)


class UniformLength(StrictModel):
    kind: Literal["uniform"] = "uniform"
    min_tokens: int = Field(gt=0)
    max_tokens: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) exceeds max_tokens "
                             f"({self.max_tokens})")
        return self


class LognormalLength(StrictModel):
    kind: Literal["lognormal"] = "lognormal"
    median_tokens: float = Field(gt=0)
    sigma: float = Field(ge=0, description="std-dev of log(tokens)")
    min_tokens: int = Field(1, gt=0)
    max_tokens: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LognormalLength:
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) exceeds max_tokens "
                             f"({self.max_tokens})")
        return self


class EmpiricalLength(StrictModel):
    """Resample lengths of a trace file. When prompt and output both resample the same file,
    whole rows are resampled so the prompt/output correlation is kept."""

    kind: Literal["empirical"] = "empirical"
    path: str
    format: TraceFormat = "llmsim"
    max_tokens: int | None = Field(None, gt=0, description="clip resampled lengths")


class _Component(StrictModel):
    weight: float = Field(gt=0)
    dist: Annotated[FixedLength | UniformLength | LognormalLength | EmpiricalLength,
                    Field(discriminator="kind")]


class MixtureLength(StrictModel):
    """Draw each request's component by weight. When prompt and output are both mixtures with
    the same weights, one draw picks both (a long prompt keeps its own output distribution)."""

    kind: Literal["mixture"] = "mixture"
    components: list[_Component] = Field(min_length=1)


LengthDist = Annotated[FixedLength | UniformLength | LognormalLength | EmpiricalLength | MixtureLength, Field(discriminator="kind")]


class PoissonArrivals(StrictModel):
    kind: Literal["poisson"] = "poisson"
    rate_per_s: float = Field(gt=0)


class GammaArrivals(StrictModel):
    """Gamma inter-arrivals with shape 1/cv^2 (cv = 1 is Poisson, cv > 1 is bursty)."""

    kind: Literal["gamma"] = "gamma"
    rate_per_s: float = Field(gt=0)
    cv: float = Field(gt=0)


class ConstantArrivals(StrictModel):
    kind: Literal["constant"] = "constant"
    rate_per_s: float = Field(gt=0)


class ClosedArrivals(StrictModel):
    """A closed batch: every request present at t = 0."""

    kind: Literal["closed"] = "closed"


Arrivals = Annotated[PoissonArrivals | GammaArrivals | ConstantArrivals | ClosedArrivals,
                     Field(discriminator="kind")]


class SyntheticWorkload(StrictModel):
    kind: Literal["synthetic"] = "synthetic"
    num_requests: int = Field(gt=0)
    arrival: Arrivals
    prompt_tokens: LengthDist
    output_tokens: LengthDist
    service_class: Literal["latency_sensitive", "best_effort"] = "latency_sensitive"
    priority: int = 0


class TraceWorkload(StrictModel):
    kind: Literal["trace"] = "trace"
    path: str
    format: TraceFormat = "llmsim"
    start_s: float = Field(0.0, ge=0, description="window start, seconds after the trace's first arrival")
    duration_s: float | None = Field(None, gt=0)
    max_requests: int | None = Field(None, gt=0)
    time_scale: float = Field(1.0, gt=0, description="multiply inter-arrival times (0.5 = twice the rate)")
    target_rate_per_s: float | None = Field(None, gt=0, description="rescale times to this mean rate")
    max_prompt_tokens: int | None = Field(None, gt=0, description="clip prompts to this length")
    max_output_tokens: int | None = Field(None, gt=0, description="clip outputs to this length")
    closed: bool = Field(False, description="ignore timestamps: all requests at t = 0")
    service_class: Literal["latency_sensitive", "best_effort"] = "latency_sensitive"
    priority: int = 0


class SharedPrefix(StrictModel):
    """A system prompt or few-shot template that sessions open with (shared KV blocks)."""

    tokens: int = Field(gt=0)
    weight: float = Field(1.0, gt=0, description="relative share of sessions that use it")


class ConversationWorkload(StrictModel):
    """Multi-turn chat sessions, open loop as trace replays are: sessions start by ``arrival``;
    each draws a shared prefix by weight (none if the list is empty) and a number of turns
    (geometric, mean ``mean_turns``, at most ``max_turns``), and sends turn k+1 an exponential
    think time after turn k. Turn k's prompt is the shared prefix, every earlier message and
    answer, and its new message, so its blocks continue the session's earlier ones."""

    kind: Literal["conversation"] = "conversation"
    num_sessions: int = Field(gt=0)
    arrival: Arrivals = Field(description="session starts")
    mean_turns: float = Field(ge=1)
    max_turns: int = Field(64, ge=1)
    mean_think_time_s: float = Field(gt=0, description="between one turn's send and the next's")
    shared_prefixes: list[SharedPrefix] = Field(default_factory=list)
    message_tokens: LengthDist
    output_tokens: LengthDist
    max_prompt_tokens: int | None = Field(None, gt=0, description="a session ends before a turn "
                                                                  "whose prompt would exceed this")
    service_class: Literal["latency_sensitive", "best_effort"] = "latency_sensitive"
    priority: int = 0

    @model_validator(mode="after")
    def _turns(self) -> ConversationWorkload:
        if self.mean_turns > self.max_turns:
            raise ValueError(f"mean_turns ({self.mean_turns}) exceeds max_turns ({self.max_turns})")
        for i, p in enumerate(self.shared_prefixes):
            if self.max_prompt_tokens is not None and p.tokens >= self.max_prompt_tokens:
                raise ValueError(f"shared_prefixes.{i}.tokens ({p.tokens}) leaves no room for a "
                                 f"message under max_prompt_tokens ({self.max_prompt_tokens})")
        return self


class MixWorkload(StrictModel):
    """Several streams served together (e.g. an LS stream and a BE stream, OmniServe): each is
    generated on its own, and their requests are merged by arrival time."""

    kind: Literal["mix"] = "mix"
    streams: list[Annotated[SyntheticWorkload | TraceWorkload | ConversationWorkload,
                            Field(discriminator="kind")]] = Field(min_length=1)


WorkloadConfig = Annotated[SyntheticWorkload | TraceWorkload | ConversationWorkload | MixWorkload,
                           Field(discriminator="kind")]
