"""Plots of one run: latency CDFs, and KV usage / queue length over time."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MAX_POINTS = 2_000  # per line: a figure cannot show more, and big runs must not pay for them


def _ecdf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF of ``x`` at no more than ``MAX_POINTS`` of its own points (exact
    points, evenly spaced in rank, both ends kept)."""
    x = np.sort(x)
    n = len(x)
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int))
    return x[idx], (idx + 1) / n


def _thin(t: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """A step series cut to ``MAX_POINTS`` time bins, each showing its bin's peak (so spikes
    survive thinning)."""
    if len(t) <= MAX_POINTS:
        return (t, *ys)
    edges = np.searchsorted(t, np.linspace(t[0], t[-1], MAX_POINTS, endpoint=False))
    starts = np.unique(edges)
    return (t[starts], *(np.maximum.reduceat(y, starts) for y in ys))


def plot_latency_cdfs(requests: pd.DataFrame, path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    fin = requests[requests["status"] == "finished"]
    for ax, col, title in zip(axes, ("ttft_s", "tpot_s", "e2e_s"), ("TTFT", "TPOT", "E2E latency")):
        x = fin[col].dropna().to_numpy()
        if len(x):
            ax.plot(*_ecdf(x), lw=1.8)
        slo_col = {"ttft_s": "ttft_slo_s", "tpot_s": "tpot_slo_s"}.get(col)
        if slo_col and fin[slo_col].notna().any():
            ax.axvline(fin[slo_col].median(), color="tab:red", ls="--", lw=1, label="SLO")
            ax.legend(loc="lower right")
        ax.set(title=title, xlabel="seconds", ylabel="fraction of requests", ylim=(0, 1.01))
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_timeline(steps: pd.DataFrame, path: Path) -> Path:
    """Per-step timeline of one run: batch size, KV usage and queue length per instance."""
    fig, (ax0, ax1, ax2) = plt.subplots(3, 1, figsize=(11, 6.5), sharex=True, constrained_layout=True)
    for inst, g in steps.groupby("instance"):
        t, batch, kv, queue = _thin(
            (g["start_s"] + g["duration_s"]).to_numpy(),
            (g["num_decode_seqs"] + (g["num_prefill_tokens"] > 0)).to_numpy(),
            (100 * g["kv_used_blocks"] / g["kv_num_blocks"]).to_numpy(),
            g["num_waiting"].to_numpy())
        ax0.step(t, batch, where="post", lw=1)
        ax1.step(t, kv, where="post", lw=1, label=f"instance {inst}")
        ax2.step(t, queue, where="post", lw=1)
    ax0.set(ylabel="batch (sequences)", title="batch size, KV cache usage and queue length")
    ax1.set(ylabel="KV blocks used %")
    ax2.set(ylabel="waiting requests", xlabel="simulated time (s)")
    for ax in (ax0, ax1, ax2):
        ax.grid(alpha=0.3)
    if steps["instance"].nunique() <= 8:
        ax1.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run(requests: pd.DataFrame, steps: pd.DataFrame, out_dir: Path) -> list[Path]:
    paths = [plot_latency_cdfs(requests, out_dir / "latency_cdf.png")]
    if len(steps):
        paths.append(plot_timeline(steps, out_dir / "timeline.png"))
    return paths


def _save(fig, path: Path, formats=("png", "svg")) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        p = path.with_suffix("." + fmt)
        fig.savefig(p, dpi=110)
        out.append(p)
    plt.close(fig)
    return out


def plot_attainment_vs(table: pd.DataFrame, x: str, group: str, out: Path,
                       metric: str = "slo_attainment.both", target: float | None = 0.9,
                       xlabel: str | None = None) -> list[Path]:
    """SLO attainment vs an axis (rate, SLO scale) per group, mean line and a min-max band over
    the other axes (seeds)."""
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    for name, g in table.groupby(group, sort=True):
        s = g.groupby(x)[metric].agg(["mean", "min", "max"]).sort_index()
        ax.plot(s.index, 100 * s["mean"], marker="o", lw=1.8, label=str(name))
        ax.fill_between(s.index, 100 * s["min"], 100 * s["max"], alpha=0.2)
    if target is not None:
        ax.axhline(100 * target, color="grey", ls="--", lw=1)
    ax.set(xlabel=xlabel or x, ylabel="SLO attainment (%)", ylim=(-2, 102))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_throughput_vs_offered(table: pd.DataFrame, rate: str, group: str, out: Path) -> list[Path]:
    """Served requests/s against offered requests/s, with the ideal y = x line."""
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    top = float(table[rate].max())
    ax.plot([0, top], [0, top], "k--", lw=1, label="ideal")
    for name, g in table.groupby(group, sort=True):
        s = g.groupby(rate)["throughput.requests_per_s"].mean().sort_index()
        ax.plot(s.index, s.values, marker="o", label=str(name))
    ax.set(xlabel="offered rate (req/s)", ylabel="served rate (req/s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_cdfs(runs: dict[str, pd.DataFrame], out: Path, column: str = "ttft_s") -> list[Path]:
    """One latency CDF per labelled run (request records)."""
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    for label, req in runs.items():
        x = np.sort(req.loc[req["status"] == "finished", column].dropna().to_numpy())
        if len(x):
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=label)
    ax.set(xlabel=f"{column} (s)", ylabel="fraction of requests", xscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)
