"""CI regression of policy metrics: fixed seeded scenarios, golden summary metrics with stated
tolerances, and the orderings that define each policy's value.

``llmsim regress`` (run in a checkout, or ``--root`` one) compares a fresh run of the shipped
scenarios with ``tests/regression/golden.json``; ``llmsim regress --update`` rewrites it and
prints what moved, so a deliberate change is one reviewed commit.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmsim.errors import InputError
from llmsim.scenario import load_scenario
from llmsim.simulation import simulate

GOLDEN = Path("tests") / "regression" / "golden.json"  # under the checkout's root

# (case, scenario file, overrides): small, seeded, covering every policy and both topologies.
MIXED = "scenarios/bucketserve-mixed.yaml"
COLOCATED = ["cluster.topology=colocated", "cluster.num_instances=4", "cluster.prefill=null",
             "cluster.decode=null", "decode_policy=null"]
N = ["workload.num_requests=300", "workload.arrival.rate_per_s=3"]
LOADED = ["workload.num_requests=400", "workload.arrival.rate_per_s=8"]
CLOSED = "scenarios/closed-batch-static.yaml"  # its workload swapped for a shipped trace
CLOSED_WL = ["workload={kind: trace, path: ../traces/closed_mixed_100.csv}",
             "predictor={kind: bucketed}"]
CASES: dict[str, tuple[str, list[str]]] = {
    "mixed/static": (MIXED, COLOCATED + N + ["policy={kind: static, max_num_seqs: 32}"]),
    "mixed/orca": (MIXED, COLOCATED + N + ["policy={kind: orca}"]),
    "mixed/vllm": (MIXED, COLOCATED + N + ["policy={kind: vllm}"]),
    "mixed/sarathi": (MIXED, COLOCATED + N + ["policy={kind: sarathi}"]),
    "mixed/uellm": (MIXED, COLOCATED + N + ["policy={kind: uellm}"]),
    "mixed/distserve": (MIXED, N + ["policy={kind: distserve_prefill}",
                                    "decode_policy={kind: distserve_decode}"]),
    "mixed/bucketserve": (MIXED, N),
    "quickstart/vllm": ("scenarios/quickstart.yaml", ["workload.num_requests=500"]),
    # under load: paged KV on demand vs max-length reservation
    "mixed-load/vllm": (MIXED, COLOCATED + LOADED + ["policy={kind: vllm}"]),
    "mixed-load/orca": (MIXED, COLOCATED + LOADED + ["policy={kind: orca}"]),
    # UELLM's own setting: a closed batch, SLO-ODBS groups vs FCFS groups of the same size
    "closed/uellm": (CLOSED, CLOSED_WL + ["policy={kind: uellm}"]),
    "closed/uellm-fcfs": (CLOSED, CLOSED_WL + ["policy={kind: uellm, sort: fcfs}"]),
}

# metric path -> relative tolerance (absolute for fractions in [0, 1])
METRICS = {
    "ttft_s.p50": 0.02, "ttft_s.p90": 0.02, "tpot_s.p50": 0.02, "tpot_s.p90": 0.02,
    "e2e_s.mean": 0.02, "throughput.output_tokens_per_s": 0.02, "makespan_s": 0.02,
    "slo_attainment.both": 0.01, "padding_ratio": 0.01, "gpu_busy_fraction": 0.01,
}
FRACTIONS = {"slo_attainment.both", "padding_ratio", "gpu_busy_fraction"}

# The orderings that define each policy's value on the mixed-length workload.
ORDERINGS = [
    ("padding_ratio", "mixed/bucketserve", "<", "mixed/static"),
    ("padding_ratio", "closed/uellm", "<", "closed/uellm-fcfs"),
    ("makespan_s", "closed/uellm", "<", "closed/uellm-fcfs"),
    ("slo_attainment.both", "mixed/vllm", ">", "mixed/static"),
    ("throughput.output_tokens_per_s", "mixed/vllm", ">", "mixed/static"),
    ("e2e_s.mean", "mixed-load/vllm", "<", "mixed-load/orca"),
    ("slo_attainment.both", "mixed-load/vllm", ">", "mixed-load/orca"),
    ("slo_attainment.both", "mixed/bucketserve", ">=", "mixed/uellm"),
]


def _get(summary: dict, path: str) -> float:
    v: Any = summary
    for k in path.split("."):
        v = v[k]
    return float(v)


def run_cases(root: Path, names: list[str] | None = None,
              progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """Run the cases (or those named) from the checkout at ``root``; ``progress(done, total)``
    after each."""
    unknown = sorted(set(names or ()) - set(CASES))
    if unknown:
        raise InputError(f"--case: unknown {', '.join(unknown)}; cases: {', '.join(CASES)}")
    if not (root / MIXED).is_file():
        raise InputError(f"--root {root}: no {MIXED} here; run llmsim regress in a checkout of "
                         "llmsim or point --root at one")
    out = {}
    todo = [(n, c) for n, c in CASES.items() if not names or n in names]
    for i, (name, (path, overrides)) in enumerate(todo):
        s = simulate(load_scenario(root / path, overrides)).summary
        out[name] = {m: _get(s, m) for m in METRICS}
        if progress is not None:
            progress(i + 1, len(todo))
    return out


def compare(got: dict, golden: dict) -> list[tuple[str, str, float, float, bool]]:
    """Rows (case, metric, golden, got, ok)."""
    rows = []
    for case, metrics in got.items():
        for m, v in metrics.items():
            g = golden.get(case, {}).get(m)
            if g is None:
                rows.append((case, m, math.nan, v, False))
                continue
            tol = METRICS[m]
            ok = abs(v - g) <= (tol if m in FRACTIONS else tol * abs(g)) or (math.isnan(v) and math.isnan(g))
            rows.append((case, m, g, v, ok))
    return rows


def check_orderings(got: dict) -> list[tuple[str, bool]]:
    ops = {"<": float.__lt__, ">": float.__gt__, ">=": float.__ge__}
    res = []
    for metric, a, op, b in ORDERINGS:
        if a in got and b in got:
            va, vb = got[a][metric], got[b][metric]
            res.append((f"{metric}: {a} ({va:.4g}) {op} {b} ({vb:.4g})", ops[op](va, vb)))
    return res


def load_golden(root: Path) -> dict:
    path = root / GOLDEN
    return json.loads(path.read_text()) if path.is_file() else {}


def write_golden(root: Path, got: dict) -> None:
    path = root / GOLDEN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
