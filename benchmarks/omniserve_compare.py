"""OmniServe vs its paper's baselines (Sarathi-Serve LS-first, NEO-like, Llumnix + CPU vLLM).

    python benchmarks/omniserve_compare.py [--models yi34b llama70b] [--rates 1 2 4]
        [--servers 0 4] [--ls-duration-s 240] [--jobs 2] [--out results.csv]

Runs scenarios/omniserve-<model>[-<baseline>].yaml over LS Poisson rates and numbers of CPU
servers (0 = the GPU server's own host only), plus OmniServe with same-iteration catch-up, and
prints markdown tables of LS SLO attainment (TTFT and TPOT, rejections and unfinished count as
misses) and BE prefill / decode token throughput, with each policy's ratio to Llumnix.
"""
from __future__ import annotations

import argparse
import itertools
from multiprocessing import Pool
from pathlib import Path

import pandas as pd
import yaml

from llmsim.scenario import scenario_from_dict
from llmsim.simulation import simulate

HERE = Path(__file__).resolve().parents[1] / "scenarios"
POLICIES = {"omniserve": "", "omniserve+catchup": "", "sarathi": "-sarathi", "neo": "-neo",
            "llumnix": "-llumnix"}


def run_one(args: tuple) -> dict:
    """``(model, policy, ls_rate, cpu_servers, ls_duration_s[, overrides])``: one run's LS
    attainment and BE throughput; ``overrides`` are ``--set`` strings applied last."""
    model, policy, rate, servers, duration_s, *rest = args
    overrides = list(rest[0]) if rest else []
    path = HERE / f"omniserve-{model}{POLICIES[policy]}.yaml"
    data = yaml.safe_load(path.read_text())
    ls = data["workload"]["streams"][0]
    ls["arrival"]["rate_per_s"] = rate
    ls["num_requests"] = int(rate * duration_s)
    data["workload"]["streams"][1]["num_requests"] = int(3.043 * duration_s)
    data["cluster"]["host"]["num_cpu_servers"] = servers
    if "cpu_engines" in data["cluster"]:  # Llumnix: one CPU engine per server (or the host's)
        data["cluster"]["cpu_engines"]["num_instances"] = max(1, servers)
    if policy == "omniserve+catchup":
        data["policy"]["same_iteration_catchup"] = True
    res = simulate(scenario_from_dict(data, str(path), path.parent, overrides))
    s, c = res.summary, res.summary["by_service_class"]
    be = res.requests[res.requests["service_class"] == "best_effort"]
    a = c["latency_sensitive"]["slo_attainment"]
    return {"model": model, "policy": policy, "ls_rate": rate, "cpu_servers": servers,
            "ls_ttft_att": a["ttft"], "ls_tpot_att": a["tpot"], "ls_both_att": a["both"],
            "ls_rejected": c["latency_sensitive"]["num_rejected"],
            "be_prefill_tok_s": c["best_effort"]["prefill_tokens_per_s"],
            "be_decode_tok_s": c["best_effort"]["decode_tokens_per_s"],
            "makespan_s": s["makespan_s"],
            # how far BE got: started = prefilled to a first token by the end of the run
            "be_started": int(be["first_token_s"].notna().sum()),
            "be_finished": int((be["status"] == "finished").sum()),
            "be_tpot_p50_s": float(be["tpot_s"].median())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["yi34b", "llama70b"])
    ap.add_argument("--rates", nargs="+", type=float, default=[1.0, 2.0, 4.0])
    ap.add_argument("--servers", nargs="+", type=int, default=[0, 4])
    ap.add_argument("--policies", nargs="+", default=list(POLICIES))
    ap.add_argument("--ls-duration-s", type=float, default=240.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    grid = [(m, p, r, n, a.ls_duration_s) for m, r, n, p in
            itertools.product(a.models, a.rates, a.servers, a.policies)]
    with Pool(a.jobs) as pool:
        df = pd.DataFrame(pool.map(run_one, grid))
    if a.out:
        df.to_csv(a.out, index=False)
    base = df[df["policy"] == "llumnix"].set_index(["model", "ls_rate", "cpu_servers"])
    for col in ("be_decode_tok_s", "be_prefill_tok_s", "ls_both_att"):
        ref = base[col].reindex(pd.MultiIndex.from_frame(df[["model", "ls_rate", "cpu_servers"]]))
        df[f"{col}_vs_llumnix"] = df[col].to_numpy() / ref.to_numpy()
    for model, g in df.groupby("model"):
        print(f"\n### {model}\n")
        cols = ["ls_rate", "cpu_servers", "policy", "ls_ttft_att", "ls_tpot_att", "ls_rejected",
                "be_prefill_tok_s", "be_decode_tok_s", "be_decode_tok_s_vs_llumnix",
                "ls_both_att_vs_llumnix"]
        print(markdown(g[cols]))


def markdown(df: pd.DataFrame) -> str:
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = ["| " + " | ".join(df.columns) + " |", "|" + " --- |" * len(df.columns)]
    rows += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
