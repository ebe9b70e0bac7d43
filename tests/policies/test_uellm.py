"""UELLM: SLO-ODBS grouping against the reference algorithm, the predictor, HELR vs brute force."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from llmsim.policies.helr import helr_placement
from llmsim.policies.uellm import UELLMConfig, UELLMPolicy, slo_odbs_groups
from llmsim.simulation import simulate
from llmsim.workload.predictor import PredictorConfig, apply_predictor
from tests.conftest import LIMITS, make_kv, make_requests, tiny_scenario


def reference_slo_odbs(queries, threshold=15000, L=1.2, a=1, b=0.5, bs=10):
    """A transcription of SLO_ODBS.py's loop over (SLO, len) pairs (policies.md §6.2)."""
    sorted_q = sorted(queries, key=lambda q: a * q[0] + b * q[1])
    groups, cur, cur_max = [], [], sorted_q[0][1]
    for q in sorted_q:
        if len(cur) < bs and (q[1] - cur_max) * (len(cur) + 1) * L <= threshold:
            cur.append(q)
            cur_max = max(cur_max, q[1])
        else:
            groups.append(cur)
            cur, cur_max = [q], q[1]
    groups.append(cur)
    return groups


def test_slo_odbs_matches_the_reference_on_a_fixed_input():
    rng = np.random.default_rng(3)
    slos = rng.integers(90, 300, size=60).astype(float)
    lens = rng.integers(20, 2500, size=60)
    reqs = make_requests([(0.0, 10, 1)] * 60)
    for r, s, n in zip(reqs, slos, lens):
        r.deadline_at_s, r.predicted_output_tokens = s, int(n)
    for threshold in (15000, 300):
        cfg = UELLMConfig(threshold_tokens=threshold, overhead_factor=1.2, w_slo=1, w_len=0.5,
                          max_num_seqs=10)
        got = [[(r.deadline_at_s, r.predicted_output_tokens) for r in g] for g in slo_odbs_groups(reqs, cfg)]
        want = reference_slo_odbs(list(zip(slos, lens)), threshold=threshold)
        assert got == [[(s, int(n)) for s, n in g] for g in want]
    assert len(got) > 6  # at 300 the padding threshold splits groups, not only the batch size


def test_uellm_runs_the_first_group_as_a_padded_batch():
    p = UELLMPolicy(UELLMConfig(max_num_seqs=2), LIMITS)
    kv = make_kv(num_blocks=500)
    reqs = make_requests([(0, 10, 5), (0, 30, 5), (0, 20, 5)])
    for r, d, n in zip(reqs, (50.0, 10.0, 20.0), (40, 40, 40)):
        r.deadline_at_s, r.predicted_output_tokens = d, n
        p.enqueue(r)
    plan = p.schedule(kv, 0.0)
    assert [r for r, _ in plan.prefills] == [reqs[1], reqs[2]]  # tightest deadlines first
    assert plan.padded_prompt_tokens == 30
    assert kv.num_blocks_of(reqs[1].request_id) == kv.blocks_for(30 + 40 + 50)


def test_bucketed_predictor_accuracy_and_adjacency():
    reqs = make_requests([(0, 10, int(n)) for n in np.random.default_rng(0).integers(1, 4000, 5000)])
    apply_predictor(reqs, PredictorConfig(kind="bucketed", accuracy=0.8), np.random.default_rng(1))
    edges = [256, 512, 1024, 2048]
    true_b = [int(np.searchsorted(edges, r.output_tokens, side="left")) for r in reqs]
    uppers = edges + [4096]
    pred_b = [uppers.index(r.predicted_output_tokens) for r in reqs]
    hits = np.mean([t == p for t, p in zip(true_b, pred_b)])
    assert hits == pytest.approx(0.8, abs=0.02)
    assert all(abs(t - p) <= 1 for t, p in zip(true_b, pred_b))


def test_uellm_end_to_end_beats_fcfs_static_on_makespan_with_a_closed_batch():
    wl = {"kind": "trace", "path": "traces/closed_mixed_100.csv"}
    base = dict(workload=wl, predictor={"kind": "bucketed"}, slo={"deadline_s": 300})
    uellm = simulate(tiny_scenario({"kind": "uellm"}, **base)).summary
    fcfs = simulate(tiny_scenario({"kind": "uellm", "sort": "fcfs"}, **base)).summary
    assert uellm["num_finished"] == fcfs["num_finished"] == 100
    assert uellm["padding_ratio"] < fcfs["padding_ratio"]


# ---- HELR ------------------------------------------------------------------------------------
def brute_force(layer_bytes, layer_s, gpu_bytes, link_s, kv, mode):
    n, g = len(layer_bytes), len(gpu_bytes)
    best = None
    for j in range(1, g + 1):
        for cuts in itertools.combinations(range(1, n), j - 1):
            bounds = (0, *cuts, n)
            segs = list(zip(bounds, bounds[1:]))
            if any(sum(layer_bytes[a:b]) + kv > gpu_bytes[i] for i, (a, b) in enumerate(segs)):
                continue
            lat = sum(layer_s) + sum(link_s[:j - 1])
            key = (j,) if mode == "he" else (round(lat, 12), j)
            if best is None or key < best[0]:
                best = (key, lat, j)
    return best


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("mode", ["helr", "he", "lr"])
def test_helr_dp_matches_brute_force(seed, mode):
    rng = np.random.default_rng(seed)
    n, g = int(rng.integers(2, 7)), int(rng.integers(1, 5))
    layer_bytes = rng.uniform(1, 4, n).round(2).tolist()
    layer_s = rng.uniform(0.1, 1, n).round(3).tolist()
    gpu_bytes = rng.uniform(3, 12, g).round(2).tolist()
    link_s = rng.uniform(0, 0.3, max(0, g - 1)).round(3).tolist()
    ref = brute_force(layer_bytes, layer_s, gpu_bytes, link_s, 0.5, mode)
    if ref is None:
        with pytest.raises(ValueError):
            helr_placement(layer_bytes, layer_s, gpu_bytes, link_s, 0.5, mode)
        return
    got = helr_placement(layer_bytes, layer_s, gpu_bytes, link_s, 0.5, mode)
    assert got.num_gpus == ref[2] and math.isclose(got.latency_s, ref[1], rel_tol=1e-9)
    assert got.segments[0][0] == 0 and got.segments[-1][1] == len(layer_bytes)


# ---- generation caps (generate's max_length) and a trace's own predictions --------------------
def _closed_trace(tmp_path, rows, predicted=True):
    """rows: (prompt, output, predicted) at t = 0; a trace file for a scenario."""
    path = tmp_path / "t.csv"
    head = "arrival_s,prompt_tokens,output_tokens" + (",predicted_output_tokens" if predicted else "")
    lines = [head] + [f"0,{p},{o}" + (f",{q}" if predicted else "") for p, o, q in rows]
    path.write_text("\n".join(lines) + "\n")
    return {"kind": "trace", "path": str(path)}


def test_static_max_length_cuts_answers_past_the_cap_and_metrics_count_what_was_generated(tmp_path):
    wl = _closed_trace(tmp_path, [(10, 5, 1), (30, 200, 1), (20, 40, 1)], predicted=False)
    res = simulate(tiny_scenario({"kind": "static", "max_num_seqs": 3, "max_length": 80}, wl))
    req = res.requests.sort_values("request_id")
    # one batch padded to its longest prompt (30): every row stops after 80 - 30 = 50 tokens
    assert req["num_generated_tokens"].tolist() == [5, 50, 40]
    assert req["output_tokens"].tolist() == [5, 200, 40]  # the workload's truth stays recorded
    assert res.steps["num_iterations"].sum() == 50  # the batch ran 50 padded steps, not 200
    assert res.summary["throughput"]["output_tokens_per_s"] == pytest.approx(
        95 / res.summary["makespan_s"], rel=1e-9)
    cut = req.iloc[1]
    assert cut["tpot_s"] == pytest.approx((cut["finish_s"] - cut["ttft_s"]) / 49, rel=1e-9)
    uncapped = simulate(tiny_scenario({"kind": "static", "max_num_seqs": 3}, wl)).requests
    assert uncapped["num_generated_tokens"].tolist() == [5, 200, 40]


def test_uellm_caps_each_group_at_its_longest_prediction_plus_margin(tmp_path):
    # two groups of two by deadline-free SLO-ODBS order (length): predictions 10, 12 | 100, 120
    rows = [(4, 500, 10), (4, 5, 12), (8, 500, 100), (8, 60, 120)]
    wl = _closed_trace(tmp_path, rows)
    pol = {"kind": "uellm", "max_num_seqs": 2, "max_new_tokens_margin": 50,
           "cap_from_prediction": True}
    res = simulate(tiny_scenario(pol, wl, predictor={"kind": "trace"}))
    got = res.requests.sort_values("request_id")["num_generated_tokens"].tolist()
    # max_length = 12 + 50 = 62 with prompts of 4: 58 new tokens; 120 + 50 - 8 = 162 for the rest
    assert got == [58, 5, 162, 60]
    free = simulate(tiny_scenario({**pol, "cap_from_prediction": False}, wl,
                                  predictor={"kind": "trace"}))
    assert free.requests.sort_values("request_id")["num_generated_tokens"].tolist() == [
        500, 5, 500, 60]
    both = simulate(tiny_scenario({**pol, "max_length": 40}, wl, predictor={"kind": "trace"}))
    assert both.requests["num_generated_tokens"].max() == 36  # the tighter of the two caps


def test_trace_predictor_takes_the_column_and_refuses_without_it(tmp_path):
    from llmsim.errors import InputError
    from llmsim.workload.source import workload_frame

    wl = _closed_trace(tmp_path, [(4, 50, 7), (4, 60, 9)])
    res = simulate(tiny_scenario({"kind": "uellm", "max_num_seqs": 1}, wl,
                                 predictor={"kind": "trace"}))
    assert res.summary["num_finished"] == 2
    df = workload_frame(tiny_scenario({"kind": "static"}, wl).workload,
                        np.random.default_rng(0), tmp_path)
    assert df["predicted_output_tokens"].tolist() == [7, 9]
    bare = _closed_trace(tmp_path, [(4, 50, 7)], predicted=False)
    with pytest.raises(InputError, match="predictor.kind: 'trace' needs a predicted_output_tokens"):
        simulate(tiny_scenario({"kind": "uellm"}, bare, predictor={"kind": "trace"}))


def test_a_cap_from_predictions_needs_a_predictor(tmp_path):
    import subprocess
    import sys

    from llmsim.errors import InputError
    from llmsim.scenario import load_scenario

    path = tmp_path / "s.yaml"
    path.write_text("model: llama-2-7b\npolicy: {kind: uellm, cap_from_prediction: true}\n"
                    "workload: {kind: synthetic, num_requests: 2, arrival: {kind: closed}, "
                    "prompt_tokens: {kind: fixed, tokens: 8}, output_tokens: {kind: fixed, "
                    "tokens: 8}}\n")
    with pytest.raises(InputError, match="cap_from_prediction"):
        load_scenario(path)
    run = subprocess.run([sys.executable, "-m", "llmsim", "run", str(path), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True)
    assert run.returncode == 2 and "cap_from_prediction" in run.stderr
    assert "Traceback" not in run.stderr
