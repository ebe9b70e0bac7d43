"""The profiled cost model's interpolation: measured times over a token grid (log-log,
piecewise linear, bounded extrapolation) and rows of such curves blended across a second key."""
from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np
import pandas as pd

from llmsim.errors import InputError


class ProfileRangeError(InputError):
    pass


class _Curve:
    """log-log piecewise-linear interpolation with bounded extrapolation."""

    def __init__(self, x: np.ndarray, y: np.ndarray, what: str, max_factor: float) -> None:
        order = np.argsort(x)
        self.lx, self.ly = np.log(x[order]), np.log(y[order])
        self.lo, self.hi, self.what, self.max_factor = x[order][0], x[order][-1], what, max_factor
        self._lx_list, self._ly_list = self.lx.tolist(), self.ly.tolist()  # for _scalar

    def __call__(self, x):
        if isinstance(x, (int, float)):
            return self._scalar(float(x))
        x = np.asarray(x, dtype=float)
        top = float(x.max()) if x.size else -math.inf
        if top > self.hi * self.max_factor:
            raise ProfileRangeError(f"profiled latency: {self.what} = {top:.0f} is "
                                    f"far outside the measured grid (max {self.hi:.0f})")
        lx = np.log(np.maximum(x, self.lo))
        y = np.interp(lx, self.lx, self.ly)
        if top < self.hi:  # within the grid: nothing to extrapolate (the common case)
            return np.exp(y)
        over = lx > self.lx[-1]
        if over.any():  # continue the last segment's slope
            slope = (self.ly[-1] - self.ly[-2]) / (self.lx[-1] - self.lx[-2])
            y = np.where(over, self.ly[-1] + slope * (lx - self.lx[-1]), y)
        return np.exp(y)

    def _scalar(self, x: float) -> float:
        """The same interpolation for one point, without numpy's per-call overhead (a step's
        time is a dozen of these; policies that predict step times call it often)."""
        if x > self.hi * self.max_factor:
            raise ProfileRangeError(f"profiled latency: {self.what} = {x:.0f} is "
                                    f"far outside the measured grid (max {self.hi:.0f})")
        lxs, lys = self._lx_list, self._ly_list
        lx = math.log(max(x, self.lo))
        if lx >= lxs[-1]:
            slope = (lys[-1] - lys[-2]) / (lxs[-1] - lxs[-2]) if len(lxs) > 1 else 0.0
            return math.exp(lys[-1] + slope * (lx - lxs[-1]))
        i = bisect.bisect_right(lxs, lx) - 1
        if i < 0:
            return math.exp(lys[0])
        w = (lx - lxs[i]) / (lxs[i + 1] - lxs[i])
        return math.exp(lys[i] + w * (lys[i + 1] - lys[i]))


class _Grid2D:
    """Rows of 1-D curves over ``x`` at fixed ``key`` values, blended linearly between keys."""

    def __init__(self, df: pd.DataFrame, key: str, x: str, what: str, max_factor: float,
                 log_key: bool) -> None:
        self.keys = np.array(sorted(df[key].unique()), dtype=float)
        self.curves = [_Curve(g[x].to_numpy(float), g["time_s"].to_numpy(float), what, max_factor)
                       for _, g in df.groupby(key, sort=True)]
        self.log_key = log_key
        self.max_key = self.keys[-1] * max_factor
        self.what = what
        # the key axis as each call used to derive it, derived once
        self._axis = np.log(np.maximum(self.keys, 1.0)) if log_key else self.keys
        self._axis_list = self._axis.tolist()

    def __call__(self, k: float, x: float | np.ndarray) -> Any:
        if k > self.max_key:
            raise ProfileRangeError(f"profiled latency: {self.what} key {k:.0f} is far outside "
                                    f"the measured grid (max {self.keys[-1]:.0f})")
        kk = np.log(max(k, 1.0)) if self.log_key else k
        keys = self._axis
        if len(keys) == 1:
            return self.curves[0](x)
        i = min(max(bisect.bisect_left(self._axis_list, kk) - 1, 0), len(keys) - 2)
        w = (kk - keys[i]) / (keys[i + 1] - keys[i])
        lo, hi = self.curves[i](x), self.curves[i + 1](x)
        if w > 1:  # beyond the last key: scale linearly with the key (work grows with it)
            return hi * (k / self.keys[-1])
        return lo + max(0.0, w) * (hi - lo)
