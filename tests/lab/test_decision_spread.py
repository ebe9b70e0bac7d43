"""Decisions are scored only where the real gap exceeds the engine's own repeat spread."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from calibration.decisions import decision_table, repeat_spread


def _runs(e2e: dict[str, float]):
    return lambda key: pd.DataFrame({"e2e_s": [e2e[key]], "ttft_s": [e2e[key] / 10]})


def test_spread_is_the_range_of_a_repeated_pairs_ratios_and_gaps_inside_it_are_not_scored():
    # configuration pair (x, y) ran in two sessions: ratios 1.10 and 0.95 -> spread log(1.10/0.95)
    # pair (u, v) ran once with a 1.5x gap; pair (p, q) once with a 1.02x gap
    e2e = {"h/x": 1.0, "h/y": 1.10, "h/x_r2": 1.0, "h/y_r2": 0.95,
           "h/u": 1.0, "h/v": 1.5, "h/p": 1.0, "h/q": 1.02}
    pairs = [("h/x", "h/y"), ("h/x_r2", "h/y_r2"), ("h/u", "h/v"), ("h/p", "h/q")]
    spread = repeat_spread(pairs, _runs(e2e))
    width = math.log(1.10 / 0.95)
    assert spread[("h/x", "h/y"), "mean_e2e"] == pytest.approx(width)
    assert spread[None, "mean_e2e"] == pytest.approx(width)  # the median over repeated pairs
    df = decision_table(pairs, _runs(e2e), _runs(e2e), spread)
    e = df[df["stat"] == "mean_e2e"].set_index("b")
    assert not e.loc["h/y", "scored"] and not e.loc["h/y_r2", "scored"]  # inside their own spread
    assert e.loc["h/v", "scored"] and not e.loc["h/q", "scored"]  # pooled spread for one-offs
    assert e["reproduced"].all()  # the same runs as the prediction reproduce every decision
    assert "scored" not in decision_table(pairs, _runs(e2e), _runs(e2e)).columns


def test_static_batch_errors_pair_batches_in_order(tmp_path):
    from calibration.cases import MeasuredCase
    from calibration.fidelity import batch_errors

    pd.DataFrame({"batch": [0, 1], "start_s": [0.0, 10.0], "end_s": [10.0, 30.0]}).to_csv(
        tmp_path / "batches.csv", index=False)
    case = MeasuredCase("c", "h100", tmp_path, {"case": {"kind": "static"}}, pd.DataFrame())
    sim = pd.DataFrame({"first_scheduled_s": [0.0, 0.0, 11.0, 11.0],
                        "finish_s": [5.0, 11.0, 20.0, 35.0]})
    assert batch_errors(case, sim) == pytest.approx([0.1, 0.2])  # 11 / 10 and 24 / 20
    assert batch_errors(case, sim.iloc[:2]) is None  # one batch simulated, two measured
    cb = MeasuredCase("c", "h100", tmp_path, {"case": {"kind": "cb"}}, pd.DataFrame())
    assert batch_errors(cb, sim) is None


def test_the_gpu_decision_compares_each_configurations_mean_over_its_runs():
    from calibration.decisions import gpu_decisions

    # e2e seconds of each run (one request each: mean E2E and p90 TTFT are that value)
    real = {"h100/a": 10.0, "h100/a_r2": 14.0, "h200/a": 6.0, "h200/a_r3": 6.0,
            "h100/b": 4.0, "h200/b": 4.1, "h200/c": 1.0}
    sim = {"h100/a": 11.0, "h100/a_r2": 13.0, "h200/a": 8.0, "h200/a_r3": 7.0,
           "h100/b": 4.0, "h200/b": 2.0, "h200/c": 1.0}

    def frame(v: float) -> pd.DataFrame:
        return pd.DataFrame({"e2e_s": [v], "ttft_s": [v]})

    df = gpu_decisions(list(real), lambda k: frame(real[k]), lambda k: frame(sim[k]))
    e2e = df[df["stat"] == "mean_e2e"].set_index("config")
    assert sorted(e2e.index) == ["a", "b"]  # c ran on one GPU only: no decision
    assert e2e.loc["a", "real"] == pytest.approx(6.0 / 12.0)  # h200 / h100, means of runs
    assert e2e.loc["a", "simulated"] == pytest.approx(7.5 / 12.0)
    assert e2e.loc["a", "reproduced"]
    assert (e2e.loc["a", "runs_a"], e2e.loc["a", "runs_b"]) == (2, 2)
    # a's spread: the wider side's range over its runs (h100: 14 / 10)
    assert e2e.loc["a", "spread"] == pytest.approx(math.log(1.4)) and e2e.loc["a", "scored"]
    # b: a tie in reality, llmsim says h200 halves it; b's sides ran once: the median range
    # of the sides run more than once (a's: 14 / 10 and 6 / 6)
    assert not e2e.loc["b", "reproduced"] and not e2e.loc["b", "scored"]
    assert e2e.loc["b", "spread"] == pytest.approx(math.log(1.4) / 2)
