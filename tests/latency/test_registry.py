"""Cost models register in one place; the scenario schema follows the registry; a plain
install carries every measured profile."""
from __future__ import annotations

from fnmatch import fnmatch
from typing import Literal

import pytest
import tomllib
from pydantic import Field

from llmsim.errors import InputError
from llmsim.latency import registry
from llmsim.latency.base import LatencyConfigBase, LatencyModel, StepShape
from llmsim.latency.profiled import PACKAGED_PROFILES, ProfiledConfig
from llmsim.simulation import simulate
from tests.conftest import REPO, tiny_scenario


class ConstantConfig(LatencyConfigBase):
    kind: Literal["constant_test"] = "constant_test"
    step_s: float = Field(0.01, gt=0)


class ConstantLatency(LatencyModel):
    kind = "constant_test"
    Config = ConstantConfig

    def __init__(self, model, gpu, tp, config: ConstantConfig) -> None:
        self.step_s = config.step_s

    def step_time_s(self, shape: StepShape) -> float:
        return 0.0 if shape.is_empty else self.step_s


def test_builtins_are_registered_with_their_configs():
    kinds = registry.latency_kinds()
    assert {"roofline", "profiled"} <= set(kinds)
    for kind, cls in kinds.items():
        assert cls.kind == kind and cls.Config.model_fields["kind"].default == kind


def test_a_registered_model_is_usable_from_a_scenario(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, "constant_test", ConstantLatency)
    sc = tiny_scenario({"kind": "vllm"}, latency={"kind": "constant_test", "step_s": 0.02})
    assert isinstance(sc.latency, ConstantConfig)
    steps = simulate(sc).steps
    # every step (or fused run of steps) costs its step count x 20 ms, on the clock's grid
    from llmsim.cluster.clock import TICK_S

    err = (steps["duration_s"] - 0.02 * steps["num_iterations"]).abs()
    assert (err <= TICK_S * steps["num_iterations"]).all()
    with pytest.raises(InputError, match=r"latency.step_s: .*greater than 0"):
        tiny_scenario({"kind": "vllm"}, latency={"kind": "constant_test", "step_s": 0})


def test_an_unknown_kind_lists_the_registered_ones():
    with pytest.raises(InputError, match=r"latency.kind: unknown kind 'nope'; registered: "
                                         r"roofline, profiled"):
        tiny_scenario({"kind": "vllm"}, latency={"kind": "nope"})


def test_the_default_profile_ships_in_the_package():
    """The quickstart's profile is package data, and the wheel's globs match every profile file
    (a file they missed would be absent from a plain install)."""
    assert (PACKAGED_PROFILES / "h100" / "llama-3.1-8b" / "ops_graph.csv").is_file()
    assert ProfiledConfig().profiles_dir is None
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = meta["tool"]["setuptools"]["package-data"]["llmsim"]
    files = [p.relative_to(PACKAGED_PROFILES.parent).as_posix()
             for p in PACKAGED_PROFILES.rglob("*") if p.is_file()]
    assert len(files) > 100
    missed = [f for f in files if not any(fnmatch(f, g) for g in globs)]
    assert not missed, missed


def test_no_profile_names_where_profiles_are_looked_for(tmp_path):
    with pytest.raises(InputError, match="LLMSIM_PROFILES"):
        simulate(tiny_scenario({"kind": "vllm"}, latency={"kind": "profiled",
                                                          "profiles_dir": str(tmp_path)}))
