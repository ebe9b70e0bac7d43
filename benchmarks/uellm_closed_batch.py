"""UELLM's closed batch from the authors' inputs: its variants, each over the eight served runs.

    python benchmarks/uellm_closed_batch.py [--study ablation | --study step-time]

The scenario (``scenarios/papers/uellm-closed-batch.yaml``) is UELLM-all; the baselines differ
from it only in what the authors' scripts change (``experiment/UELM/*/*.py``, HYIUYOU/UELLM
521d043): the grouping and ``chat_batch``'s ``max_length``. Every variant here runs on the same
one GPU. Each of ``traces/uellm_chatglm2/run{1..8}.csv`` is one served run (ChatGLM2-6B's own,
sampled answer lengths); llmsim's number for a variant is the mean over the eight.

The paper's numbers are its repository's logs (5 runs a variant, ``experiment/UELM/*/N/1.txt``):
the makespans and the padded steps, i.e. the widths ``chat_batch`` prints for its groups
(generated tokens of the longest row), summed over a run.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from statistics import mean

from llmsim.scenario import load_scenario
from llmsim.simulation import simulate

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "papers" / "uellm-closed-batch.yaml"
RUNS = tuple(range(1, 9))
FCFS = ["policy.sort=fcfs", "policy.cap_from_prediction=false"]
VARIANTS = {
    "UELLM-all": [],  # all.py: SLO-ODBS, max_length = group's longest profile + 50
    "UELLM-deploy": FCFS + ["policy.max_length=1024"],  # deploy.py: groups of 10 in order
    "Morphling serving": FCFS + ["policy.max_length=2048"],  # morphing.py: chat_batch default
}
# what UELLM-all's gain over UELLM-deploy comes from: its grouping, its cap, or both
ABLATION = {
    ("groups of 10 in order", "max_length 1024"): "UELLM-deploy",
    ("groups of 10 in order", "longest profile + 50"): "in order, capped",
    ("SLO-ODBS", "max_length 1024"): "SLO-ODBS, 1024",
    ("SLO-ODBS", "longest profile + 50"): "UELLM-all",
}
VARIANTS["in order, capped"] = ["policy.sort=fcfs"]
VARIANTS["SLO-ODBS, 1024"] = ["policy.cap_from_prediction=false", "policy.max_length=1024"]
# morphing.py first stress-tests on its first 5 groups (the model split over 2 GPUs), then reloads
# the model on one GPU and serves all 10 groups: priced as the first 50 queries on the same one
# GPU (a lower bound: HF's layer split runs the layers one GPU after the other), reload unpriced.
STRESS_QUERIES = 50
PAPER_MAKESPAN_S = {
    "UELLM-all": (63.80, 65.05, 71.55, 63.75, 62.04),
    "UELLM-deploy": (126.12, 136.95, 121.60, 127.09, 133.74),
    "Morphling": (346.08, 382.53, 305.36, 437.47, 224.75),  # stress test + reload + serving
}
PAPER_STEPS = {  # sum of the logged group widths per run
    "UELLM-all": (2306, 2386, 2554, 2327, 2266),
    "UELLM-deploy": (3762, 4722, 4254, 4465, 4690),
    "Morphling": (8703, 7589, 8004, 8474, 5421),  # stress test + serving
}


def _trace(run: int) -> str:
    return f"workload.path=../../traces/uellm_chatglm2/run{run}.csv"


@cache
def simulate_run(variant: str, run: int, max_requests: int | None = None,
                 step_factor: float = 1.0) -> dict[str, float]:
    """One variant on one served run: makespan, deadline misses, padded steps, tokens cut.
    ``step_factor`` scales every step's time (the step-time study)."""
    sets = VARIANTS[variant] + [_trace(run)]
    if max_requests:
        sets.append(f"workload.max_requests={max_requests}")
    res = simulate(load_scenario(SCENARIO, sets),
                   perturb=None if step_factor == 1.0 else (step_factor, step_factor))
    req = res.requests
    return {"makespan_s": res.summary["makespan_s"],
            "violation_rate": float((req["finish_s"] > req["deadline_at_s"]).mean()),
            "steps": float(res.steps["num_iterations"].sum()),
            "cut_rate": float((req["num_generated_tokens"] < req["output_tokens"]).mean())}


def morphling(run: int) -> dict[str, float]:
    """Stress test (the next run's answers: a second sampling) + serving, on one GPU."""
    stress = simulate_run("Morphling serving", run % len(RUNS) + 1, STRESS_QUERIES)
    serve = simulate_run("Morphling serving", run)
    return {k: stress[k] + serve[k] for k in ("makespan_s", "steps")}


def mean_over_runs(variant: str, key: str = "makespan_s") -> float:
    if variant == "Morphling":
        return mean(morphling(k)[key] for k in RUNS)
    return mean(simulate_run(variant, k)[key] for k in RUNS)


def table() -> list[dict[str, object]]:
    rows = []
    for v in ("UELLM-all", "UELLM-deploy", "Morphling serving", "Morphling"):
        runs = ([morphling(k) for k in RUNS] if v == "Morphling"
                else [simulate_run(v, k) for k in RUNS])
        ms = [r["makespan_s"] for r in runs]
        steps = mean(r["steps"] for r in runs)
        row: dict[str, object] = {
            "variant": v, "makespan_s": round(mean(ms), 1),
            "makespan_range_s": f"{min(ms):.1f}-{max(ms):.1f}", "padded_steps": round(steps),
            "ms_per_step": round(1000 * mean(ms) / steps, 1)}
        if v != "Morphling":
            row["violation_rate"] = round(mean(r["violation_rate"] for r in runs), 3)
            row["answers_cut"] = round(mean(r["cut_rate"] for r in runs), 3)
        if v in PAPER_MAKESPAN_S:
            p_ms, p_steps = mean(PAPER_MAKESPAN_S[v]), mean(PAPER_STEPS[v])
            row.update(paper_makespan_s=round(p_ms, 1), paper_padded_steps=round(p_steps),
                       paper_ms_per_step=round(1000 * p_ms / p_steps, 1))
        rows.append(row)
    return rows


PAPER_VIOLATIONS = {"UELLM-all": (0.0, 0.0, 0.0, 0.0, 0.0),
                    "UELLM-deploy": (0.21, 0.30, 0.21, 0.24, 0.21)}


def paper_step_factor() -> float:
    """The paper's time per padded step over llmsim's, pooled over UELLM-all and UELLM-deploy
    (the variants that ran on one GPU): the unstated GPU's speed, measured from its logs."""
    paper = sum(sum(PAPER_MAKESPAN_S[v]) for v in PAPER_VIOLATIONS) / \
        sum(sum(PAPER_STEPS[v]) for v in PAPER_VIOLATIONS)
    ours = sum(mean_over_runs(v) for v in PAPER_VIOLATIONS) / \
        sum(mean_over_runs(v, "steps") for v in PAPER_VIOLATIONS)
    return paper / ours


def step_time_study() -> list[dict[str, object]]:
    """Each one-GPU variant with llmsim's step time and with the paper's (every step scaled by
    ``paper_step_factor``): makespan and deadline misses against the logs'."""
    f = paper_step_factor()
    rows = []
    for factor, label in ((1.0, "llmsim's (H100, eager)"), (f, f"the paper's (x{f:.2f})")):
        for v in PAPER_VIOLATIONS:
            runs = [simulate_run(v, k, None, factor) for k in RUNS]
            rows.append({"step time": label, "variant": v,
                         "makespan_s": round(mean(r["makespan_s"] for r in runs), 1),
                         "violation_rate": round(mean(r["violation_rate"] for r in runs), 3),
                         "paper_makespan_s": round(mean(PAPER_MAKESPAN_S[v]), 1),
                         "paper_violation_rate": round(mean(PAPER_VIOLATIONS[v]), 3)})
    return rows


def ablation() -> list[dict[str, object]]:
    """The 2 x 2 of grouping and generation cap, each over the eight served runs."""
    return [{"grouping": g, "max_length": cap, "makespan_s": round(mean_over_runs(v), 1),
             "padded_steps": round(mean_over_runs(v, "steps")),
             "answers_cut": round(mean(simulate_run(v, k)["cut_rate"] for k in RUNS), 3)}
            for (g, cap), v in ABLATION.items()]


if __name__ == "__main__":
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from md_table import markdown_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", choices=["variants", "ablation", "step-time"], default="variants")
    study = ap.parse_args().study
    rows = table() if study == "variants" else ablation() if study == "ablation" \
        else step_time_study()
    cols = list(dict.fromkeys(k for r in rows for k in r))
    print(markdown_table(cols, [[r.get(c) for c in cols] for r in rows]))
