"""A cost model's measured range, and the busy time a run priced outside it."""
from __future__ import annotations

import json

import pytest

from llmsim.latency.base import StepShape
from llmsim.latency.domain import Domain, DomainTally, domain_report, domain_warning, step_axes
from llmsim.scenario import load_scenario
from llmsim.simulation import make_latency, resolve_hardware, simulate
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error, llmsim

DOMAIN = Domain({"query_tokens": 1024, "kv_tokens": 10_000, "rows": 64,
                 "context_per_row": 4096}, "a test grid")
LONG = ["cluster.max_model_len=32768", "policy.max_num_batched_tokens=32768",
        "workload.prompt_tokens={kind: fixed, tokens: 20000}", "workload.num_requests=20"]


def test_step_axes_count_prefill_chunks_decodes_and_piggybacked_rows():
    shape = StepShape(((100, 50), (30, 0)), 4, 4_000, 1_500, dense_only_tokens=2.5)
    assert step_axes(shape) == (136.5, 4_180, 6, 1_500)
    padded = StepShape((), 3, 0, 700, padded=True)
    assert step_axes(padded) == (3, 2_100, 3, 700)


def test_a_step_inside_costs_nothing_outside():
    t = DomainTally(DOMAIN)
    t.add(StepShape(((1024, 0),)), 1, 0.5)
    t.add(StepShape((), 64, 9_000, 200), 1, 0.1)
    assert (t.busy_s, t.outside_s, t.worst) == (0.6, 0.0, {})


def test_a_step_past_an_axis_counts_whole_and_records_how_far():
    t = DomainTally(DOMAIN)
    t.add(StepShape(((2048, 0),)), 1, 1.0)
    t.add(StepShape((), 65, 100, 2), 1, 1.0)
    assert t.outside_s == 2.0
    assert t.worst == {"query_tokens": 2048, "rows": 65}


def test_a_decode_run_counts_only_the_steps_that_grew_past_the_range():
    t = DomainTally(DOMAIN)
    # 10 rows from 9,000 KV tokens: steps k = 0..100 read 9,000 + 10 k; inside while <= 10,000
    t.add(StepShape((), 10, 9_000, 900), 20, 2.0)
    assert t.outside_s == 0.0
    t.add(StepShape((), 10, 9_000, 900), 200, 20.0)  # k = 0..100 inside: 101 of 200 steps
    assert t.outside_s == pytest.approx(20.0 * 99 / 200)
    assert t.worst["kv_tokens"] == 9_000 + 10 * 199
    t2 = DomainTally(DOMAIN)
    t2.add(StepShape((), 1, 4_000, 4_000), 100, 1.0)  # context 4,000 + k: k <= 96 inside
    assert t2.outside_s == pytest.approx(3 / 100)


def test_report_sums_instances_and_keeps_the_furthest_excursion():
    a, b = DomainTally(DOMAIN), DomainTally(DOMAIN)
    a.add(StepShape(((2048, 0),)), 1, 1.0)
    b.add(StepShape(((1500, 0),)), 1, 1.0)
    b.add(StepShape(((100, 0),)), 1, 2.0)
    r = domain_report([("colocated", a), ("colocated", b), ("cpu", None)])
    assert r["outside_share"] == pytest.approx(0.5)
    assert r["past_range"]["query_tokens"] == {"max_seen": 2048, "max_measured": 1024,
                                               "factor": 2.0}
    assert "analytic" in r["note"]
    line = domain_warning(r)
    assert line.startswith("50.0% of simulated busy time") and "2.0x the measured 1,024" in line
    assert domain_warning(domain_report([("colocated", DomainTally(DOMAIN))])) == ""
    assert domain_report([("colocated", None)])["measured"] is None


def test_profiled_models_state_their_grids_and_stand_ins():
    sc = load_scenario(None)
    d = make_latency(sc, resolve_hardware(sc)).domain()
    assert d is not None and d.max_by_axis["query_tokens"] >= 8192 and not d.notes
    omni = load_scenario(REPO / "scenarios" / "omniserve-yi34b.yaml")
    notes = make_latency(omni, resolve_hardware(omni)).domain().notes
    assert any("stand-in for h100" in n for n in notes)
    roof = load_scenario(None, ["latency={kind: roofline}"])
    assert make_latency(roof, resolve_hardware(roof)).domain() is None


def test_a_run_past_the_grid_reports_the_share_and_a_shipped_run_none():
    res = simulate(load_scenario(None, LONG))
    d = res.summary["cost_model_domain"]
    assert 0.2 < d["outside_share"] < 1.0
    assert d["past_range"]["query_tokens"]["max_seen"] == 20000
    inside = simulate(load_scenario(None, ["workload.num_requests=50"]))
    assert inside.summary["cost_model_domain"]["outside_share"] == 0.0


def test_cli_warns_in_check_and_run_and_the_threshold_fails(tmp_path):
    sets = [a for s in LONG for a in ("--set", s)]
    check = llmsim("check", *sets)
    assert check.returncode == 0
    assert "query tokens per step up to 32,768" in check.stderr
    run = llmsim("run", *sets, "--no-plots", "--out", str(tmp_path / "a"))
    assert run.returncode == 0 and "priced outside the cost model's measured range" in run.stderr
    assert "busy time outside the cost model's range" in run.stdout
    strict = llmsim("run", *sets, "--no-plots", "--out", str(tmp_path / "b"),
                    "--max-outside-domain", "0.1")
    assert strict.returncode == 3 and "over --max-outside-domain 0.1" in strict.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())  # written all the same
    assert summary["cost_model_domain"]["outside_share"] > 0.1
    ok = llmsim("run", *sets, "--no-plots", "--out", str(tmp_path / "c"),
                "--max-outside-domain", "0.99")
    assert ok.returncode == 0
    assert_one_line_error(llmsim("run", "--max-outside-domain", "2"), "max-outside-domain")
