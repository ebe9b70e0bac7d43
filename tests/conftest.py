"""Shared builders: tiny requests, KV caches and scenarios for tests that need no GPU."""
from __future__ import annotations

from pathlib import Path

import pytest

from llmsim.cluster.kv_cache import KVCache
from llmsim.policies import EngineLimits
from llmsim.request import Request
from llmsim.scenario import scenario_from_dict

REPO = Path(__file__).resolve().parents[1]
SHARED_TRACES = REPO.parent / "shared" / "traces"


def make_requests(specs, start_id: int = 0) -> list[Request]:
    """specs: iterable of (arrival_s, prompt_tokens, output_tokens)."""
    return [Request(request_id=start_id + i, arrival_s=a, prompt_tokens=p, output_tokens=o)
            for i, (a, p, o) in enumerate(specs)]


def make_kv(num_blocks: int = 64, block_size: int = 4, watermark: float = 0.0,
            num_host_blocks: int = 0) -> KVCache:
    return KVCache(num_blocks, block_size, watermark, num_host_blocks)


LIMITS = EngineLimits(max_model_len=256, block_size=4)


def tiny_scenario(policy: dict, workload: dict | None = None, **sections):
    """A small, fast scenario: llama-2-7b on an A100-40GB, short synthetic requests."""
    data = {
        "name": "tiny", "seed": 1, "model": "llama-2-7b",
        "cluster": {"num_instances": 1, "gpu": "a100-40gb", "max_model_len": 2048},
        "policy": policy,
        "workload": workload or {
            "kind": "synthetic", "num_requests": 120,
            "arrival": {"kind": "poisson", "rate_per_s": 12.0},
            "prompt_tokens": {"kind": "lognormal", "median_tokens": 300, "sigma": 0.8, "max_tokens": 1500},
            "output_tokens": {"kind": "lognormal", "median_tokens": 120, "sigma": 0.8, "max_tokens": 500},
        },
        "slo": {"ttft_s": 1.0, "tpot_s": 0.1},
    }
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return scenario_from_dict(data, "test", REPO)


@pytest.fixture
def shared_traces() -> Path:
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"real traces not available: {SHARED_TRACES} is absent (CI provides ../shared)")
    return SHARED_TRACES
