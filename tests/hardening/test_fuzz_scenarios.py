"""Mutated scenarios: any value at any path of a valid scenario is accepted or refused with one
line (InputError), never a traceback; what is accepted also runs."""
from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsim.errors import InputError
from llmsim.scenario import scenario_from_dict
from llmsim.simulation import load_requests, make_latency, resolve_hardware, simulate
from tests.conftest import REPO

BASE = yaml.safe_load((REPO / "scenarios" / "bucketserve-mixed.yaml").read_text())
BASE["workload"]["num_requests"] = 12
COLOCATED = yaml.safe_load((REPO / "llmsim" / "scenarios" / "quickstart.yaml").read_text())
COLOCATED["workload"]["num_requests"] = 12
COLOCATED["latency"] = {"kind": "roofline"}
MIXED = copy.deepcopy(COLOCATED)  # a colocated mixed fleet: groups of two GPU kinds
for k in ("num_instances", "tp"):
    MIXED["cluster"].pop(k)
MIXED["cluster"]["groups"] = [{"num_instances": 1, "gpu": "a100-80gb"}, {"num_instances": 1,
                                                                         "gpu": "h200", "pp": 2}]
MIXED["cluster"]["router"] = "least_work"

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.sampled_from([0, 1, 3, 2**31, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.5, 1.0, 1e-12, 1e9]),
    st.text(max_size=8), st.sampled_from(["vllm", "static", "closed", "poisson", "h100", "fixed",
                                          "trace", "mix", "disaggregated", "profiled", "nope"]),
    st.lists(st.integers(-3, 300), max_size=3), st.builds(dict),
    st.builds(lambda: {"kind": "nope"}))  # fresh mappings: a shared one could come to hold itself


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):  # into list items too (cluster groups, workload streams)
        for i, v in enumerate(node):
            if isinstance(v, dict):
                yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw):
    data = copy.deepcopy(draw(st.sampled_from([BASE, COLOCATED, MIXED])))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        if draw(st.booleans()):  # a new key beside it
            path = (*path[:-1], draw(st.sampled_from(["kind", "tp", "rate_per_s", "extra"])))
        node = data
        for k in path[:-1]:
            node = node[k] if isinstance(node, (dict, list)) else {}
        if isinstance(node, dict):
            node[path[-1]] = draw(VALUES)
        elif isinstance(node, list) and isinstance(path[-1], int):
            node[path[-1]] = draw(VALUES)
    return data


def check_or_refuse(data) -> None:
    try:
        sc = scenario_from_dict(copy.deepcopy(data), "fuzz", REPO)
        hw = resolve_hardware(sc)
        make_latency(sc, hw)
        load_requests(sc)
    except InputError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        return
    try:
        simulate(sc)
    except InputError as e:  # e.g. a simulation that cannot progress: one line
        assert str(e) and "\n" not in str(e), repr(str(e))


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(mutated())
def test_any_mutation_is_accepted_or_refused_in_one_line(data):
    check_or_refuse(data)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(mutated())
def test_any_mutation_is_accepted_or_refused_in_one_line_long(data):
    check_or_refuse(data)
