"""DistServe vs vLLM per-GPU goodput as the prompt lengths grow: what it would take for the
paper's direction (disaggregation wins per GPU) to appear on llmsim's OPT-13B chatbot setting.
``--study engines``: each system on either engine's A100 step-time fit from DistServe's
artifact (the paper compares its own engine against vLLM's; the 2 x 2 separates the two).

    python benchmarks/distserve_sensitivity.py [--medians 32 128 512 1024] [--out DIR]
    python benchmarks/distserve_sensitivity.py --study engines

The paper-stated inputs stay (OPT-13B, A100-80GB, P TP2 + D TP1 vs vLLM TP1, TTFT 0.25 s /
TPOT 0.1 s, 90% of requests); only the prompt-length distribution moves, from ShareGPT's first
conversations as DistServe's artifact builds them (`traces/distserve_sharegpt_opt.csv`: median
prompt 695 OPT tokens) to lognormal prompts of a given median (sigma 1, at most 1,024 tokens),
outputs kept as that table's. Prints a markdown table and writes a figure.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from paper_verdicts import (  # noqa: E402
    DISTSERVE_VLLM,
    ENGINE_EXPERIMENTS,
    distserve_goodput,
)


def per_gpu(median: int | None, extra: list[str]) -> float:
    """Per-GPU goodput with lognormal prompts of ``median`` tokens (None: the scenario's)."""
    sets = list(extra)
    if median is not None:
        sets.append(f"workload.prompt_tokens={{kind: lognormal, median_tokens: {median}, "
                    "sigma: 1.0, max_tokens: 1024}")
    return distserve_goodput(sets)["per_gpu_rate_per_s"]


def engines() -> None:
    """Per-GPU goodput of each system on each engine's fit (the latency section swapped), for
    each experiment DistServe's artifact has both fits for."""
    import json

    import yaml

    from llmsim.analysis.goodput import attainment
    from llmsim.scenario import load_scenario

    print("| experiment | system | engine's A100 fit | req/s/GPU at 90% | TTFT attainment at "
          "0.1 req/s |")
    print("|---|---|---|---:|---:|")
    for experiment, (ds, vllm, sets) in ENGINE_EXPERIMENTS.items():
        fits = {"DistServe's": ds, "vLLM's": vllm}
        for system, path in (("DistServe", ds), ("vLLM", vllm)):
            for engine, fit in fits.items():
                over = sets + [f"latency={json.dumps(yaml.safe_load(fit.read_text())['latency'])}"]
                g = distserve_goodput(over, path)
                low = attainment(load_scenario(path, over), 0.1, g["seeds"], "ttft", 120)
                print(f"| {experiment} | {system} | {engine} | {g['per_gpu_rate_per_s']:.2f} | "
                      f"{100 * low:.0f}% |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", choices=["prompts", "engines"], default="prompts")
    ap.add_argument("--medians", type=int, nargs="*", default=[32, 256, 1024])
    ap.add_argument("--out", type=Path, default=HERE / "figures")
    args = ap.parse_args()
    if args.study == "engines":
        engines()
        return
    rows = [("DistServe's ShareGPT rule (median 695)", None)] + [
        (f"lognormal, median {m}", m) for m in args.medians]
    print("| prompts | DistServe req/s/GPU | vLLM req/s/GPU | DistServe / vLLM |")
    print("|---|---:|---:|---:|")
    xs, ratios = [], []
    for label, median in rows:
        d, v = per_gpu(median, []), per_gpu(median, DISTSERVE_VLLM)
        ratio = d / v if v else float("nan")
        xs.append(695 if median is None else median)
        ratios.append(ratio)
        print(f"| {label} | {d:.2f} | {v:.2f} | {ratio:.2f}x |", flush=True)
    from llmsim.analysis.plots import _save, plt

    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    ax.plot(xs[1:], ratios[1:], marker="o", label="lognormal prompts (sigma 1, <= 1,024)")
    ax.plot(xs[:1], ratios[:1], marker="*", ms=12, ls="", label="DistServe's ShareGPT rule")
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="parity")
    ax.set(xscale="log", xlabel="median prompt (tokens)", ylabel="per-GPU goodput, DistServe / vLLM",
           title="DistServe vs vLLM, OPT-13B chatbot: sensitivity to prompt length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    print("\n".join(str(p) for p in _save(fig, args.out / "distserve_prompt_sensitivity",
                                           ("png", "svg"))))


if __name__ == "__main__":
    main()
