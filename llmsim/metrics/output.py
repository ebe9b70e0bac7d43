"""Write a run's results to a directory, and render the summary as a table."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmsim.metrics.publish import publish
from llmsim.scenario import dump_scenario


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    return x


@dataclass(frozen=True)
class OutputOptions:
    """What ``write_results`` writes besides summary.json and scenario.yaml."""

    plots: bool = True
    table_format: Literal["csv", "parquet"] = "csv"  # requests and steps records
    metrics: Literal["llmsim", "vllm"] = "llmsim"  # vllm: also vllm_metrics.json
    trace_events: bool = False  # trace.json for Perfetto / chrome://tracing
    plot_formats: tuple[str, ...] = ("png",)
    log_x: bool | None = None  # latency CDFs; None: log where a panel spans over two decades


def write_results(res, out_dir: Path, plots: bool | OutputOptions = True) -> list[Path]:
    """Every output of a run into ``out_dir``, atomically: the folder then holds this run only
    (stale plots of an earlier run included), or, on any failure, the previous one untouched."""
    opts = plots if isinstance(plots, OutputOptions) else OutputOptions(plots=plots)
    return publish(out_dir, lambda d: _write(res, d, opts))


def _write(res, out_dir: Path, opts: OutputOptions) -> list[Path]:
    ext = opts.table_format
    paths = [out_dir / f"requests.{ext}", out_dir / f"steps.{ext}", out_dir / "summary.json",
             out_dir / "scenario.yaml"]
    for frame, path in ((res.requests, paths[0]), (res.steps, paths[1])):
        if ext == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    summary = {**res.summary, "provenance": res.provenance}
    paths[2].write_text(json.dumps(_clean(summary), indent=2, sort_keys=True) + "\n")
    paths[3].write_text(dump_scenario(res.scenario))
    if opts.metrics == "vllm":
        from llmsim.metrics.vllm_compat import vllm_metrics

        paths.append(out_dir / "vllm_metrics.json")
        paths[-1].write_text(json.dumps(_clean(vllm_metrics(res.requests, res.summary)),
                                        indent=2) + "\n")
    if opts.trace_events:
        from llmsim.metrics.trace_events import write_trace

        paths.append(out_dir / "trace.json")
        write_trace(res.steps, paths[-1], res.scenario.name)
    if opts.plots:
        from llmsim.analysis.plots import plot_run  # matplotlib stays out of the core import
        paths += plot_run(res.requests, res.steps, out_dir, title=run_title(res),
                          formats=opts.plot_formats, log_x=opts.log_x)
    return paths


def run_title(res) -> str:
    """scenario · policy · model@GPU · cost model · offered rate: what a figure shows."""
    sc, s = res.scenario, res.summary
    model = sc.model if isinstance(sc.model, str) else sc.model.name
    def name(g) -> str:
        return g if isinstance(g, str) else g.name

    gpus = {name(side.gpu if side.gpu is not None else sc.cluster.gpu) for side in sc.sides.values()}
    gpu = "+".join(sorted(gpus))  # a mixed fleet names each kind
    policies = " + ".join(dict.fromkeys(p.kind for p in sc.policies.values()))
    rate = s.get("offered", {}).get("requests_per_s", float("nan"))
    return (f"{sc.name} · {policies} · {model}@{gpu} · {sc.latency.kind} · "
            + (f"{rate:.3g} req/s offered" if rate == rate else "closed batch"))


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def latency_unit(top_s: float) -> tuple[str, float, int]:
    """The unit tables and plots show latencies in, chosen by the largest one shown (``top_s``,
    seconds): (name, factor from seconds, decimals)."""
    if top_s < 1.0:
        return "ms", 1e3, 1
    return ("s", 1.0, 2) if top_s < 100 else ("s", 1.0, 1)


def _unit(values: list[float]) -> tuple[str, float, int]:
    return latency_unit(max((abs(v) for v in values if not _nan(v)), default=0.0))


def _dist_row(label: str, d: dict) -> tuple[str, str]:
    keys = ("mean", "p50", "p90", "p99")
    unit, f, nd = _unit([d[k] for k in keys])
    vals = " / ".join("-" if _nan(d[k]) else f"{d[k] * f:.{nd}f}" for k in keys)
    return f"{label} {unit} (mean / p50 / p90 / p99)", vals


def _seconds(v) -> str:
    if isinstance(v, list):
        return f"{_seconds(v[0])}–{_seconds(v[1])} (per request)"
    unit, f, nd = _unit([v])
    return f"{v * f:.{nd}f} {unit}".replace(".0 ms", " ms")


def _pct(x) -> str:
    return "-" if _nan(x) else f"{x:.1%}"


def slo_rows(slo: dict, thresholds: dict, tag: str = "") -> list[tuple[str, str]]:
    """The SLOs that are set, and the attainment of each (rejected/unfinished count as misses)."""
    names = [("ttft", "ttft_s", "TTFT"), ("tpot", "tpot_s", "TPOT"), ("deadline", "deadline_s",
                                                                       "deadline")]
    set_ = [(k, label, thresholds[t]) for k, t, label in names if thresholds.get(t) is not None]
    if not set_:
        return [(f"{tag}SLO", "none set")]
    labels = [label for _, label, _ in set_] + (["all"] if len(set_) > 1 else [])
    values = [_pct(slo[k]) for k, _, _ in set_] + ([_pct(slo["all"])] if len(set_) > 1 else [])
    return [(f"{tag}SLO", ", ".join(f"{label} <= {_seconds(v)}" for _, label, v in set_)),
            (f"{tag}SLO attainment ({' / '.join(labels)})", " / ".join(values))]


def summary_rows(s: dict) -> list[tuple[str, str]]:
    thr, off, good = s["throughput"], s.get("offered", {}), s.get("goodput", {})
    rows = [
        ("requests (finished / rejected / unfinished)",
         f"{s['num_finished']} / {s['num_rejected']} / {s.get('num_unfinished', 0)} "
         f"of {s['num_requests']}"),
        ("req/s: offered / served / within SLO",
         " / ".join("-" if _nan(x) else f"{x:.2f}" for x in (
             off.get("requests_per_s"), thr["requests_per_s"], good.get("requests_per_s")))),
        ("output tokens/s: served / within SLO",
         " / ".join("-" if _nan(x) else f"{x:.0f}" for x in (
             thr["output_tokens_per_s"], good.get("output_tokens_per_s")))),
        _dist_row("TTFT", s["ttft_s"]),
        _dist_row("TPOT", s["tpot_s"]),
        _dist_row("E2E", s["e2e_s"]),
    ]
    if "itl_s" in s:
        rows.append(_dist_row("ITL", s["itl_s"]))
    rows += slo_rows(s["slo_attainment"], s.get("slo_thresholds", {}),
                     "all classes: " if "by_service_class" in s else "")
    rows += [
        ("makespan s", f"{s['makespan_s']:.1f}"),
        ("in flight per instance (mean)", "-" if _nan(s.get("in_flight_per_instance"))
         else f"{s['in_flight_per_instance']:.1f}"),
        ("time in steps / MFU / MBU", f"{_pct(s['gpu_busy_fraction'])} / "
                                      f"{_pct(s.get('model_flops_utilisation'))} / "
                                      f"{_pct(s.get('model_bandwidth_utilisation'))}"),
        ("KV blocks used (mean / peak)", f"{_pct(s['kv_utilisation']['mean_blocks_used'])} / "
                                         f"{_pct(s['kv_utilisation'].get('peak_blocks_used'))}"),
        ("padding ratio", f"{s['padding_ratio']:.1%}"),
        ("preemptions", str(s["num_preemptions"])),
    ]
    if "prefix_cache" in s:
        pc = s["prefix_cache"]
        host = (f"; host tier {pc['host_hit_rate']:.1%}" if pc.get("host_hit_tokens") else "") \
            + (f"; disk tier {pc['disk_hit_rate']:.1%}" if pc.get("disk_hit_tokens") else "")
        rows.append(("prefix cache: prompt tokens found cached",
                     f"{pc['hit_rate']:.1%} ({pc['hit_tokens']:,} of {pc['prompt_tokens']:,}"
                     f"{host})"))
    if "energy" in s:
        e = s["energy"]
        rows.append(("GPU energy: J per output token / mean W per GPU",
                     f"{e['j_per_output_token']:.3g} / {e['mean_power_w_per_gpu']:.0f}"))
    if "cost" in s:
        c = s["cost"]
        rows.append(("cost: $ per 1M output tokens (at $/GPU-h)",
                     f"{c['usd_per_million_output_tokens']:.3g} (at {c['usd_per_gpu_hour']:.2f})"))
    if "cost_model_domain" in s:
        rows.append(("busy time outside the cost model's range", _outside(s["cost_model_domain"])))
    return rows + _class_rows(s)


def _outside(d: dict) -> str:
    """'0.0%', or the share with the axis that went furthest past its measured maximum."""
    if d.get("measured") is None:
        return "n/a (analytic)"
    past = d.get("past_range") or {}
    if not past:
        return _pct(d["outside_share"])
    axis, p = max(past.items(), key=lambda kv: kv[1]["factor"])
    return f"{d['outside_share']:.1%} ({axis.replace('_', ' ')} {p['factor']:.1f}x)"


def _class_rows(s: dict) -> list[tuple[str, str]]:
    rows = []
    classes = s.get("by_service_class", {})
    for cls in sorted(classes, key=lambda c: c != "latency_sensitive"):  # LS first
        c = classes[cls]
        tag = {"latency_sensitive": "LS", "best_effort": "BE"}.get(cls, cls) + ": "
        rows.append((f"{tag}finished / rejected / unfinished",
                     f"{c['num_finished']} / {c['num_rejected']} / {c.get('num_unfinished', 0)}"
                     f" of {c['num_requests']}"))
        rows += slo_rows(c["slo_attainment"], c.get("slo_thresholds", {}), tag)
        rows.append((f"{tag}tokens/s (prefill / decode)",
                     f"{c['prefill_tokens_per_s']:.0f} / {c['decode_tokens_per_s']:.1f}"))
    if "num_offloaded_tokens" in s:
        rows.append(("tokens decoded with CPU attention", str(s["num_offloaded_tokens"])))
    return rows
