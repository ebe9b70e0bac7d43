"""Write a run's results to a directory, and render the summary as a table."""
from __future__ import annotations

import json
import math
from pathlib import Path

from llmsim.metrics.publish import publish
from llmsim.scenario import dump_scenario


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    return x


def write_results(res, out_dir: Path, plots: bool = True) -> list[Path]:
    """Every output of a run into ``out_dir``, atomically: the folder then holds this run only
    (stale plots of an earlier run included), or, on any failure, the previous one untouched."""
    return publish(out_dir, lambda d: _write(res, d, plots))


def _write(res, out_dir: Path, plots: bool) -> list[Path]:
    paths = [out_dir / "requests.csv", out_dir / "steps.csv", out_dir / "summary.json",
             out_dir / "scenario.yaml"]
    res.requests.to_csv(paths[0], index=False)
    res.steps.to_csv(paths[1], index=False)
    paths[2].write_text(json.dumps(_clean(res.summary), indent=2, sort_keys=True) + "\n")
    paths[3].write_text(dump_scenario(res.scenario))
    if plots:
        from llmsim.analysis.plots import plot_run  # matplotlib stays out of the core import
        paths += plot_run(res.requests, res.steps, out_dir)
    return paths


def summary_rows(s: dict) -> list[tuple[str, str]]:
    def ms(d):
        return " / ".join(f"{d[k] * 1e3:.1f}" if d[k] == d[k] else "-" for k in ("mean", "p50", "p90", "p99"))

    slo = s["slo_attainment"]
    thr = s["throughput"]
    return [
        ("requests (finished / rejected)", f"{s['num_finished']} / {s['num_rejected']} of {s['num_requests']}"),
        ("TTFT ms (mean / p50 / p90 / p99)", ms(s["ttft_s"])),
        ("TPOT ms (mean / p50 / p90 / p99)", ms(s["tpot_s"])),
        ("E2E ms (mean / p50 / p90 / p99)", ms(s["e2e_s"])),
        ("SLO attainment (TTFT / TPOT / both)", f"{slo['ttft']:.1%} / {slo['tpot']:.1%} / {slo['both']:.1%}"),
        ("throughput (req/s, out tok/s)", f"{thr['requests_per_s']:.2f}, {thr['output_tokens_per_s']:.0f}"),
        ("makespan s", f"{s['makespan_s']:.1f}"),
        ("GPU time in steps / MFU", f"{s['gpu_busy_fraction']:.1%} / "
                                    f"{s.get('model_flops_utilisation', float('nan')):.1%}"),
        ("KV blocks used (mean / peak)", f"{s['kv_utilisation']['mean_blocks_used']:.1%} / "
                                         f"{s['kv_utilisation'].get('peak_blocks_used', float('nan')):.1%}"),
        ("padding ratio", f"{s['padding_ratio']:.1%}"),
        ("preemptions", str(s["num_preemptions"])),
    ] + _class_rows(s)


def _class_rows(s: dict) -> list[tuple[str, str]]:
    rows = []
    for cls, c in s.get("by_service_class", {}).items():
        a = c["slo_attainment"]
        tag = {"latency_sensitive": "LS", "best_effort": "BE"}.get(cls, cls)
        rows.append((f"{tag}: finished / rejected", f"{c['num_finished']} / {c['num_rejected']}"
                                                    f" of {c['num_requests']}"))
        if cls == "latency_sensitive":
            rows.append((f"{tag}: SLO attainment (TTFT / TPOT / both)",
                         f"{a['ttft']:.1%} / {a['tpot']:.1%} / {a['both']:.1%}"))
        else:
            rows.append((f"{tag}: tokens/s (prefill / decode)",
                         f"{c['prefill_tokens_per_s']:.0f} / {c['decode_tokens_per_s']:.1f}"))
    if "num_offloaded_tokens" in s:
        rows.append(("tokens decoded with CPU attention", str(s["num_offloaded_tokens"])))
    return rows
