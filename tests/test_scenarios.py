"""Every shipped scenario loads, checks and runs (on a reduced workload), and the golden run
reproduces its summary bit for bit."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from llmsim.metrics.output import _clean
from llmsim.scenario import load_scenario, scenario_from_dict
from llmsim.simulation import simulate
from tests.conftest import REPO, SHARED_TRACES

SCENARIOS = (sorted((REPO / "scenarios").glob("*.yaml"))
             + sorted((REPO / "scenarios" / "papers").glob("*.yaml"))
             + sorted((REPO / "benchmarks").glob("*.yaml")))
GOLDEN = REPO / "tests" / "golden" / "quickstart_400.json"


# benchmark scenarios whose trace the benchmark builds from ../shared at run time
BUILT_AT_RUN_TIME = {"vidur_50k"}


def _needs_shared(path: Path) -> bool:
    return "shared/traces" in path.read_text() or path.stem in BUILT_AT_RUN_TIME


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_loads_and_runs(path, tmp_path):
    if _needs_shared(path) and not SHARED_TRACES.is_dir():
        pytest.skip(f"{path.name} reads real traces from ../shared, which is absent")
    if path.stem in BUILT_AT_RUN_TIME:  # as bench_scale.py builds it, a few hundred rows
        import sys

        sys.path.insert(0, str(REPO / "benchmarks"))
        from bench_scale import vidur_trace

        vidur_trace(tmp_path / "vidur_50k.csv", n=300)
        path = tmp_path / path.name
        path.write_text((REPO / "benchmarks" / path.name).read_text())
    sc = load_scenario(path)
    kind = sc.workload.kind
    if kind == "mix":  # every stream reduced
        data = yaml.safe_load(path.read_text())
        for stream in data["workload"]["streams"]:
            stream["num_requests" if stream["kind"] == "synthetic" else "max_requests"] = 75
        sc = scenario_from_dict(data, str(path), path.parent)
    else:
        small = {"synthetic": ["workload.num_requests=150"],
                 "conversation": ["workload.num_sessions=25", "workload.max_turns=6"]}.get(
            kind, ["workload.max_requests=150"])
        sc = load_scenario(path, small)
    res = simulate(sc)
    n = res.summary["num_requests"]
    assert 0 < n <= 150  # a trace may hold fewer
    final = res.summary["num_finished"] + res.summary["num_rejected"]
    assert final + res.summary["num_unfinished"] == n
    if sc.simulation.until == "all":
        assert final == n
    else:  # ended with the last LS request: only best-effort ones may still be in flight
        ls = res.requests[res.requests["service_class"] == "latency_sensitive"]
        assert ls["status"].isin(["finished", "rejected"]).all()
    assert res.summary["num_finished"] > 0


def test_quickstart_file_is_the_embedded_default():
    assert (REPO / "scenarios" / "quickstart.yaml").read_text() == \
        (REPO / "llmsim" / "scenarios" / "quickstart.yaml").read_text()


def _golden_summary() -> dict:
    res = simulate(load_scenario(None, ["workload.num_requests=400"]))
    return json.loads(json.dumps(_clean(res.summary), sort_keys=True))


def test_golden_seeded_run_is_bit_identical():
    got = _golden_summary()
    if os.environ.get("LLMSIM_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert got == expected, "seeded run changed; if deliberate, rerun with LLMSIM_UPDATE_GOLDEN=1"
