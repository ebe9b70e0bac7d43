"""Collects flat, typed records while the simulation runs; turns them into DataFrames at the end.

``StepRecord`` and ``RequestRecord`` are the schemas: their fields are the CSV columns, in
order, and their types the columns' dtypes (``str`` fields of steps are stored as small codes).
Steps are packed into numpy chunks as they come and requests read column by column at the end,
so no Python object per record is kept.
"""
from __future__ import annotations

from enum import Enum
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple, get_type_hints

import numpy as np
import pandas as pd

from llmsim.metrics.itl import TokenGaps
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
    num_cached_prompt_tokens: int  # prompt tokens of this step's admissions found cached
    num_host_loaded_tokens: int  # of which loaded from the host tier (time in duration_s)
    num_disk_loaded_tokens: int  # of which loaded from the disk tier (time in duration_s)


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
ROLES = ("colocated", "prefill", "decode", "cpu")  # a step's role, stored as its index
_NUMPY: dict[type, Any] = {int: np.int64, float: np.float64, str: np.int8}
_STEP_DTYPE = np.dtype([(n, _NUMPY[t]) for n, t in get_type_hints(StepRecord).items()])
_CHUNK = 8192
# request columns named otherwise on ``Request``, and those computed from others
_ATTRIBUTE = {"instance": "instance_id", "decode_instance": "decode_instance_id"}
_DERIVED = ("deadline_s", "ttft_s", "tpot_s", "e2e_s")


class Recorder:
    def __init__(self) -> None:
        self._pending: list[tuple] = []
        self._chunks: list[np.ndarray] = []
        self.token_gaps = TokenGaps()

    def step(self, instance_id: int, start_s: float, duration_s: float, num_iterations: int,
             plan: BatchPlan, kv: KVCache, policy: Policy, role: str = "colocated",
             cached: tuple[int, int, int] = (0, 0, 0)) -> None:
        """One record per step, or per run of identical decode steps (``num_iterations``)."""
        off = plan.offload
        self._pending.append((
            instance_id, start_s, duration_s, num_iterations, sum(q for _, q in plan.prefills),
            len(plan.decodes), plan.num_padding_tokens(num_iterations), kv.num_used_blocks,
            kv.num_used_tokens, kv.num_blocks, policy.num_waiting, policy.num_running,
            plan.num_preempted, plan.num_swapped_in, plan.num_swapped_out, ROLES.index(role),
            off.num_rows if off is not None else 0,
            off.num_tokens_emitted if off is not None else 0, cached[0], cached[1], cached[2]))
        if len(self._pending) >= _CHUNK:
            self._pack()
        self.token_gaps.bound()

    def _pack(self) -> None:
        if self._pending:
            self._chunks.append(np.array(self._pending, dtype=_STEP_DTYPE))
            self._pending = []

    def steps_frame(self) -> pd.DataFrame:
        """The records as a frame, one column at a time; the chunks are handed over (freed
        here), so the table is held once, not twice, from then on. Call it once, at the end."""
        self._pack()
        chunks, self._chunks = self._chunks or [np.empty(0, dtype=_STEP_DTYPE)], []
        cols: dict[str, np.ndarray] = {}
        for n in STEP_COLUMNS:
            col = np.concatenate([c[n] for c in chunks])
            cols[n] = np.array(ROLES, dtype=object)[col] if n == "role" else col
        del chunks
        return pd.DataFrame(cols, copy=False)


def _text(v: object) -> object:
    return v.name.lower() if isinstance(v, Enum) else v


def requests_frame(requests: list[Request]) -> pd.DataFrame:
    """One row per request, built column by column from ``RequestRecord`` (no per-request
    tuple in between)."""
    n = len(requests)
    data: dict[str, Any] = {}
    for name, kind in get_type_hints(RequestRecord).items():
        if name in _DERIVED:
            continue
        get = attrgetter(_ATTRIBUTE.get(name, name))
        data[name] = ([_text(get(r)) for r in requests] if kind is str else
                      np.fromiter(map(get, requests), dtype=_NUMPY[kind], count=n))
    arrival: np.ndarray = data["arrival_s"]
    first_token: np.ndarray = data["first_token_s"]
    finish: np.ndarray = data["finish_s"]
    outputs: np.ndarray = data["num_generated_tokens"]  # output_tokens unless a cap cut it
    finished = np.array([r.status == RequestStatus.FINISHED for r in requests], dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        data["e2e_s"] = np.where(finished, finish - arrival, np.nan)
        data["tpot_s"] = np.where(finished & (outputs > 1),
                                  (finish - first_token) / (outputs - 1), np.nan)
        data["deadline_s"] = data["deadline_at_s"] - arrival
    data["ttft_s"] = first_token - arrival
    df = pd.DataFrame({c: data[c] for c in REQUEST_COLUMNS}, copy=False)  # no second table
    for c in ("ttft_slo_s", "tpot_slo_s", "deadline_s", "deadline_at_s"):
        df[c] = df[c].replace(np.inf, np.nan)
    return df
