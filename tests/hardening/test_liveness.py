"""Valid scenarios finish, and a simulation that cannot progress stops with one line."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.batch import BatchPlan
from llmsim.errors import SimulationStuck
from llmsim.policies import BY_NAME
from llmsim.policies.vllm import VLLMPolicy
from llmsim.simulation import simulate
from tests.conftest import tiny_scenario


def _fixed(n: int, prompt: int, output: int, rate: float = 0.5, arrival: str = "constant") -> dict:
    return {"kind": "synthetic", "num_requests": n,
            "arrival": {"kind": arrival, "rate_per_s": rate} if arrival != "closed"
            else {"kind": "closed"},
            "prompt_tokens": {"kind": "fixed", "tokens": prompt},
            "output_tokens": {"kind": "fixed", "tokens": output}}


@pytest.mark.parametrize("wait_s", [0.05, 0.1, 0.3, 1 / 3, 0.7])
def test_static_max_wait_never_livelocks(wait_s):
    """``now - arrival`` can round below ``max_wait_s`` while ``arrival + max_wait_s == now``:
    the batch must still start at that instant (it waited 0 s forever before)."""
    sc = tiny_scenario({"kind": "static", "max_wait_s": wait_s}, _fixed(21, 10, 10))
    req = simulate(sc).requests
    assert (req["status"] == "finished").all()
    assert (req["first_scheduled_s"] - req["arrival_s"] <= wait_s + 1e-9).all()


def test_uellm_honours_max_wait():
    base = _fixed(12, 50, 20, rate=4.0)
    runs = {w: simulate(tiny_scenario({"kind": "uellm", "max_wait_s": w}, base)).requests
            for w in (0.0, 5.0)}
    assert (runs[5.0]["first_scheduled_s"] >= runs[0.0]["first_scheduled_s"]).all()
    assert runs[5.0]["ttft_s"].mean() > runs[0.0]["ttft_s"].mean()
    for df in runs.values():
        assert (df["status"] == "finished").all()


def _disagg(policy: dict, workload: dict, **sections):
    return tiny_scenario(policy, workload, cluster={
        "topology": "disaggregated", "prefill": {}, "decode": {}, "num_instances": 1,
        "max_model_len": 8192, "allow_long_max_model_len": True,
        **sections.pop("cluster", {})},
        decode_policy={"kind": "distserve_decode"}, **sections)


def test_bucketserve_serves_a_request_above_its_safe_share_when_idle():
    """It fits the instance's KV but not 0.9 of the free KV: an idle instance still serves it."""
    sc = _disagg({"kind": "bucketserve"}, _fixed(1, 6800, 1, arrival="closed"),
                 cluster={"gpu_memory_utilization": 0.45})
    req = simulate(sc).requests
    assert req["status"].tolist() == ["finished"]


@pytest.mark.parametrize("prompt", [58, 60, 63])
def test_bucketserve_with_a_tiny_pool_finishes_or_rejects_with_a_reason(prompt):
    sc = _disagg({"kind": "bucketserve"}, _fixed(3, prompt, 1, arrival="closed"),
                 kv_cache={"num_blocks": 4, "block_size": 16})
    req = simulate(sc).requests
    assert set(req["status"]) <= {"finished", "rejected"}
    assert (req.loc[req["status"] == "rejected", "reject_reason"].str.len() > 0).all()


class _NeverSchedules(VLLMPolicy):
    """A broken policy: holds every request and never asks to be woken."""

    def schedule(self, kv, now_s):
        return BatchPlan()


class _SpinsNow(VLLMPolicy):
    """A broken policy: asks to be woken at once, forever, and never schedules."""

    def schedule(self, kv, now_s):
        return BatchPlan(wake_at_s=now_s)


@pytest.mark.parametrize("broken,fragment", [
    (_NeverSchedules, "never finish and nothing is left to happen"),
    (_SpinsNow, "keeps asking to be woken now"),
])
def test_a_stuck_simulation_names_the_policy_and_instance(monkeypatch, broken, fragment):
    broken.name = "vllm"
    monkeypatch.setitem(BY_NAME, "vllm", broken)
    with pytest.raises(SimulationStuck) as e:
        simulate(tiny_scenario({"kind": "vllm"}, _fixed(3, 10, 5)))
    msg = str(e.value)
    assert fragment in msg and "instance 0 (colocated, policy vllm)" in msg
    assert "waiting" in msg and "\n" not in msg


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 400)), min_size=1, max_size=12),
       st.integers(1, 600), st.sampled_from([8, 40, 400]), st.booleans())
def test_generation_caps_finish_every_request_within_the_cap(tmp_path_factory, rows, max_length,
                                                              num_blocks, uellm):
    """Closed batches under generate's max_length (static) or UELLM's prediction cap, with a KV
    pool from tight to ample: every request finishes or is rejected with a reason, none makes
    more tokens than its own answer or than max_length leaves after its own prompt."""
    path = tmp_path_factory.mktemp("cap") / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n"
                    + "".join(f"0,{p},{o}\n" for p, o in rows))
    policy = ({"kind": "uellm", "max_num_seqs": 4, "cap_from_prediction": True,
               "max_length": max_length} if uellm
              else {"kind": "static", "max_num_seqs": 4, "max_length": max_length})
    sc = tiny_scenario(policy, {"kind": "trace", "path": str(path)},
                       kv_cache={"num_blocks": num_blocks, "block_size": 16},
                       predictor={"kind": "oracle" if uellm else "none"})
    req = simulate(sc).requests
    done = req["status"] == "finished"
    assert (done | (req["status"] == "rejected")).all()
    assert (req.loc[~done, "reject_reason"] != "").all()
    fin = req[done]
    assert (fin["num_generated_tokens"] <= fin["output_tokens"]).all()
    cap = (max_length - fin["prompt_tokens"]).clip(lower=1)
    assert (fin["num_generated_tokens"] <= cap).all()
