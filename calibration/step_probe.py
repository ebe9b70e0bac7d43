"""Where a real engine step's host time goes: counters the replay reads at the start
and the end of every continuous-batching step, so ``steps.csv`` can split a step further than
scheduler / forward / update.

Why: the engine runs eager and host-bound (a decode step of 1-4 requests takes ~90 ms on H100,
most of it host work), and a run's speed moved with its scheduler and load by ~10% in ways the
step's composition did not explain. Each counter below names one host cost that could:

- ``sdpa_first_s``: host seconds inside the step's first ``scaled_dot_product_attention`` call.
  It is where cuDNN builds the execution graph of a new attention shape (the other layers reuse
  it), so it isolates the plan build from the rest of the forward pass.
- ``sdpa_host_s`` / ``sdpa_calls``: host seconds in all SDPA calls of the step and their count.
- ``gc_s``: seconds the Python garbage collector ran during the step (any thread: it holds the
  GIL, so the engine thread waits for it).
- ``cpu_s``: CPU seconds of the engine thread over the step (below wall time would mean it
  waited on the GIL or the OS; measured, it equals wall time: the thread spins on the GPU).
- ``cpu_id``: the CPU the engine thread was on at the step's end (Linux; -1 elsewhere): a
  thread that moves between NUMA nodes or SMT siblings runs its host work at another speed.
- ``device_allocs`` / ``alloc_retries``: cudaMalloc calls and caching-allocator retries (a
  retry frees cached blocks and synchronises the device) during the step.

Reading them costs a few microseconds per SDPA call and one ``memory_stats`` per step. What
they showed (``llmsim-lab regimes``, ``calibration/host_regimes.py``): the plan
builds fall in a fast and a slow host state, ~1.4x apart, and the rest of the step follows.
"""
from __future__ import annotations

import gc
import time

import torch

COLUMNS = ("sdpa_calls", "sdpa_first_s", "sdpa_host_s", "gc_s", "cpu_s", "device_allocs",
           "alloc_retries", "cpu_id")


class StepProbe:
    """Cumulative counters; ``snapshot()`` at a step's start, ``since(snap)`` at its end."""

    def __init__(self) -> None:
        self.gc_s = 0.0
        self.sdpa_s = 0.0
        self.sdpa_calls = 0
        self.first_s: float | None = None  # first SDPA call of the current step
        self._gc_t = 0.0
        self._installed = False

    def install(self) -> None:
        """Wrap SDPA once; call again after the engine is built: the attention module it
        imports may bind the function by name (``from torch.nn.functional import ...``)."""
        import sys

        fn = torch.nn.functional
        if not self._installed:
            self._installed = True
            gc.callbacks.append(self._on_gc)
            self._orig = orig = fn.scaled_dot_product_attention

            def timed(*a, **k):
                t = time.perf_counter()
                out = orig(*a, **k)
                dt = time.perf_counter() - t
                self.sdpa_s += dt
                self.sdpa_calls += 1
                if self.first_s is None:
                    self.first_s = dt
                return out

            fn.scaled_dot_product_attention = self._timed = timed
        for mod in list(sys.modules.values()):
            if (getattr(mod, "__name__", "") or "").startswith("transformers") and \
                    getattr(mod, "scaled_dot_product_attention", None) is self._orig:
                mod.scaled_dot_product_attention = self._timed

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t = time.perf_counter()
        elif self._gc_t:
            self.gc_s += time.perf_counter() - self._gc_t
            self._gc_t = 0.0

    @staticmethod
    def _alloc() -> tuple[int, int]:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return 0, 0
        s = torch.cuda.memory_stats()
        return int(s.get("num_device_alloc", 0)), int(s.get("num_alloc_retries", 0))

    @staticmethod
    def _cpu_id() -> int:
        try:  # field 39 of /proc/<pid>/task/<tid>/stat: "processor", after the ")" of comm
            with open("/proc/thread-self/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[36])
        except (OSError, ValueError, IndexError):
            return -1

    def snapshot(self) -> tuple:
        self.first_s = None
        return (self.sdpa_calls, self.sdpa_s, self.gc_s, time.thread_time(), *self._alloc())

    def since(self, snap: tuple) -> dict:
        calls, sdpa_s, gc_s, cpu_s, allocs, retries = snap
        now_allocs, now_retries = self._alloc()
        return dict(sdpa_calls=self.sdpa_calls - calls,
                    sdpa_first_s=self.first_s if self.first_s is not None else 0.0,
                    sdpa_host_s=self.sdpa_s - sdpa_s, gc_s=self.gc_s - gc_s,
                    cpu_s=time.thread_time() - cpu_s, device_allocs=now_allocs - allocs,
                    alloc_retries=now_retries - retries, cpu_id=self._cpu_id())


PROBE = StepProbe()
