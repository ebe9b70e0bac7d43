"""The transformers continuous-batching scheduler preset, on hand-built states."""
from __future__ import annotations

from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.base import EngineLimits
from llmsim.policies.hf_cb import HFContinuousBatchingConfig, HFContinuousBatchingPolicy
from llmsim.request import Request


def _req(i, prompt, out=10):
    return Request(request_id=i, arrival_s=float(i), prompt_tokens=prompt, output_tokens=out)


def _policy(**kw):
    return HFContinuousBatchingPolicy(HFContinuousBatchingConfig(**kw), EngineLimits(4096, 16))


def test_token_budget_splits_prompts_and_blocks_grow_per_chunk():
    p, kv = _policy(max_num_batched_tokens=100), KVCache(100, 16)
    a, b = _req(0, 150), _req(1, 30)
    p.enqueue(a), p.enqueue(b)
    plan = p.schedule(kv, 0.0)
    assert [(r.request_id, n) for r, n in plan.prefills] == [(0, 100)]
    assert kv.num_tokens_of(0) == 100  # allocated as processed, not the whole prompt
    a.num_computed_tokens = 100
    plan = p.schedule(kv, 0.1)
    assert [(r.request_id, n) for r, n in plan.prefills] == [(0, 50), (1, 30)]


def _one_decoding_one_split(scheduler):
    p, kv = _policy(max_num_batched_tokens=64, scheduler=scheduler), KVCache(100, 16)
    d, s = _req(0, 10), _req(1, 200)
    for r in (d, s):
        p.enqueue(r)
    p.schedule(kv, 0.0)  # d whole (10), s first 54 tokens
    d.num_computed_tokens, d.num_generated_tokens = 10, 1
    s.num_computed_tokens = 54
    return p, kv, d, s


def test_fifo_puts_decodes_before_split_prefills():
    p, kv, d, s = _one_decoding_one_split("fifo")
    plan = p.schedule(kv, 0.1)
    assert plan.decodes == [d] and plan.prefills == [(s, 63)]


def test_prefill_first_puts_split_prefills_before_decodes():
    p, kv, d, s = _one_decoding_one_split("prefill_first")
    plan = p.schedule(kv, 0.1)
    assert plan.prefills == [(s, 64)] and plan.decodes == []  # the budget went to the prefill


def test_safety_margin_stops_new_prefills_but_not_decodes():
    p, kv = _policy(max_num_batched_tokens=512, safety_margin=0.5), KVCache(10, 16)
    a = _req(0, 16 * 6)
    p.enqueue(a)
    p.schedule(kv, 0.0)  # 6 of 10 blocks: under the 50% free margin from now on
    a.num_computed_tokens, a.num_generated_tokens = 96, 1
    b = _req(1, 16)
    p.enqueue(b)
    plan = p.schedule(kv, 0.1)
    assert plan.decodes == [a] and plan.prefills == []


def test_a_candidate_that_does_not_fit_is_skipped_not_blocking():
    p, kv = _policy(max_num_batched_tokens=4096, safety_margin=0.0), KVCache(4, 16)
    big, small = _req(0, 100, out=1), _req(1, 16, out=1)
    p.enqueue(big), p.enqueue(small)
    kv.allocate(99, 16)  # someone else holds a block: 3 left, big needs 7
    plan = p.schedule(kv, 0.0)
    assert [r.request_id for r, _ in plan.prefills] == [1]


def test_request_larger_than_the_pool_is_rejected():
    p, kv = _policy(), KVCache(2, 16)
    p.enqueue(_req(0, 100))
    plan = p.schedule(kv, 0.0)
    assert plan.rejected and "exceed" in plan.rejected[0][1]
