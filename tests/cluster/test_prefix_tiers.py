"""Prefix caching beyond the basics: the host-memory tier (evicted blocks loaded back over
PCIe), synthetic multi-turn conversations, and the policies of a disaggregated cluster."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from llmsim.cluster.host import kv_load_s_per_token
from llmsim.cluster.kv_cache import KVCache
from llmsim.errors import InputError
from llmsim.models import resolve_gpu, resolve_model
from llmsim.scenario import load_scenario
from llmsim.simulation import simulate
from llmsim.workload.config import ConversationWorkload
from llmsim.workload.conversation import conversation_frame, conversation_hashes

BS = 4


def test_an_evicted_block_is_found_in_the_host_tier_and_loaded():
    kv = KVCache(6, BS, watermark=0.0, prefix_caching=True, num_host_prefix_blocks=2)
    a = (1, 2, 3)
    kv.allocate(1, 13, prefix=a)  # 4 blocks
    kv.commit_prefix(1, 13, a)
    kv.free(1)  # 3, 2, 1 evictable (a chain's tail goes first)
    assert kv.take_admitted() == (0, 0, 0)
    kv.allocate(2, 24)  # 6 blocks: 3 empty + evicts 3, 2, 1; the tier keeps the last 2
    assert list(kv.prefix.host) == [2, 1] and not kv.prefix.evictable
    kv.check_invariants()
    kv.free(2)
    assert kv.cached_prefix_tokens(a, 13) == 8  # 1 and 2 in host memory; 3 is gone
    assert kv.cached_prefix_tokens((9, 2, 3), 13) == 0  # 2 continues another chain
    assert kv.allocate(3, 13, prefix=a) == 8
    assert kv.take_admitted() == (8, 8, 0) and kv.take_admitted() == (0, 0, 0)
    assert kv.num_free_blocks == 6 - 4  # host hits take fresh GPU blocks
    kv.commit_prefix(3, 13, a)  # the loaded blocks (and the computed 3) are GPU-cached now
    assert set(kv.prefix.refs) == {1, 2, 3}
    kv.free(3)
    kv.allocate(4, 12)  # the 3 empty blocks
    kv.allocate(5, 4)  # evicts 3 (the tail) into the tier, which drops 2
    assert list(kv.prefix.evictable) == [2, 1] and list(kv.prefix.host) == [1, 3]
    kv.free(4)
    # the GPU holds the chain's head, the host tier its tail
    assert kv.allocate(6, 13, prefix=a) == 12 and kv.take_admitted() == (12, 4, 0)
    assert kv.prefix_host_hit_tokens == 12
    kv.check_invariants()


def test_the_disk_tier_keeps_what_the_host_tier_drops():
    kv = KVCache(6, BS, watermark=0.0, prefix_caching=True, num_host_prefix_blocks=1,
                 num_disk_prefix_blocks=2)
    a = (1, 2, 3)
    kv.allocate(1, 13, prefix=a)
    kv.commit_prefix(1, 13, a)
    kv.free(1)  # 3, 2, 1 evictable
    kv.allocate(2, 24)  # evicts 3, 2, 1: host keeps 1 (the last), disk what host dropped
    assert list(kv.prefix.host) == [1] and list(kv.prefix.disk) == [3, 2]
    kv.check_invariants()
    kv.free(2)
    assert kv.cached_prefix_tokens(a, 13) == 12  # 1 on the host, 2 and 3 on disk
    assert kv.allocate(3, 13, prefix=a) == 12 and kv.take_admitted() == (12, 4, 8)
    assert kv.prefix_disk_hit_tokens == 8 and kv.prefix_host_hit_tokens == 4
    kv.check_invariants()
    # without a host tier, the GPU evicts straight to disk
    solo = KVCache(4, BS, watermark=0.0, prefix_caching=True, num_disk_prefix_blocks=8)
    solo.allocate(1, 9, prefix=(7, 8))
    solo.commit_prefix(1, 9, (7, 8))
    solo.free(1)
    solo.allocate(2, 16)
    assert list(solo.prefix.disk) == [8, 7] and not solo.prefix.host


def test_random_use_with_a_host_tier_keeps_the_books():
    kv = KVCache(30, BS, watermark=0.0, prefix_caching=True, num_host_prefix_blocks=7,
                 num_disk_prefix_blocks=11)
    rng = random.Random(1)
    live: set[int] = set()
    loaded = from_disk = 0
    for rid in range(600):
        if live and rng.random() < 0.5:
            victim = rng.choice(sorted(live))
            kv.free(victim)
            live.discard(victim)
        prefix = tuple(rng.choice((1, 2, 3)) * 100 + i for i in range(rng.randint(0, 6)))
        n = rng.randint(1, 28)
        if kv.can_allocate(n, prefix=prefix):
            cached = kv.allocate(rid, n, prefix=prefix)
            got, host, disk = kv.take_admitted()
            assert got == cached and 0 <= host + disk <= cached < n and cached % BS == 0
            loaded += host
            from_disk += disk
            kv.commit_prefix(rid, n, prefix)
            live.add(rid)
        kv.check_invariants()
    assert loaded > 0 and kv.prefix_host_hit_tokens == loaded
    assert from_disk > 0 and kv.prefix_disk_hit_tokens == from_disk


def _conv(**kw) -> ConversationWorkload:
    base = dict(num_sessions=40, arrival={"kind": "poisson", "rate_per_s": 2.0}, mean_turns=4,
                mean_think_time_s=5.0, shared_prefixes=[{"tokens": 100, "weight": 1},
                                                        {"tokens": 37, "weight": 2}],
                message_tokens={"kind": "uniform", "min_tokens": 5, "max_tokens": 60},
                output_tokens={"kind": "uniform", "min_tokens": 1, "max_tokens": 40},
                max_prompt_tokens=600)
    return ConversationWorkload(**{**base, **kw})


def test_conversation_turns_continue_their_session_and_share_their_prefix(tmp_path):
    cfg = _conv()
    df = conversation_frame(cfg, np.random.default_rng(3), tmp_path)
    again = conversation_frame(cfg, np.random.default_rng(3), tmp_path)
    pd.testing.assert_frame_equal(df, again)  # seeded: reproducible
    assert df["arrival_s"].is_monotonic_increasing and (df["prompt_tokens"] <= 600).all()
    assert df["session"].nunique() == 40 and df["turn"].max() >= 2
    hashes = dict(zip(df.index, conversation_hashes(df, 16)))
    for _, g in df.groupby("session"):
        g = g.sort_values("turn")
        assert g["arrival_s"].is_monotonic_increasing and list(g["turn"]) == list(range(len(g)))
        prev = None
        for i, r in g.iterrows():
            assert r.prompt_tokens > r.shared_prefix_tokens
            if prev is not None:  # the whole previous turn, then a new message
                assert r.prompt_tokens > prev.prompt_tokens + prev.output_tokens
                n = (prev.prompt_tokens + prev.output_tokens) // 16
                assert hashes[i][:n] == hashes[prev.name][:n]
            prev = r
    first = df[df["turn"] == 0]
    a, b = [first[first["shared_prefix"] == k].index[:2] for k in (0, 1)]
    assert hashes[a[0]][:6] == hashes[a[1]][:6] and hashes[a[0]][6] != hashes[a[1]][6]  # 100 // 16
    assert hashes[b[0]][:2] == hashes[b[1]][:2] and hashes[b[0]][2] != hashes[b[1]][2]  # 37 // 16
    assert hashes[a[0]][0] != hashes[b[0]][0]
    with pytest.raises(ValueError, match="mean_turns"):
        _conv(mean_turns=80)
    with pytest.raises(ValueError, match=r"shared_prefixes\.0\.tokens \(600\) leaves no room"):
        _conv(shared_prefixes=[{"tokens": 600}])
    with pytest.raises(InputError, match="no turn fits max_prompt_tokens"):
        conversation_frame(_conv(shared_prefixes=[], max_prompt_tokens=4), np.random.default_rng(0),
                           tmp_path)


def _run(tmp_path, *sets):
    wl = ("workload={kind: conversation, num_sessions: 60, arrival: {kind: poisson, rate_per_s: 4}, "
          "mean_turns: 4, mean_think_time_s: 3, shared_prefixes: [{tokens: 800}], "
          "message_tokens: {kind: uniform, min_tokens: 20, max_tokens: 200}, "
          "output_tokens: {kind: uniform, min_tokens: 10, max_tokens: 120}, max_prompt_tokens: 3000}")
    return simulate(load_scenario(None, [wl, "latency={kind: roofline}", "cluster.num_instances=1",
                                         "kv_cache.prefix_caching=true", *sets]))


def test_a_host_tier_turns_evictions_into_loads_priced_over_pcie(tmp_path):
    small = ["kv_cache.num_blocks=400"]
    gpu_only = _run(tmp_path, *small)
    tiered = _run(tmp_path, *small, "kv_cache.host_prefix_cache_gib=2")
    g, t = gpu_only.summary["prefix_cache"], tiered.summary["prefix_cache"]
    assert g["host_hit_tokens"] == 0 and t["host_hit_tokens"] > 0
    assert t["hit_rate"] > g["hit_rate"] + 0.05
    for res in (gpu_only, tiered):
        pc, steps = res.summary["prefix_cache"], res.steps
        assert steps["num_cached_prompt_tokens"].sum() == pc["hit_tokens"]
        assert steps["num_host_loaded_tokens"].sum() == pc["host_hit_tokens"]
        assert steps["num_prefill_tokens"].sum() == pc["prompt_tokens"] - pc["hit_tokens"]
    with pytest.raises(InputError, match="set kv_cache.prefix_caching: true"):
        load_scenario(None, ["kv_cache.host_prefix_cache_gib=1"])
    with pytest.raises(InputError, match="disk_prefix_cache_gib.*set kv_cache.prefix_caching"):
        load_scenario(None, ["kv_cache.disk_prefix_cache_gib=1"])


def test_a_disk_tier_below_the_host_tier_catches_more_at_the_disks_pace(tmp_path):
    small = ["kv_cache.num_blocks=400", "kv_cache.host_prefix_cache_gib=0.05"]
    host = _run(tmp_path, *small)
    disk = _run(tmp_path, *small, "kv_cache.disk_prefix_cache_gib=2")
    h, d = host.summary["prefix_cache"], disk.summary["prefix_cache"]
    assert h["disk_hit_tokens"] == 0 and d["disk_hit_tokens"] > 0
    assert d["hit_rate"] > h["hit_rate"] + 0.03
    steps = disk.steps
    assert steps["num_disk_loaded_tokens"].sum() == d["disk_hit_tokens"]
    assert d["hit_tokens"] == round((d["gpu_hit_rate"] + d["host_hit_rate"]
                                     + d["disk_hit_rate"]) * d["prompt_tokens"])


def test_a_host_hit_costs_its_transfer_on_top_of_the_same_step(tmp_path):
    """Three requests of an llmsim trace: the second evicts the first's blocks into the host
    tier, the third hits them there. With a pool large enough to keep them on the GPU the
    third's step is the same shape: the difference is the copy over PCIe."""
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens,prefix_ids,prefix_block_tokens\n"
                    "0,512,2,1 2 3 4,128\n10,1000,2,,128\n20,520,2,1 2 3 4,128\n")
    base = [f"workload={{kind: trace, path: {path}}}", "latency={kind: roofline}",
            "kv_cache.prefix_caching=true", "cluster.num_instances=1", "kv_cache.watermark=0"]
    far = simulate(load_scenario(None, base + ["kv_cache.num_blocks=200"]))
    near = simulate(load_scenario(None, base + ["kv_cache.num_blocks=70",
                                                "kv_cache.host_prefix_cache_gib=1"]))
    pick = lambda res: res.steps[res.steps["start_s"] >= 20].iloc[0]  # noqa: E731
    a, b = pick(far), pick(near)
    assert a["num_cached_prompt_tokens"] == b["num_cached_prompt_tokens"] == 512
    assert a["num_host_loaded_tokens"] == 0 and b["num_host_loaded_tokens"] > 0
    sc = load_scenario(None, base)
    move = kv_load_s_per_token(resolve_model(sc.model), resolve_gpu(sc.cluster.gpu), 1)
    # at the H100's measured pinned host->device copy rate (55 GB/s), not the catalog's 64
    assert move == pytest.approx(resolve_model(sc.model).kv_bytes_per_token / 55.4e9, rel=0.01)
    assert b["duration_s"] - a["duration_s"] == pytest.approx(b["num_host_loaded_tokens"] * move,
                                                              rel=1e-6, abs=2e-9)
    # the same hit from a disk tier (no host tier): read at the disk's 6 GB/s, slower than PCIe
    slow = simulate(load_scenario(None, base + ["kv_cache.num_blocks=70",
                                                "kv_cache.disk_prefix_cache_gib=1"]))
    c = pick(slow)
    assert c["num_cached_prompt_tokens"] == 512
    assert c["num_host_loaded_tokens"] == 0 and c["num_disk_loaded_tokens"] > 0
    read = resolve_model(sc.model).kv_bytes_per_token / 6e9
    assert read > move
    assert c["duration_s"] - a["duration_s"] == pytest.approx(c["num_disk_loaded_tokens"] * read,
                                                              rel=1e-6, abs=2e-9)


@pytest.mark.parametrize("sets", [
    ["cluster.topology=disaggregated", "cluster.prefill={num_instances: 1, tp: 1}",
     "cluster.decode={num_instances: 1, tp: 1}", "policy={kind: distserve_prefill}",
     "decode_policy={kind: distserve_decode}"],
    ["cluster.topology=disaggregated", "cluster.prefill={num_instances: 1, tp: 1}",
     "cluster.decode={num_instances: 1, tp: 1}", "policy={kind: bucketserve}",
     "decode_policy={kind: distserve_decode}"],
    ["policy={kind: omniserve}", "cluster.host={cores_per_gpu: 12, local_kv_gib: 200}"],
], ids=["distserve", "bucketserve", "omniserve"])
def test_prefill_side_and_omniserve_policies_reuse_prefixes(tmp_path, sets):
    on = _run(tmp_path, *sets)
    step = _run(tmp_path, *sets, "simulation.fuse_decode_steps=false")
    pc = on.summary["prefix_cache"]
    assert pc["hit_rate"] > 0.3 and (on.requests["status"] == "finished").all()
    assert on.steps["num_prefill_tokens"].sum() == pc["prompt_tokens"] - pc["hit_tokens"]
    pd.testing.assert_series_equal(on.requests["finish_s"], step.requests["finish_s"], rtol=1e-9)
    if "decode" in set(on.steps["role"]):  # the decode side receives computed KV: no cache
        assert on.steps.loc[on.steps["role"] == "decode", "num_cached_prompt_tokens"].sum() == 0
