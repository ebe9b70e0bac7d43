"""A timeline of the host's speed beside a real-engine run (issue #4): see ``host_probe``.
No torch here: it starts in a blink and takes ~1% of one core.

    python -m calibration.host_sampler OUT.csv   # samples until its parent process ends
"""
from __future__ import annotations

import os
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


def start_sampler(path: Path, wait_s: float = 10.0) -> subprocess.Popen:
    """``sample`` in its own process (the engine's Python thread keeps its core), started once
    it has written its header (so it covers whatever runs next)."""
    proc = subprocess.Popen([sys.executable, "-m", "calibration.host_sampler", str(path.resolve())],
                            cwd=Path(__file__).resolve().parents[1])
    t = time.perf_counter()
    while not path.exists() and time.perf_counter() - t < wait_s:
        time.sleep(0.02)
    return proc


if __name__ == "__main__":
    sample(Path(sys.argv[1]))
