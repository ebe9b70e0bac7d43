"""Random draws of a synthetic workload: arrival instants and token lengths."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from llmsim.errors import InputError
from llmsim.workload import config as wc
from llmsim.workload.traces import read_trace


def resolve_path(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p)


def arrivals(a, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(a, wc.ClosedArrivals):
        return np.zeros(n)
    if isinstance(a, wc.ConstantArrivals):
        gaps = np.full(n, 1.0 / a.rate_per_s)
    else:
        cv = 1.0 if isinstance(a, wc.PoissonArrivals) else a.cv
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (a.rate_per_s * shape), size=n)
    gaps[0] = 0.0  # the first request arrives at t = 0 (simdistserve convention)
    return np.cumsum(gaps)


def lengths(d, n: int, rng: np.random.Generator, base_dir: Path, column: str,
             pick: np.ndarray | None = None) -> np.ndarray:
    if isinstance(d, wc.MixtureLength):
        w = np.array([c.weight for c in d.components])
        if pick is None:
            pick = rng.choice(len(w), size=n, p=w / w.sum())
        out = np.empty(n, dtype=np.int64)
        for i, c in enumerate(d.components):
            out[pick == i] = lengths(c.dist, n, rng, base_dir, column)[pick == i]
        return out
    if isinstance(d, wc.FixedLength):
        return np.full(n, d.tokens, dtype=np.int64)
    if isinstance(d, wc.UniformLength):
        if d.max_tokens < d.min_tokens:
            raise InputError("uniform length: max_tokens must be >= min_tokens")
        return rng.integers(d.min_tokens, d.max_tokens + 1, size=n)
    if isinstance(d, wc.LognormalLength):
        # an absurd draw is held to 2^53 tokens (rejected later as too long), not overflowed to
        # inf, which no integer holds
        with np.errstate(over="ignore"):
            x = np.rint(d.median_tokens * np.exp(d.sigma * rng.standard_normal(n)))
        return np.clip(x, d.min_tokens, d.max_tokens or 2.0**53).astype(np.int64)
    src = read_trace(resolve_path(d.path, base_dir), d.format)
    return clip_tokens(src[column].to_numpy()[rng.integers(0, len(src), size=n)], d.max_tokens)


def clip_tokens(x: np.ndarray, max_tokens: int | None) -> np.ndarray:
    return np.minimum(x, max_tokens) if max_tokens else x
