"""Run outputs beyond the summary: Parquet records, vLLM-named metrics, the Perfetto trace,
vector plots, the scenario's JSON Schema."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from llmsim.analysis import plots
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error, llmsim

SMALL = ["--set", "workload.num_requests=120"]


def test_parquet_records_match_the_csv_ones(tmp_path):
    assert llmsim("run", *SMALL, "--out", tmp_path / "c", "--no-plots").returncode == 0
    assert llmsim("run", *SMALL, "--out", tmp_path / "p", "--no-plots",
                  "--format", "parquet").returncode == 0
    for name in ("requests", "steps"):
        csv = pd.read_csv(tmp_path / "c" / f"{name}.csv", keep_default_na=False, na_values=[""])
        pq = pd.read_parquet(tmp_path / "p" / f"{name}.parquet")
        if "reject_reason" in pq:  # CSV cannot tell an empty reason from a missing one
            pq["reject_reason"] = pq["reject_reason"].replace("", float("nan"))
        pd.testing.assert_frame_equal(csv, pq, check_dtype=False)
    assert not (tmp_path / "p" / "requests.csv").exists()


def test_vllm_metrics_use_benchmark_serving_names_and_agree_with_the_summary(tmp_path):
    proc = llmsim("run", *SMALL, "--out", tmp_path, "--no-plots", "--metrics", "vllm")
    assert proc.returncode == 0 and "Serving Benchmark Result" in proc.stdout
    m = json.loads((tmp_path / "vllm_metrics.json").read_text())
    s = json.loads((tmp_path / "summary.json").read_text())
    for key in ("completed", "request_throughput", "request_goodput", "output_throughput",
                "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
                "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "mean_e2el_ms", "p99_e2el_ms"):
        assert key in m, key
    assert m["completed"] == s["num_finished"] == 120
    assert m["mean_ttft_ms"] == pytest.approx(s["ttft_s"]["mean"] * 1e3)
    assert m["p99_e2el_ms"] == pytest.approx(s["e2e_s"]["p99"] * 1e3)
    assert m["median_itl_ms"] == pytest.approx(s["itl_s"]["p50"] * 1e3)
    assert m["request_throughput"] == pytest.approx(s["throughput"]["requests_per_s"])


def test_trace_events_hold_every_step_per_instance(tmp_path):
    assert llmsim("run", *SMALL, "--out", tmp_path, "--no-plots", "--trace-events").returncode == 0
    trace = json.loads((tmp_path / "trace.json").read_text())
    steps = pd.read_csv(tmp_path / "steps.csv")
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(slices) == len(steps)
    assert sorted({e["pid"] for e in slices}) == sorted(steps["instance"].unique())
    first = min(slices, key=lambda e: e["ts"])
    assert first["ts"] == pytest.approx(steps["start_s"].min() * 1e6, abs=1e-3)
    assert sum(e["dur"] for e in slices) == pytest.approx(steps["duration_s"].sum() * 1e6,
                                                          rel=1e-6)
    names = [e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"]
    assert names == ["instance 0 (colocated)", "instance 1 (colocated)"]


def test_vector_plots_and_bad_output_options(tmp_path):
    assert llmsim("run", *SMALL, "--out", tmp_path / "v", "--plot-format", "svg,pdf").returncode == 0
    for f in ("latency_cdf.svg", "latency_cdf.pdf", "timeline.svg", "timeline.pdf"):
        assert (tmp_path / "v" / f).stat().st_size > 1000, f
    assert_one_line_error(llmsim("run", "--plot-format", "gif", "--out", tmp_path / "x"),
                          "--plot-format")
    assert_one_line_error(llmsim("run", "--format", "xlsx", "--out", tmp_path / "x"), "--format")
    assert_one_line_error(llmsim("run", "--metrics", "sglang", "--out", tmp_path / "x"),
                          "--metrics")


def test_a_fleet_timeline_draws_bands_per_role_not_a_line_per_instance(tmp_path, monkeypatch):
    from llmsim.scenario import load_scenario
    from llmsim.simulation import simulate

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, formats=("png",): figs.append(fig) or [])
    res = simulate(load_scenario(REPO / "benchmarks" / "fleet_64x.yaml",
                                 ["workload.num_requests=600"]))
    plots.plot_timeline(res.steps, tmp_path / "t.png", title="fleet")
    ax0 = figs[0].axes[0]
    assert len(ax0.get_lines()) == 1  # the median line; the 64 instances are a band
    assert "median of 64 instances" in ax0.get_legend_handles_labels()[1][0]
    assert figs[0].get_suptitle() == "fleet"
    few = simulate(load_scenario(None, ["workload.num_requests=60"]))
    plots.plot_timeline(few.steps, tmp_path / "t.png")
    assert [ln.get_label() for ln in figs[1].axes[0].get_lines()] == [
        "instance 0 (colocated)", "instance 1 (colocated)"]


def test_latency_cdfs_mark_percentiles_split_classes_and_go_log_when_wide(tmp_path, monkeypatch):
    from llmsim.scenario import load_scenario
    from llmsim.simulation import simulate

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, formats=("png",): figs.append(fig) or [])
    res = simulate(load_scenario(REPO / "scenarios" / "omniserve-yi34b.yaml",
                                 ["simulation.stop_at_s=30"]))
    plots.plot_latency_cdfs(res.requests, tmp_path / "c.png", title="t", log_x=True)
    ttft = figs[0].axes[0]
    labels = ttft.get_legend_handles_labels()[1]
    assert "latency-sensitive" in labels and ttft.get_xscale() == "log"
    assert [t.get_text() for t in ttft.texts][:3] == ["p50", "p90", "p99"]
    plots.plot_latency_cdfs(res.requests, tmp_path / "c.png", log_x=False)
    assert figs[1].axes[0].get_xscale() == "linear"


def test_every_shipped_scenario_validates_against_the_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema", reason="the schema check needs jsonschema")
    assert llmsim("schema", "--out", tmp_path / "s.json").returncode == 0
    schema = json.loads((tmp_path / "s.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    files = [*REPO.glob("scenarios/*.yaml"), *REPO.glob("scenarios/papers/*.yaml"),
             *REPO.glob("benchmarks/*.yaml"), REPO / "llmsim" / "scenarios" / "quickstart.yaml"]
    for f in files:
        errors = list(validator.iter_errors(yaml.safe_load(f.read_text())))
        assert not errors, f"{f.name}: {errors[0].message}"
    bad = yaml.safe_load((REPO / "scenarios" / "vllm.yaml").read_text())
    bad["policy"]["max_num_seq"] = 3
    assert any("max_num_seq" in e.message for e in validator.iter_errors(bad))
    bad = {**yaml.safe_load((REPO / "scenarios" / "vllm.yaml").read_text()),
           "latency": {"kind": "profiled", "engin": "kernels"}}
    assert list(validator.iter_errors(bad))
