"""Plots of one run (latency CDFs; running requests, KV usage and queue over time) and of
sweeps (attainment and throughput against the offered rate, CDFs side by side)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from llmsim.metrics.output import latency_unit  # noqa: E402

MAX_POINTS = 2_000  # per line: a figure cannot show more, and big runs must not pay for them


def _ecdf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` sorted and cut to at most ``MAX_POINTS`` of its own points (evenly spaced in
    rank, both ends kept), each weighted by the points it stands for: ``Axes.ecdf`` of these
    is the exact empirical CDF at every point kept."""
    x = np.sort(x)
    n = len(x)
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int))
    return x[idx], np.diff(idx + 1, prepend=0).astype(float)


def _thin(t: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """A step series cut to ``MAX_POINTS`` time bins, each showing its bin's peak (so spikes
    survive thinning)."""
    if len(t) <= MAX_POINTS:
        return (t, *ys)
    edges = np.searchsorted(t, np.linspace(t[0], t[-1], MAX_POINTS, endpoint=False))
    starts = np.unique(edges)
    return (t[starts], *(np.maximum.reduceat(y, starts) for y in ys))


CLASS_LABEL = {"latency_sensitive": "latency-sensitive", "best_effort": "best-effort"}
PERCENTILES = (50, 90, 99)


def _unit(x: np.ndarray) -> tuple[str, float]:
    """The summary table's unit for these latencies, judged on their p99 (a plot's tail)."""
    name, factor, _ = latency_unit(float(np.percentile(x, 99)) if len(x) else 0.0)
    return name, factor


def plot_latency_cdfs(requests: pd.DataFrame, path: Path, title: str = "",
                      log_x: bool | None = None, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """TTFT, TPOT and E2E CDFs of finished requests, one line per service class, p50/p90/p99
    marked, the SLO drawn; ``log_x`` None: log where a panel spans over two decades."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), constrained_layout=True)
    fin = requests[requests["status"] == "finished"]
    classes = sorted(requests["service_class"].unique(), key=lambda c: c != "latency_sensitive")
    for ax, col, name in zip(axes, ("ttft_s", "tpot_s", "e2e_s"), ("TTFT", "TPOT", "E2E latency")):
        unit, f = _unit(fin[col].dropna().to_numpy())
        span = []
        for i, cls in enumerate(classes):
            g = fin[fin["service_class"] == cls]
            x = g[col].dropna().to_numpy() * f
            if not len(x):
                continue
            pts, w = _ecdf(x)
            color = f"C{i}"
            label = CLASS_LABEL.get(cls, cls) if len(classes) > 1 else None
            ax.ecdf(pts, weights=w, lw=1.8, color=color, label=label)
            marks = np.percentile(x, PERCENTILES)
            ax.plot(marks, np.array(PERCENTILES) / 100, "o", ms=4, color=color)
            for p, m in zip(PERCENTILES, marks):
                ax.annotate(f"p{p}", (m, p / 100), textcoords="offset points", xytext=(4, -9),
                            fontsize=7, color=color)
            span += [x[x > 0].min() if (x > 0).any() else 1.0, x.max()]
            slo_col = {"ttft_s": "ttft_slo_s", "tpot_s": "tpot_slo_s"}.get(col)
            if slo_col and g[slo_col].notna().any():
                ax.axvline(g[slo_col].median() * f, color=color, ls="--", lw=1,
                           label=f"SLO ({CLASS_LABEL.get(cls, cls)})" if label else "SLO")
        use_log = log_x if log_x is not None else bool(span) and max(span) > 100 * min(span)
        if use_log:
            ax.set_xscale("log")
        ax.set(title=name, xlabel=f"{name.split()[0]} ({unit})", ylabel="fraction of requests",
               ylim=(0, 1.01))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, formats)


def _on_grid(t: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A step series (value ``y[i]`` from ``t[i]`` on) read at the instants of ``grid``."""
    i = np.searchsorted(t, grid, side="right") - 1
    return np.where(i >= 0, y[np.clip(i, 0, None)], 0)


def plot_timeline(steps: pd.DataFrame, path: Path, title: str = "",
                  formats: tuple[str, ...] = ("png",), max_lines: int = 8) -> list[Path]:
    """Running requests, KV usage and waiting requests over time: a line per instance (labelled
    with its role) up to ``max_lines`` instances, else per role the median instance with the
    band from the least to the most loaded (no overdraw)."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(3, 1, figsize=(11, 6.8), sharex=True, constrained_layout=True)
    series = []
    for inst, g in steps.groupby("instance"):
        series.append((int(inst), str(g["role"].iloc[0]), (g["start_s"] + g["duration_s"]).to_numpy(),
                       (g["num_running"].to_numpy(), 100 * (g["kv_used_blocks"]
                                                            / g["kv_num_blocks"]).to_numpy(),
                        g["num_waiting"].to_numpy())))
    roles = list(dict.fromkeys(role for _, role, _, _ in series))
    color = {role: f"C{i}" for i, role in enumerate(roles)}
    if len(series) <= max_lines:
        seen: dict[str, int] = {}
        for n, (inst, role, t, ys) in enumerate(series):
            thin = _thin(t, *ys)
            k = seen[role] = seen.get(role, -1) + 1  # instances of one role: one colour, dashes
            c, ls = (color[role], ("-", "--", ":", "-.")[k % 4]) if len(roles) > 1 else (f"C{n}", "-")
            for ax, y in zip(axes, thin[1:]):
                ax.step(thin[0], y, where="post", lw=1, color=c, ls=ls,
                        label=f"instance {inst} ({role})" if ax is axes[0] else None)
    else:
        end = max(t[-1] for _, _, t, _ in series)
        grid = np.linspace(0.0, end, MAX_POINTS)
        for role in roles:
            mine = [(t, ys) for _, r, t, ys in series if r == role]
            for k, ax in enumerate(axes):
                m = np.vstack([_on_grid(t, ys[k], grid) for t, ys in mine])
                ax.fill_between(grid, m.min(axis=0), m.max(axis=0), step="post", alpha=0.25,
                                color=color[role], lw=0)
                ax.step(grid, np.median(m, axis=0), where="post", lw=1.2, color=color[role],
                        label=(f"{role}: median of {len(mine)} instances (band: min–max)"
                               if k == 0 else None))
    axes[0].set(ylabel="running requests")
    axes[1].set(ylabel="KV blocks used (%)")
    axes[2].set(ylabel="waiting requests", xlabel="simulated time (s)")
    for ax in (axes[0], axes[2]):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8, ncol=2)
    fig.suptitle(title or "running requests, KV cache usage and queue length", fontsize=10)
    return _save(fig, path, formats)


def plot_run(requests: pd.DataFrame, steps: pd.DataFrame, out_dir: Path, title: str = "",
             formats: tuple[str, ...] = ("png",), log_x: bool | None = None) -> list[Path]:
    paths = plot_latency_cdfs(requests, out_dir / "latency_cdf.png", title, log_x, formats)
    if len(steps):
        paths += plot_timeline(steps, out_dir / "timeline.png", title, formats)
    return paths


def _save(fig, path: Path, formats=("png", "svg")) -> list[Path]:
    """``path`` in each format (PNG at 150 dpi; SVG and PDF are vector, for papers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        p = path.with_suffix("." + fmt)
        fig.savefig(p, dpi=150, metadata={"Date": None} if fmt in ("svg", "pdf") else None)
        out.append(p)
    plt.close(fig)
    return out


ANALYSIS_FORMATS = ("png", "svg", "pdf")
LABELS = {"rate": "offered rate (req/s)", "slo_scale": "SLO scale (x the SLO thresholds)"}


def _mean_and_band(table: pd.DataFrame, x: str, group: str, metric: str):
    """Per group: (name, mean over the other axes by ``x``, band low, band high), and the
    band's name: the 90% bootstrap interval of the mean where every point has 5 runs or more,
    else the runs' min-max."""
    runs = int(table.groupby([group, x]).size().min()) if len(table) else 0
    out = []
    for name, g in table.groupby(group, sort=True):
        s = g.groupby(x)[metric].agg(["mean", "min", "max"]).sort_index()
        lo, hi = s["min"], s["max"]
        if runs >= 5:
            from llmsim.analysis.compare import mean_band

            bands = [mean_band(g.loc[g[x] == v, metric].to_numpy(), 0.9) for v in s.index]
            lo, hi = pd.Series([b[0] for b in bands], s.index), pd.Series([b[1] for b in bands], s.index)
        out.append((name, s["mean"], lo, hi))
    return out, ("90% band" if runs >= 5 else "min-max")


def plot_attainment_vs(table: pd.DataFrame, x: str, group: str, out: Path,
                       metric: str = "slo_attainment.both", target: float | None = 0.9,
                       xlabel: str | None = None, title: str = "",
                       formats: tuple[str, ...] = ANALYSIS_FORMATS) -> list[Path]:
    """SLO attainment vs an axis (rate, SLO scale) per group: the mean over the other axes
    (seeds) and a band, the 90% bootstrap interval of that mean where a point has 5 runs or
    more, else their min-max (the legend says which)."""
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    curves, band = _mean_and_band(table, x, group, metric)
    for name, mean, lo, hi in curves:
        ax.plot(mean.index, 100 * mean, marker="o", lw=1.8, label=f"{name} ({band})")
        ax.fill_between(mean.index, 100 * lo, 100 * hi, alpha=0.2)
    if target is not None:
        ax.axhline(100 * target, color="grey", ls="--", lw=1, label=f"target {target:.0%}")
    which = metric.rsplit(".", 1)[-1]
    which = {"both": "TTFT and TPOT", "all": "every SLO"}.get(which, which.upper())
    ax.set(xlabel=xlabel or LABELS.get(x, x), ylabel=f"SLO attainment, {which} (%)",
           ylim=(-2, 102), title=title or f"SLO attainment vs {LABELS.get(x, x).split(' (')[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out, formats)


def plot_goodput_vs(table: pd.DataFrame, x: str, group: str, out: Path,
                    metric: str = "goodput.requests_per_s", xlabel: str | None = None,
                    title: str = "", diagonal: bool = False,
                    formats: tuple[str, ...] = ANALYSIS_FORMATS) -> list[Path]:
    """Goodput (requests/s that met their SLOs) vs an axis per group, with the same bands as
    ``plot_attainment_vs``. The summary's goodput is over the makespan (vLLM's, drain
    included); ``diagonal`` draws y = x, for a metric over the arrival window (attainment x
    offered rate) against the offered rate: the most a policy can carry."""
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    curves, band = _mean_and_band(table, x, group, metric)
    if diagonal:
        top = float(table[x].max())
        ax.plot([0, top], [0, top], "k--", lw=1, label="every request within SLO")
    for name, mean, lo, hi in curves:
        ax.plot(mean.index, mean, marker="o", lw=1.8, label=f"{name} ({band})")
        ax.fill_between(mean.index, lo, hi, alpha=0.2)
    ax.set(xlabel=xlabel or LABELS.get(x, x), ylabel="goodput (req/s within SLO)",
           title=title or f"goodput vs {LABELS.get(x, x).split(' (')[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out, formats)


def plot_throughput_vs_offered(table: pd.DataFrame, rate: str, group: str, out: Path,
                               served: str = "throughput.window_requests_per_s",
                               title: str = "",
                               formats: tuple[str, ...] = ANALYSIS_FORMATS) -> list[Path]:
    """Served against offered requests/s with the ideal served = offered line. Served is
    measured inside the arrival window (requests finished while requests still arrive, per
    second of it), so a stable system sits on the line up to the few in flight at the window's
    end, and an overloaded one flattens at its capacity; a table without that column (older
    sweeps) falls back to the makespan throughput, which the drain pulls below the line."""
    col = served if served in table else "throughput.requests_per_s"
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    top = float(table[rate].max())
    ax.plot([0, top], [0, top], "k--", lw=1, label="ideal (served = offered)")
    for name, g in table.groupby(group, sort=True):
        s = g.groupby(rate)[col].mean().sort_index()
        ax.plot(s.index, s.values, marker="o", label=str(name))
    ax.set(xlabel=LABELS["rate"], ylabel="served rate (req/s)" + (
        "" if col == served else ", over the makespan"), title=title or "served vs offered rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out, formats)


def plot_cdfs(runs: dict[str, pd.DataFrame], out: Path, column: str = "ttft_s",
              title: str = "", formats: tuple[str, ...] = ANALYSIS_FORMATS) -> list[Path]:
    """One latency CDF per labelled run (request records), log x, in ms or s as fits."""
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    xs = {label: req.loc[req["status"] == "finished", column].dropna().to_numpy()
          for label, req in runs.items()}
    unit, f = _unit(np.concatenate(list(xs.values())) if xs else np.array([]))
    name = column.removesuffix("_s").upper()
    for label, x in xs.items():
        if len(x):
            pts, w = _ecdf(x * f)
            ax.ecdf(pts, weights=w, label=label)
    ax.set(xlabel=f"{name} ({unit})", ylabel="fraction of requests", xscale="log",
           title=title or f"{name} CDF")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out, formats)
