"""Prefix caching in the KV cache: shared, reference-counted prompt blocks, evicted least
recently released first, and a run that reuses them."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from llmsim.cluster.kv_cache import KVCache
from llmsim.errors import InputError
from llmsim.scenario import load_scenario
from llmsim.simulation import simulate
from tests.test_cli import assert_one_line_error, llmsim

BS = 4


def test_a_computed_prefix_is_shared_then_kept_evictable_then_evicted_lru():
    kv = KVCache(10, BS, watermark=0.0, prefix_caching=True)
    a = (11, 12, 13)
    assert kv.allocate(1, 13, prefix=a) == 0  # nothing cached yet: 4 blocks
    kv.commit_prefix(1, 13, a)  # its three full prompt blocks become shareable
    kv.check_invariants()
    assert kv.cached_prefix_tokens(a, 13) == 12
    assert kv.cached_prefix_tokens((11, 12, 99), 13) == 8
    assert kv.cached_prefix_tokens(a, 12) == 8  # one token must stay to compute
    assert kv.allocate(2, 14, prefix=(11, 12, 99)) == 8  # shares two blocks, 2 private
    assert kv.num_free_blocks == 10 - 4 - 2
    kv.check_invariants()
    kv.free(1)  # block 13 is only its: evictable; 11 and 12 still held by request 2
    assert kv.num_free_blocks == 10 - 4 and list(kv.prefix.evictable) == [13]
    assert kv.prefix.refs == {11: 1, 12: 1}
    kv.check_invariants()
    kv.free(2)  # its blocks are released last block first (vLLM: a chain's head goes last)
    assert list(kv.prefix.evictable) == [13, 12, 11] and kv.num_free_blocks == 10
    # new blocks come from the empty ones first, then evict least recently released
    kv.allocate(3, 28)  # 7 blocks: exactly the 7 empty ones
    assert list(kv.prefix.evictable) == [13, 12, 11]
    kv.allocate(4, 8)  # 2 more: evicts 13, then 12
    assert list(kv.prefix.evictable) == [11]
    kv.check_invariants()
    assert kv.cached_prefix_tokens(a, 13) == 4  # the head of the chain survives
    kv.allocate(5, 4)
    assert kv.cached_prefix_tokens(a, 13) == 0  # and goes last


def test_taking_an_evictable_hit_counts_against_free_room():
    kv = KVCache(4, BS, watermark=0.0, prefix_caching=True)
    kv.allocate(1, 8, prefix=(1, 2))
    kv.commit_prefix(1, 8, (1, 2))
    kv.free(1)  # 1 and 2 evictable, all 4 blocks free
    kv.allocate(2, 8)  # takes the 2 empty blocks: the 2 free ones are the cached 1 and 2
    # 9 tokens with prefix (1, 2): its 2 hits leave the free pool and 1 more block is needed
    assert not kv.can_allocate(9, prefix=(1, 2))
    assert kv.can_allocate(8, prefix=(1, 2))  # 1 hit (a token must stay) + 1 block: 2
    assert kv.allocate(3, 8, prefix=(1, 2)) == 4  # its private block evicts cached block 2
    kv.check_invariants()
    assert kv.num_free_blocks == 0 and not kv.prefix.evictable


def test_shared_blocks_are_never_swapped_and_random_use_keeps_the_books():
    kv = KVCache(40, BS, watermark=0.0, num_host_blocks=40, prefix_caching=True)
    kv.allocate(1, 9, prefix=(5, 6))
    kv.commit_prefix(1, 9, (5, 6))
    assert not kv.can_swap_out(1)
    rng = random.Random(0)
    live: dict[int, tuple[int, ...]] = {}
    for rid in range(2, 400):
        if live and rng.random() < 0.45:
            kv.free(rng.choice(sorted(live)))
            live = {r: p for r, p in live.items() if kv.holds(r)}
        prefix = tuple(rng.choice((1, 2)) * 10 + i for i in range(rng.randint(0, 5)))
        n = rng.randint(1, 24)
        if kv.can_allocate(n, prefix=prefix):
            cached = kv.allocate(rid, n, prefix=prefix)
            assert cached % BS == 0 and cached < n
            kv.commit_prefix(rid, n, prefix)
            live[rid] = prefix
            while rng.random() < 0.5 and kv.can_append(rid):
                kv.append(rid)
        kv.check_invariants()


def _mooncake(tmp_path, rows):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _scenario(tmp_path, *sets, convs=8):
    # 40 requests in ``convs`` conversations: each turn repeats its conversation's earlier blocks
    rows = []
    for i in range(40):
        conv, turn = i % convs, i // convs
        ids = [conv * 100 + b for b in range(2 + 2 * turn)]
        rows.append({"timestamp": 500 * i, "input_length": 512 * len(ids) - 100,
                     "output_length": 64, "hash_ids": ids})
    path = _mooncake(tmp_path, rows)
    return load_scenario(None, [f"workload={{kind: trace, path: {path}, format: mooncake}}",
                                "latency={kind: roofline}", "kv_cache.prefix_caching=true",
                                *sets])


@pytest.mark.parametrize("policy", ["vllm", "sarathi", "hf_cb"])
def test_a_run_reuses_conversation_prefixes_and_fused_equals_step_by_step(tmp_path, policy):
    kind = f"policy={{kind: {policy}}}"
    on = simulate(_scenario(tmp_path, kind))
    off = simulate(_scenario(tmp_path, kind, "kv_cache.prefix_caching=false"))
    pc = on.summary["prefix_cache"]
    assert pc["hit_rate"] > 0.3 and pc["prompt_tokens"] == off.requests["prompt_tokens"].sum()
    assert "prefix_cache" not in off.summary
    assert on.steps["num_prefill_tokens"].sum() == pc["prompt_tokens"] - pc["hit_tokens"]
    assert on.requests["ttft_s"].mean() < off.requests["ttft_s"].mean()
    assert (on.requests["num_generated_tokens"] == 64).all()
    step = simulate(_scenario(tmp_path, kind, "simulation.fuse_decode_steps=false"))
    pd.testing.assert_series_equal(on.requests["finish_s"], step.requests["finish_s"],
                                   rtol=1e-9)


def test_policies_that_cannot_use_it_and_bad_block_sizes_say_so(tmp_path):
    with pytest.raises(InputError, match="policy orca cannot use prefix caching yet "
                                         r"\(policies that can: bucketserve, distserve_prefill, hf_cb, omniserve, sarathi, vllm\)"):
        _scenario(tmp_path, "policy={kind: orca}")
    with pytest.raises(InputError, match="preemption_mode: recompute"):
        _scenario(tmp_path, "policy.preemption_mode=swap")
    with pytest.raises(InputError, match="does not divide the trace's 512-token prefix blocks"):
        simulate(_scenario(tmp_path, "kv_cache.block_size=48"))
    bad = _mooncake(tmp_path, [{"timestamp": 0, "input_length": 10, "output_length": 2,
                                "hash_ids": [1, -2]}])
    assert_one_line_error(llmsim("check", "--set", f"workload={{kind: trace, path: {bad}, "
                                 "format: mooncake}", "--set", "kv_cache.prefix_caching=true"),
                          "hash_ids must be a list of non-negative integers")


def test_llmsim_traces_carry_prefix_ids_and_export_keeps_them(tmp_path):
    from llmsim.workload.traces import read_trace, write_llmsim

    path = tmp_path / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens,prefix_ids,prefix_block_tokens\n"
                    "0,40,4,1 2 3,16\n1,40,4,1 2 4,16\n2,10,4,,16\n")
    df = read_trace(path, "llmsim")
    assert df["prefix_block_ids"].tolist() == [[1, 2, 3], [1, 2, 4], []]
    write_llmsim(df, tmp_path / "again.csv")
    again = read_trace(tmp_path / "again.csv", "llmsim")
    assert again["prefix_block_ids"].tolist() == df["prefix_block_ids"].tolist()
    sc = load_scenario(None, [f"workload={{kind: trace, path: {path}}}", "kv_cache.prefix_caching=true",
                              "latency={kind: roofline}"])
    res = simulate(sc)
    # 16-token blocks: request 1 finds the first 2 blocks of request 0's prompt cached
    assert res.summary["prefix_cache"]["hit_tokens"] == 32
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,prompt_tokens,output_tokens,prefix_ids,prefix_block_tokens\n"
                   "0,40,4,1 x,16\n")
    with pytest.raises(InputError, match="row 2: prefix_ids must be non-negative integers"):
        read_trace(bad, "llmsim")
    bad.write_text("arrival_s,prompt_tokens,output_tokens,prefix_ids\n0,40,4,1\n")
    with pytest.raises(InputError, match="missing column"):
        read_trace(bad, "llmsim")
    # rows without prefix ids need no block size (0 or empty, as a replay writes them) ...
    none = tmp_path / "none.csv"
    none.write_text("arrival_s,prompt_tokens,output_tokens,prefix_ids,prefix_block_tokens\n"
                    "0,40,4,,0\n1,40,4,1 2,16\n2,40,4,,\n")
    df = read_trace(none, "llmsim")
    assert df["prefix_block_ids"].tolist() == [[], [1, 2], []]
    assert df["prefix_block_tokens"].tolist() == [0, 16, 0]
    # ... a row with ids does, and the error shows the value as written
    bad.write_text("arrival_s,prompt_tokens,output_tokens,prefix_ids,prefix_block_tokens\n"
                   "0,40,4,,0\n1,40,4,1 2,0\n")
    with pytest.raises(InputError, match=r"row 3: prefix_block_tokens must be a positive "
                                         r"integer, got 0$"):
        read_trace(bad, "llmsim")


def test_prefix_aware_routing_follows_the_cache_within_a_load_bound(tmp_path):
    from dataclasses import dataclass

    from llmsim.cluster.router import Router
    from llmsim.request import Request

    @dataclass
    class Inst:
        instance_id: int
        num_outstanding: int
        cached: int

        def kv_usage_now(self) -> float:
            return 0.0

        def cached_prefix_tokens(self, r) -> int:
            return self.cached

    r = Request(0, 0.0, 100, 10)
    router = Router("prefix_aware")
    assert router.pick([Inst(0, 3, 0), Inst(1, 4, 64), Inst(2, 3, 32)], r) == 1
    # the longest prefix is on an instance past the load bound (3 x 1.25 + 2 = 5.75)
    assert router.pick([Inst(0, 3, 0), Inst(1, 6, 64), Inst(2, 5, 32)], r) == 2
    assert router.pick([Inst(0, 3, 0), Inst(1, 2, 0)], r) == 1  # no cache: least loaded
    rates = {}
    for name in ("round_robin", "prefix_aware"):
        # 5 conversations on 4 instances: round robin sends a conversation's turns elsewhere
        res = simulate(_scenario(tmp_path, "cluster.num_instances=4", f"cluster.router={name}",
                                 convs=5))
        rates[name] = res.summary["prefix_cache"]["hit_rate"]
    assert rates["prefix_aware"] > rates["round_robin"] + 0.2, rates
