"""Collects flat records while the simulation runs; turns them into DataFrames at the end."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from llmsim.request import Request

STEP_COLUMNS = [
    "instance", "start_s", "duration_s", "num_iterations", "num_prefill_tokens",
    "num_decode_seqs", "num_padding_tokens", "kv_used_blocks", "kv_used_tokens", "kv_num_blocks",
    "num_waiting", "num_running", "num_preempted", "num_swapped_in", "num_swapped_out", "role",
    "num_offloaded_rows", "num_offloaded_tokens",
]

REQUEST_COLUMNS = [
    "request_id", "arrival_s", "prompt_tokens", "output_tokens", "service_class", "priority",
    "ttft_slo_s", "tpot_slo_s", "deadline_s", "instance", "status", "first_scheduled_s",
    "first_token_s", "finish_s", "ttft_s", "tpot_s", "e2e_s", "num_generated_tokens",
    "num_preemptions", "num_recomputed_tokens", "reject_reason", "decode_instance",
    "handoff_s", "kv_transfer_start_s", "kv_transfer_end_s",
]


class Recorder:
    def __init__(self) -> None:
        self._steps: list[tuple] = []

    def step(self, instance_id, start_s, duration_s, num_iterations, plan, kv, policy,
             role: str = "colocated") -> None:
        """One record per step, or per run of identical decode steps (``num_iterations``)."""
        padding = plan.num_padding_tokens(num_iterations)
        self._steps.append((
            instance_id, start_s, duration_s, num_iterations, sum(q for _, q in plan.prefills),
            len(plan.decodes), padding, kv.num_used_blocks, kv.num_used_tokens, kv.num_blocks,
            policy.num_waiting, policy.num_running, plan.num_preempted, plan.num_swapped_in,
            plan.num_swapped_out, role,
            plan.offload.num_rows if plan.offload is not None else 0,
            plan.offload.num_tokens_emitted if plan.offload is not None else 0))

    def steps_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._steps, columns=STEP_COLUMNS)


def requests_frame(requests: list[Request]) -> pd.DataFrame:
    rows = []
    for r in requests:
        ttft = r.first_token_s - r.arrival_s
        e2e = r.finish_s - r.arrival_s if r.status.name == "FINISHED" else math.nan
        tpot = ((r.finish_s - r.first_token_s) / (r.output_tokens - 1)
                if r.status.name == "FINISHED" and r.output_tokens > 1 else math.nan)
        rows.append((r.request_id, r.arrival_s, r.prompt_tokens, r.output_tokens,
                     r.service_class.name.lower(), r.priority, r.ttft_slo_s, r.tpot_slo_s,
                     r.deadline_s, r.instance_id, r.status.name.lower(), r.first_scheduled_s,
                     r.first_token_s, r.finish_s, ttft, tpot, e2e, r.num_generated_tokens,
                     r.num_preemptions, r.num_recomputed_tokens, r.reject_reason,
                     r.decode_instance_id, r.handoff_s, r.kv_transfer_start_s,
                     r.kv_transfer_end_s))
    df = pd.DataFrame(rows, columns=REQUEST_COLUMNS)
    for col in ("ttft_slo_s", "tpot_slo_s", "deadline_s"):
        df[col] = df[col].replace(np.inf, np.nan)
    return df
