"""A sweep's decision table: at every setting of the other axes, which value of one axis (a
policy, a GPU, a fleet size) wins on a metric, by how much, and how sure that is: the winner
against the runner-up, paired by seed, with a bootstrap band on the margin and P(win)."""
from __future__ import annotations

import pandas as pd

from llmsim.analysis.compare import compare_values, higher_is_better
from llmsim.errors import InputError

SEED = "axis.seed"


def decision_table(table: pd.DataFrame, by: str, metric: str,
                   confidence: float = 0.9) -> pd.DataFrame:
    for col in (by, metric):
        if col not in table:
            axes = ", ".join(c for c in table.columns if c.startswith("axis."))
            raise InputError(f"no column {col!r} in the sweep (axes: {axes})")
    if table[by].nunique() < 2:
        raise InputError(f"{by}: one value only; nothing to decide between")
    others = [c for c in table.columns if c.startswith("axis.") and c not in (by, SEED)
              and table[c].nunique(dropna=False) > 1]  # a constant axis decides nothing
    up = higher_is_better(metric)
    rows = []
    groups = table.groupby(others, dropna=False, sort=True) if others else [((), table)]
    for key, g in groups:
        means = g.groupby(by)[metric].mean().sort_values(ascending=not up)
        winner, runner = means.index[0], means.index[1]
        w, r = g[g[by] == winner], g[g[by] == runner]
        if SEED in g:  # paired by seed
            w, r = w.set_index(SEED)[metric], r.set_index(SEED)[metric]
            common = w.index.intersection(r.index)
            w, r = w.loc[common], r.loc[common]
        else:  # one run per cell
            w, r = w[metric], r[metric]
        c = compare_values(metric, w.to_numpy(), r.to_numpy(), confidence)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(others, key)), "winner": winner, "runner_up": runner,
                     "winner_mean": c.a_mean, "margin": c.diff_mean,
                     "margin_lo": c.diff_band[0], "margin_hi": c.diff_band[1],
                     "p_win": c.p_a_beats_b, "n_seeds": c.n})
    return pd.DataFrame(rows)
