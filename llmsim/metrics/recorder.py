"""Collects flat, typed records while the simulation runs; turns them into DataFrames at the end.

A record is a ``NamedTuple``: typed and named like a dataclass, as cheap as a tuple, and its
fields are the CSV columns, so a column cannot drift from the value written under it.
"""
from __future__ import annotations

import math
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


class Recorder:
    def __init__(self) -> None:
        self._steps: list[StepRecord] = []

    def step(self, instance_id: int, start_s: float, duration_s: float, num_iterations: int,
             plan: BatchPlan, kv: KVCache, policy: Policy, role: str = "colocated") -> None:
        """One record per step, or per run of identical decode steps (``num_iterations``)."""
        off = plan.offload
        self._steps.append(StepRecord(
            instance_id, start_s, duration_s, num_iterations, sum(q for _, q in plan.prefills),
            len(plan.decodes), plan.num_padding_tokens(num_iterations), kv.num_used_blocks,
            kv.num_used_tokens, kv.num_blocks, policy.num_waiting, policy.num_running,
            plan.num_preempted, plan.num_swapped_in, plan.num_swapped_out, role,
            off.num_rows if off is not None else 0,
            off.num_tokens_emitted if off is not None else 0))

    def steps_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._steps, columns=STEP_COLUMNS)


def request_record(r: Request) -> RequestRecord:
    finished = r.status == RequestStatus.FINISHED
    ttft = r.first_token_s - r.arrival_s
    e2e = r.finish_s - r.arrival_s if finished else math.nan
    tpot = ((r.finish_s - r.first_token_s) / (r.output_tokens - 1)
            if finished and r.output_tokens > 1 else math.nan)
    return RequestRecord(
        r.request_id, r.arrival_s, r.prompt_tokens, r.output_tokens,
        r.service_class.name.lower(), r.priority, r.ttft_slo_s, r.tpot_slo_s,
        r.deadline_at_s - r.arrival_s, r.deadline_at_s, r.instance_id, r.status.name.lower(),
        r.first_scheduled_s, r.first_token_s, r.finish_s, ttft, tpot, e2e,
        r.num_generated_tokens, r.num_preemptions, r.num_recomputed_tokens, r.reject_reason,
        r.decode_instance_id, r.handoff_s, r.kv_transfer_start_s, r.kv_transfer_end_s)


def requests_frame(requests: list[Request]) -> pd.DataFrame:
    df = pd.DataFrame([request_record(r) for r in requests], columns=REQUEST_COLUMNS)
    for col in ("ttft_slo_s", "tpot_slo_s", "deadline_s", "deadline_at_s"):
        df[col] = df[col].replace(np.inf, np.nan)
    return df
