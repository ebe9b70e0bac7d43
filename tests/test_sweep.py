"""Sweeps: grid expansion, parallel runs, resumability, the tidy table, and bad input."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from llmsim.analysis.sweep import load_sweep, load_sweep_results, run_sweep
from llmsim.errors import InputError
from tests.conftest import REPO

SWEEP = """
scenario: {scenario}
grid:
  policy: [{{kind: vllm}}, {{kind: sarathi}}]
  workload.arrival.rate_per_s: [2, 6]
  workload.num_requests: [60]
"""


def write(tmp_path, text):
    p = tmp_path / "sweep.yaml"
    p.write_text(text.format(scenario=REPO / "scenarios" / "quickstart.yaml"))
    return p


def test_sweep_runs_every_point_once_and_resumes(tmp_path):
    cfg, base = load_sweep(write(tmp_path, SWEEP))
    out = tmp_path / "out"
    table, ran = run_sweep(cfg, base, out, workers=2)
    assert ran == 4 and len(table) == 4 and table["run"].nunique() == 4
    assert {"slo_attainment.both", "ttft_s.p90", "throughput.output_tokens_per_s"} <= set(table.columns)
    # attainment can only fall as the rate rises, for each policy
    for _, g in table.groupby("axis.policy"):
        g = g.sort_values("axis.workload.arrival.rate_per_s")
        assert g["slo_attainment.both"].is_monotonic_decreasing
    again, ran2 = run_sweep(cfg, base, out, workers=1)
    assert ran2 == 0 and again.equals(table)
    t2, reqs = load_sweep_results(out)
    assert len(reqs) == 4 and all(len(r) == 60 for r in reqs.values())


def test_a_partial_run_directory_is_never_read(tmp_path):
    cfg, base = load_sweep(write(tmp_path, SWEEP))
    out = tmp_path / "out"
    table, _ = run_sweep(cfg, base, out, workers=1)
    victim = out / "runs" / table["run"].iloc[0]
    (victim / "summary.json").unlink()  # as if interrupted mid-write
    _, ran = run_sweep(cfg, base, out, workers=1)
    assert ran == 1


@pytest.mark.parametrize("grid,msg", [
    ("  polcy: [{{kind: vllm}}]", "polcy"),
    ("  workload.arrival.rate_per_s: [0]", "rate_per_s"),
    ("  seed: []", "no values"),
])
def test_bad_sweeps_are_input_errors(tmp_path, grid, msg):
    p = write(tmp_path, "scenario: {scenario}\ngrid:\n" + grid + "\n")
    with pytest.raises(InputError, match=msg):
        cfg, base = load_sweep(p)
        run_sweep(cfg, base, tmp_path / "out", workers=1)


def test_cli_runs_a_sweep(tmp_path):
    p = write(tmp_path, SWEEP)
    out = tmp_path / "out"
    ok = subprocess.run([sys.executable, "-m", "llmsim", "sweep", str(p), "--out", str(out),
                         "--workers", "1"], capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert len(pd.read_parquet(out / "sweep.parquet")) == 4


def test_sweep_on_a_local_dask_cluster_matches_local_processes(tmp_path):
    distributed = pytest.importorskip("distributed", reason="needs dask.distributed")
    cfg, base = load_sweep(write(tmp_path, SWEEP))
    local, _ = run_sweep(cfg, base, tmp_path / "local", workers=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as lc:
        remote, ran = run_sweep(cfg, base, tmp_path / "dask", cluster=lc.scheduler_address)
    assert ran == 4
    cols = ["run", "slo_attainment.both", "ttft_s.p90", "e2e_s.mean"]
    pd.testing.assert_frame_equal(local[cols], remote[cols])


def test_cluster_local_starts_its_own_dask_workers(tmp_path):
    pytest.importorskip("distributed", reason="needs dask.distributed")
    cfg, base = load_sweep(write(tmp_path, SWEEP))
    local, _ = run_sweep(cfg, base, tmp_path / "local", workers=1)
    own, ran = run_sweep(cfg, base, tmp_path / "own", cluster="local:2")
    assert ran == 4
    pd.testing.assert_frame_equal(local[["run", "e2e_s.mean"]], own[["run", "e2e_s.mean"]])
    with pytest.raises(InputError, match="positive worker count"):
        run_sweep(cfg, base, tmp_path / "bad", cluster="local:zero")


@pytest.mark.slow
def test_a_cluster_that_does_not_answer_is_exit_2_and_keeps_results(tmp_path):
    pytest.importorskip("distributed", reason="needs dask.distributed")
    p = write(tmp_path, SWEEP)
    out = tmp_path / "out"
    cfg, base = load_sweep(p)
    run_sweep(cfg, base, out, workers=1)
    more = tmp_path / "more.yaml"
    more.write_text(p.read_text().replace("[2, 6]", "[2, 6, 9]"))
    bad = subprocess.run([sys.executable, "-m", "llmsim", "sweep", str(more), "--out", str(out),
                          "--cluster", "tcp://127.0.0.1:9"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "does not answer" in bad.stderr
    assert len(pd.read_parquet(out / "sweep.parquet")) == 4


def test_shipped_sweep_files_validate():
    from llmsim.analysis.sweep import points

    for path in (REPO / "scenarios" / "sweeps").glob("*.yaml"):
        cfg, base = load_sweep(path)
        assert len(points(cfg, base)) == len(list(__import__("itertools").product(*cfg.grid.values())))


def test_pareto_front_keeps_exactly_the_undominated():
    from llmsim.analysis.pareto import pareto_front

    t = pd.DataFrame({"c": [1.0, 2.0, 2.0, 3.0, 0.5, float("nan")],
                      "q": [0.5, 0.9, 0.8, 0.9, 0.2, 1.0]})
    # (0.5, 0.2), (1, 0.5), (2, 0.9) on it; (2, 0.8) and (3, 0.9) dominated; NaN never
    assert pareto_front(t, "c", "q").tolist() == [True, True, False, False, True, False]


@pytest.mark.slow  # CLI subprocesses: the functions are tested in the default suite
def test_cli_pareto_of_a_sweep(tmp_path):
    p = write(tmp_path, SWEEP.replace("[{{kind: vllm}}, {{kind: sarathi}}]", "[{{kind: vllm}}]")
              + "  cluster.gpu: [h100, h200]\n")
    out = tmp_path / "out"
    cfg, base = load_sweep(p)
    table, _ = run_sweep(cfg, base, out, workers=1)
    assert {"cost.usd_per_million_output_tokens", "energy.j_per_output_token"} <= set(table.columns)
    ok = subprocess.run([sys.executable, "-m", "llmsim", "pareto", str(out)], capture_output=True,
                        text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert "on the frontier" in ok.stdout and (out / "pareto.png").exists()
    bad = subprocess.run([sys.executable, "-m", "llmsim", "pareto", str(out), "--cost", "nope"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "no column 'nope'" in bad.stderr


def test_decision_table_names_the_winner_its_margin_and_p_win():
    from llmsim.analysis.decide import decision_table

    rng = np.random.default_rng(0)
    rows = []
    for rate in (1, 2):
        for seed in range(6):
            noise = rng.normal(0, 0.01)
            # B is ahead by 0.1 at rate 1, A and B tie exactly at rate 2
            rows += [{"axis.policy": "A", "axis.rate": rate, "axis.seed": seed, "axis.n": 5,
                      "slo_attainment.both": 0.8 + noise},
                     {"axis.policy": "B", "axis.rate": rate, "axis.seed": seed, "axis.n": 5,
                      "slo_attainment.both": 0.8 + noise + (0.1 if rate == 1 else 0.0)}]
    d = decision_table(pd.DataFrame(rows), "axis.policy", "slo_attainment.both")
    assert list(d.columns[:1]) == ["axis.rate"]  # the constant axis is not a setting
    one, two = d.iloc[0], d.iloc[1]
    assert one["winner"] == "B" and one["margin"] == pytest.approx(0.1)
    assert one["p_win"] == 1.0 and one["n_seeds"] == 6
    assert one["margin_lo"] - 1e-9 <= 0.1 <= one["margin_hi"] + 1e-9
    assert two["p_win"] == 0.5 and two["margin"] == 0.0
    with pytest.raises(InputError, match="no column 'axis.gpu'"):
        decision_table(pd.DataFrame(rows), "axis.gpu", "slo_attainment.both")


def test_attainment_curves_carry_a_bootstrap_band(tmp_path):
    from llmsim.analysis.compare import mean_band
    from llmsim.analysis.plots import plot_attainment_vs

    x = np.array([0.7, 0.8, 0.9, 0.75, 0.85, 0.8])
    lo, hi = mean_band(x)
    assert lo < x.mean() < hi and hi - lo < x.max() - x.min()
    t = pd.DataFrame({"rate": [1, 1, 1, 1, 1, 2, 2, 2, 2, 2] * 2, "policy": ["a"] * 10 + ["b"] * 10,
                      "slo_attainment.both": np.linspace(0.5, 1.0, 20)})
    assert plot_attainment_vs(t, "rate", "policy", tmp_path / "att", formats=("png",))[0].exists()


@pytest.mark.slow  # CLI subprocesses
def test_cli_decide_on_a_sweep_with_seeds(tmp_path):
    p = write(tmp_path, SWEEP.replace("[2, 6]", "[6]") + "  seed: [0, 1, 2]\n")
    out = tmp_path / "out"
    cfg, base = load_sweep(p)
    run_sweep(cfg, base, out, workers=1)
    ok = subprocess.run([sys.executable, "-m", "llmsim", "decide", str(out), "--by", "policy",
                         "--metric", "tpot_s.p90"], capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert "the best policy per setting" in ok.stdout and "sarathi" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "llmsim", "decide", str(out), "--by", "gpu"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "no column 'axis.gpu'" in bad.stderr
