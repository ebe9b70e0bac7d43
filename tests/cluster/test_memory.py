"""Memory model: KV capacity is derived from the hardware, and misfits are caught."""
from __future__ import annotations

import pytest

from llmsim.cluster.memory import ModelDoesNotFit, plan_memory
from llmsim.models import builtin_models, resolve_gpu, resolve_model
from llmsim.models.specs import GIB

# KV bytes per token at fp16 from policies.md section 1.2 (public model configs).
EXPECTED_KV = {"opt-13b": 819200, "llama-2-13b": 819200, "llama-2-7b": 524288, "opt-66b": 2359296,
               "opt-175b": 4718592, "yi-34b": 245760, "llama-2-70b": 327680, "mistral-7b": 131072,
               "chatglm2-6b": 28672}

# Parameter counts (billions) the names promise.
EXPECTED_PARAMS_B = {"llama-3.1-8b": 8.0, "llama-3.1-70b": 70.6, "llama-2-7b": 6.7,
                     "llama-2-13b": 13.0, "qwen2.5-7b": 7.6, "mistral-7b": 7.2, "yi-34b": 34.4,
                     "opt-13b": 12.9, "opt-66b": 65.7, "chatglm2-6b": 6.2}


@pytest.mark.parametrize("name,kv", EXPECTED_KV.items())
def test_kv_bytes_per_token(name, kv):
    assert resolve_model(name).kv_bytes_per_token == kv


@pytest.mark.parametrize("name,b", EXPECTED_PARAMS_B.items())
def test_parameter_counts(name, b):
    assert resolve_model(name).num_params / 1e9 == pytest.approx(b, abs=0.15)


def test_catalog_has_the_required_models():
    assert set(EXPECTED_PARAMS_B) <= set(builtin_models())


def test_capacity_formula():
    m, g = resolve_model("llama-2-13b"), resolve_gpu("a100-80gb")
    plan = plan_memory(m, g, tp=2, gpu_memory_utilization=0.9, block_size=16,
                       max_step_tokens=2048, swap_space_gib=4, framework_overhead_gib=1.0)
    free = g.memory_bytes * 0.9 - m.weight_bytes / 2 - plan.activation_reserve_bytes_per_gpu
    assert plan.num_blocks == int(free // (m.kv_bytes_per_token / 2 * 16))
    assert plan.num_host_blocks == int(4 * GIB // (m.kv_bytes_per_token / 2 * 16))
    # TP 2 more than doubles capacity: the weights are split too
    one = plan_memory(m, g, 1, 0.9, 16, 2048, 4)
    assert plan.kv_capacity_tokens > 2 * one.kv_capacity_tokens


def test_model_that_does_not_fit_is_refused_with_a_clear_reason():
    with pytest.raises(ModelDoesNotFit, match="does not fit 1 x h100"):
        plan_memory(resolve_model("llama-3.1-70b"), resolve_gpu("h100"), 1, 0.9, 16, 2048, 4)
