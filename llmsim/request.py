"""A request's identity, its hidden truth and its progress through an instance."""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class RequestStatus(IntEnum):
    """Ordered lifecycle: ``status >= FINISHED`` means the request is done for good."""

    CREATED = 0  # not yet arrived
    WAITING = 1  # queued, no KV on the GPU (new, or preempted by recompute)
    RUNNING = 2  # holds GPU KV; prefilling or decoding
    SWAPPED = 3  # preempted, KV on the host
    FINISHED = 4
    REJECTED = 5


class ServiceClass(IntEnum):
    LATENCY_SENSITIVE = 0
    BEST_EFFORT = 1


@dataclass(slots=True, eq=False)
class Request:
    """One inference request.

    ``output_tokens`` is the ground truth from the workload: the instance uses it to decide when
    a request finishes, policies must not read it (they see ``predicted_output_tokens`` when a
    predictor is configured, else nothing). Token accounting is unified for prefill, decode and
    recompute: the request *knows* ``prompt_tokens + num_generated_tokens`` tokens, of which
    ``num_computed_tokens`` have KV; a step that brings computed up to known emits one token.
    """

    request_id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    service_class: ServiceClass = ServiceClass.LATENCY_SENSITIVE
    priority: int = 0
    ttft_slo_s: float = float("inf")
    tpot_slo_s: float = float("inf")
    deadline_at_s: float = float("inf")  # the deadline as an instant of the run (arrival + budget)
    predicted_output_tokens: int | None = None
    prefix_hashes: tuple[int, ...] = ()  # its prompt's full blocks' chained hashes (prefix caching)
    # where generation stops: ``output_tokens`` unless the engine's cap cuts it (``cap_new_tokens``)
    stop_after_tokens: int = -1

    status: RequestStatus = RequestStatus.CREATED
    num_computed_tokens: int = 0
    num_generated_tokens: int = 0
    instance_id: int = -1
    first_scheduled_s: float = float("nan")
    first_token_s: float = float("nan")
    finish_s: float = float("nan")
    num_preemptions: int = 0
    num_recomputed_tokens: int = 0
    reject_reason: str = ""
    decode_instance_id: int = -1  # disaggregated serving: where the decode ran
    handoff_s: float = float("nan")  # prefill done, KV waiting for the decode side
    kv_transfer_start_s: float = float("nan")
    kv_transfer_end_s: float = float("nan")
    kv_ready_s: float = 0.0  # KV on its way back from host memory lands then (OmniServe)
    last_token_s: float = float("nan")  # when the latest output token came (inter-token gaps)

    def __post_init__(self) -> None:
        if self.stop_after_tokens < 0:
            self.stop_after_tokens = self.output_tokens

    @property
    def num_known_tokens(self) -> int:
        return self.prompt_tokens + self.num_generated_tokens

    @property
    def num_uncomputed_tokens(self) -> int:
        """Tokens whose KV must still be computed before the next token can be emitted."""
        return self.num_known_tokens - self.num_computed_tokens

    @property
    def is_prefilling(self) -> bool:
        """True until the (re)prefill reaches the last known token; a decode has 1 uncomputed."""
        return self.num_generated_tokens == 0 or self.num_uncomputed_tokens > 1

    @property
    def is_finished(self) -> bool:
        return self.status >= RequestStatus.FINISHED

    @property
    def num_remaining_output_tokens(self) -> int:
        """Truth-based; for the instance (mechanism) only."""
        return self.stop_after_tokens - self.num_generated_tokens


# ---- token progress (the mechanism every step applies) --------------------------------------
def emit(r: Request, num_tokens: int, end_s: float, done: list[Request],
         gaps: list[float] | None = None) -> None:
    """``num_tokens`` tokens, the last at ``end_s``; for one token, the gap since the previous
    goes to ``gaps`` unless it is the request's first (runs record their gaps in bulk)."""
    if r.num_generated_tokens == 0:
        r.first_token_s = end_s
    elif gaps is not None:
        gaps.append(end_s - r.last_token_s)
    r.last_token_s = end_s
    r.num_generated_tokens += num_tokens
    if r.num_generated_tokens >= r.stop_after_tokens:
        done.append(r)


def cap_new_tokens(r: Request, max_new_tokens: int) -> None:
    """The engine's generation cap (``generate(max_new_tokens=...)``, vLLM's ``max_tokens``),
    set by a policy: the request stops after ``max_new_tokens`` new tokens (at least one) if its
    own output is longer. The policy learns nothing of the true length from it."""
    r.stop_after_tokens = min(r.output_tokens, max(1, max_new_tokens))


def emit_tokens(requests: list[Request], end_s: float,
                gaps: list[float] | None = None) -> list[Request]:
    """One token each for requests whose attention ran off the GPU; returns the finished."""
    done: list[Request] = []
    for r in requests:
        r.num_computed_tokens += 1
        emit(r, 1, end_s, done, gaps)
    return done
