"""The profiler-trace instrument of the engine's forward (calibration/forward_trace.py): what it
reads from a trace, on a synthetic one with GPU kernels, and that a replay writes its columns."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from calibration.forward_trace import ANNOTATION, COLUMNS, _union_s, parse_trace
from tests.conftest import REPO


def _x(name, cat, ts, dur, corr=None):
    e = {"name": name, "cat": cat, "ph": "X", "ts": ts, "dur": dur}
    if corr is not None:
        e["args"] = {"correlation": corr}
    return e


def test_a_trace_splits_the_forward_into_launch_work_waits_and_kernel_time():
    events = [
        _x(ANNOTATION, "user_annotation", 0, 1000),
        _x("cudaLaunchKernel", "cuda_runtime", 10, 5, 1),
        _x("cudaLaunchKernel", "cuda_runtime", 20, 5, 2),
        _x("cudaStreamSynchronize", "cuda_runtime", 30, 400, 3),  # the host waits on the GPU
        _x("cudaLaunchKernel", "cuda_runtime", 500, 5, 4),
        _x("gemm", "kernel", 100, 200, 1), _x("attn", "kernel", 250, 200, 2),
        _x("Memcpy DtoH", "gpu_memcpy", 460, 10, 3), _x("mlp", "kernel", 600, 100, 4),
        _x("earlier", "kernel", -100, 120, 99),  # a previous step's kernel: not this call's
        _x("cudaLaunchKernel", "cuda_runtime", 1200, 5, 5),  # after the call
        _x("later", "kernel", 1300, 50, 5),
    ]
    got = parse_trace(events)
    assert set(got) == set(COLUMNS)
    assert got["trace_forward_s"] == pytest.approx(1e-3)
    assert got["trace_host_wait_s"] == pytest.approx(400e-6) and got["trace_syncs"] == 1
    assert got["trace_host_work_s"] == pytest.approx(600e-6)
    assert got["trace_kernels"] == 4
    # union of [100, 300], [250, 450], [460, 470], [600, 700]: 350 + 10 + 100 us
    assert got["trace_gpu_busy_s"] == pytest.approx(460e-6)
    assert got["trace_gpu_span_s"] == pytest.approx(600e-6)


def test_union_and_a_trace_without_the_annotation():
    assert _union_s([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == 4
    assert _union_s([]) == 0
    with pytest.raises(ValueError, match="annotation"):
        parse_trace([_x("cudaLaunchKernel", "cuda_runtime", 0, 1, 1)])


@pytest.mark.slow  # tens of seconds of CPU torch under the profiler
def test_a_trace_parts_replay_writes_its_columns(tmp_path):
    pytest.importorskip("torch", reason="a replay needs torch (CPU build is fine)")
    pytest.importorskip("transformers", reason="a replay needs transformers")
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "calibration.replay", "--plan",
                    "calibration/engine_grid/plan_trace.yaml", "--out", str(out), "--smoke",
                    "--only", "trace_n4_p4096_o64"], cwd=REPO, check=True, capture_output=True,
                   timeout=600)
    steps = pd.read_csv(out / "cpu" / "trace_n4_p4096_o64" / "steps.csv")
    traced = steps.dropna(subset=["trace_forward_s"])
    assert len(traced) >= 3 and len(traced) < len(steps)  # every 4th forward
    # on a CPU the trace has host ops only; the forward's time sits inside its step
    assert (traced["trace_host_work_s"] == traced["trace_forward_s"]).all()
    assert (traced["trace_forward_s"] <= traced["end_s"] - traced["schedule_s"]).all()
    assert (traced[["trace_kernels", "trace_gpu_busy_s"]] == 0).all().all()
