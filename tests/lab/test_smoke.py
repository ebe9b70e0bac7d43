"""Every microbenchmark script runs in its tiny CPU smoke mode and writes sane CSVs.

Needs the optional torch/transformers extra (``pip install -e '.[calibration]'``, a CPU build);
skipped with a reason when it is absent.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pandas as pd
import pytest

torch = pytest.importorskip("torch", reason="calibration smoke tests need torch (CPU build is fine)")
pytest.importorskip("transformers", reason="calibration smoke tests need transformers")

from tests.conftest import REPO  # noqa: E402


def _sane(path, cols):
    df = pd.read_csv(path)
    assert list(df.columns) == cols and len(df) > 0
    assert (df["time_s"] > 0).all() and df["time_s"].notna().all()
    return df


def test_ops_smoke(tmp_path):
    from calibration import ops

    ops.run("llama-3.1-8b", [1, 2], tmp_path, smoke=True)
    df = _sane(tmp_path / "ops.csv", ["tp", "op", "num_tokens", "time_s"])
    assert {"qkv", "o", "gate_up", "down", "elementwise", "embed", "lm_head"} <= set(df["op"])
    assert set(df["tp"]) == {1, 2}
    _sane(tmp_path / "attn_prefill.csv", ["tp", "q_tokens", "kv_tokens", "time_s"])
    _sane(tmp_path / "attn_decode.csv", ["tp", "batch", "ctx", "time_s"])
    hf = _sane(tmp_path / "attn_hf.csv", ["tp", "kind", "batch", "q_tokens", "ctx", "time_s"])
    assert set(hf["kind"]) == {"decode", "chunk"}


@pytest.mark.parametrize("model", ["qwen2.5-7b", "opt-13b", "chatglm2-6b"])
def test_whole_model_smoke(tmp_path, model):
    from calibration import whole_model

    whole_model.run(model, tmp_path, smoke=True)
    df = _sane(tmp_path / "model_steps.csv",
               ["phase", "batch", "new_tokens", "context_tokens", "num_layers", "time_s", "split"])
    assert set(df["phase"]) == {"prefill", "decode", "mixed"}
    assert set(df["split"]) == {"fit", "heldout"}


def test_transfers_and_cpu_attention_smoke(tmp_path):
    from calibration import cpu_attention, transfers

    transfers.run(tmp_path, smoke=True)
    cpu_attention.run("yi-34b", 2, tmp_path, smoke=True)
    _sane(tmp_path / "transfers.csv", ["kind", "bytes", "time_s"])
    df = _sane(tmp_path / "cpu_attention.csv", ["dtype", "threads", "batch", "ctx", "kv_heads", "head_dim", "time_s"])
    assert set(df["dtype"]) == {"float32", "bfloat16"}


@pytest.mark.slow  # seconds to tens of seconds of CPU torch
def test_collectives_smoke(tmp_path):
    from calibration import collectives

    collectives.run(2, tmp_path, smoke=True, port=29611)
    df = _sane(tmp_path / "allreduce_tp2.csv", ["world_size", "bytes", "time_s"])
    assert (df["world_size"] == 2).all()


@pytest.mark.slow  # seconds to tens of seconds of CPU torch
def test_run_gpu_driver_packs_profiles_with_provenance(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "calibration.run_gpu", "--models", "mistral-7b",
                           "--out", str(tmp_path), "--smoke", "--transfers"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(tmp_path / "cpu__mistral-7b.tar.gz") as tar:
        names = tar.getnames()
    for f in ("ops.csv", "model_steps.csv", "provenance_ops_model.json"):
        assert f"cpu/mistral-7b/{f}" in names


@pytest.mark.slow  # seconds to tens of seconds of CPU torch
def test_replay_smoke(tmp_path):
    """The real-engine harness: a continuous-batching replay and a static generate case, each on
    six requests of a tiny CPU model; per-request times and the step log come back sane."""
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "calibration.replay", "--plan",
                    "calibration/validation/plan.yaml", "--out", str(out), "--smoke",
                    "--pack", str(tmp_path / "runs.tar"),
                    "--only", "llama8b_fifo_mbt256_queue", "llama8b_static_sorted"],
                   cwd=REPO, check=True, capture_output=True, timeout=600)
    cb = pd.read_csv(out / "cpu" / "llama8b_fifo_mbt256_queue" / "requests.csv")
    assert len(cb) == 6 and (cb["generated_tokens"] == cb["output_tokens"]).all()
    assert (cb["first_token_s"] >= cb["arrival_s"]).all()
    assert (cb["last_token_s"] >= cb["first_token_s"]).all()
    steps = pd.read_csv(out / "cpu" / "llama8b_fifo_mbt256_queue" / "steps.csv")
    assert (steps["query_tokens"] <= 256).all() and (steps["end_s"] > steps["schedule_s"]).all()
    # each step split into scheduler, forward and update, in order
    assert (steps["schedule_s"] <= steps["scheduled_s"]).all()
    assert (steps["scheduled_s"] <= steps["update_s"]).all() and (steps["update_s"] <= steps["end_s"]).all()
    assert steps["query_tokens"].sum() == (cb["prompt_tokens"] + cb["output_tokens"] - 1).sum()
    # the step probe: every step ran one SDPA call per layer, its first one inside the total,
    # and the counters are per step (not cumulative)
    ran = steps[steps["num_requests"] > 0]
    assert (ran["sdpa_calls"] > 0).all() and ran["sdpa_calls"].nunique() == 1
    assert (ran["sdpa_first_s"] <= ran["sdpa_host_s"]).all()
    assert (ran["sdpa_host_s"] <= ran["end_s"] - ran["schedule_s"]).all()
    assert (ran[["gc_s", "cpu_s", "device_allocs", "alloc_retries", "cpu_id"]] >= 0).all().all()
    st = pd.read_csv(out / "cpu" / "llama8b_static_sorted" / "batches.csv")
    assert st["padded_prompt_tokens"].is_monotonic_increasing
    with tarfile.open(tmp_path / "runs.tar") as tar:
        assert any(n.endswith("steps.csv") for n in tar.getnames())
    # each case ran in a fresh process: nothing before it built attention plans; one session
    infos = [json.loads((out / "cpu" / case / "case.json").read_text())
             for case in ("llama8b_fifo_mbt256_queue", "llama8b_static_sorted")]
    assert infos[0]["session"] == infos[1]["session"] and len(infos[0]["session"]) > 10
    for case, info in zip(("llama8b_fifo_mbt256_queue", "llama8b_static_sorted"), infos):
        assert info["process"] == {"after": []}
        # the host probe ran after the case, in its process
        probe = info["host_probe"]
        assert set(probe) == {"eager_forward_s", "plan_build_s", "cpu_loop_s"}
        assert probe["eager_forward_s"] > 0 and probe["cpu_loop_s"] > 0
        # and the sampler ran beside it, on the same clock as the case's t0
        samples = pd.read_csv(out / "cpu" / case / "host_samples.csv")
        assert len(samples) >= 1 and (samples["loop_s"] > 0).all()  # a short case: one
        assert samples["steal_frac"].between(0, 1).all()
        assert samples["perf_s"].iloc[-1] > info["t0_perf_s"]


@pytest.mark.slow  # seconds to tens of seconds of CPU torch
def test_replay_same_process_records_what_ran_before(tmp_path):
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "calibration.replay", "--plan",
                    "calibration/validation/plan.yaml", "--out", str(out), "--smoke",
                    "--same-process", "--only", "llama8b_static_fcfs", "llama8b_static_sorted"],
                   cwd=REPO, check=True, capture_output=True, timeout=600)
    info = json.loads((out / "cpu" / "llama8b_static_sorted" / "case.json").read_text())
    assert info["process"] == {"after": ["llama8b_static_fcfs"]}


def test_generate_steps_smoke(tmp_path):
    from calibration import generate_steps
    from calibration.step_logs import steps_from_generate

    d = generate_steps.run("llama-3.1-8b", tmp_path, 4, 1, 16, smoke=True)
    df = pd.read_csv(d / "generate_steps.csv")
    assert list(df.columns) == generate_steps.HEADER and (df["step_s"] > 0).all()
    assert set(df["variant"]) == {"sync", "nosync", "threads1"}
    sync = df[df["variant"] == "sync"]
    assert (sync.groupby("label")["step"].max() == 3).all()  # prefill + 3 decode steps
    rows = steps_from_generate(d / "generate_steps.csv")
    assert len(rows) == len(sync) and rows[0]["new_shape"] == 1


def test_generate_shapes_smoke(tmp_path):
    from calibration import generate_shapes

    d = generate_shapes.run("llama-3.1-8b", tmp_path, smoke=True)
    df = pd.read_csv(d / "generate_shapes.csv")
    assert list(df.columns) == generate_shapes.HEADER and (df["step_s"] > 0).all()
    assert df["seq"].nunique() == len(generate_shapes.sequence([8, 4]))
    assert (df["kv_tokens"] == df["padded_prompt_tokens"] + df["step"]).all()


def test_generate_shape_builds_are_the_slow_decode_steps():
    from calibration.generate_shapes import builds

    df = pd.DataFrame({"seq": [0] * 6 + [1] * 4, "step": [0, 1, 2, 3, 4, 5, 0, 1, 2, 3],
                       "step_s": [2.0, 0.06, 0.5, 0.06, 0.07, 0.06, 1.0, 0.06, 0.06, 0.06]})
    b = builds(df)
    assert list(b.index) == [2]  # a prefill is never counted; only the 0.5 s decode step
    assert b["excess_s"].iloc[0] == pytest.approx(0.5 - 0.06)


@pytest.mark.parametrize("model", ["llama-3.1-8b", "opt-13b"])
def test_graph_steps_smoke(tmp_path, model):
    from calibration import graph_steps

    graph_steps.run(model, tmp_path, smoke=True)
    df = _sane(tmp_path / "model_steps_graph.csv", graph_steps.HEADER)
    assert set(df["phase"]) == {"prefill", "decode", "mixed"}
    assert (df["method"] == "cpu").all()  # no CUDA here: plain timing, labelled as such
    # the same shapes and the same fit/held-out split as the eager whole-model steps
    from calibration import whole_model
    whole_model.run(model, tmp_path, smoke=True)
    eager = pd.read_csv(tmp_path / "model_steps.csv")
    cols = ["phase", "batch", "new_tokens", "context_tokens", "split"]
    assert df[cols].equals(eager[cols])


def test_graph_step_writes_its_slots_and_leaves_the_context_alone():
    """A replayable step: each call writes the q new tokens at positions [c, c+q) of a cache of
    exactly c+q slots (the attention spans the step's real context), and never the context."""
    from calibration import graph_steps
    from calibration.common import make_env, model_spec
    from calibration.whole_model import build_model

    env = make_env(True)
    spec = model_spec("llama-3.1-8b", env)
    cfg, lm = build_model(spec, env, 2)
    b, q, c = 2, 3, 10
    with torch.inference_mode():
        step = graph_steps.make_step(lm, cfg, env, spec.vocab_size, "mixed", b, q, c)
        keys = step.cache.layers[0].keys
        assert keys.shape[0] == b and keys.shape[2] == c + q
        context = keys[:, :, :c].clone()
        keys[:, :, c:].fill_(7.0)
        step()
        assert torch.equal(keys[:, :, :c], context)
        assert not (keys[:, :, c:] == 7.0).any()
        step()  # again: the same slots, no out-of-range write
        assert torch.equal(keys[:, :, :c], context)


@pytest.mark.parametrize("model", ["llama-3.1-8b", "opt-13b"])
@pytest.mark.parametrize("phase,b,q,c", [("prefill", 2, 6, 0), ("decode", 3, 1, 9),
                                         ("mixed", 2, 4, 7)])
def test_graph_steps_attention_is_the_models_own_math(model, phase, b, q, c):
    """The mask-free attention the graph steps register computes what transformers' SDPA path
    computes on the same step (same weights, same cache): only the kernels differ."""
    from calibration import graph_steps
    from calibration.common import make_env, model_spec
    from calibration.whole_model import build_model

    env = make_env(True)
    spec = model_spec(model, env)
    graph_steps.register_attention()
    torch.manual_seed(0)
    cfg, lm = build_model(spec, env, 2)
    with torch.inference_mode():
        step = graph_steps.make_step(lm, cfg, env, spec.vocab_size, phase, b, q, c)
        logits = {}
        for impl in ("sdpa", graph_steps.ATTENTION):
            lm.set_attn_implementation(impl)
            logits[impl] = step().logits.clone()
    assert logits["sdpa"].shape == (b, 1, spec.vocab_size)
    torch.testing.assert_close(logits["sdpa"], logits[graph_steps.ATTENTION], atol=1e-4, rtol=1e-4)


def test_chunk_kernels_agree_with_lower_right_causal_attention():
    """Every chunk kernel computes the same lower-right causal attention (CPU: the merged
    kernels' log-sum-exp path from the scores) as the masked SDPA reference."""
    from calibration import chunk_attention

    align = chunk_attention.alignment(torch.device("cpu"), torch.float32)
    for name in ("masked", "flash_merge", "cudnn_merge"):
        assert align[name] < 1e-5, (name, align)
    with pytest.raises(ValueError):
        chunk_attention.use("nope")


def test_prefix_steps_and_power_smoke(tmp_path):
    from calibration import power, prefix_steps

    prefix_steps.run("llama-3.1-8b", tmp_path, smoke=True)
    steps = pd.read_csv(tmp_path / "prefix_steps.csv")
    assert (steps["new_tokens"] + steps["cached_tokens"] == steps["prompt_tokens"]).all()
    assert {"none", "masked", "flash_merge"} <= set(steps["kernel"]) and (steps["time_s"] > 0).all()
    power.run("llama-3.1-8b", tmp_path, smoke=True)
    df = _sane(tmp_path / "power.csv", power.HEADER)
    assert list(df["phase"])[0] == "idle" and list(df["phase"])[-1] == "idle"
    assert (df[df["phase"] != "idle"]["calls"] > 0).all()


@pytest.mark.slow  # seconds to tens of seconds of CPU torch
def test_replay_with_shared_prefixes_and_its_scenario(tmp_path):
    """Equal prefix ids become equal prompt tokens, which the engine's block sharing finds: a
    request after the first of its template computes only what follows the template's cached
    blocks; the case's scenario turns prefix caching on and finds the same blocks."""
    from calibration.cases import case_scenario, load_case
    from llmsim.scenario import scenario_from_dict
    from llmsim.simulation import simulate

    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "calibration.replay", "--plan",
                    "calibration/validation/plan_prefix.yaml", "--out", str(out), "--smoke",
                    "--only", "default_shared_prefix_share"],
                   cwd=REPO, check=True, capture_output=True, timeout=600)
    d = out / "cpu" / "default_shared_prefix_share"
    req = pd.read_csv(d / "requests.csv")
    assert req["prefix_ids"].notna().all() and (req["prefix_block_tokens"] == 256).all()
    steps = pd.read_csv(d / "steps.csv")
    if not json.loads((d / "case.json").read_text())["resolved"].get("use_prefix_sharing"):
        pytest.skip("this transformers release has no block sharing")
    # the engine computed fewer prompt tokens than the prompts hold: cached blocks were shared
    computed = steps["query_tokens"].sum() - (req["output_tokens"] - 1).sum()
    assert computed < req["prompt_tokens"].sum()
    sc = case_scenario(load_case(d))
    assert sc.kv_cache.prefix_caching
    data = sc.model_dump(mode="json")  # a CPU case has no GPU cost model: KV books are the point
    data.update(cluster={**data["cluster"], "gpu": "h200"}, latency={"kind": "roofline"})
    pc = simulate(scenario_from_dict(data, "case", d)).summary["prefix_cache"]
    assert 0 < pc["hit_tokens"] < pc["prompt_tokens"] == req["prompt_tokens"].sum()


def test_prefix_ids_name_distinct_tokens_across_their_high_bits():
    # torch's generator keeps a seed's low 32 bits: ids namespaced above them must still differ
    import torch

    from calibration.common import prompt_with_prefix

    def tokens(h):
        return prompt_with_prefix(dict(prefix_ids=[h], prefix_block_tokens=16, prompt_tokens=16),
                                  32_000, torch.Generator().manual_seed(0))

    assert tokens(2**33 + 1) == tokens(2**33 + 1)
    assert tokens(2**33 + 1) != tokens(1) and tokens(2**62 + 4) != tokens(4)
