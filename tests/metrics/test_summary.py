"""Summary metrics on hand-built records (policies.md section 12 definitions)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from llmsim.metrics.recorder import requests_frame
from llmsim.metrics.summary import padding_ratio, slo_attainment, summarize
from llmsim.request import RequestStatus
from tests.conftest import make_requests


def finished(specs):
    """specs: (arrival, prompt, output, first_token_s, finish_s, ttft_slo, tpot_slo)."""
    reqs = make_requests([(a, p, o) for a, p, o, *_ in specs])
    for r, (_, _, o, ft, fin, ttft_slo, tpot_slo) in zip(reqs, specs):
        r.first_token_s, r.finish_s, r.num_generated_tokens = ft, fin, o
        r.status = RequestStatus.FINISHED
        r.ttft_slo_s, r.tpot_slo_s = ttft_slo, tpot_slo
    return reqs


def test_latency_definitions():
    df = requests_frame(finished([(1.0, 10, 5, 1.5, 3.5, 1.0, 1.0)]))
    row = df.iloc[0]
    assert row["ttft_s"] == 0.5 and row["e2e_s"] == 2.5 and row["tpot_s"] == 0.5  # 2 s / 4 gaps


def test_slo_attainment_counts_rejections_as_misses():
    reqs = finished([(0, 10, 5, 0.2, 1.0, 0.5, 1.0),   # meets both
                     (0, 10, 5, 0.8, 1.6, 0.5, 1.0),   # misses TTFT
                     (0, 10, 3, 0.1, 2.1, 0.5, 0.5)])  # misses TPOT (1.0 s/token)
    rej = make_requests([(0, 10, 5)], start_id=3)[0]
    rej.status, rej.reject_reason = RequestStatus.REJECTED, "too long"
    att = slo_attainment(requests_frame(reqs + [rej]))
    assert att["ttft"] == 0.5 and att["tpot"] == 0.5 and att["both"] == 0.25


def test_single_token_outputs_have_no_tpot_and_meet_it():
    df = requests_frame(finished([(0, 10, 1, 0.3, 0.3, 1.0, 0.01)]))
    assert math.isnan(df["tpot_s"].iloc[0]) and slo_attainment(df)["tpot"] == 1.0


def test_padding_ratio_is_padding_over_all_computed_tokens():
    steps = pd.DataFrame({"num_prefill_tokens": [14, 0], "num_decode_seqs": [0, 1],
                          "num_iterations": [1, 2], "num_padding_tokens": [6, 2]})
    assert padding_ratio(steps) == pytest.approx(8 / (14 + 2 + 8))


def test_summary_throughput_and_busy_fraction():
    reqs = finished([(0.0, 10, 5, 0.5, 2.0, 1, 1), (1.0, 20, 11, 1.5, 4.0, 1, 1)])
    steps = pd.DataFrame({"instance": [0, 0], "start_s": [0.0, 1.0], "duration_s": [1.0, 2.0],
                          "num_iterations": [1, 4], "num_prefill_tokens": [10, 20],
                          "num_decode_seqs": [1, 2], "num_padding_tokens": [0, 0],
                          "kv_used_blocks": [5, 10], "kv_num_blocks": [20, 20]})
    s = summarize(requests_frame(reqs), steps, num_instances=1, num_gpus=1)
    assert s["makespan_s"] == 4.0
    assert s["throughput"]["requests_per_s"] == 0.5
    assert s["throughput"]["output_tokens_per_s"] == 16 / 4
    assert s["gpu_busy_fraction"] == 3.0 / 4.0
    assert s["kv_utilisation"]["mean_blocks_used"] == pytest.approx((0.25 * 1 + 0.5 * 2) / 3)
    assert s["num_steps"] == 5
    assert s["normalized_latency_s_per_token"] == pytest.approx((2.0 / 5 + 3.0 / 11) / 2)


def test_busy_fraction_by_role_counts_idle_instances():
    reqs = finished([(0.0, 10, 5, 0.5, 2.0, 1, 1)])
    steps = pd.DataFrame({"instance": [0], "start_s": [0.0], "duration_s": [1.0],
                          "num_iterations": [1], "num_prefill_tokens": [10], "num_decode_seqs": [0],
                          "num_padding_tokens": [0], "kv_used_blocks": [1], "kv_num_blocks": [10],
                          "role": ["prefill"]})
    s = summarize(requests_frame(reqs), steps, 2, 2, {"prefill": 2})
    assert s["gpu_busy_fraction_by_role"]["prefill"] == 1.0 / (2.0 * 2)


def test_mfu_counts_every_computed_token_against_the_peak():
    from llmsim.metrics.summary import model_flops_utilisation

    steps = pd.DataFrame({"num_prefill_tokens": [100, 0, 50], "num_decode_seqs": [0, 4, 2],
                          "num_iterations": [1, 10, 1], "num_offloaded_tokens": [0, 0, 3],
                          "role": ["colocated", "colocated", "cpu"]})
    # the CPU engine's step is not GPU work: 100 + 40 tokens x 2 FLOPs over 10 s x 14 FLOP/s
    assert model_flops_utilisation(steps, 10.0, 2.0, 14.0) == pytest.approx(2.0)


def test_mfu_tracks_the_load_where_the_busy_fraction_does_not():
    from llmsim.simulation import simulate
    from tests.conftest import tiny_scenario

    s = {rate: simulate(tiny_scenario({"kind": "vllm"}, {
        "kind": "synthetic", "num_requests": 300, "arrival": {"kind": "poisson", "rate_per_s": rate},
        "prompt_tokens": {"kind": "fixed", "tokens": 200},
        "output_tokens": {"kind": "fixed", "tokens": 200}})).summary for rate in (2.0, 4.0)}
    ratio = s[4.0]["model_flops_utilisation"] / s[2.0]["model_flops_utilisation"]
    assert 1.7 < ratio < 2.3
    assert s[2.0]["gpu_busy_fraction"] > 0.5 * s[4.0]["gpu_busy_fraction"]
