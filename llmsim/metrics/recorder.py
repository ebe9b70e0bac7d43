"""Collects flat, typed records while the simulation runs; turns them into DataFrames at the end.

A record is a ``NamedTuple``: typed and named like a dataclass, as cheap as a tuple, and its
fields are the CSV columns, so a column cannot drift from the value written under it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from llmsim.request import Request, RequestStatus

if TYPE_CHECKING:
    from llmsim.batch import BatchPlan
    from llmsim.cluster.kv_cache import KVCache
    from llmsim.policies.base import Policy


class StepRecord(NamedTuple):
    """One engine step, or one run of ``num_iterations`` identical decode steps."""

    instance: int
    start_s: float
    duration_s: float
    num_iterations: int
    num_prefill_tokens: int
    num_decode_seqs: int
    num_padding_tokens: int
    kv_used_blocks: int
    kv_used_tokens: int
    kv_num_blocks: int
    num_waiting: int
    num_running: int
    num_preempted: int
    num_swapped_in: int
    num_swapped_out: int
    role: str
    num_offloaded_rows: int
    num_offloaded_tokens: int


class RequestRecord(NamedTuple):
    """One request's final state. SLO budgets (``*_slo_s``, ``deadline_s``) are relative to
    arrival; ``deadline_at_s`` is the same deadline as an instant of the run."""

    request_id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    service_class: str
    priority: int
    ttft_slo_s: float
    tpot_slo_s: float
    deadline_s: float
    deadline_at_s: float
    instance: int
    status: str
    first_scheduled_s: float
    first_token_s: float
    finish_s: float
    ttft_s: float
    tpot_s: float
    e2e_s: float
    num_generated_tokens: int
    num_preemptions: int
    num_recomputed_tokens: int
    reject_reason: str
    decode_instance: int
    handoff_s: float
    kv_transfer_start_s: float
    kv_transfer_end_s: float


STEP_COLUMNS = list(StepRecord._fields)
REQUEST_COLUMNS = list(RequestRecord._fields)
ROLES = ("colocated", "prefill", "decode", "cpu")
# Step records are packed into numpy chunks as they come: ~140 bytes a step instead of a
# tuple of Python objects (~600), so memory follows the run's length far less steeply.
_STEP_DTYPE = np.dtype([(n, np.int8 if n == "role" else np.float64 if n.endswith("_s")
                         else np.int64) for n in STEP_COLUMNS])
_CHUNK = 8192


class Recorder:
    def __init__(self) -> None:
        self._pending: list[tuple] = []
        self._chunks: list[np.ndarray] = []

    def step(self, instance_id: int, start_s: float, duration_s: float, num_iterations: int,
             plan: BatchPlan, kv: KVCache, policy: Policy, role: str = "colocated") -> None:
        """One record per step, or per run of identical decode steps (``num_iterations``)."""
        off = plan.offload
        self._pending.append((
            instance_id, start_s, duration_s, num_iterations, sum(q for _, q in plan.prefills),
            len(plan.decodes), plan.num_padding_tokens(num_iterations), kv.num_used_blocks,
            kv.num_used_tokens, kv.num_blocks, policy.num_waiting, policy.num_running,
            plan.num_preempted, plan.num_swapped_in, plan.num_swapped_out, ROLES.index(role),
            off.num_rows if off is not None else 0,
            off.num_tokens_emitted if off is not None else 0))
        if len(self._pending) >= _CHUNK:
            self._pack()

    def _pack(self) -> None:
        if self._pending:
            self._chunks.append(np.array(self._pending, dtype=_STEP_DTYPE))
            self._pending = []

    def steps_frame(self) -> pd.DataFrame:
        """The records as a frame, one column at a time (never the whole table twice)."""
        self._pack()
        chunks = self._chunks or [np.empty(0, dtype=_STEP_DTYPE)]
        cols: dict[str, np.ndarray] = {}
        for n in STEP_COLUMNS:
            col = np.concatenate([c[n] for c in chunks])
            cols[n] = np.array(ROLES, dtype=object)[col] if n == "role" else col
        return pd.DataFrame(cols, copy=False)


def requests_frame(requests: list[Request]) -> pd.DataFrame:
    """One row per request, built column by column (no per-request tuple in between)."""
    n = len(requests)

    def col(get, dtype) -> np.ndarray:
        return np.fromiter(map(get, requests), dtype=dtype, count=n)

    finished = col(lambda r: r.status == RequestStatus.FINISHED, bool)
    arrival = col(lambda r: r.arrival_s, float)
    first_token = col(lambda r: r.first_token_s, float)
    finish = col(lambda r: r.finish_s, float)
    outputs = col(lambda r: r.output_tokens, np.int64)
    deadline_at = col(lambda r: r.deadline_at_s, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        e2e = np.where(finished, finish - arrival, np.nan)
        tpot = np.where(finished & (outputs > 1), (finish - first_token) / (outputs - 1), np.nan)
        deadline = deadline_at - arrival
    data = {
        "request_id": col(lambda r: r.request_id, np.int64),
        "arrival_s": arrival,
        "prompt_tokens": col(lambda r: r.prompt_tokens, np.int64),
        "output_tokens": outputs,
        "service_class": [r.service_class.name.lower() for r in requests],
        "priority": col(lambda r: r.priority, np.int64),
        "ttft_slo_s": col(lambda r: r.ttft_slo_s, float),
        "tpot_slo_s": col(lambda r: r.tpot_slo_s, float),
        "deadline_s": deadline,
        "deadline_at_s": deadline_at,
        "instance": col(lambda r: r.instance_id, np.int64),
        "status": [r.status.name.lower() for r in requests],
        "first_scheduled_s": col(lambda r: r.first_scheduled_s, float),
        "first_token_s": first_token,
        "finish_s": finish,
        "ttft_s": first_token - arrival,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "num_generated_tokens": col(lambda r: r.num_generated_tokens, np.int64),
        "num_preemptions": col(lambda r: r.num_preemptions, np.int64),
        "num_recomputed_tokens": col(lambda r: r.num_recomputed_tokens, np.int64),
        "reject_reason": [r.reject_reason for r in requests],
        "decode_instance": col(lambda r: r.decode_instance_id, np.int64),
        "handoff_s": col(lambda r: r.handoff_s, float),
        "kv_transfer_start_s": col(lambda r: r.kv_transfer_start_s, float),
        "kv_transfer_end_s": col(lambda r: r.kv_transfer_end_s, float),
    }
    df = pd.DataFrame(data, columns=REQUEST_COLUMNS)
    for c in ("ttft_slo_s", "tpot_slo_s", "deadline_s", "deadline_at_s"):
        df[c] = df[c].replace(np.inf, np.nan)
    return df
