"""The run's metrics under the names and units of vLLM's ``benchmark_serving.py`` result JSON
(``--metrics vllm``), so numbers can be set beside a real benchmark's without translation:
latencies in ms with mean / median / std / p99, throughputs per second of the run."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

PERCENTILES = (99,)


def _stats(name: str, values_s: np.ndarray, out: dict[str, Any]) -> None:
    v = values_s[~np.isnan(values_s)] * 1e3
    nan = float("nan")
    out[f"mean_{name}_ms"] = float(v.mean()) if len(v) else nan
    out[f"median_{name}_ms"] = float(np.median(v)) if len(v) else nan
    out[f"std_{name}_ms"] = float(v.std()) if len(v) else nan
    for p in PERCENTILES:
        out[f"p{p}_{name}_ms"] = float(np.percentile(v, p)) if len(v) else nan


def vllm_metrics(requests: pd.DataFrame, summary: dict) -> dict[str, Any]:
    """``itl``: from the summary's token-gap histogram (median/p99 within 0.12%)."""
    fin = requests[requests["status"] == "finished"]
    duration = summary["makespan_s"]
    out: dict[str, Any] = {
        "duration": duration,
        "completed": int(len(fin)),
        "failed": int(len(requests) - len(fin)),
        "total_input_tokens": int(fin["prompt_tokens"].sum()),
        "total_output_tokens": int(fin["num_generated_tokens"].sum()),
        "request_throughput": summary["throughput"]["requests_per_s"],
        "request_goodput": summary["goodput"]["requests_per_s"],
        "output_throughput": summary["throughput"]["output_tokens_per_s"],
        "total_token_throughput": summary["throughput"]["total_tokens_per_s"],
    }
    _stats("ttft", fin["ttft_s"].to_numpy(float), out)
    _stats("tpot", fin["tpot_s"].to_numpy(float), out)
    itl = summary["itl_s"]
    out.update({"mean_itl_ms": itl["mean"] * 1e3, "median_itl_ms": itl["p50"] * 1e3,
                "std_itl_ms": itl["std"] * 1e3, "p99_itl_ms": itl["p99"] * 1e3})
    _stats("e2el", fin["e2e_s"].to_numpy(float), out)
    return out


def vllm_text(m: dict[str, Any]) -> str:
    """The result block ``benchmark_serving.py`` prints, with llmsim's numbers."""
    lines = ["{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="=")]

    def row(label: str, v: Any, fmt: str = ".2f") -> None:
        lines.append(f"{label:<40} {v:<10{fmt}}" if isinstance(v, float) else f"{label:<40} {v:<10}")

    row("Successful requests:", m["completed"])
    row("Benchmark duration (s):", m["duration"])
    row("Total input tokens:", m["total_input_tokens"])
    row("Total generated tokens:", m["total_output_tokens"])
    row("Request throughput (req/s):", m["request_throughput"])
    row("Request goodput (req/s):", m["request_goodput"])
    row("Output token throughput (tok/s):", m["output_throughput"])
    row("Total Token throughput (tok/s):", m["total_token_throughput"])
    for key, title in (("ttft", "Time to First Token"), ("tpot", "Time per Output Token (excl. 1st token)"),
                       ("itl", "Inter-token Latency"), ("e2el", "End-to-end Latency")):
        lines.append("{s:{c}^{n}}".format(s=title, n=50, c="-"))
        name = key.upper()
        row(f"Mean {name} (ms):", m[f"mean_{key}_ms"])
        row(f"Median {name} (ms):", m[f"median_{key}_ms"])
        row(f"P99 {name} (ms):", m[f"p99_{key}_ms"])
    lines.append("=" * 50)
    return "\n".join(lines)
