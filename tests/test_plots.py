"""Analysis plots write readable PNG and SVG files from sweep tables and request records."""
from __future__ import annotations

import pandas as pd

from llmsim.analysis.plots import plot_attainment_vs, plot_cdfs, plot_throughput_vs_offered


def table():
    rows = []
    for pol in ("a", "b"):
        for rate in (1, 2, 4):
            for seed in (0, 1):
                att = max(0.0, 1 - rate * (0.1 if pol == "a" else 0.2) - 0.02 * seed)
                rows.append({"policy": pol, "rate": rate, "seed": seed,
                             "slo_attainment.both": att, "throughput.requests_per_s": rate * att})
    return pd.DataFrame(rows)


def test_attainment_and_throughput_plots(tmp_path):
    t = table()
    for paths in (plot_attainment_vs(t, "rate", "policy", tmp_path / "att"),
                  plot_throughput_vs_offered(t, "rate", "policy", tmp_path / "thr")):
        assert [p.suffix for p in paths] == [".png", ".svg"]
        assert all(p.stat().st_size > 1000 for p in paths)
    assert "<svg" in (tmp_path / "att.svg").read_text()[:500]


def test_cdf_plot(tmp_path):
    req = pd.DataFrame({"status": ["finished"] * 3 + ["rejected"], "ttft_s": [0.1, 0.2, 0.3, None]})
    paths = plot_cdfs({"run": req}, tmp_path / "cdf")
    assert paths[0].stat().st_size > 1000
