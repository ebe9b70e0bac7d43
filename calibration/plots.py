"""Lab plots: predicted vs measured step times of the profiled and roofline models."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_calibration(report: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Predicted vs measured step time per (GPU, model), profiled and roofline, log-log."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    colours = {"prefill": "tab:blue", "decode": "tab:orange", "mixed": "tab:green"}
    if "engine" not in report.columns:
        report = report.assign(engine="hf_eager")
    for (gpu, model, engine), g in report.groupby(["gpu", "model", "engine"]):
        fig, ax = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
        for phase, p in g.groupby("phase"):
            ax.scatter(p["time_s"] * 1e3, p["profiled_s"] * 1e3, c=colours.get(phase), marker="o",
                       label=f"{phase} (profiled)")
            ax.scatter(p["time_s"] * 1e3, p["roofline_s"] * 1e3, c=colours.get(phase), marker="x",
                       label=f"{phase} (roofline)")
        lim = [g[["time_s", "profiled_s", "roofline_s"]].min().min() * 800,
               g[["time_s", "profiled_s", "roofline_s"]].max().max() * 1250]
        ax.plot(lim, lim, "k--", lw=1)
        ax.set(xscale="log", yscale="log", xlim=lim, ylim=lim, xlabel="measured step (ms)",
               ylabel="predicted step (ms)",
               title=f"{model} on {gpu} ({engine}): held-out steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        path = out_dir / f"calibration_{gpu}_{model}_{engine}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
