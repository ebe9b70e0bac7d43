"""Summary metrics on hand-built records (policies.md section 12 definitions)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from llmsim.metrics.output import _dist_row, slo_rows
from llmsim.metrics.recorder import requests_frame
from llmsim.metrics.summary import (
    goodput,
    in_flight_per_instance,
    offered_load,
    padding_ratio,
    slo_attainment,
    slo_thresholds,
    summarize,
)
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
    # requests in flight and bandwidth use grow with the load too
    assert s[4.0]["in_flight_per_instance"] > 1.5 * s[2.0]["in_flight_per_instance"]
    assert s[4.0]["model_bandwidth_utilisation"] > s[2.0]["model_bandwidth_utilisation"] > 0
    # the offered rate is the workload's; served (over the makespan, drain included) is below
    for rate in (2.0, 4.0):
        assert s[rate]["offered"]["requests_per_s"] == pytest.approx(rate, rel=0.15)
        assert s[rate]["throughput"]["requests_per_s"] < s[rate]["offered"]["requests_per_s"]


def test_offered_goodput_and_in_flight_on_hand_built_records():
    # arrivals at 0, 1, 2 s; finishes at 2, 3, 6 s; the third misses its TTFT
    reqs = finished([(0.0, 10, 5, 0.5, 2.0, 1, 1), (1.0, 10, 5, 1.5, 3.0, 1, 1),
                     (2.0, 10, 5, 4.0, 6.0, 1, 1)])
    df = requests_frame(reqs)
    assert offered_load(df) == {"requests_per_s": 1.0, "arrival_window_s": 2.0}
    assert goodput(df, 6.0)["requests_per_s"] == pytest.approx(2 / 6)
    # 2 + 2 + 4 request-seconds over 6 s on 2 instances
    assert in_flight_per_instance(df, 0.0, 6.0, 2) == pytest.approx(8 / 12)
    # an unfinished request counts up to the end of the run
    reqs[2].status, reqs[2].finish_s = RequestStatus.RUNNING, float("nan")
    assert in_flight_per_instance(requests_frame(reqs), 0.0, 5.0, 1) == pytest.approx(7 / 5)


def test_slo_thresholds_name_only_what_is_set():
    reqs = finished([(0.0, 10, 5, 0.5, 2.0, float("inf"), float("inf")),
                     (1.0, 10, 5, 1.5, 3.0, float("inf"), float("inf"))])
    reqs[0].deadline_at_s, reqs[1].deadline_at_s = 2.5, 3.5  # budgets 2.5 s and 2.5 s
    df = requests_frame(reqs)
    assert slo_thresholds(df) == {"ttft_s": None, "tpot_s": None, "deadline_s": 2.5}
    reqs[1].deadline_at_s = 2.0  # a 1 s budget, missed
    df = requests_frame(reqs)
    assert slo_thresholds(df)["deadline_s"] == [1.0, 2.5]
    att = slo_attainment(df)
    assert att["deadline"] == 0.5 and att["all"] == 0.5 and att["both"] == 1.0
    rows = dict(slo_rows(att, slo_thresholds(df)))
    assert rows["SLO"] == "deadline <= 1.00 s–2.50 s (per request)"
    assert rows["SLO attainment (deadline)"] == "50.0%"
    assert dict(slo_rows(att, {"ttft_s": None, "tpot_s": None, "deadline_s": None})) == {
        "SLO": "none set"}


def test_latencies_are_shown_in_a_unit_that_fits_them():
    fast = {"mean": 0.0123, "p50": 0.01, "p90": 0.02, "p99": 0.5}
    slow = {"mean": 260.5, "p50": 278.2, "p90": 454.9, "p99": 510.5}
    assert _dist_row("TTFT", fast) == ("TTFT ms (mean / p50 / p90 / p99)",
                                       "12.3 / 10.0 / 20.0 / 500.0")
    assert _dist_row("TTFT", slow) == ("TTFT s (mean / p50 / p90 / p99)",
                                       "260.5 / 278.2 / 454.9 / 510.5")
