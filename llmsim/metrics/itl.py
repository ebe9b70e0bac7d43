"""Inter-token latency (ITL): the gap before every output token after a request's first.

Fused decode runs have deterministic token times (the run's step ends), so ITL needs no
unfusing: a row's first token in a run is one gap from its previous token, the rest are the
run's step durations, each shared by every row. Gaps are kept as a log-binned histogram (1,000
bins a decade: percentiles within 0.12%) plus exact sums for the mean and standard deviation,
so memory stays fixed however many tokens a run emits.
"""
from __future__ import annotations

import math

import numpy as np

_PER_DECADE = 1000
_LO_S, _DECADES = 1e-7, 13  # 0.1 µs .. 10^6 s
_NBINS = _PER_DECADE * _DECADES
_FLUSH = 1 << 13  # fused runs held before they are binned
_PENDING = 1 << 16  # single gaps held before they are binned


class TokenGaps:
    def __init__(self) -> None:
        self.pending: list[float] = []  # single gaps, appended per row on the hot path
        self._runs: list[tuple[np.ndarray, int, int]] = []  # (a run's step ends, steps, rows)
        self.counts = np.zeros(_NBINS + 2, dtype=np.int64)  # + under- and overflow
        self.count = 0
        self._sum = 0.0
        self._sumsq = 0.0

    def add_run(self, ends_s: np.ndarray, num_steps: int, rows: int) -> None:
        """Every row of a fused run waits each of its later steps for its next token: the gaps
        are the differences of the run's first ``num_steps`` step ends (taken at flush time)."""
        self._runs.append((ends_s, num_steps, rows))
        if len(self._runs) >= _FLUSH:
            self.flush()

    def bound(self) -> None:
        """Bin the single gaps once enough have come (called once a step: fixed memory)."""
        if len(self.pending) >= _PENDING:
            self.flush()

    def _bins(self, gaps: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            idx = np.floor(np.log10(np.maximum(gaps, 0.0) / _LO_S) * _PER_DECADE) + 1
        return np.clip(np.nan_to_num(idx, neginf=0), 0, _NBINS + 1).astype(np.int64)

    def _add(self, gaps: np.ndarray, weights: np.ndarray) -> None:
        self.counts += np.bincount(self._bins(gaps), weights=weights,
                                   minlength=_NBINS + 2).astype(np.int64)
        self.count += int(weights.sum())
        self._sum += float(np.dot(gaps, weights))
        self._sumsq += float(np.dot(gaps * gaps, weights))

    def flush(self) -> None:
        if self.pending:
            g = np.asarray(self.pending, dtype=float)
            self._add(g, np.ones(len(g)))
            self.pending = []
        if self._runs:  # every run's step ends in one array; differences within each run
            ends = np.concatenate([e[:k] for e, k, _ in self._runs])
            steps = np.fromiter((k for _, k, _ in self._runs), dtype=np.int64)
            rows = np.fromiter((n for _, _, n in self._runs), dtype=float)
            within = np.ones(len(ends) - 1, dtype=bool)
            within[np.cumsum(steps)[:-1] - 1] = False  # a run's last end to the next's first
            self._add(ends[1:][within] - ends[:-1][within], np.repeat(rows, steps - 1))
            self._runs = []

    def summary(self) -> dict[str, float]:
        """mean / std exact; p50 / p90 / p99 at the geometric middle of their bin."""
        self.flush()
        nan = float("nan")
        if not self.count:
            return {"mean": nan, "std": nan, "p50": nan, "p90": nan, "p99": nan, "count": 0}
        mean = self._sum / self.count
        var = max(0.0, self._sumsq / self.count - mean * mean)
        cum = np.cumsum(self.counts)
        out = {"mean": mean, "std": math.sqrt(var)}
        for q in (50, 90, 99):
            b = int(np.searchsorted(cum, q / 100 * self.count, side="left"))
            out[f"p{q}"] = _LO_S * 10 ** ((b - 0.5) / _PER_DECADE) if 0 < b <= _NBINS else nan
        out["count"] = self.count
        return out
