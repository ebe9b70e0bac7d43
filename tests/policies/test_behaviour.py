"""Behaviour of each policy on small hand-built cases (policies.md sections 2-5)."""
from __future__ import annotations

from llmsim.batch import apply_steps
from llmsim.policies.orca import OrcaConfig, OrcaPolicy
from llmsim.policies.sarathi import SarathiConfig, SarathiPolicy
from llmsim.policies.static import StaticConfig, StaticPolicy
from llmsim.policies.vllm import VLLMConfig, VLLMPolicy
from llmsim.request import RequestStatus
from tests.conftest import LIMITS, make_kv, make_requests


def step(policy, kv, now=0.0):
    """Schedule, apply one step, hand finished requests back; returns (plan, released)."""
    plan = policy.schedule(kv, now)
    before = plan.shape()
    done = apply_steps(plan, 1, now)
    assert plan.shape() == before  # a plan that ran is a snapshot of what it computed
    return plan, policy.on_step_end(done, kv)


def shape_of(plan):
    return plan.shape()


# ---- vLLM ------------------------------------------------------------------------------------
def test_vllm_prefill_steps_run_no_decodes():
    p = VLLMPolicy(VLLMConfig(), LIMITS)
    kv = make_kv(num_blocks=100)
    reqs = make_requests([(0.0, 8, 10), (0.1, 8, 10)])
    p.enqueue(reqs[0])
    plan, _ = step(p, kv)
    assert [r for r, _ in plan.prefills] == [reqs[0]] and not plan.decodes
    p.enqueue(reqs[1])
    plan, _ = step(p, kv)
    assert [r for r, _ in plan.prefills] == [reqs[1]] and not plan.decodes  # prefill first
    plan, _ = step(p, kv)
    assert not plan.prefills and plan.decodes == reqs


def test_vllm_preempts_the_last_arrival_by_recompute():
    p = VLLMPolicy(VLLMConfig(), LIMITS)
    kv = make_kv(num_blocks=6, block_size=4)
    a, b, c = make_requests([(0.0, 8, 50), (1.0, 4, 50), (2.0, 4, 50)])
    for r in (a, b, c):
        p.enqueue(r)
    plan, _ = step(p, kv)  # all three prompts: 2 + 1 + 1 blocks
    assert len(plan.prefills) == 3
    preempted = []
    for _ in range(8):
        plan, _ = step(p, kv)
        if plan.num_preempted:
            preempted = [r for r in (a, b, c) if r.status == RequestStatus.WAITING]
            break
    assert preempted == [c]  # the latest arrival goes first
    assert c.num_computed_tokens == 0 and c.num_preemptions == 1
    assert p.waiting[0] is c  # and waits at the front of the queue
    kv.check_invariants()


def test_vllm_swap_mode_moves_kv_to_host_and_back():
    p = VLLMPolicy(VLLMConfig(preemption_mode="swap"), LIMITS)
    kv = make_kv(num_blocks=6, block_size=4, num_host_blocks=8)
    a, b = make_requests([(0.0, 12, 40), (1.0, 8, 6)])
    p.enqueue(a)
    p.enqueue(b)
    step(p, kv)
    swapped_seen = False
    for _ in range(60):
        plan, _ = step(p, kv)
        swapped_seen |= plan.num_swapped_out > 0
        kv.check_invariants()
        if a.num_generated_tokens >= a.output_tokens:
            break
    assert swapped_seen and b.num_preemptions >= 1
    assert b.num_recomputed_tokens == 0  # swapping keeps the computed KV


def test_vllm_rejects_prompts_beyond_the_token_budget():
    p = VLLMPolicy(VLLMConfig(max_num_batched_tokens=16), LIMITS)
    kv = make_kv()
    (r,) = make_requests([(0.0, 17, 2)])
    p.enqueue(r)
    plan = p.schedule(kv, 0.0)
    assert plan.rejected and "max_num_batched_tokens" in plan.rejected[0][1]


# ---- Sarathi ---------------------------------------------------------------------------------
def test_sarathi_chunks_prompts_within_the_token_budget_with_decodes_first():
    p = SarathiPolicy(SarathiConfig(max_num_batched_tokens=8), LIMITS)
    kv = make_kv(num_blocks=100)
    a, b = make_requests([(0.0, 6, 20), (0.5, 20, 5)])
    p.enqueue(a)
    plan, _ = step(p, kv)
    assert plan.prefills == [(a, 6)]
    p.enqueue(b)
    plan, _ = step(p, kv)
    assert plan.decodes == [a] and plan.prefills == [(b, 7)]  # 1 decode + 7 prompt tokens
    plan, _ = step(p, kv)
    assert plan.decodes == [a] and plan.prefills == [(b, 7)]
    plan, _ = step(p, kv)
    assert plan.decodes == [a] and plan.prefills == [(b, 6)]
    assert b.num_generated_tokens == 1  # the prompt is done: first token
    plan, _ = step(p, kv)
    assert set(plan.decodes) == {a, b} and not plan.prefills


# ---- Orca ------------------------------------------------------------------------------------
def test_orca_reserves_max_tokens_and_mixes_prefill_with_decodes():
    p = OrcaPolicy(OrcaConfig(reserve_tokens=40), LIMITS)
    kv = make_kv(num_blocks=25, block_size=4)  # 100 tokens: room for two 40-token reservations
    a, b, c = make_requests([(0.0, 8, 5), (0.0, 8, 5), (0.0, 8, 5)])
    for r in (a, b):
        p.enqueue(r)
    step(p, kv)
    assert kv.num_used_blocks == 20
    p.enqueue(c)
    plan, _ = step(p, kv)
    assert not plan.prefills and c.status == RequestStatus.WAITING  # no room for its reservation
    for _ in range(3):
        plan, released = step(p, kv)
    assert released == [a, b]
    plan, _ = step(p, kv)
    assert plan.prefills == [(c, 8)]


def test_orca_admits_while_others_decode():
    p = OrcaPolicy(OrcaConfig(reserve_tokens=32), LIMITS)
    kv = make_kv(num_blocks=100)
    a, b = make_requests([(0.0, 8, 5), (0.0, 8, 5)])
    p.enqueue(a)
    step(p, kv)
    p.enqueue(b)
    plan, _ = step(p, kv)
    assert plan.decodes == [a] and plan.prefills == [(b, 8)]


# ---- static ----------------------------------------------------------------------------------
def test_static_waits_for_the_whole_batch_and_pads():
    p = StaticPolicy(StaticConfig(max_num_seqs=4, reserve_tokens=64), LIMITS)
    kv = make_kv(num_blocks=200)
    a, b = make_requests([(0.0, 10, 2), (0.0, 4, 4)])
    late = make_requests([(0.1, 5, 1)], start_id=2)[0]
    p.enqueue(a)
    p.enqueue(b)
    plan, _ = step(p, kv)
    assert plan.padded_prompt_tokens == 10 and plan.num_padding_tokens() == 6
    assert shape_of(plan).prefill_chunks == ((10, 0), (10, 0))
    p.enqueue(late)
    released_all = []
    for _ in range(3):
        plan, released = step(p, kv)
        assert late not in [r for r, _ in plan.prefills]  # no joining a running batch
        released_all += released
    # a finished after 2 tokens but rode along as a padding row and is released with b
    assert released_all == [a, b]
    assert plan.padding_rows == [a] and shape_of(plan).num_decode_seqs == 2
    assert kv.num_used_blocks == 0  # the batch's KV is freed at once
    plan, _ = step(p, kv, now=1.0)
    assert plan.prefills == [(late, 5)]


def test_static_max_wait_holds_a_partial_batch():
    p = StaticPolicy(StaticConfig(max_num_seqs=4, max_wait_s=2.0, reserve_tokens=64), LIMITS)
    kv = make_kv(num_blocks=200)
    (a,) = make_requests([(1.0, 10, 2)])
    p.enqueue(a)
    plan = p.schedule(kv, 1.5)
    assert plan.is_empty and plan.wake_at_s == 3.0
    plan = p.schedule(kv, 3.0)
    assert plan.prefills == [(a, 10)]


def test_static_unpadded_drops_finished_rows():
    p = StaticPolicy(StaticConfig(padded=False, reserve_tokens=64), LIMITS)
    kv = make_kv(num_blocks=200)
    a, b = make_requests([(0.0, 10, 1), (0.0, 4, 3)])
    p.enqueue(a)
    p.enqueue(b)
    plan, _ = step(p, kv)
    assert plan.num_padding_tokens() == 0 and shape_of(plan).prefill_chunks == ((10, 0), (4, 0))
    plan, _ = step(p, kv)
    assert plan.decodes == [b] and not plan.padding_rows
