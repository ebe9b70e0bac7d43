"""A timeline of the host's speed beside a real-engine run: see ``host_probe``.
No torch here: it starts in a blink and takes ~1% of one core.

    python -m calibration.host_sampler OUT.csv   # samples until its parent process ends
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def cpu_loop_s(n: int = 1_000_000) -> float:
    """Seconds of a pure-Python loop (the engines' schedulers and launch paths are Python)."""
    t = time.perf_counter()
    acc = 0
    for i in range(n):
        acc += i & 7
    return time.perf_counter() - t


def _cpu_jiffies() -> tuple[int, int, int]:
    """(total, steal, busy) jiffies of all CPUs since boot (Linux ``/proc/stat``; zeros elsewhere):
    steal is time the hypervisor gave this VM's CPUs to someone else."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0, 0
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    steal = f[7] if len(f) > 7 else 0
    return sum(f[:8]), steal, sum(f[:8]) - idle - steal


def sample(path: Path, interval_s: float = 0.25, loop_n: int = 100_000) -> None:
    """Until the parent process ends: every ``interval_s``, time a short Python loop (~3 ms, ~1%
    of one core) and read the CPUs' steal and busy shares since the last sample. Times are
    ``time.perf_counter`` (CLOCK_MONOTONIC: one clock for every process of the machine)."""
    parent = os.getppid()
    with path.open("w", buffering=1) as f:
        f.write("perf_s,loop_s,steal_frac,busy_frac\n")
        last = _cpu_jiffies()
        while os.getppid() == parent:
            time.sleep(interval_s)
            t, loop = time.perf_counter(), cpu_loop_s(loop_n)
            now = _cpu_jiffies()
            d = max(now[0] - last[0], 1)
            f.write(f"{t:.4f},{loop:.6f},{(now[1] - last[1]) / d:.4f},{(now[2] - last[2]) / d:.4f}\n")
            last = now


class Samplers:
    """``sample`` in its own process (the engine's Python thread keeps its core), and where the
    machine has ``nvidia-smi``, the GPU's clocks, power and utilisation every 200 ms beside it
    (``gpu_samples.csv``, wall-clock stamped: ``clock`` pairs it with ``perf_counter``)."""

    def __init__(self, host_csv: Path, wait_s: float = 10.0) -> None:
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "calibration.host_sampler", str(host_csv.resolve())],
            cwd=Path(__file__).resolve().parents[1])]
        if shutil.which("nvidia-smi"):
            self.procs.append(subprocess.Popen(
                ["nvidia-smi", "--query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,"
                 "utilization.gpu,temperature.gpu,clocks_throttle_reasons.active",
                 "--format=csv,nounits", "-lms", "200", "-f",
                 str(host_csv.with_name("gpu_samples.csv").resolve())]))
        self.clock = {"wall_s": time.time(), "perf_s": time.perf_counter()}
        t = time.perf_counter()
        while not host_csv.exists() and time.perf_counter() - t < wait_s:
            time.sleep(0.02)  # it covers whatever runs next

    def terminate(self) -> None:
        for p in self.procs:
            p.terminate()


if __name__ == "__main__":
    sample(Path(sys.argv[1]))
