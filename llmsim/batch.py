"""The batch plan a policy returns for one step, and how applying it advances requests."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llmsim.latency.base import StepShape
from llmsim.request import Request, RequestStatus, emit

if TYPE_CHECKING:  # a type only: offload imports nothing from here
    from llmsim.cluster.offload import OffloadStep


@dataclass(slots=True)
class BatchPlan:
    """One engine iteration, as decided by a policy.

    ``prefills``: ``(request, num_new_tokens)`` prompt (or recompute) chunks.
    ``decodes``: requests that compute their last token and emit one more.
    ``padding_rows``: finished rows that still occupy a padded static batch (cost, no progress).
    ``padded_prompt_tokens``: when > 0 the step runs padded: every prefill row is this long and
    every decode row attends over ``padded_prompt_tokens + generated`` tokens.
    ``wake_at_s``: for an empty plan, when to ask again even if nothing arrives (e.g. max_wait_s).
    ``rejected``: requests the policy will never serve, with the reason.
    ``fusable``: the policy promises that, if this plan is decode-only, it would return the same
    plan at every following step until an arrival, a request finishes, or KV runs short, so the
    instance may run those steps as one (see ``Instance``).

    A plan is built by its policy, then frozen when it runs (``freeze``, done by
    ``apply_steps``): from then on ``shape()`` is what the step computed, however far its
    requests have advanced since.
    """

    prefills: list[tuple[Request, int]] = field(default_factory=list)
    decodes: list[Request] = field(default_factory=list)
    padding_rows: list[Request] = field(default_factory=list)
    padded_prompt_tokens: int = 0
    num_preempted: int = 0
    num_swapped_in: int = 0
    num_swapped_out: int = 0
    rejected: list[tuple[Request, str]] = field(default_factory=list)
    wake_at_s: float | None = None
    fusable: bool = True
    offload: OffloadStep | None = None  # CPU-offloaded rows riding on this step (OmniServe)
    _frozen: StepShape | None = field(default=None, init=False, repr=False)

    @property
    def is_empty(self) -> bool:
        return not self.prefills and not self.decodes and self.offload is None

    @property
    def is_decode_only(self) -> bool:
        return not self.prefills and bool(self.decodes)

    def freeze(self) -> StepShape:
        """Snapshot the step's shape before its requests advance; returns it."""
        if self._frozen is None:
            self._frozen = self.shape()
        return self._frozen

    def shape(self) -> StepShape:
        """What the step computes: from its requests' progress until frozen, then fixed."""
        if self._frozen is not None:
            return self._frozen
        if self.padded_prompt_tokens:
            return self._padded_shape()
        chunks = tuple((q, r.num_computed_tokens) for r, q in self.prefills)
        dense_only = self.offload.dense_only_tokens if self.offload is not None else 0.0
        if not self.decodes:
            return StepShape(chunks, dense_only_tokens=dense_only)
        done = [r.num_computed_tokens for r in self.decodes]  # each row attends over these + 1
        n = len(done)
        return StepShape(chunks, n, sum(done) + n, max(done) + 1, dense_only_tokens=dense_only)

    def _padded_shape(self) -> StepShape:
        s = self.padded_prompt_tokens
        chunks = ((s, 0),) * len(self.prefills)
        rows = len(self.decodes) + len(self.padding_rows)
        if not self.decodes:
            return StepShape(chunks, padded=True)
        ctx = s + max(r.num_generated_tokens for r in self.decodes)
        return StepShape(chunks, rows, rows * ctx, ctx, padded=True)

    def num_padding_tokens(self, num_steps: int = 1) -> int:
        """Tokens computed for padding over ``num_steps`` repeats of this plan (the rows'
        linear-layer work that is wasted): padded prompt slots, plus finished rows riding along."""
        if not self.padded_prompt_tokens:
            return 0
        s = self.padded_prompt_tokens
        return sum(s - q for _, q in self.prefills) + len(self.padding_rows) * num_steps


def apply_steps(plan: BatchPlan, num_steps: int, end_s: float, first_end_s: float | None = None,
                gaps: list[float] | None = None) -> list[Request]:
    """Advance every request in ``plan`` by ``num_steps`` identical steps, the first ending at
    ``first_end_s`` (default: ``end_s``), the last at ``end_s``; each row's gap before its first
    new token goes to ``gaps`` (the run's later gaps are its step durations, recorded apart).

    Returns the requests that emitted their last output token. ``num_steps > 1`` only for
    decode-only plans (the instance guarantees no request finishes before the last step).
    """
    plan.freeze()
    done: list[Request] = []
    for r, q in plan.prefills:
        r.num_computed_tokens += q
        if r.num_computed_tokens == r.num_known_tokens:
            emit(r, 1, end_s, done, gaps)
    decodes = plan.decodes
    if gaps is not None and decodes:  # a decode row has emitted its first token already
        first_s = end_s if first_end_s is None else first_end_s
        gaps.extend([first_s - r.last_token_s for r in decodes])
    for r in decodes:  # ``emit`` inlined: a row of every decode step
        r.num_computed_tokens += num_steps
        if r.num_generated_tokens == 0:
            r.first_token_s = end_s
        r.last_token_s = end_s
        r.num_generated_tokens += num_steps
        if r.num_generated_tokens >= r.stop_after_tokens:
            done.append(r)
    return done


def mark_finished(r: Request, at_s: float) -> None:
    r.status = RequestStatus.FINISHED
    r.finish_s = at_s
