"""UELLM's HELR deployer (policies.md §6.3 [ASSUMPTION: the DP is not in the authors' code]).

Place layers 1..N in contiguous segments on GPUs taken in topology order, minimising one pass's
latency (compute of every layer + one activation hand-off per GPU boundary) subject to each
GPU's memory:

    DP[i][j] = min_{k<i} DP[k][j-1] + sum_{t=k+1..i} c_t + comm(j-1 -> j)
               s.t. sum_{t=k+1..i} m_t + kv_j <= M_j

``helr`` picks the lowest latency over every GPU count (ties toward fewer GPUs), ``he`` the
fewest GPUs that fit, ``lr`` the lowest latency. It runs once, at deployment time.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Placement:
    latency_s: float
    segments: tuple[tuple[int, int], ...]  # [start, end) layer ranges, one per GPU used

    @property
    def num_gpus(self) -> int:
        return len(self.segments)


def helr_placement(layer_bytes: Sequence[float], layer_s: Sequence[float],
                   gpu_bytes: Sequence[float], link_s: Sequence[float], kv_bytes: float = 0.0,
                   mode: Literal["helr", "he", "lr"] = "helr") -> Placement:
    """``link_s[j]``: hand-off cost from GPU j to GPU j+1. Raises ValueError if nothing fits."""
    n, g = len(layer_bytes), len(gpu_bytes)
    pre_m = [0.0]
    pre_c = [0.0]
    for m, c in zip(layer_bytes, layer_s):
        pre_m.append(pre_m[-1] + m)
        pre_c.append(pre_c[-1] + c)
    inf = math.inf
    dp = [[inf] * (g + 1) for _ in range(n + 1)]
    arg = [[-1] * (g + 1) for _ in range(n + 1)]
    dp[0][0] = 0.0
    for j in range(1, g + 1):
        hop = link_s[j - 2] if j > 1 else 0.0
        for i in range(1, n + 1):
            for k in range(j - 1, i):
                if dp[k][j - 1] == inf or pre_m[i] - pre_m[k] + kv_bytes > gpu_bytes[j - 1]:
                    continue
                v = dp[k][j - 1] + pre_c[i] - pre_c[k] + hop
                if v < dp[i][j]:
                    dp[i][j], arg[i][j] = v, k
    feasible = [j for j in range(1, g + 1) if dp[n][j] < inf]
    if not feasible:
        raise ValueError("the model does not fit the GPUs in any contiguous placement")
    if mode == "he":
        best = min(feasible)
    else:  # helr and lr: lowest latency; ties toward fewer GPUs (min is stable on j order)
        best = min(feasible, key=lambda j: (round(dp[n][j], 12), j))
    segments, i = [], n
    for j in range(best, 0, -1):
        k = arg[i][j]
        segments.append((k, i))
        i = k
    return Placement(dp[n][best], tuple(reversed(segments)))
