"""Summary metrics: pure functions of the request and step records (policies.md section 12)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def _dist(s: pd.Series) -> dict[str, float]:
    s = s.dropna()
    if s.empty:
        return {"mean": float("nan"), "p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    q = np.percentile(s.to_numpy(), [50, 90, 99])
    return {"mean": float(s.mean()), "p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2])}


def _slo_met(requests: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per request: TTFT, TPOT, deadline met (finished and within; no SLO of a kind = met)."""
    ok = requests["status"] == "finished"
    ttft_ok = ok & ~(requests["ttft_s"] > requests["ttft_slo_s"])
    tpot_ok = ok & ~(requests["tpot_s"].fillna(0.0) > requests["tpot_slo_s"])
    deadline_ok = ok & ~(requests["finish_s"] > requests["deadline_at_s"])
    return ttft_ok, tpot_ok, deadline_ok


def slo_attainment(requests: pd.DataFrame) -> dict[str, float]:
    """Fractions of *all* requests (rejected and unfinished ones count as misses) meeting each
    SLO; ``both``: TTFT and TPOT, ``all``: every SLO, the deadline included.

    A request with no SLO of a kind meets it trivially (``slo_thresholds`` says which are set).
    TPOT of a 1-token output is 0.
    """
    if len(requests) == 0:
        return dict.fromkeys(("ttft", "tpot", "both", "deadline", "all"), float("nan"))
    ttft_ok, tpot_ok, deadline_ok = _slo_met(requests)
    return {"ttft": float(ttft_ok.mean()), "tpot": float(tpot_ok.mean()),
            "both": float((ttft_ok & tpot_ok).mean()), "deadline": float(deadline_ok.mean()),
            "all": float((ttft_ok & tpot_ok & deadline_ok).mean())}


def slo_thresholds(requests: pd.DataFrame) -> dict[str, float | list[float] | None]:
    """The SLO each metric was judged against: one value, ``[min, max]`` when requests carry
    their own, None when no request has one."""
    out: dict[str, float | list[float] | None] = {}
    for name, col in (("ttft_s", "ttft_slo_s"), ("tpot_s", "tpot_slo_s"),
                      ("deadline_s", "deadline_s")):
        v = requests[col].to_numpy(float) if len(requests) else np.array([])
        v = v[np.isfinite(v)]
        lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 0.0)
        out[name] = None if not len(v) else lo if lo == hi else [lo, hi]
    return out


def offered_load(requests: pd.DataFrame) -> dict[str, float]:
    """The arrival rate the workload offered: n - 1 gaps over the first-to-last arrival span
    (throughput is measured over the makespan, drain included, so it reads lower)."""
    n = len(requests)
    span = float(requests["arrival_s"].max() - requests["arrival_s"].min()) if n else 0.0
    return {"requests_per_s": (n - 1) / span if span > 0 else float("nan"),
            "arrival_window_s": span}


def served_in_window(requests: pd.DataFrame) -> float:
    """Requests finished between the first and the last arrival, per second of that window:
    the served rate while load is offered (the makespan's throughput also counts the drain
    after the last arrival, so it reads below the offered rate even at light load)."""
    if len(requests) < 2:
        return float("nan")
    lo, hi = float(requests["arrival_s"].min()), float(requests["arrival_s"].max())
    done = (requests["status"] == "finished") & (requests["finish_s"] <= hi)
    return float(done.sum()) / (hi - lo) if hi > lo else float("nan")


def goodput(requests: pd.DataFrame, makespan_s: float) -> dict[str, float]:
    """Requests that finished within every SLO they have, per second of the run (vLLM's
    ``request_goodput``), and their output tokens per second."""
    if not makespan_s or not len(requests):
        return {"requests_per_s": float("nan"), "output_tokens_per_s": float("nan")}
    ttft_ok, tpot_ok, deadline_ok = _slo_met(requests)
    good = ttft_ok & tpot_ok & deadline_ok
    return {"requests_per_s": float(good.sum()) / makespan_s,
            "output_tokens_per_s": float(requests.loc[good, "num_generated_tokens"].sum())
            / makespan_s}


def in_flight_per_instance(requests: pd.DataFrame, start_s: float, end_s: float,
                           num_instances: int) -> float:
    """Mean requests in the system (queued or running) per instance over the run, by Little's
    law: every request's time from arrival to finish (or to the run's end) summed. Unlike the
    busy fraction it keeps growing with load."""
    if end_s <= start_s or not num_instances or not len(requests):
        return float("nan")
    left = requests["finish_s"].fillna(end_s).clip(upper=end_s)
    return float((left - requests["arrival_s"]).clip(lower=0).sum()
                 / ((end_s - start_s) * num_instances))


def gpu_busy_fraction(steps: pd.DataFrame, makespan_s: float, num_instances: int) -> float:
    """Share of the run an instance spends inside a step. Under continuous batching it stays
    near 1 at moderate load (a step runs whenever one request is in flight): it says the engine
    never idles, not how loaded it is; ``model_flops_utilisation`` measures load."""
    if makespan_s <= 0 or num_instances == 0:
        return float("nan")
    return float(steps["duration_s"].sum() / (makespan_s * num_instances))


def model_flops_utilisation(steps: pd.DataFrame, makespan_s: float, flops_per_token: float,
                            peak_flops: float) -> float:
    """MFU: the dense model FLOPs of every token the GPUs computed (2 x parameters per token,
    attention left out as is usual for MFU) over the GPUs' bf16 peak for the whole run. It
    grows with the load served, unlike the busy fraction."""
    if makespan_s <= 0 or peak_flops <= 0 or not len(steps):
        return float("nan")
    gpu = steps[steps["role"] != "cpu"] if "role" in steps else steps
    tokens = (gpu["num_prefill_tokens"] + gpu["num_decode_seqs"] * gpu["num_iterations"]
              + gpu.get("num_offloaded_tokens", 0)).sum()
    return float(tokens * flops_per_token / (makespan_s * peak_flops))


def model_bandwidth_utilisation(steps: pd.DataFrame, makespan_s: float, weight_bytes: float,
                                kv_bytes_per_token: float, peak_bytes_per_s: float) -> float:
    """MBU, an estimate: each iteration reads every weight and every KV token its instance holds
    once (what bounds decode), over the GPUs' peak memory bandwidth for the whole run."""
    if makespan_s <= 0 or peak_bytes_per_s <= 0 or not len(steps):
        return float("nan")
    gpu = steps[steps["role"] != "cpu"] if "role" in steps else steps
    read = (gpu["num_iterations"] * (weight_bytes + kv_bytes_per_token * gpu["kv_used_tokens"])).sum()
    return float(read / (makespan_s * peak_bytes_per_s))


def kv_utilisation(steps: pd.DataFrame) -> dict[str, float]:
    """Time-weighted mean fraction of KV blocks in use, and of allocated slots holding tokens."""
    if steps.empty:
        return {"mean_blocks_used": float("nan"), "mean_tokens_per_allocated": float("nan")}
    w = steps["duration_s"]
    blocks = steps["kv_used_blocks"] / steps["kv_num_blocks"]
    return {"mean_blocks_used": float(np.average(blocks, weights=w)) if w.sum() else float("nan"),
            "peak_blocks_used": float(blocks.max())}


def padding_ratio(steps: pd.DataFrame) -> float:
    """Fraction of computed tokens that were padding (BucketServe Eq. 2 at token level)."""
    real = (steps["num_prefill_tokens"] + steps["num_decode_seqs"] * steps["num_iterations"]).sum()
    pad = steps["num_padding_tokens"].sum()
    return float(pad / (real + pad)) if real + pad else 0.0


def by_service_class(requests: pd.DataFrame, makespan_s: float) -> dict:
    """OmniServe's view (policies.md section 11.3): LS SLO attainment (rejections count as
    misses) and BE token throughput, prefill and decode, over the run's makespan."""
    out = {}
    for cls, g in requests.groupby("service_class"):
        started = g[g["first_token_s"].notna()]
        prefill = float(started["prompt_tokens"].sum())
        decode = float(g["num_generated_tokens"].sum())
        out[cls] = {
            "num_requests": int(len(g)),
            "num_finished": int((g["status"] == "finished").sum()),
            "num_rejected": int((g["status"] == "rejected").sum()),
            "num_unfinished": int((~g["status"].isin(["finished", "rejected"])).sum()),
            "slo_attainment": slo_attainment(g),
            "slo_thresholds": slo_thresholds(g),
            "ttft_s": _dist(g.loc[g["status"] == "finished", "ttft_s"]),
            "tpot_s": _dist(g.loc[g["status"] == "finished", "tpot_s"]),
            "prefill_tokens_per_s": prefill / makespan_s if makespan_s else float("nan"),
            "decode_tokens_per_s": decode / makespan_s if makespan_s else float("nan"),
        }
    return out


def summarize(requests: pd.DataFrame, steps: pd.DataFrame, num_instances: int,
              num_gpus: int, instances_by_role: dict[str, int] | None = None,
              horizon_s: float | None = None, flops_per_token: float = 0.0,
              peak_flops: float = 0.0, weight_bytes: float = 0.0,
              kv_bytes_per_token: float = 0.0, peak_bytes_per_s: float = 0.0) -> dict:
    """``instances_by_role``: how many instances each role has (idle ones included), for the
    per-phase busy fractions; default: the roles and instances seen in ``steps``.
    ``flops_per_token`` and ``peak_flops`` (all GPUs): for the MFU; ``weight_bytes``,
    ``kv_bytes_per_token`` and ``peak_bytes_per_s`` (all GPUs): for the MBU; NaN without."""
    # only the columns read below: a copy of every column would double a big run's peak memory
    fin = requests.loc[requests["status"] == "finished",
                       ["prompt_tokens", "num_generated_tokens", "ttft_s", "tpot_s", "e2e_s"]]
    start = float(requests["arrival_s"].min()) if len(requests) else 0.0
    end = float(requests["finish_s"].max()) if len(requests) else 0.0
    if horizon_s is not None:  # stopped with requests in flight: the window is the run
        end = horizon_s
    makespan = max(0.0, end - start)
    out_tokens = float(fin["num_generated_tokens"].sum())  # a generation cap may cut outputs
    in_tokens = float(fin["prompt_tokens"].sum())
    norm = (fin["e2e_s"] / fin["num_generated_tokens"]).mean() if len(fin) else float("nan")
    return {
        "num_requests": int(len(requests)),
        "num_finished": int(len(fin)),
        "num_rejected": int((requests["status"] == "rejected").sum()),
        "num_unfinished": int((~requests["status"].isin(["finished", "rejected"])).sum()),
        "makespan_s": makespan,
        "ttft_s": _dist(fin["ttft_s"]),
        "tpot_s": _dist(fin["tpot_s"]),
        "e2e_s": _dist(fin["e2e_s"]),
        "normalized_latency_s_per_token": float(norm),
        "throughput": {
            "requests_per_s": len(fin) / makespan if makespan else float("nan"),
            "window_requests_per_s": served_in_window(requests),
            "output_tokens_per_s": out_tokens / makespan if makespan else float("nan"),
            "total_tokens_per_s": (in_tokens + out_tokens) / makespan if makespan else float("nan"),
        },
        "offered": offered_load(requests),
        "goodput": goodput(requests, makespan),
        "slo_attainment": slo_attainment(requests),
        "slo_thresholds": slo_thresholds(requests),
        "in_flight_per_instance": in_flight_per_instance(requests, start, start + makespan,
                                                         num_instances),
        "gpu_busy_fraction": gpu_busy_fraction(steps, makespan, num_instances),
        "gpu_busy_fraction_by_role": {
            role: gpu_busy_fraction(g, makespan, (instances_by_role or {}).get(
                role, g["instance"].nunique()))
            for role, g in steps.groupby("role")} if "role" in steps else {},
        "model_flops_utilisation": model_flops_utilisation(steps, makespan, flops_per_token,
                                                           peak_flops),
        "model_bandwidth_utilisation": model_bandwidth_utilisation(
            steps, makespan, weight_bytes, kv_bytes_per_token, peak_bytes_per_s),
        "kv_utilisation": kv_utilisation(steps),
        "padding_ratio": padding_ratio(steps) if len(steps) else 0.0,
        "num_preemptions": int(requests["num_preemptions"].sum()),
        "num_recomputed_tokens": int(requests["num_recomputed_tokens"].sum()),
        "num_steps": int(steps["num_iterations"].sum()) if len(steps) else 0,
        "num_instances": num_instances,
        "num_gpus": num_gpus,
        **({"by_service_class": by_service_class(requests, makespan)}
           if requests["service_class"].nunique() > 1 else {}),
        **({"num_offloaded_tokens": int(steps["num_offloaded_tokens"].sum())}
           if "num_offloaded_tokens" in steps and steps["num_offloaded_tokens"].any() else {}),
    }
