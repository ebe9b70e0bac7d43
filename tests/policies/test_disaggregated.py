"""Disaggregated prefill/decode: DistServe and BucketServe (policies.md sections 7 and 8)."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.batch import apply_steps
from llmsim.cluster.instance import Instance
from llmsim.policies import EngineLimits
from llmsim.policies.bucketserve import BucketServeConfig, BucketServePolicy
from llmsim.policies.distserve import (
    DistServeDecodeConfig,
    DistServeDecodePolicy,
    DistServePrefillConfig,
    DistServePrefillPolicy,
)
from llmsim.request import ServiceClass
from llmsim.simulation import simulate
from tests.conftest import make_kv, make_requests, tiny_scenario

LIM = EngineLimits(max_model_len=4096, block_size=4)


def pd_scenario(prefill_policy, decode_policy=None, transfer=None, rate=10.0, n=150, **cluster):
    return tiny_scenario(
        prefill_policy,
        workload={"kind": "synthetic", "num_requests": n, "arrival": {"kind": "poisson", "rate_per_s": rate},
                  "prompt_tokens": {"kind": "lognormal", "median_tokens": 300, "sigma": 1.0, "max_tokens": 1500},
                  "output_tokens": {"kind": "lognormal", "median_tokens": 100, "sigma": 0.8, "max_tokens": 400}},
        cluster={"topology": "disaggregated", "num_instances": 1, "prefill": {"num_instances": 1},
                 "decode": {"num_instances": 1}, "kv_transfer": transfer or {}, **cluster},
        decode_policy=decode_policy or {"kind": "distserve_decode"})


# ---- DistServe prefill -----------------------------------------------------------------------
def test_distserve_prefill_caps_requests_and_tokens():
    p = DistServePrefillPolicy(DistServePrefillConfig(max_num_seqs=2, max_num_batched_tokens=100), LIM)
    kv = make_kv(num_blocks=1000)
    for r in make_requests([(0, 40, 5), (0, 40, 5), (0, 40, 5)]):
        p.enqueue(r)
    assert len(p.schedule(kv, 0).prefills) == 2
    p2 = DistServePrefillPolicy(DistServePrefillConfig(max_num_batched_tokens=100), LIM)
    kv = make_kv(num_blocks=1000)
    for r in make_requests([(0, 60, 5), (0, 50, 5)]):
        p2.enqueue(r)
    assert [q for _, q in p2.schedule(kv, 0).prefills] == [60]


def test_prefill_kv_awaiting_transfer_back_pressures_admission():
    p = DistServePrefillPolicy(DistServePrefillConfig(), LIM)
    kv = make_kv(num_blocks=20, block_size=4)  # 80 tokens
    a, b = make_requests([(0, 60, 5), (1, 40, 5)])
    p.enqueue(a)
    plan = p.schedule(kv, 0)
    apply_steps(plan, 1, 0.1)
    p.on_step_end([], kv)
    assert p.take_handoffs() == [a] and kv.holds(a.request_id)  # prefilled, KV still here
    p.enqueue(b)
    assert p.schedule(kv, 0.2).is_empty  # 60 + 40 tokens do not fit: b waits for the transfer
    kv.free(a.request_id)
    p.forget(a)
    assert [r for r, _ in p.schedule(kv, 0.3).prefills] == [b]


# ---- DistServe decode: pull-based acceptance (§7.3) ------------------------------------------
def test_decode_accepts_only_under_the_waiting_block_threshold():
    d = DistServeDecodePolicy(DistServeDecodeConfig(waiting_block_prop_threshold=0.05), LIM)
    kv = make_kv(num_blocks=100, block_size=4)  # threshold: 5 blocks not yet running
    reqs = make_requests([(0, 8, 5), (0, 8, 5), (0, 8, 5), (0, 8, 5)])
    for r in reqs:
        r.num_computed_tokens, r.num_generated_tokens = 8, 1  # prefilled elsewhere
    accepted = []
    for r in reqs:
        if d.can_accept(r, kv):
            d.accept(r, kv)
            accepted.append(r)
    # 2 blocks each: accepted at 0, 2 and 4 pending blocks (< 5), refused at 6
    assert len(accepted) == 3 and not d.can_accept(reqs[3], kv)
    d.receive(accepted[0], kv)
    assert d.can_accept(reqs[3], kv)  # a landed transfer no longer counts as waiting


def test_decode_refuses_a_prompt_that_does_not_fit_free_blocks():
    d = DistServeDecodePolicy(DistServeDecodeConfig(waiting_block_prop_threshold=1.0), LIM)
    kv = make_kv(num_blocks=10, block_size=4)
    (r,) = make_requests([(0, 40, 5)])
    r.num_computed_tokens, r.num_generated_tokens = 40, 1
    assert not d.can_accept(r, kv)


# ---- BucketServe (§8) ------------------------------------------------------------------------
def bucket_policy(**kw):
    return BucketServePolicy(BucketServeConfig(max_len_tokens=4096, **kw), LIM)


def test_bucket_split_happens_exactly_when_the_condition_holds():
    p = bucket_policy()
    # 5 requests, 3 below the midpoint 2048: lower-half majority (3/5 > 0.5)
    for r in make_requests([(0, 100, 1), (0, 200, 1), (0, 300, 1), (0, 3000, 1), (0, 3500, 1)]):
        p.enqueue(r)
    p.control(n_max=5)  # |b| = 5 is not > N_max: no split
    assert p.bounds == [(0, 4096)]
    p.control(n_max=4)  # |b| > N_max and lower majority: split at the midpoint
    assert p.bounds == [(0, 2048), (2048, 4096)]
    p.control(n_max=4)  # one pass per invocation; no bucket is over-full now
    assert p.bounds == [(0, 2048), (2048, 4096)]
    p.control(n_max=10)  # low load (5 < N_max): merge everything
    assert p.bounds == [(0, 4096)]


def test_no_split_without_a_lower_half_majority_under_the_literal_rule():
    p = bucket_policy()
    for r in make_requests([(0, 100, 1), (0, 3000, 1), (0, 3100, 1), (0, 3200, 1)]):
        p.enqueue(r)
    p.control(n_max=2)
    assert p.bounds == [(0, 4096)]
    q = bucket_policy(split_rule="either_half_majority")
    for r in make_requests([(0, 100, 1), (0, 3000, 1), (0, 3100, 1), (0, 3200, 1)]):
        q.enqueue(r)
    q.control(n_max=2)
    assert q.bounds == [(0, 2048), (2048, 4096)]


def test_n_max_is_memory_safe():
    p = bucket_policy()
    kv = make_kv(num_blocks=100, block_size=4)  # 400 free tokens, M_safe = 360
    assert p.n_max(kv, [100, 100, 100, 100]) == 3  # 4 x 100 > 360
    assert p.n_max(kv, [50, 50, 200]) == 2  # padded accounting: 2 x 50 fits, 3 x 200 does not
    assert bucket_policy(accounting="sum").n_max(kv, [50, 50, 200]) == 3


def test_oldest_bucket_first_and_fcfs_inside():
    p = bucket_policy()
    p.bounds = [(0, 2048), (2048, 4096)]
    long_old, short_new, short_newer = make_requests([(0.0, 3000, 1), (1.0, 100, 1), (2.0, 120, 1)])
    for r in (long_old, short_new, short_newer):
        p.enqueue(r)
    assert p.choose_bucket(p.buckets()) == [long_old]


def test_offline_requests_sjf_or_ljf():
    reqs = make_requests([(0.0, 3000, 1), (1.0, 100, 1)])
    for r in reqs:
        r.service_class = ServiceClass.BEST_EFFORT
    for order, want in (("sjf", reqs[1]), ("ljf", reqs[0])):
        p = bucket_policy(offline_order=order)
        p.bounds = [(0, 2048), (2048, 4096)]
        for r in reqs:
            p.waiting.append(r)
        assert p.choose_bucket(p.buckets()) == [want]


# ---- end to end ------------------------------------------------------------------------------
@pytest.mark.parametrize("prefill", [{"kind": "distserve_prefill"}, {"kind": "bucketserve"}])
def test_disaggregated_run_conserves_and_finishes(prefill, monkeypatch):
    original = Instance._apply

    def checked(self, plan, n, start, *rest):
        original(self, plan, n, start, *rest)
        self.kv.check_invariants()

    monkeypatch.setattr(Instance, "_apply", checked)
    res = simulate(pd_scenario(prefill))
    df = res.requests
    assert (df["status"] == "finished").all()
    multi = df[df["output_tokens"] > 1]
    assert (multi["decode_instance"] == 1).all() and (multi["instance"] == 0).all()
    assert (multi["kv_transfer_end_s"] >= multi["kv_transfer_start_s"]).all()
    assert (multi["kv_transfer_start_s"] >= multi["handoff_s"]).all()
    assert set(res.steps["role"]) == {"prefill", "decode"}
    steps = res.steps
    computed = steps["num_prefill_tokens"].sum() + (steps["num_decode_seqs"] * steps["num_iterations"]).sum()
    assert computed == (df["prompt_tokens"] + df["output_tokens"] - 1).sum() + df["num_recomputed_tokens"].sum()


def test_kv_transfer_time_is_bytes_over_bandwidth_and_off_switch():
    on = simulate(pd_scenario({"kind": "distserve_prefill"}, rate=0.5, n=20,
                              transfer={"bandwidth_gbps": 1.0, "latency_s": 0.0})).requests
    on = on.dropna(subset=["kv_transfer_start_s"]).sort_values("kv_transfer_start_s")
    gap = on["kv_transfer_end_s"] - on["kv_transfer_start_s"]
    alone = on["prompt_tokens"] * 524288 / 1e9  # llama-2-7b KV bytes per token over 1 GB/s
    free_link = on["kv_transfer_start_s"] >= on["kv_transfer_end_s"].shift(1).fillna(0)
    np.testing.assert_allclose(gap[free_link], alone[free_link], rtol=1e-9)
    assert (gap >= alone - 1e-12).all()
    off = simulate(pd_scenario({"kind": "distserve_prefill"}, rate=0.5, n=20,
                               transfer={"enabled": False})).requests
    assert ((off["kv_transfer_end_s"] - off["kv_transfer_start_s"]).dropna() == 0).all()
    assert off["e2e_s"].mean() < on["e2e_s"].mean()


def test_transfers_out_of_one_prefill_instance_queue_on_its_link():
    res = simulate(pd_scenario({"kind": "distserve_prefill"}, rate=50, n=40,
                               transfer={"bandwidth_gbps": 0.5, "latency_s": 0.0})).requests
    r = res.dropna(subset=["kv_transfer_start_s"]).sort_values("kv_transfer_start_s")
    durations = r["kv_transfer_end_s"] - r["kv_transfer_start_s"]
    alone = r["prompt_tokens"] * 524288 / 0.5e9
    assert (durations >= alone - 1e-9).all() and (durations > alone + 1e-6).any()


def test_disaggregated_config_must_be_complete():
    from llmsim.errors import InputError
    with pytest.raises(InputError, match="disaggregated needs"):
        tiny_scenario({"kind": "distserve_prefill"}, cluster={"topology": "disaggregated"})


def test_same_instant_handoffs_route_alike_fused_or_step_by_step():
    """Two prefill instances hand off at one instant; the order their step ends are processed
    in follows event insertion, which differs between fused and step-by-step runs, so the
    handoffs (and KV landings) of an instant are delivered in request order. Found by the long
    property run: requests 24 and 25 swapped decode instances."""
    import numpy as np

    from llmsim.scenario import scenario_from_dict
    from llmsim.simulation import simulate
    from tests.conftest import REPO

    data = {"name": "tie", "seed": 0, "model": "llama-2-7b",
            "cluster": {"gpu": "h100", "max_model_len": 2048, "router": "round_robin",
                        "gpu_memory_utilization": 0.5, "topology": "disaggregated",
                        "prefill": {"num_instances": 2, "tp": 2}, "decode": {"num_instances": 2}},
            "policy": {"kind": "distserve_prefill"},
            "decode_policy": {"kind": "distserve_decode", "waiting_block_prop_threshold": 0.5},
            "kv_cache": {"block_size": 8, "watermark": 0.0, "swap_space_gib": 0.0, "num_blocks": 260},
            "workload": {"kind": "synthetic", "num_requests": 27, "arrival": {"kind": "closed"},
                         "prompt_tokens": {"kind": "fixed", "tokens": 669},
                         "output_tokens": {"kind": "fixed", "tokens": 72}},
            "slo": {"ttft_s": 2.0, "tpot_s": 0.2}}
    runs = [simulate(scenario_from_dict({**data, "simulation": {"fuse_decode_steps": f}}, "t", REPO))
            .requests for f in (True, False)]
    np.testing.assert_array_equal(runs[0]["decode_instance"], runs[1]["decode_instance"])
    np.testing.assert_allclose(runs[0]["finish_s"], runs[1]["finish_s"], rtol=1e-9)
