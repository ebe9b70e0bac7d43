"""least_outstanding's load index answers exactly what a scan of every instance would."""
from __future__ import annotations

import random

import pytest

from llmsim.cluster.router import LoadIndex, Router, work_key
from llmsim.scenario import load_scenario
from llmsim.simulation import simulate
from tests.conftest import REPO


def test_load_index_matches_a_scan_under_random_updates():
    rng = random.Random(7)
    loads = [rng.randrange(5) for _ in range(9)]
    index = LoadIndex(loads)
    for _ in range(20_000):  # enough updates to force several rebuilds of the heap
        pos = rng.randrange(len(loads))
        loads[pos] = max(0, loads[pos] + rng.choice((-1, 1)))
        index.set(pos, loads[pos])
        assert index.least() == loads.index(min(loads))
    assert len(index._heap) <= 4 * len(loads) + 64


@pytest.mark.parametrize("path,sets", [
    ("llmsim/scenarios/quickstart.yaml", ["workload.num_requests=600"]),
    ("benchmarks/fleet_64x.yaml", ["workload.num_requests=3000"]),
    ("scenarios/bucketserve-mixed.yaml", ["workload.num_requests=200"]),
    ("scenarios/omniserve-yi34b.yaml", ["simulation.stop_at_s=20",
                                        "cluster.router=least_outstanding"]),
])
def test_indexed_pick_equals_the_scan_in_whole_runs(path, sets, monkeypatch):
    """Every pick over the watched instances is checked against the instances' own counts: an
    instance that forgot to report a load change would fail here."""
    scan_pick = Router.pick
    checked = []

    def pick(self, instances, r=None):
        got = scan_pick(self, instances, r)
        if instances is self._watched:
            loads = [inst.num_outstanding for inst in instances]
            assert got == loads.index(min(loads)), (got, loads)
            checked.append(got)
        return got

    monkeypatch.setattr(Router, "pick", pick)
    simulate(load_scenario(REPO / path, sets))
    assert len(checked) > 50


def test_weighted_load_index_matches_a_scan_of_work_keys():
    rng = random.Random(11)
    speeds = [rng.choice((1.0, 1.5, 2.25)) for _ in range(7)]
    loads = [rng.randrange(5) for _ in range(7)]
    index = LoadIndex(loads, speeds)
    for _ in range(10_000):
        pos = rng.randrange(len(loads))
        loads[pos] = max(0, loads[pos] + rng.choice((-1, 1)))
        index.set(pos, loads[pos])
        keys = [work_key(n, s) for n, s in zip(loads, speeds)]
        assert index.least() == keys.index(min(keys))


def test_least_work_on_one_gpu_kind_routes_as_least_outstanding(tmp_path):
    """Equal speeds: (load + 1) / speed orders instances as their loads do, ties alike."""
    sets = ["workload.num_requests=1500"]
    a = simulate(load_scenario(REPO / "benchmarks/fleet_64x.yaml", sets))
    b = simulate(load_scenario(REPO / "benchmarks/fleet_64x.yaml",
                               [*sets, "cluster.router=least_work"]))
    assert a.requests["instance"].tolist() == b.requests["instance"].tolist()
    assert a.requests["finish_s"].equals(b.requests["finish_s"])
