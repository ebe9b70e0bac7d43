"""The engine's forward taken apart by a profiler trace: host launch work, host waits on the
GPU, and the GPU's kernel time, for sampled steps of a replay (a case's ``parts: trace``).

Why this and not ``forward_probe``: transformers' continuous-batching forward waits on the GPU
inside the call (the sleep probe found every forward "unclean": its host time was the queued
sleep), so launches cannot be separated from GPU time from outside the call. A torch profiler
trace of the call sees inside it: the CUDA runtime calls the host makes (kernel launches, and
the synchronisations where it waits), and each kernel's time on the GPU, tied to its launch by a
correlation id. Per traced step (``COLUMNS``):

- ``trace_forward_s``: the call's wall time (the annotation around it);
- ``trace_host_wait_s`` / ``trace_syncs``: time in runtime calls that wait on the GPU
  (``*Synchronize*``, blocking copies) and how many; ``trace_host_work_s`` = the rest: launching;
- ``trace_kernels`` / ``trace_gpu_busy_s`` / ``trace_gpu_span_s``: the call's kernels (memcpy and
  memset included), the union of their intervals, first start to last end.

The profiler slows the traced step (it records every op), so only every ``every``-th step is
traced and a parts run measures parts, never end-to-end latency. On a machine without CUDA the
trace has host ops only (GPU columns 0): the smoke test's case.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

COLUMNS = ("trace_forward_s", "trace_host_work_s", "trace_host_wait_s", "trace_syncs",
           "trace_kernels", "trace_gpu_busy_s", "trace_gpu_span_s")
ANNOTATION = "llmsim_forward"
GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
WAITS = ("Synchronize", "cudaMemcpy(", "cudaMemcpy ")  # blocking runtime calls (not *Async)


def _union_s(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by ``(start, end)`` intervals, in the input's unit."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _is_wait(name: str) -> bool:
    return any(w in name for w in WAITS) or name in ("cudaMemcpy", "cudaDeviceSynchronize")


def parse_trace(events: list[dict]) -> dict[str, float]:
    """``COLUMNS`` from a Chrome-format profiler trace (``traceEvents``, times in us) holding
    one annotated forward call."""
    ann = [e for e in events if e.get("name") == ANNOTATION and e.get("ph") == "X"
           and e.get("cat") in ("user_annotation", "cpu_op", "python_function")]
    if not ann:
        raise ValueError(f"no {ANNOTATION!r} annotation in the trace")
    w = min(ann, key=lambda e: e["ts"])
    t0, t1 = float(w["ts"]), float(w["ts"]) + float(w["dur"])
    inside = [e for e in events if e.get("ph") == "X" and t0 <= float(e.get("ts", -1)) <= t1]
    runtime = [e for e in inside if e.get("cat") in ("cuda_runtime", "cuda_driver")]
    waits = [e for e in runtime if _is_wait(str(e.get("name", "")))]
    wait_us = sum(float(e["dur"]) for e in waits)
    launched = {e.get("args", {}).get("correlation") for e in runtime} - {None}
    gpu = [e for e in events if e.get("ph") == "X" and e.get("cat") in GPU_CATEGORIES
           and e.get("args", {}).get("correlation") in launched]
    spans = [(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in gpu]
    return {"trace_forward_s": (t1 - t0) / 1e6, "trace_host_work_s": (t1 - t0 - wait_us) / 1e6,
            "trace_host_wait_s": wait_us / 1e6, "trace_syncs": float(len(waits)),
            "trace_kernels": float(len(gpu)), "trace_gpu_busy_s": _union_s(spans) / 1e6,
            "trace_gpu_span_s": (max(b for _, b in spans) - min(a for a, _ in spans)) / 1e6
            if spans else 0.0}


class ForwardTrace:
    """Wraps ``lm.forward`` (before the engine is built: it may keep a bound reference) and
    traces every ``every``-th step's forward call."""

    def __init__(self, step_log: list[dict], every: int = 8) -> None:
        self.step_log, self.every = step_log, max(1, every)
        self.calls = 0

    def install(self, lm) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile, record_function

        orig = lm.forward
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                               if torch.cuda.is_available() else [])

        def forward(*a, **k):
            rec = self.step_log[-1] if self.step_log and "t_end" not in self.step_log[-1] else None
            if rec is None or "trace" in rec:  # warm-up, or a second call in a step
                return orig(*a, **k)
            self.calls += 1
            if self.calls % self.every:
                return orig(*a, **k)
            with profile(activities=activities) as prof:
                with record_function(ANNOTATION):
                    out = orig(*a, **k)
            rec["trace"] = _events(prof)
            return out

        lm.forward = forward

    @staticmethod
    def columns(rec: dict) -> tuple:
        """This step's values of ``COLUMNS`` (NaN where its forward was not traced)."""
        if "trace" not in rec:
            return (float("nan"),) * len(COLUMNS)
        parts = parse_trace(rec["trace"])
        return tuple(parts[c] for c in COLUMNS)


def _events(prof) -> list[dict]:
    """The trace's events, through the Chrome export (the format ``parse_trace`` reads)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text()).get("traceEvents", [])
    keep = ("cuda_runtime", "cuda_driver", *GPU_CATEGORIES)
    # only what parse_trace reads: a step's full trace holds every op of the forward
    return [{k: e[k] for k in ("name", "cat", "ph", "ts", "dur") if k in e}
            | ({"args": {"correlation": e["args"]["correlation"]}}
               if "correlation" in e.get("args", {}) else {})
            for e in events if e.get("ph") == "X"
            and (e.get("cat") in keep or e.get("name") == ANNOTATION)]
