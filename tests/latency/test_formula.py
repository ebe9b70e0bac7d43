"""The published step-time formula (``latency.kind: formula``): the coefficients as stated,
decode runs vectorised to the step-by-step values, and a TP with no coefficients refused."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.errors import InputError
from llmsim.latency.base import StepShape
from llmsim.latency.formula import FormulaConfig, FormulaLatency
from llmsim.models.specs import resolve_gpu, resolve_model

CFG = FormulaConfig(source="test", by_tp={
    1: {"prefill_ms": (10.0, 0.1, 1e-5), "decode_ms": (20.0, 0.001, 0.05),
        "decode_large_ms": (5.0, 0.001, 0.2), "large_batch_rows": 95}})


def _model(tp: int = 1) -> FormulaLatency:
    return FormulaLatency(resolve_model("opt-13b"), resolve_gpu("a100-80gb"), tp, CFG)


def test_prefill_and_decode_follow_the_stated_coefficients():
    m = _model()
    # DistServe's prefill: a + b * tokens + c * sum of squared lengths (whole prompts)
    assert m.step_time_s(StepShape(((100, 0), (300, 0)))) == pytest.approx(
        (10 + 0.1 * 400 + 1e-5 * (100**2 + 300**2)) / 1e3)
    # a chunk with context: its span is new x (new + context)
    assert m.step_time_s(StepShape(((100, 400),))) == pytest.approx(
        (10 + 0.1 * 100 + 1e-5 * 100 * 500) / 1e3)
    small = StepShape((), 10, 5000, 600)
    assert m.step_time_s(small) == pytest.approx((20 + 0.001 * 5000 + 0.05 * 10) / 1e3)
    large = StepShape((), 95, 50000, 600)
    assert m.step_time_s(large) == pytest.approx((5 + 0.001 * 50000 + 0.2 * 95) / 1e3)
    mixed = StepShape(((100, 0),), 10, 5000, 600)
    assert m.step_time_s(mixed) == pytest.approx(
        m.step_time_s(StepShape(((100, 0),))) + m.step_time_s(small))


@pytest.mark.parametrize("rows", [3, 95, 200])
def test_decode_runs_equal_their_steps(rows):
    m, start = _model(), StepShape((), rows, rows * 700, 900)
    run = m.decode_run_step_times_s(start, 7)
    steps = [m.step_time_s(StepShape((), rows, start.decode_context_sum + k * rows, 900 + k))
             for k in range(7)]
    assert np.allclose(run, steps)


def test_a_tp_without_coefficients_is_an_input_error():
    with pytest.raises(InputError, match="latency.by_tp: no coefficients for TP 2"):
        _model(2)
    with pytest.raises(ValueError, match="finite"):
        FormulaConfig(source="x", by_tp={1: {"prefill_ms": (1, float("inf"), 1),
                                             "decode_ms": (1, 1, 1)}})
    with pytest.raises(ValueError, match="decode_large_ms and large_batch_rows go together"):
        FormulaConfig(source="x", by_tp={1: {"prefill_ms": (1, 1, 1), "decode_ms": (1, 1, 1),
                                             "large_batch_rows": 4}})


def test_a_negative_term_is_allowed_but_a_step_priced_at_zero_or_less_is_refused():
    cfg = FormulaConfig(source="fit", by_tp={1: {"prefill_ms": (5.0, 0.1, -1e-4),
                                                 "decode_ms": (-10.0, 0.0, 1.0)}})
    m = FormulaLatency(resolve_model("opt-13b"), resolve_gpu("a100-80gb"), 1, cfg)
    assert m.step_time_s(StepShape(((100, 0),))) == pytest.approx((5 + 10 - 1) / 1e3)
    with pytest.raises(InputError, match="no positive time"):
        m.step_time_s(StepShape(((2000, 0),)))  # 5 + 200 - 400 ms
    with pytest.raises(InputError, match="no positive time"):
        m.decode_run_step_times_s(StepShape((), 4, 400, 100), 3)  # -10 + 4 ms
