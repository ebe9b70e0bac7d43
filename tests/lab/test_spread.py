"""llmsim's error next to the engine's own repeat spread (``fidelity.against_spread``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibration.decisions import configuration
from calibration.spread import against_spread

METRICS = [f"{m}_p{q}" for m in ("ttft", "tpot", "e2e") for q in (50, 90)]


def _rows(cases, values):
    return pd.DataFrame([{"gpu": "h200", "case": c, **dict(zip(METRICS, v))}
                         for c, v in zip(cases, values)])


def test_each_case_is_held_to_its_configurations_spread_plus_ten_points():
    assert configuration("x_fifo_r12") == "x_fifo" and configuration("x_fifo") == "x_fifo"
    repeats = _rows(["a_r2", "a_r3", "b_r2"], [[0.05] * 6, [-0.2, 0, 0, 0, 0, 0], [0.01] * 6])
    scored = _rows(["a", "a_r2", "b", "c"], [[0.29] * 6, [0.31, 0, 0, 0, 0, 0],
                                             [0.12] * 6, [0.5] * 6])
    out = against_spread(scored, repeats)
    # a: spread 0.2 on ttft_p50, 0.05 elsewhere: 0.29 misses 0.05 + 0.10 on the other metrics
    assert out["within_spread"].tolist()[:3] == [0.0, 0.0, 0.0]
    assert np.isnan(out["within_spread"].iloc[3])  # c never repeated: not scored
    ok = against_spread(_rows(["a"], [[0.3, 0.1, 0.1, 0.1, 0.1, 0.1]]), repeats)
    assert ok["within_spread"].iloc[0] == 1.0
    assert ok["spread_median"].iloc[0] == 0.05
    empty = against_spread(scored, pd.DataFrame())
    assert empty["within_spread"].isna().all()


def test_a_configuration_is_scored_against_the_mean_of_its_runs():
    from calibration.spread import per_configuration

    # two runs of a straddling the prediction: measured 1.0 s and 3.0 s, predicted 1.2 s and 2.4 s
    scored = _rows(["a", "a_r2", "b"], [[0.2] * 6, [-0.2] * 6, [0.5] * 6])
    for m in METRICS:
        scored[f"{m}_measured_s"] = [1.0, 3.0, 2.0]
    out = per_configuration(scored)
    assert out["config"].tolist() == ["h200/a"]  # b ran once: no mean to score against
    assert out["runs"].iloc[0] == 2
    assert out["ttft_p50"].iloc[0] == pytest.approx((1.2 + 2.4) / 4.0 - 1.0)
    assert out["median_abs_err"].iloc[0] == pytest.approx(0.1)
    assert per_configuration(scored.iloc[[2]]).empty


def test_static_batches_are_scored_against_the_mean_of_their_runs():
    from calibration.spread import batches_per_configuration

    scored = pd.DataFrame({
        "gpu": ["h200"] * 4, "case": ["s", "s_r2", "t", "u"],
        # s: measured 10 s and 30 s on batch 0, predicted 12 s and 24 s; batch 1 exact
        "batch_measured_s": [[10.0, 5.0], [30.0, 5.0], [4.0], [1.0, 2.0]],
        "batch_errors": [[0.2, 0.0], [-0.2, 0.0], [0.5], [0.1, 0.1]]})
    out = batches_per_configuration(scored)  # t and u ran once: nothing to average
    assert out == pytest.approx([(12.0 + 24.0) / 40.0 - 1.0, 0.0])
    uneven = scored.assign(batch_measured_s=[[10.0, 5.0], [30.0], [4.0], [1.0, 2.0]],
                           batch_errors=[[0.2, 0.0], [-0.2], [0.5], [0.1, 0.1]])
    assert len(batches_per_configuration(uneven)) == 0  # batches that do not pair up
    cb_only = scored.assign(batch_errors=None, batch_measured_s=None)
    assert len(batches_per_configuration(cb_only)) == 0
