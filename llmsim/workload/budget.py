"""Will a run of this many requests fit in memory? Answered before building them, so a run
too big for the machine stops at once with an estimate instead of dying midway."""
from __future__ import annotations

import resource
from pathlib import Path

from llmsim.errors import InputError

# Peak bytes per request of a whole run (request objects, records, frames, CSVs), measured on
# 50k-2M request runs with default outputs; rounded up.
BYTES_PER_REQUEST = 3_500


def available_bytes() -> float:
    """What this process may still allocate: free memory, within any cgroup or rlimit cap."""
    limits = [float("inf")]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if cap != "max":
            limits.append(int(cap) - used)
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:  # ulimit -v: counts this process's address space
        limits.append(soft - _vm_size_bytes())
    return min(limits)


def _vm_size_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def check_request_budget(num_requests: int, what: str = "workload") -> None:
    need = num_requests * BYTES_PER_REQUEST
    have = available_bytes()
    if need > have:
        raise InputError(f"{what}: {num_requests:,} requests need about {need / 2**30:.1f} GiB "
                         f"to simulate; about {max(have, 0) / 2**30:.1f} GiB is available here "
                         "(simulate a window of them: num_requests, or a trace's duration_s / "
                         "max_requests)")
