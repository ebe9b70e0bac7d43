"""Sweeps: grid expansion, parallel runs, resumability, the tidy table, and bad input."""
from __future__ import annotations

import subprocess
import sys

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
