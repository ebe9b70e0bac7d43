"""The real-trace held-out plan (calibration/validation/realtrace): its slices are cut from the
public traces in ../shared by llmsim's own loader (never committed), and its plan and decision
pairs name runs that can be compared."""
from __future__ import annotations

import numpy as np
import yaml

from calibration.decisions import load_pairs
from llmsim.scenario import load_scenario
from llmsim.workload.source import workload_frame
from tests.conftest import REPO

HERE = REPO / "calibration" / "validation" / "realtrace"
SLICES = {"conv": 48, "code": 50, "mooncake": 20}


def test_slices_come_from_the_shared_traces_with_real_arrivals(shared_traces):
    for name, n in SLICES.items():
        sc = load_scenario(HERE / f"{name}.gen.yaml", [])
        assert "shared/traces/" in sc.workload.path  # read from ../shared, not a copy
        df = workload_frame(sc.workload, np.random.default_rng(sc.seed), sc.base_dir)
        assert len(df) == n and df["arrival_s"].is_monotonic_increasing
        assert df["prompt_tokens"].max() <= sc.workload.max_prompt_tokens
        gaps = np.diff(df["arrival_s"].to_numpy())
        assert gaps.std() / gaps.mean() > 0.9  # production arrivals, not a regular clock
    assert not list(HERE.glob("*.csv")) and not (REPO / "calibration" / "validation" / "h100"
                                                 / "llama8b_pf_mbt1024_azconv").exists()


def test_plan_and_pairs_name_the_slices_and_each_other():
    plan = yaml.safe_load((HERE / "plan.yaml").read_text())["cases"]
    by_name = {c["name"]: c for c in plan}
    assert {c["trace"] for c in plan} == {f"runs/realtrace/{s}.csv" for s in SLICES}
    assert {c["scheduler"] for c in plan} == {"fifo", "prefill_first"}
    pairs = load_pairs(HERE / "pairs.yaml")
    assert len(pairs) == 8 and {a.split("/")[0] for a, _ in pairs} == {"h100", "h200"}
    for a, b in pairs:
        ca, cb = by_name[a.split("/")[1]], by_name[b.split("/")[1]]
        assert ca["trace"] == cb["trace"] and ca["model"] == cb["model"]
        assert (ca["scheduler"], ca["max_batch_tokens"]) != (cb["scheduler"], cb["max_batch_tokens"])
