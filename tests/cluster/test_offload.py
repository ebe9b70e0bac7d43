"""The CPU attention offload mechanism: the per-layer state machine of an offloaded request,
piggyback caps, the CPU pool's queueing, pipelined (NEO-like) steps and host KV accounting."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.cluster.host import HostConfig, build_offload, core_s_per_token_layer
from llmsim.cluster.offload import CorePool, CPUOffload, OffloadStep
from llmsim.models import resolve_gpu, resolve_model
from tests.conftest import make_requests

L = 4


def offload(core_s: float = 0.0, cores: int = 1, hop_s: float = 0.0, capacity: int = 10_000,
            mode: str = "layerwise", catchup: bool = False) -> CPUOffload:
    return CPUOffload([CorePool(cores, capacity, hop_s)], L, core_s, mode, catchup)


def onboard(off: CPUOffload, n: int = 1, prompt: int = 10, at_s: float = 0.0):
    reqs = make_requests([(0.0, prompt, 50)] * n)
    for r in reqs:
        r.num_computed_tokens, r.num_generated_tokens = prompt, 1  # prefilled on the GPU
        off.add(r, 0, at_s)
    return reqs


def passes(off: CPUOffload, n: int, pass_s: float = 1.0, cap: int = 100, t0: float = 0.0):
    """Run ``n`` GPU passes of ``pass_s`` each; returns (tokens emitted per pass, end time)."""
    emitted = []
    t = t0
    for _ in range(n):
        step = OffloadStep(off, t, pass_s, cap)
        done = step.apply(t, t + pass_s)
        emitted.append(step.num_tokens_emitted)
        assert not done or all(r.num_generated_tokens >= r.output_tokens for r in done)
        t += pass_s
    return emitted, t


def test_one_token_takes_one_hop_per_layer_without_catchup():
    off = offload()
    (r,) = onboard(off)
    emitted, _ = passes(off, 3 * L)
    assert emitted == ([0] * (L - 1) + [1]) * 3  # the L-th pass over a token wraps it
    assert r.num_generated_tokens == 4 and r.num_computed_tokens == 13
    assert off.num_hops == 3 * L
    assert int(off.ctx[0]) == r.num_computed_tokens + 1


def test_same_iteration_catchup_consumes_results_that_are_back_in_time():
    off = offload(catchup=True)  # instant CPU: every result is back before the GPU moves on
    onboard(off)
    emitted, _ = passes(off, 6)
    assert emitted == [1] * 6  # every layer, the last one included, within each pass
    assert off.num_hops == 6 * L
    slow = offload(core_s=0.3, catchup=True)  # 3.3 s per layer: nothing to catch up on
    onboard(slow)
    assert passes(slow, 8)[0] == passes(offload(core_s=0.3), 8)[0]


def test_a_slow_cpu_holds_the_request_back():
    # 10 KV tokens + 1 at 0.25 core-s each on one core: 2.75 s of attention per layer, so with
    # 1 s GPU passes the request hops once every third pass (passes 4, 7, 10, 13)
    off = offload(core_s=0.25)
    onboard(off, prompt=10)
    emitted, _ = passes(off, 3 * L + 3)
    assert emitted == [0] * 12 + [1, 0, 0]
    assert off.num_hops == L


def test_piggyback_cap_per_layer_keeps_fifo_order():
    off = offload()
    reqs = onboard(off, 5)
    step = OffloadStep(off, 0.0, 1.0, 2)
    assert [off.requests[i] for i in step.sel.rows] == reqs[:2]
    assert step.dense_only_tokens == pytest.approx(2 / L)  # 2 hops spread over L layers


def test_cpu_pool_is_fifo_and_shares_its_cores():
    off = offload(core_s=0.01, cores=2)
    onboard(off, 3, prompt=99)  # 100 tokens x 0.01 core-s / 2 cores = 0.5 s each
    np.testing.assert_allclose(off.ready_s, [0.5, 1.0, 1.5])
    assert off.next_ready_s() == pytest.approx(0.5)


def test_host_kv_is_never_lost():
    off = offload(capacity=100)
    reqs = onboard(off, 2, prompt=10)
    assert off.free_tokens[0] == 80
    passes(off, 2 * L)  # each request emits two tokens, whose KV lands on the host
    assert off.free_tokens[0] == 76
    assert off.pick_pool(70, 10) == -1 and off.pick_pool(70, 6) == 0
    held = [off.remove(r) for r in reqs]
    assert held == [12, 12] and off.free_tokens[0] == 100 and len(off) == 0


def test_pipelined_step_waits_for_the_cpu_and_does_a_whole_token():
    off = offload(core_s=0.01, cores=1, mode="pipelined")
    onboard(off, 2, prompt=9)  # 10 tokens x L layers x 0.01 = 0.4 core-s each
    step = OffloadStep(off, 10.0, 0.0, 8)
    assert step.num_rows == 2 and step.dense_only_tokens == 2  # every layer for each row
    assert step.duration_s(0.1) == pytest.approx(0.8)  # GPU 0.1 s waits for 0.8 s of CPU
    assert step.duration_s(2.0) == 2.0
    step.apply(10.0, 10.8)
    assert step.num_tokens_emitted == 2


def test_pools_local_first_then_servers_shared_out():
    model, gpu = resolve_model("yi-34b"), resolve_gpu("h200")
    cfg = HostConfig(num_cpu_servers=3, local_kv_gib=10, server_kv_gib=100)
    a = build_offload(cfg, model, gpu, 2, 0, 2, "layerwise", False)
    b = build_offload(cfg, model, gpu, 2, 1, 2, "layerwise", False)
    assert [p.cores for p in a.pools] == [24, 48, 48] and [p.cores for p in b.pools] == [24, 48]
    assert a.pools[1].hop_latency_s > a.pools[0].hop_latency_s  # the network costs more
    assert a.pools[0].capacity_tokens == int(10 * 1024**3 // model.kv_bytes_per_token)


def test_cpu_attention_cost_from_the_measured_profile_scales_with_kv_bytes():
    gpu = "h200"
    cfg = HostConfig(attention={"kind": "profiled", "profile_model": "yi-34b"})
    yi = core_s_per_token_layer(cfg, resolve_model("yi-34b"), gpu, 16)
    l8 = core_s_per_token_layer(cfg, resolve_model("llama-3.1-8b"), gpu, 16)
    l13 = core_s_per_token_layer(cfg, resolve_model("llama-2-13b"), gpu, 16)
    assert 1e-8 < yi < 1e-5
    # llama-3.1-8b has yi's 8 KV heads x 128 per layer; llama-2-13b (MHA) has 40 x 128
    assert l8 == pytest.approx(yi) and l13 == pytest.approx(5 * yi)
    fast = core_s_per_token_layer(HostConfig(attention={"kind": "bandwidth", "core_gbps": 8}),
                                  resolve_model("yi-34b"), gpu, 16)
    assert fast == pytest.approx(8 * 128 * 2 * 2 / 8e9)
