"""The cheapest fleet over GPU types: candidates cover the rate at the least price (mixed
colocated fleets where rounding makes a mix pay), and the answer is simulated whole."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from llmsim.analysis.fleet import Option, candidates, cheapest_fleet
from llmsim.errors import InputError
from llmsim.scenario import scenario_from_dict
from tests.test_cli import llmsim


def test_colocated_candidates_are_the_cheapest_covers_first():
    a, b = Option("x", 1, 1, 3.0, 10.0), Option("y", 1, 1, 1.5, 4.0)
    rate = 23.0
    got = candidates({"colocated": [a, b]}, rate)
    # brute force: every (n_a, n_b) covering the rate; the cheapest price must come first
    brute = min(na * 3.0 + nb * 1.5 for na, nb in itertools.product(range(4), range(7))
                if na * 10 + nb * 4 >= rate)
    assert got[0].usd_per_hour == pytest.approx(brute)
    assert got[0].describe() == "2 x x TP1 + 1 x y TP1"  # the mix: 3 of x or 6 of y cost 9.0, this 7.5
    prices = [f.usd_per_hour for f in got]
    assert prices == sorted(prices)
    for f in got:  # each covers the rate, none has an instance to spare
        total = sum(o.goodput_per_s * n for _, o, n in f.groups)
        assert total >= rate
        assert all(total - o.goodput_per_s < rate for _, o, _ in f.groups)


def test_disaggregated_candidates_run_one_option_per_side():
    p1, p2 = Option("h100", 1, 1, 3.0, 20.0), Option("h200", 1, 1, 4.0, 21.0)
    d1, d2 = Option("h100", 1, 1, 3.0, 10.0), Option("h200", 1, 1, 4.0, 16.0)
    got = candidates({"prefill": [p1, p2], "decode": [d1, d2]}, 40.0)
    assert len(got) == 4
    best = got[0]
    assert best.describe() == "P 2 x h100 TP1 + D 3 x h200 TP1"  # $18, as with D 4 x h100: fewer GPUs win the tie
    assert best.usd_per_hour == pytest.approx(2 * 3.0 + 3 * 4.0)
    for f in got:
        for _, o, n in f.groups:
            assert n == math.ceil(40.0 / o.goodput_per_s)


def small(**cluster) -> dict:
    return {"name": "fleet", "model": "llama-3.1-8b",
            "cluster": {"gpu": "h100", "router": "least_work", **cluster},
            "policy": {"kind": "vllm"}, "latency": {"kind": "roofline"},
            "workload": {"kind": "synthetic", "num_requests": 100,
                         "arrival": {"kind": "poisson", "rate_per_s": 5},
                         "prompt_tokens": {"kind": "lognormal", "median_tokens": 300,
                                           "sigma": 0.6, "max_tokens": 2048},
                         "output_tokens": {"kind": "lognormal", "median_tokens": 100,
                                           "sigma": 0.5, "max_tokens": 512}},
            "slo": {"ttft_s": 0.3, "tpot_s": 0.02}}


@pytest.mark.slow  # whole searches (dozens of runs): the candidate ranking is tested above
def test_the_cheapest_fleet_is_verified_whole_and_follows_prices():
    sc = scenario_from_dict(small(), "t", Path("."))
    best, tried, options = cheapest_fleet(sc, 60.0, ["h100", "a100-80gb"], window_s=20.0,
                                          tol=0.1)
    assert best is not None and best.attainment is not None and best.attainment >= 0.9
    assert tried[-1] == best and all(f.attainment < 0.9 for f in tried[:-1])
    covers = sum(o.goodput_per_s * n for _, o, n in best.groups)
    assert covers >= 60.0
    # the same search with the A100 nearly free buys A100s only
    cheap, _, _ = cheapest_fleet(sc, 60.0, ["h100", "a100-80gb"], prices={"a100-80gb": 0.01},
                                 window_s=20.0, tol=0.1)
    assert cheap is not None and {o.gpu for _, o, _ in cheap.groups} == {"a100-80gb"}


def test_bad_fleet_inputs_are_one_line():
    sc = scenario_from_dict(small(), "t", Path("."))
    with pytest.raises(InputError, match="--rate must be positive"):
        cheapest_fleet(sc, 0.0, ["h100"])
    with pytest.raises(InputError, match="unknown GPU"):
        cheapest_fleet(sc, 10.0, ["b999"], window_s=10.0)
    r = llmsim("fleet", "scenarios/mixed-fleet-colocated.yaml", "--rate", "10", "--gpu", "h100",
               "--usd-per-hour", "h100=cheap")
    assert r.returncode == 2 and "--usd-per-hour 'h100=cheap'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # whole searches (dozens of runs): the candidate ranking is tested above
def test_the_cli_writes_the_fleet_it_found_as_a_scenario(tmp_path):
    import yaml

    from llmsim.scenario import load_scenario
    from llmsim.simulation import simulate

    src = tmp_path / "in.yaml"
    src.write_text(yaml.safe_dump(small()))
    out = tmp_path / "fleet.yaml"
    r = llmsim("fleet", src, "--rate", "30", "--gpu", "h100", "--gpu", "a100-80gb",
               "--window-s", "10", "--write", out)
    assert r.returncode == 0, r.stderr
    assert "cheapest:" in r.stdout and out.exists()
    sc = load_scenario(out)
    assert sc.cluster.groups is not None and sc.workload.arrival.rate_per_s == 30
    assert simulate(sc).summary["slo_attainment"]["both"] >= 0.9  # what the search verified


@pytest.mark.slow  # whole searches (dozens of runs): the candidate ranking is tested above
def test_options_measured_in_processes_equal_those_measured_here():
    from llmsim.analysis.fleet import measure_options

    sc = scenario_from_dict(small(), "t", Path("."))
    args = (sc, ["h100", "a100-80gb"], [1], [1], {}, 0.9, (0,), 0.1, 5.0)
    assert measure_options(*args, workers=2) == measure_options(*args, workers=1)
