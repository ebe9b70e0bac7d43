"""Analysis plots write readable PNG and SVG files from sweep tables and request records."""
from __future__ import annotations

import pandas as pd

from llmsim.analysis.plots import (
    plot_attainment_vs,
    plot_cdfs,
    plot_goodput_vs,
    plot_throughput_vs_offered,
)


def table():
    rows = []
    for pol in ("a", "b"):
        for rate in (1, 2, 4):
            for seed in (0, 1):
                att = max(0.0, 1 - rate * (0.1 if pol == "a" else 0.2) - 0.02 * seed)
                rows.append({"policy": pol, "rate": rate, "seed": seed,
                             "slo_attainment.both": att, "throughput.requests_per_s": rate * att,
                             "goodput.requests_per_s": rate * att})
    return pd.DataFrame(rows)


def test_attainment_and_throughput_plots(tmp_path):
    t = table()
    for paths in (plot_attainment_vs(t, "rate", "policy", tmp_path / "att"),
                  plot_throughput_vs_offered(t, "rate", "policy", tmp_path / "thr")):
        assert [p.suffix for p in paths] == [".png", ".svg", ".pdf"]
        assert all(p.stat().st_size > 1000 for p in paths)
    assert "<svg" in (tmp_path / "att.svg").read_text()[:500]


def test_analysis_plots_are_titled_and_labelled_alike(tmp_path, monkeypatch):
    from llmsim.analysis import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, formats=(): figs.append(fig) or [])
    t = table()
    plots.plot_attainment_vs(t, "rate", "policy", tmp_path / "a")
    plots.plot_throughput_vs_offered(t, "rate", "policy", tmp_path / "b", title="mine")
    t["throughput.window_requests_per_s"] = t["rate"]
    plots.plot_throughput_vs_offered(t, "rate", "policy", tmp_path / "c")
    req = pd.DataFrame({"status": ["finished"] * 3, "ttft_s": [0.01, 0.02, 0.03]})
    plots.plot_cdfs({"run": req}, tmp_path / "d")
    a, b, c, d = (f.axes[0] for f in figs)
    assert a.get_title() == "SLO attainment vs offered rate" and b.get_title() == "mine"
    assert a.get_xlabel() == b.get_xlabel() == "offered rate (req/s)"
    assert a.get_ylabel() == "SLO attainment, TTFT and TPOT (%)"
    assert b.get_ylabel() == "served rate (req/s), over the makespan"  # no window column
    assert c.get_ylabel() == "served rate (req/s)"
    assert d.get_xlabel() == "TTFT (ms)"


def test_cdf_plot(tmp_path):
    req = pd.DataFrame({"status": ["finished"] * 3 + ["rejected"], "ttft_s": [0.1, 0.2, 0.3, None]})
    paths = plot_cdfs({"run": req}, tmp_path / "cdf")
    assert paths[0].stat().st_size > 1000


def test_big_runs_are_thinned_to_what_a_figure_shows():
    import numpy as np

    from llmsim.analysis.plots import MAX_POINTS, _ecdf, _thin

    x = np.random.default_rng(0).exponential(size=100_000)
    xs, w = _ecdf(x)
    assert len(xs) <= MAX_POINTS and xs[0] == x.min() and xs[-1] == x.max()
    assert np.all(np.diff(xs) >= 0) and np.all(np.isin(xs, x))  # the CDF's own points
    # weighted by the points each stands for: the CDF at every kept point is exact
    cdf = np.cumsum(w) / w.sum()
    assert w.sum() == len(x) and np.allclose(cdf, np.searchsorted(np.sort(x), xs, "right") / len(x))
    t = np.arange(50_000, dtype=float)
    y = np.zeros(50_000)
    y[31_337] = 7.0  # one spike
    tt, yy = _thin(t, y)
    assert len(tt) <= MAX_POINTS and yy.max() == 7.0
    small_t, small_y = _thin(t[:100], y[:100])
    assert len(small_t) == 100


def test_goodput_curves_carry_bands_from_five_seeds(tmp_path, monkeypatch):
    from llmsim.analysis import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, formats=(): figs.append(fig) or [])
    few = table()  # 2 seeds a point: min-max
    many = pd.concat([few.assign(seed=few["seed"] + 2 * k,
                                 **{"goodput.requests_per_s": few["goodput.requests_per_s"]
                                    * (1 + 0.01 * k)}) for k in range(3)])  # 6 seeds
    for t, band in ((few, "min-max"), (many, "90% band")):
        plot_goodput_vs(t, "rate", "policy", tmp_path / "g")
        ax = figs[-1].axes[0]
        assert ax.get_ylabel() == "goodput (req/s within SLO)"
        labels = [h.get_label() for h in ax.get_legend().legend_handles]
        assert sum(band in label for label in labels) == 2  # both policies say which band
        assert len(ax.collections) == 2  # one band each
