"""The cost-quality frontier of a sweep: the configurations no other one beats on both cost
(lower is better: $ or joules per output token) and quality (higher is better: SLO
attainment, goodput)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COST = "cost.usd_per_million_output_tokens"
QUALITY = "slo_attainment.both"


def pareto_front(table: pd.DataFrame, cost: str = COST, quality: str = QUALITY) -> pd.Series:
    """Whether each row is on the frontier: no other row costs no more and serves at least as
    well, better in one of the two. Rows missing either value are never on it."""
    c, q = table[cost].to_numpy(dtype=float), table[quality].to_numpy(dtype=float)
    ok = np.isfinite(c) & np.isfinite(q)
    on = np.zeros(len(table), dtype=bool)
    best = -np.inf
    for i in sorted(np.flatnonzero(ok), key=lambda i: (c[i], -q[i])):  # cheapest first
        if q[i] > best:
            on[i], best = True, q[i]
    return pd.Series(on, index=table.index, name="pareto")


def label(table: pd.DataFrame, axes: list[str]) -> pd.Series:
    """A short name per row from the sweep axes that vary (``gpu=h100 rate_per_s=4``)."""
    axes = [a for a in axes if table[a].nunique() > 1] or axes[:1]
    return table[axes].astype(str).apply(
        lambda r: " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in r.items()), axis=1)


def plot_pareto(table: pd.DataFrame, axes: list[str], out: Path, cost: str = COST,
                quality: str = QUALITY, title: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmsim.analysis.plots import ANALYSIS_FORMATS, _save

    on = pareto_front(table, cost, quality)
    names = label(table, axes) if axes else pd.Series(table.index.astype(str), index=table.index)
    fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    ax.scatter(table[cost], 100 * table[quality], s=18, color="0.6", label="configurations")
    front = table[on].sort_values(cost)
    ax.plot(front[cost], 100 * front[quality], "o-", color="C3", label="Pareto frontier")
    for i, r in front.iterrows():
        ax.annotate(names[i], (r[cost], 100 * r[quality]), fontsize=7, xytext=(4, -8),
                    textcoords="offset points")
    unit = "$ per 1M output tokens" if cost == COST else cost
    ylabel = "SLO attainment, TTFT and TPOT (%)" if quality == QUALITY else f"{quality} (%)"
    ax.set(xlabel=unit, ylabel=ylabel, ylim=(-2, 102),
           title=title or "cost vs SLO attainment: the frontier")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out, ANALYSIS_FORMATS)
