"""Fidelity regression guard (issue #4): every committed real-engine run is re-simulated and its
error must stay within the bound recorded when it was committed; the decisions the real runs
show (which configuration is faster, roughly by how much) must be reproduced."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from calibration.decisions import (
    PAIRS_FILE,
    STATS,
    configuration,
    decision_table,
    engine_agreement,
    load_pairs,
    repeated_pairs,
    reproduced,
)
from calibration.fidelity import (
    VALIDATION_ROOT,
    batch_durations,
    batch_errors,
    compare,
    find_cases,
    load_case,
    measured_latencies,
    simulate_case,
    validate,
)
from calibration.fidelity_fit import SESSION_WEIGHT
from calibration.spread import repeatability
from llmsim.errors import InputError

BOUNDS = json.loads((VALIDATION_ROOT / "fidelity_bounds.json").read_text())["bounds"]
CASES = find_cases()
_SIM: dict[str, tuple] = {}


def _config(key: str) -> tuple:
    """(GPU, model, kind, scheduler or order) of a committed case."""
    c = load_case(VALIDATION_ROOT / key).info["case"]
    return key.split("/")[0], c["model"], c["kind"], c.get("scheduler", c.get("order"))


# The default suite scores one case per configuration (the fast validation subset); every
# committed case runs under the ``slow`` marker.
FAST = set({_config(k): k for k in sorted(BOUNDS, reverse=True)}.values())


def _run(key: str):
    if key not in _SIM:
        case = load_case(VALIDATION_ROOT / key)
        _SIM[key] = (case, simulate_case(case))
    return _SIM[key]


def test_every_case_has_a_bound_and_the_set_covers_the_issue():
    keys = {f"{p.parent.name}/{p.name}" for p in CASES}
    assert keys == set(BOUNDS)
    gpus = {k.split("/")[0] for k in keys}
    assert {"h100", "h200"} <= gpus
    infos = [load_case(p).info["case"] for p in CASES]
    assert len({i["model"] for i in infos}) >= 2
    cb = [i for i in infos if i["kind"] == "cb"]
    # a case at the engine's defaults sets no scheduler: the engine's default is FIFO
    assert {i.get("scheduler", "fifo") for i in cb} == {"fifo", "prefill_first"}
    # ... and the engine's default budget, 8,192 tokens
    assert len({i.get("max_batch_tokens", 8192) for i in cb}) >= 2
    assert {i.get("order") for i in infos if i["kind"] == "static"} == {"fcfs", "sorted"}


@pytest.mark.parametrize("key", [k if k in FAST else pytest.param(k, marks=pytest.mark.slow)
                                 for k in sorted(BOUNDS)])
def test_error_within_recorded_bound(key):
    case, sim = _run(key)
    r = compare(case.requests, sim)
    for metric, bound in BOUNDS[key].items():
        err = abs(r["quantiles"][metric]["rel_error"])
        assert err <= bound, f"{key} {metric}: |error| {err:.3f} > bound {bound}"


# (a, b) configuration pairs the real runs decide between (ratio = metric(b) / metric(a)),
# each run in one session: calibration/validation/decision_pairs.yaml
PAIRS = load_pairs(VALIDATION_ROOT / PAIRS_FILE)
# Decisions llmsim does not reproduce yet (strict: the test fails once they are fixed, so the
# list stays honest).
KNOWN_MISSES = {
    ("h100/llama8b_fifo_mbt1024_queue_r2", "h100/llama8b_fifo_mbt256_queue_r2", "p90_ttft"):
        "same winner, magnitude over: real 3.7x, llmsim 7.5x (mbt256 queueing TTFT is the "
        "engine's least repeatable metric: p50 0.45-2.3 s over four H100 runs)",
    ("h200/qwen7b_pf_mbt1024_sat_r4", "h200/qwen7b_fifo_mbt256_queue_r4", "p90_ttft"):
        "same winner, magnitude under: real 0.36x, llmsim 0.2x (the mbt256 queueing run's TTFT "
        "is -57% p50 / -45% p90 at its session's speed; it passed under the linear form, which "
        "priced that run's small steps higher; mbt256 queueing TTFT: see above)",
    ("h100/qwen7b_pf_mbt1024_code", "h100/qwen7b_fifo_mbt512_code", "p90_ttft"):
        "same winner, magnitude over: real 4.3x, llmsim 6.9x (FIFO mbt512 on the code-like slice "
        "is near its prefill capacity, so its TTFT multiplies a step-cost error: +61% p90 TTFT)",
    ("h200/llama8b_pf_mbt1024_code", "h200/llama8b_fifo_mbt512_code", "mean_e2e"):
        "other winner: real 1.34x, llmsim 0.96x. This session's FIFO run ran slow against its "
        "sibling (llmsim's E2E p50 -24% on it, +21% on prefill-first, at the session's speed); "
        "the pair run again (*_r11) gave real 1.00x, llmsim 1.00x and passes",
    ("h200/llama8b_pf_mbt1024_code", "h200/llama8b_fifo_mbt512_code", "p90_ttft"):
        "same winner, magnitude under: real 8.5x, llmsim 4.6x (the same slow FIFO run; *_r11: "
        "real 4.7x, llmsim 4.9x, passes)",
    ("h100/llama8b_pf_mbt512_bursty", "h100/llama8b_fifo_mbt256_bursty", "mean_e2e"):
        "other winner: real 0.78x, llmsim 1.13x. The two runs' steps ran at 1.05x and 0.81x of "
        "the fit in one session; the pair run again in a later session was a tie (*_r10, "
        "passes), so this decision is the engine's run-to-run spread",
    ("h100/llama8b_pf_mbt512_bursty", "h100/llama8b_fifo_mbt256_bursty", "p90_ttft"):
        "same winner, magnitude over: real 2.8x, llmsim 5.6x (the same 1.05x vs 0.81x run speeds; "
        "the later run of the pair passes)",
    ("h200/qwen7b_pf_mbt512_bursty_r9", "h200/qwen7b_fifo_mbt256_bursty_r9", "mean_e2e"):
        "other winner by a little: real 0.94x, llmsim 1.04x (the first run of the pair tied and "
        "passes)",
    ("h200/qwen7b_pf_mbt512_bursty_r9", "h200/qwen7b_fifo_mbt256_bursty_r9", "p90_ttft"):
        "same winner, magnitude over: real 2.7x, llmsim 4.0x (bursty p90 TTFT ratios sit near "
        "the 1.35x limit and cross it as refits move by a few percent: the r10 run below)",
    ("h200/qwen7b_pf_mbt512_bursty_r10", "h200/qwen7b_fifo_mbt256_bursty_r10", "p90_ttft"):
        "same winner, magnitude over: real 2.6x, llmsim 3.7x, just past the 1.35x limit (the "
        "FIFO run's p90 TTFT +39%; it passed at 3.6x before session 11's runs joined the fit)",
    ("h100/llama8b_pf_mbt1024_code_r12", "h100/llama8b_fifo_mbt512_code_r12", "mean_e2e"):
        "other winner: real 0.77x, llmsim 1.21x. The step probe shows the host's slow state "
        "(every host cost ~1.4x, see calibration/README) on 82% of the prefill-first run's steps "
        "and 38% of the FIFO run's (`llmsim-lab regimes`); the two earlier H100 Llama "
        "runs of this pair passed",
    ("h100/llama8b_pf_mbt1024_code_r12", "h100/llama8b_fifo_mbt512_code_r12", "p90_ttft"):
        "same winner, magnitude over: real 3.4x, llmsim 8.1x (the same 82% vs 38% slow-state "
        "steps; FIFO mbt512 on the code-like slice is near its prefill capacity)",
    ("h100/llama8b_pf_mbt512_code", "h100/llama8b_fifo_mbt512_code_r15", "p90_ttft"):
        "same winner, magnitude over: real 1.10x, llmsim 1.7x (session r15, 61-97% "
        "slow-state steps: llmsim's prefill-first 512 TTFT p50 -36%, 76% slow-state steps)",
    ("h100/llama8b_pf_mbt1024_code_r15", "h100/llama8b_pf_mbt512_code", "p90_ttft"):
        "same winner, magnitude under: real 8.1x, llmsim 4.3x (session r15, 61% vs 76% slow "
        "steps)",
    ("h100/llama8b_pf_mbt256_queue_r16", "h100/llama8b_fifo_mbt256_queue_r16", "mean_e2e"):
        "other winner: real 1.14x, llmsim 0.83x. Slow-state steps: FIFO 70%, prefill-first 38% "
        "(a later H100 session, chat slice); at the session's speed llmsim's FIFO E2E p50 is "
        "-20%, prefill-first +16%",
    ("h100/llama8b_pf_mbt256_queue_r16", "h100/llama8b_fifo_mbt256_queue_r16", "p90_ttft"):
        "same winner, magnitude under: real 3.9x, llmsim 1.7x (the same 70% vs 38% slow steps)",
    ("h100/llama8b_pf_mbt512_bursty_r16", "h100/llama8b_fifo_mbt256_bursty_r16", "p90_ttft"):
        "same winner, magnitude under: real 8.9x, llmsim 5.8x (slow-state steps FIFO 62%, "
        "prefill-first 41%; the mean E2E of the pair passes)",
    ("h100/llama8b_pf_mbt1024_code_r10", "h100/llama8b_fifo_mbt512_code_r10", "p90_ttft"):
        "same winner, magnitude over: real 5.7x, llmsim 7.7x, just past the 1.35x limit (FIFO "
        "mbt512 on the code-like slice is near its prefill capacity)",
    ("h100/qwen7b_pf_mbt1024_code_r15", "h100/qwen7b_pf_mbt512_code", "p90_ttft"):
        "same winner, magnitude over: real 3.6x, llmsim 5.1x (session r15: 72% vs 41% slow-state "
        "steps)",
    # H100 session r17: the FIFO 512 Qwen run spent 17% of its steps in the host's slow state,
    # its three siblings 42-74%, so the session's speed (from those siblings) over-prices it:
    # its p50 TTFT +204%. Seven of the session's misses are that run.
    ("h100/llama8b_pf_mbt1024_code_r17", "h100/llama8b_pf_mbt512_code_r17", "p90_ttft"):
        "same winner, magnitude under: real 6.2x, llmsim 4.5x (slow-state steps: 39% at 1024, "
        "52% at 512)",
    ("h100/qwen7b_pf_mbt1024_code_r17", "h100/qwen7b_fifo_mbt512_code_r17", "mean_e2e"):
        "other winner: real 0.76x, llmsim 1.30x (the fast FIFO run, above)",
    ("h100/qwen7b_pf_mbt1024_code_r17", "h100/qwen7b_fifo_mbt512_code_r17", "p90_ttft"):
        "same winner, magnitude over: real 2.7x, llmsim 8.7x (the fast FIFO run, above)",
    ("h100/qwen7b_pf_mbt512_code_r17", "h100/qwen7b_fifo_mbt512_code_r17", "mean_e2e"):
        "same winner, magnitude over: real 0.43x, llmsim 0.81x (the fast FIFO run, above)",
    ("h100/qwen7b_pf_mbt512_code_r17", "h100/qwen7b_fifo_mbt512_code_r17", "p90_ttft"):
        "other winner: real 0.56x, llmsim 2.5x (the fast FIFO run, above)",
    ("h100/qwen7b_pf_mbt1024_code_r17", "h100/qwen7b_pf_mbt512_code_r17", "p90_ttft"):
        "same winner, magnitude under: real 4.8x, llmsim 3.5x (slow-state steps: 74% at 1024, "
        "66% at 512)",
    ("h100/qwen7b_fifo_mbt1024_code_r17", "h100/qwen7b_fifo_mbt512_code_r17", "mean_e2e"):
        "other winner: real 0.89x, llmsim 1.37x (the fast FIFO run, above)",
    ("h100/qwen7b_fifo_mbt1024_code_r17", "h100/qwen7b_fifo_mbt512_code_r17", "p90_ttft"):
        "same winner, magnitude over: real 2.5x, llmsim 6.0x (the fast FIFO run, above)",
    # passed until session 11's 24 runs joined the fit (each moved by the refit)
    ("h100/qwen7b_pf_mbt512_code", "h100/qwen7b_fifo_mbt512_code_r15", "p90_ttft"):
        "same winner, magnitude under: real 2.1x, llmsim 1.5x (session r15: slow-state steps "
        "97% FIFO, 41% prefill-first; llmsim's prefill-first p50 TTFT +38%)",
    ("h100/qwen7b_pf_mbt1024_code_r17", "h100/qwen7b_fifo_mbt1024_code_r17", "p90_ttft"):
        "same winner, magnitude over: real 1.06x, llmsim 1.46x (slow-state steps: prefill-first "
        "74%, FIFO 42%; llmsim's prefill-first p90 TTFT -18%)",
    # session 11, scored held out first (13 of its 16 decisions passed)
    ("h100/qwen7b_pf_mbt512_bursty_r18", "h100/qwen7b_fifo_mbt256_bursty_r18", "p90_ttft"):
        "same winner, magnitude over: real 4.2x, llmsim 5.7x, just past the 1.35x limit (the "
        "prefill-first run's fast plan builds sat at 56 ms, the slowest fast level of any H100 "
        "run: its p50 TTFT -31%)",
    ("h200/llama8b_fifo_mbt1024_queue_r13", "h200/llama8b_fifo_mbt256_queue_r13", "mean_e2e"):
        "other winner by a little: real 0.94x, llmsim 1.03x (slow-state steps: 27% at 1024, 7% "
        "at 256; every metric of both runs within 19%)",
    ("h200/qwen7b_pf_mbt512_code_r14", "h200/qwen7b_fifo_mbt1024_code_r14", "p90_ttft"):
        "same winner, magnitude under: real 0.66x, llmsim 0.90x (the FIFO 1024 run's p90 TTFT "
        "+29%, its E2E +13-15%, slow-state steps 10%)",
    ("h100/heldout_qwen7b_default_chat_queue", "h100/heldout_qwen7b_graph_default_chat_queue",
     "p90_ttft"):
        "other winner: real 0.85x, llmsim 1.54x (held out: the eager run's p90 TTFT -31%, the "
        "graph run's +26%; inside the engine's spread, not scored)",
}
DECISIONS = [pytest.param(a, b, stat, marks=(
                 [pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[(a, b, stat)])]
                 if (a, b, stat) in KNOWN_MISSES else [])
                 + ([] if {a, b} <= FAST else [pytest.mark.slow]))
             for a, b in PAIRS for stat in sorted(STATS)]


@pytest.mark.parametrize("a,b,stat", DECISIONS)
def test_decisions_reproduced(a, b, stat):
    """Where the real runs differ by > 5%, llmsim picks the same winner and its ratio is within
    1.35x of the real one; where they tie (within 5%), llmsim's ratio stays within 25% of 1."""
    table = decision_table([(a, b)], lambda k: _run(k)[0].requests, lambda k: _run(k)[1])
    row = table[table["stat"] == stat].iloc[0]
    assert reproduced(row["real"], row["simulated"]), (row["real"], row["simulated"])


# GPU decisions llmsim gets wrong where the real gap exceeds the engine's own spread (strict:
# the test fails once one is fixed)
KNOWN_GPU_MISSES = {
    ("llama8b_pf_mbt256_queue", "p90_ttft"):
        "same winner, magnitude over: real 0.67x, llmsim 0.47x (queueing p90 TTFT multiplies "
        "a step-cost error: the H100 run *_r16 is +75% at its session's speed)",
    ("llama8b_pf_mbt512_code", "p90_ttft"):
        "same winner, magnitude under: real 0.20x, llmsim 0.34x (p90 TTFT at the sessions' "
        "speed: the H100 runs -29% / -18%, the H200 run *_r13 +47%)",
}


@pytest.mark.slow
def test_the_gpu_decision_is_reproduced_beyond_the_engines_spread():
    """For each configuration run on both GPUs, H200 / H100 of each side's mean over its runs:
    every decision whose real gap exceeds the engine's own range is reproduced, but the
    listed ones (2026-12-05: 58 of 62, beyond the spread 21 of 23)."""
    from calibration.decisions import gpu_decisions

    df = gpu_decisions(sorted(BOUNDS), lambda k: _run(k)[0].requests, lambda k: _run(k)[1])
    assert df["config"].nunique() >= 25
    scored = df[df["scored"]]
    missed = {(r.config, r.stat) for r in scored.itertuples() if not r.reproduced}
    assert missed == set(KNOWN_GPU_MISSES), missed
    assert len(scored) >= 20 and df["reproduced"].mean() > 0.9


def test_the_decision_criterion():
    assert reproduced(1.03, 1.2) and not reproduced(1.03, 1.3)      # a tie: within 25% of 1
    assert reproduced(0.97, 0.8) and not reproduced(0.97, 0.7)
    assert reproduced(2.0, 2.6) and not reproduced(2.0, 2.8)        # 1.35x either way
    assert reproduced(2.0, 1.5) and not reproduced(2.0, 1.4)
    assert not reproduced(1.1, 0.98) and not reproduced(0.9, 1.02)  # the other winner
    assert reproduced(0.5, 0.6) and not reproduced(0.5, 0.3)


def test_decision_pairs_file_errors_name_the_entry(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("pairs:\n  - [h100/a, h100/b]\n  - [h100/a]\n")
    with pytest.raises(InputError, match=r"pairs\[1\] must be"):
        load_pairs(bad)
    bad.write_text("cases: []\n")
    with pytest.raises(InputError, match="expected 'pairs:'"):
        load_pairs(bad)
    with pytest.raises(InputError, match="cannot read"):
        load_pairs(tmp_path / "missing.yaml")
    assert all(a.split("/")[0] == b.split("/")[0] for a, b in PAIRS)  # each pair on one GPU
    assert len(set(PAIRS)) == len(PAIRS)


def test_engine_agreement_compares_each_session_with_each_other(tmp_path):
    frames = {k: pd.DataFrame({"e2e_s": [v], "ttft_s": [v]}) for k, v in
              {"g/a": 1.0, "g/b": 2.0, "g/a_r2": 1.0, "g/b_r2": 2.4, "g/a_r3": 1.0,
               "g/b_r3": 3.0, "g/c": 1.0, "g/d": 1.0}.items()}
    pairs = [("g/a", "g/b"), ("g/a_r2", "g/b_r2"), ("g/a_r3", "g/b_r3"), ("g/c", "g/d")]
    df = engine_agreement(pairs, frames.__getitem__)
    assert configuration("g/b_r12") == "g/b" and set(df["config_b"]) == {"g/b"}  # c/d ran once
    assert repeated_pairs(pairs) == set(pairs[:3])
    assert len(df) == 2 * 6  # 3 sessions: 6 ordered pairs, per statistic
    ok = df[df["stat"] == "mean_e2e"].set_index(["truth", "repeat"])["reproduced"]
    assert ok[("g/b", "g/b_r2")] and not ok[("g/b", "g/b_r3")] and ok[("g/b_r3", "g/b_r2")]
    dt = decision_table(pairs[:1], frames.__getitem__,
                        lambda k: frames[k] * (1.5 if "b" in k else 1))
    assert list(dt["simulated"]) == [3.0, 3.0] and not dt["reproduced"].any()


@pytest.mark.slow
def test_llmsim_reproduces_decisions_more_often_than_the_engine_reproduces_its_own():
    """Where a pair of configurations ran in two or more sessions, the engine's ratio in one
    session, taken as the prediction of another's, meets the same criterion less often than
    llmsim does on those runs (2026-11-22: 170 of 252 vs 105 of 134, 67% vs 78%): the criterion
    asks more of a model than the engine's own repeatability gives."""
    engine = engine_agreement(PAIRS, lambda k: _run(k)[0].requests)
    repeated = repeated_pairs(PAIRS)
    assert len(engine) >= 200 and len(repeated) >= 60
    sim = decision_table(sorted(repeated), lambda k: _run(k)[0].requests, lambda k: _run(k)[1])
    assert engine["reproduced"].mean() < sim["reproduced"].mean() - 0.05, (
        engine["reproduced"].mean(), sim["reproduced"].mean())


def test_compare_on_known_frames():
    m = pd.DataFrame({"ttft_s": [1.0, 2.0, 3.0], "tpot_s": [0.1, 0.1, 0.1], "e2e_s": [2.0, 3.0, 4.0]})
    s = m * 1.1
    r = compare(m, s)
    assert all(abs(v["rel_error"] - 0.1) < 1e-9 for v in r["quantiles"].values())
    assert abs(r["per_request"]["e2e"]["p50_abs_rel_error"] - 0.1) < 1e-9
    assert abs(r["median_abs_error_p50_p90"] - 0.1) < 1e-9


def test_measured_latency_definitions():
    df = pd.DataFrame({"arrival_s": [1.0], "first_token_s": [1.5], "last_token_s": [3.5],
                       "output_tokens": [5]})
    out = measured_latencies(df)
    assert out["ttft_s"][0] == 0.5 and out["e2e_s"][0] == 2.5 and out["tpot_s"][0] == 0.5


def test_a_run_filed_outside_a_gpu_folder_reads_its_gpu_from_provenance(tmp_path):
    import shutil

    shutil.copytree(VALIDATION_ROOT / "h200" / "qwen7b_fifo_mbt256_bursty", tmp_path / "runs" / "x")
    assert load_case(tmp_path / "runs" / "x").gpu == "h200"
    shutil.copytree(VALIDATION_ROOT / "h100" / "qwen7b_fifo_mbt256_bursty", tmp_path / "h100" / "y")
    assert load_case(tmp_path / "h100" / "y").gpu == "h100"
    # and is fitted with its session's other runs as it would be under its GPU's folder
    for name in ("qwen7b_fifo_mbt256_queue_r4", "qwen7b_pf_mbt1024_sat_r4"):
        shutil.copytree(VALIDATION_ROOT / "h200" / name, tmp_path / "a" / "h200" / name)
        shutil.copytree(VALIDATION_ROOT / "h200" / name, tmp_path / "b" / "myruns" / name)
    a, b = (validate(tmp_path / r, fit_roots=(VALIDATION_ROOT,)) for r in ("a", "b"))
    assert list(b["gpu"]) == ["h200", "h200"]
    assert np.allclose(a["median_abs_err"], b["median_abs_err"])


def test_not_a_case_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not a measured case"):
        load_case(tmp_path)


@pytest.mark.slow
def test_llmsim_is_closer_to_a_run_than_a_repeat_of_that_run_is():
    """The engine's own run-to-run difference (the same case run again in another session) is
    the floor no fixed cost model can beat; llmsim's median error must stay below it."""
    rep = repeatability()
    assert len(rep) >= 8 and set(rep["gpu"]) == {"h100", "h200"}
    keys = [f"{g}/{c}" for g, c in zip(rep["gpu"], rep["case"])]
    assert all(k.rsplit("_r", 1)[0] in BOUNDS for k in keys)
    cols = [f"{m}_p{q}" for m in ("ttft", "tpot", "e2e") for q in (50, 90)]
    engine = float(np.median(rep[cols].abs().to_numpy()))
    sim = []
    for key in sorted(BOUNDS):
        case, simulated = _run(key)
        r = compare(case.requests, simulated)["quantiles"]
        sim += [abs(r[c]["rel_error"]) for c in cols]
    assert float(np.median(sim)) < engine, (float(np.median(sim)), engine)


def test_repeatability_pairs_only_cases_with_a_first_run(tmp_path):
    for name in ("a", "a_r2", "b_r2"):
        d = tmp_path / "h100" / name
        d.mkdir(parents=True)
        (d / "case.json").write_text(json.dumps({"case": {"kind": "cb"}}))
        pd.DataFrame({"request_id": ["r0", "r1"], "arrival_s": [0.0, 1.0],
                      "prompt_tokens": [10, 10], "output_tokens": [3, 3], "error": ["", ""],
                      "first_token_s": [0.5, 1.5],
                      "last_token_s": [1.5 if name == "a" else 1.7, 2.5]}).to_csv(d / "requests.csv")
    rep = repeatability(tmp_path)
    assert list(rep["case"]) == ["a_r2"]
    assert rep["e2e_p50"].iloc[0] == pytest.approx((1.6 / 1.5) - 1.0)


def test_batch_repeatability_compares_each_repeat_batch_with_the_first_runs(tmp_path):
    from calibration.spread import batch_repeatability

    for name, ends in (("s", [2.0, 5.0]), ("s_r2", [2.2, 4.4]), ("t_r3", [1.0, 2.0]),
                       ("s_r4", [1.0, 2.0, 3.0])):
        d = tmp_path / "h200" / name
        d.mkdir(parents=True)
        (d / "case.json").write_text(json.dumps({"case": {"kind": "static"}}))
        starts = [0.0] + ends[:-1]
        pd.DataFrame({"start_s": starts, "end_s": ends}).to_csv(d / "batches.csv", index=False)
    # s_r2 against s: 2.2 / 2.0 and 2.2 / 3.0; t_r3 has no first run; s_r4 does not pair up
    assert batch_repeatability(tmp_path) == pytest.approx([0.1, abs(2.2 / 3.0 - 1)])


def test_a_static_case_is_priced_at_the_speed_of_its_sessions_logged_runs(tmp_path):
    """A held-out folder (scored with the committed runs, as ``llmsim-lab validate --root`` does)
    whose continuous-batching run ran 20% faster prices its static case's steps cheaper by
    that speed, weighed by how much of a session's speed carries over to its other runs."""
    h200 = VALIDATION_ROOT / "h200"
    for name, speed in (("here", 1.0), ("there", 0.8)):
        _copy_run(h200 / "llama8b_static_fcfs", tmp_path / name / "h200" / "static", "s")
        _copy_run(h200 / "llama8b_fifo_mbt256_sat", tmp_path / name / "h200" / "cb", "s", speed)
    here, there = (simulate_case(load_case(tmp_path / n / "h200" / "static"),
                                 fit_roots=(VALIDATION_ROOT,)) for n in ("here", "there"))
    ratio = there["finish_s"].max() / here["finish_s"].max()
    # the fast run is also one of ~30 in the pooled fit, so a little less than 0.8 ** weight
    assert 0.8 ** SESSION_WEIGHT < ratio < 0.8 ** SESSION_WEIGHT * 1.02


def _scale_times(run, factor: float) -> None:
    """A static run's measured times, ``factor`` x as long (its requests and its batches)."""
    for name, cols in (("requests.csv", ("start_s", "first_token_s", "last_token_s",
                                         "finish_s", "returned_s")),
                       ("batches.csv", ("start_s", "first_token_s", "end_s", "median_step_s"))):
        df = pd.read_csv(run / name)
        for c in cols:
            df[c] = df[c] * factor
        df.to_csv(run / name, index=False)


def test_a_static_case_is_levelled_to_the_static_runs_of_other_sessions(tmp_path):
    """``hf_generate``'s level comes from static runs of other sessions: a copy of the case from
    another session that ran 0.8x as long predicts the case's batches after the first at 0.8x
    their measured time (the first batch of a fresh machine pays one-off kernel builds, which
    the level leaves out); a copy from the case's own session is left out (its speed would
    count twice)."""
    h200 = VALIDATION_ROOT / "h200"
    for name, session in (("other", "b"), ("same", "a"), ("alone", None)):
        root = tmp_path / name / "h200"
        _copy_run(h200 / "llama8b_static_fcfs", root / "case", "a")
        if session:
            _copy_run(h200 / "llama8b_static_fcfs", root / "copy", session)
            _scale_times(root / "copy", 0.8)
    case = load_case(tmp_path / "other" / "h200" / "case")
    other = simulate_case(case)
    measured, errs = batch_durations(case), batch_errors(case, other)
    later = measured[1:] * (1 + errs[1:])  # the simulated batches after the first
    assert later.sum() == pytest.approx(0.8 * measured[1:].sum(), rel=1e-6)
    assert errs[0] < errs[1:].min()  # the first batch's one-off builds: not in the level
    same, alone = (simulate_case(load_case(tmp_path / n / "h200" / "case"))
                   for n in ("same", "alone"))
    pd.testing.assert_frame_equal(same, alone)


def _copy_run(src, dst, session: str, speed: float = 1.0):
    """A committed run under another root and session, its logged steps ``speed`` x as long."""
    import shutil

    shutil.copytree(src, dst)
    info = json.loads((dst / "case.json").read_text())
    info["session"] = session
    (dst / "case.json").write_text(json.dumps(info))
    if speed != 1.0:
        steps = pd.read_csv(dst / "steps.csv")
        steps["end_s"] = steps["schedule_s"] + speed * (steps["end_s"] - steps["schedule_s"])
        steps.to_csv(dst / "steps.csv", index=False)


def test_a_case_is_priced_at_its_own_sessions_speed(tmp_path):
    """Two sessions, one of whose host ran 30% faster: a case of the fast session is predicted
    faster than the pooled fit says; a case alone in its session gets the pooled fit as is."""
    h200 = VALIDATION_ROOT / "h200"
    root = tmp_path / "h200"
    _copy_run(h200 / "llama8b_fifo_mbt256_queue", root / "case", "fast")
    _copy_run(h200 / "calib_llama8b_mbt256", root / "f1", "fast", 0.7)
    _copy_run(h200 / "calib_llama8b_mbt1024", root / "f2", "fast", 0.7)
    _copy_run(h200 / "llama8b_fifo_mbt256_sat", root / "s1", "slow")
    _copy_run(h200 / "llama8b_pf_mbt256_sat", root / "s2", "slow")
    _copy_run(h200 / "llama8b_fifo_mbt256_queue", root / "lone", "alone")
    case = load_case(root / "case")
    session, pooled = simulate_case(case), simulate_case(case, fit_on="all")
    # the pool holds the fast runs too (half its weight): 0.7 / 0.85 ~ 0.82 at most; the
    # hinge form reads part of the two sessions' gap as shape (the fast session ran the
    # calibration slice, the slow one saturated chat) and the session weighs 0.7: ~0.92
    assert 0.7 * pooled["e2e_s"].mean() < session["e2e_s"].mean() < 0.95 * pooled["e2e_s"].mean()
    lone = load_case(root / "lone")
    pd.testing.assert_frame_equal(simulate_case(lone), simulate_case(lone, fit_on="all"))


def test_own_speed_prices_a_case_at_the_speed_its_own_steps_ran(tmp_path):
    """The ``own`` diagnostic reads the case's own logged steps: the same run with its steps
    1.3x as long is priced 1.3x as slow; at its session's speed (each alone in its session)
    the two are priced alike."""
    src = VALIDATION_ROOT / "h100" / "llama8b_fifo_mbt512_code_r17"
    _copy_run(src, tmp_path / "h100" / "a", "one")
    _copy_run(src, tmp_path / "h100" / "b", "two", 1.3)
    a, b = load_case(tmp_path / "h100" / "a"), load_case(tmp_path / "h100" / "b")

    def busy_s(case, fit_on):
        sim = simulate_case(case, fit_on=fit_on, fit_roots=(VALIDATION_ROOT,))
        return sim["finish_s"].max()

    # the two fits differ only in which copy they hold, one run of ~65
    assert busy_s(b, "own") / busy_s(a, "own") == pytest.approx(1.3, rel=0.03)
    assert busy_s(b, "session") / busy_s(a, "session") == pytest.approx(1.0, abs=0.01)


def test_the_hosts_speed_is_most_of_the_error_on_saturated_code_like_runs():
    """H100, FIFO with 512-token steps on the code-like slice (near saturation, where TTFT
    multiplies a step-cost error several times): priced at each run's own host speed (known
    only after the run) the error falls to well under half of the session-speed prediction's,
    so what is left there is the run's host speed, not the scheduler or the cost's shape."""
    keys = sorted(k for k in BOUNDS if k.startswith("h100/") and "_fifo_mbt512_code" in k)
    assert len(keys) >= 9
    session, own = [], []
    for key in keys:
        case, sim = _run(key)
        session.append(compare(case.requests, sim)["median_abs_error_p50_p90"])
        own.append(compare(case.requests, simulate_case(case, fit_on="own"))
                   ["median_abs_error_p50_p90"])
    # measured 2026-11-22 (9 runs): median 0.23 vs 0.07, worst 0.61 vs 0.11
    assert np.median(own) < 0.5 * np.median(session)
    assert max(own) < 0.2 < max(session)
