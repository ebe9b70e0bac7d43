"""The engine's step taken apart: host time of the model's forward call (launching its kernels)
timed apart from the GPU's time for those kernels, in the engine itself, step by step.

Why: an eager engine's step is host work (schedule, prepare the batch, launch ~15 kernels per
layer, sample, update) overlapped with the GPU's work; end-to-end step times only show the
longer of the two, so a model fitted on them cannot say which side a new shape lands on (steps
past the fitted range were priced 11-24% low). With this probe on (a replay case's ``parts:
true``), each forward call first queues a sleep kernel long enough for the host to queue the
whole forward behind it; the GPU then runs the forward's kernels back to back, and CUDA events
around them give its GPU time with no launch gaps (``gpu_forward_s``), while the host's time in
the call is its launch time alone (``forward_host_s``: the GPU never makes it wait). A call whose
host time reaches the sleep (the host waited on the GPU inside the forward) is marked unclean.

The sleep lengthens every step, so a parts run measures parts, never end-to-end latency.
"""
from __future__ import annotations

import time

COLUMNS = ("forward_enter_s", "forward_exit_s", "forward_host_s", "gpu_forward_s",
           "forward_sleep_s", "forward_clean")
MIN_SLEEP_S, MAX_SLEEP_S = 0.02, 1.0


def cycles_per_second() -> float:
    """The GPU's ``_sleep`` cycles per second (its clock as that kernel counts it)."""
    import torch  # the GPU side only: the lab reads this module's columns without torch

    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    rates = []
    for n in (2_000_000, 20_000_000, 20_000_000):
        a.record()
        torch.cuda._sleep(n)
        b.record()
        b.synchronize()
        rates.append(n / (a.elapsed_time(b) / 1e3))
    return rates[-1]


class ForwardProbe:
    """Wraps ``lm.forward`` (before the engine is built: it may keep a bound reference)."""

    def __init__(self, step_log: list[dict]) -> None:
        self.step_log = step_log
        self.calls = 0
        self.next_sleep_s = 0.1
        self.cycles_per_s = cycles_per_second()

    def install(self, lm) -> None:
        import torch

        orig = lm.forward

        def forward(*a, **k):
            rec = self.step_log[-1] if self.step_log and "t_end" not in self.step_log[-1] else None
            if rec is None or "t_forward_enter" in rec:  # warm-up, or a second call in a step
                return orig(*a, **k)
            stream = torch.cuda.current_stream()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            sleep_s = self.next_sleep_s
            torch.cuda._sleep(int(sleep_s * self.cycles_per_s))
            start.record(stream)
            t = time.perf_counter()
            out = orig(*a, **k)
            t_exit = time.perf_counter()
            end.record(stream)
            rec.update(t_forward_enter=t, t_forward_exit=t_exit, forward_sleep_s=sleep_s,
                       forward_events=(start, end))
            self.calls += 1
            # the next step's launch is about as long as this one's: twice it, plus a margin
            self.next_sleep_s = min(MAX_SLEEP_S, max(MIN_SLEEP_S, 2.0 * (t_exit - t) + 0.01))
            return out

        lm.forward = forward

    @staticmethod
    def columns(rec: dict, t0: float) -> tuple:
        """This step's values of ``COLUMNS`` (NaN where the probe did not see its forward)."""
        if "forward_events" not in rec:
            return (float("nan"),) * (len(COLUMNS) - 1) + (0,)
        start, end = rec["forward_events"]
        end.synchronize()
        host = rec["t_forward_exit"] - rec["t_forward_enter"]
        return (rec["t_forward_enter"] - t0, rec["t_forward_exit"] - t0, host,
                start.elapsed_time(end) / 1e3, rec["forward_sleep_s"],
                int(host < 0.9 * rec["forward_sleep_s"]))
