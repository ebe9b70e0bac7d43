"""UELLM-style serving: SLO-ODBS batching of predicted lengths, run as padded static batches
(policies.md §6, ICSOC 2024; authors' code ``experiment/batch_algorithm/SLO_ODBS.py``).

The resource profiler is the workload's output-length predictor (``scenario.predictor``,
bucketed with 80% accuracy by default). Whenever the executor is idle, SLO-ODBS re-groups all
waiting requests and the first group runs as one padded static batch (the rest stay queued):

    sorted by w1 * SLO + w2 * predicted_len        (SLO = absolute deadline, seconds)
    NOTE: a request joins the current group while it has fewer than batch_size rows and its
    marginal padding (len - cur_max) * (rows + 1) * overhead_factor <= threshold_tokens
    (negative increments always pass, as in the code); otherwise it opens a new group.

KV: each group reserves rows x (longest prompt + longest predicted output + margin); a group
that does not fit runs its longest prefix that does. With ``cap_from_prediction`` the group also
runs as the authors' ``all.py`` calls ``chat_batch(..., max_token + 50)``: ``generate``'s
``max_length`` (prompt + new tokens) is the group's longest prediction + margin, so answers longer
than that are cut (``max_length``, if set, caps it further).
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.static import StaticConfig, StaticPolicy
from llmsim.request import Request


class UELLMConfig(StaticConfig):
    kind: Literal["uellm"] = "uellm"  # type: ignore[assignment]
    max_num_seqs: int = Field(10, gt=0, description="BS: rows per group (10 in the code)")
    # the code's constants are per character of its (Chinese) profile: 1.73 characters per
    # ChatGLM2-6B token on the authors' reference answers (make_uellm_trace.py's data)
    w_slo: float = Field(1.0, ge=0, description="w1")
    w_len: float = Field(0.865, ge=0, description="w2: 0.5 per character, 1.73 characters a token")
    threshold_tokens: float = Field(8670.0, gt=0, description="15000 characters / 1.73 a token")
    overhead_factor: float = Field(1.2, gt=0, description="L: extra cost of parallel rows")
    max_new_tokens_margin: int = Field(50, ge=0)
    cap_from_prediction: bool = Field(False, description="generate's max_length = the group's "
                                      "longest prediction + margin (all.py): longer answers cut")
    sort: Literal["slo_odbs", "odbs", "slo_dbs", "fcfs"] = Field(
        "slo_odbs", description="ablations: odbs (length only), slo_dbs (SLO only), fcfs")


def _slo_key(r: Request) -> float:
    if math.isfinite(r.deadline_at_s):
        return r.deadline_at_s
    if math.isfinite(r.ttft_slo_s):
        return r.arrival_s + r.ttft_slo_s
    return r.arrival_s + 1e6


def _length(r: Request) -> int:
    """The profiler's prediction; without a predictor, the prompt length stands in."""
    return r.predicted_output_tokens if r.predicted_output_tokens is not None else r.prompt_tokens


def slo_odbs_groups(requests: list[Request], cfg: UELLMConfig) -> list[list[Request]]:
    """The reference grouping (SLO_ODBS.py), with the sort key chosen by ``cfg.sort``."""
    if not requests:
        return []
    if cfg.sort == "fcfs":
        ordered = sorted(requests, key=lambda r: (r.arrival_s, r.request_id))
        return [ordered[i:i + cfg.max_num_seqs] for i in range(0, len(ordered), cfg.max_num_seqs)]
    key = {"slo_odbs": lambda r: cfg.w_slo * _slo_key(r) + cfg.w_len * _length(r),
           "odbs": _length, "slo_dbs": _slo_key}[cfg.sort]
    size = _slo_key if cfg.sort == "slo_dbs" else _length
    ordered = sorted(requests, key=lambda r: (key(r), r.request_id))
    groups: list[list[Request]] = []
    cur: list[Request] = []
    cur_max = size(ordered[0])
    for q in ordered:
        if len(cur) < cfg.max_num_seqs and \
                (size(q) - cur_max) * (len(cur) + 1) * cfg.overhead_factor <= cfg.threshold_tokens:
            cur.append(q)
            cur_max = max(cur_max, size(q))
        else:
            groups.append(cur)
            cur, cur_max = [q], size(q)
    groups.append(cur)
    return groups


class UELLMPolicy(StaticPolicy):
    name = "uellm"
    cite = ("UELLM: A Unified and Efficient Approach for LLM Inference Serving, ICSOC 2024 (arXiv "
            "2409.14961)")
    cfg: UELLMConfig
    Config = UELLMConfig

    def _form_batch(self, kv: KVCache, now_s: float) -> BatchPlan:
        if not self.waiting:
            return BatchPlan()
        hold_s = self._hold_until_s(now_s)  # max_wait_s: fewer than a group's rows wait
        if hold_s is not None:
            return BatchPlan(wake_at_s=hold_s)
        group = slo_odbs_groups(list(self.waiting), self.cfg)[0]
        prompt_max = max(r.num_uncomputed_tokens for r in group)
        new_max = max(_length(r) for r in group) + self.cfg.max_new_tokens_margin
        reserve = min(prompt_max + new_max, self.limits.max_model_len)
        cap = self.cfg.max_length
        if self.cfg.cap_from_prediction:
            cap = new_max if cap is None else min(cap, new_max)
        return self._start_batch(kv, group, reserve, cap)
