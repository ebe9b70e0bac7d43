"""The bad-input corpus: every case is one line on stderr naming the field, row or option, exit
code 2, no traceback, and nothing written. Runs the CLI in process (fast); ``tests/test_cli.py``
covers the same contract through a real subprocess."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmsim.cli import app
from tests.conftest import REPO

BASE = """\
name: bad
seed: 0
model: llama-2-7b
cluster: {num_instances: 1, gpu: a100-40gb, max_model_len: 2048}
policy: {kind: vllm}
workload:
  kind: synthetic
  num_requests: 20
  arrival: {kind: poisson, rate_per_s: 5}
  prompt_tokens: {kind: fixed, tokens: 100}
  output_tokens: {kind: fixed, tokens: 20}
slo: {ttft_s: 1.0, tpot_s: 0.1}
"""
INLINE_MODEL = ("{name: m, num_layers: 4, hidden_size: 512, num_heads: 8, num_kv_heads: 8, "
                "head_dim: 64, intermediate_size: 1024, vocab_size: 1000, max_model_len: 2048")
INLINE_GPU = ("{name: g, memory_gib: 16, memory_bandwidth_gbps: 500, peak_bf16_tflops: 100, "
              "interconnect_gbps: 50, pcie_gbps: 16")
DISAGG = ["cluster.topology=disaggregated", "cluster.prefill={}", "cluster.decode={}"]

# (id, --set overrides, fragment the one line must contain)
SETS: list[tuple[str, list[str], str]] = [
    # top level
    ("seed-negative", ["seed=-1"], "seed"), ("seed-bool", ["seed=true"], "seed"),
    ("seed-text", ["seed=abc"], "seed"), ("seed-float", ["seed=1.5"], "seed"),
    ("unknown-top-key", ["colour=blue"], "colour"), ("name-list", ["name=[1, 2]"], "name"),
    # model
    ("model-unknown", ["model=gpt-9"], "unknown model"),
    ("model-zero-heads", [f"model={INLINE_MODEL.replace('num_heads: 8', 'num_heads: 0')}}}"],
     "model.num_heads"),
    ("model-missing-field", [f"model={INLINE_MODEL.replace(', vocab_size: 1000', '')}}}"],
     "model.vocab_size"),
    ("model-extra-key", [f"model={INLINE_MODEL}, colour: red}}"], "model.colour"),
    ("model-negative-layers", [f"model={INLINE_MODEL.replace('num_layers: 4', 'num_layers: -4')}}}"],
     "model.num_layers"),
    ("model-bool-dtype", [f"model={INLINE_MODEL}, dtype_bytes: true}}"], "model.dtype_bytes"),
    ("model-list", ["model=[1]"], "model"),
    # cluster
    ("instances-zero", ["cluster.num_instances=0"], "cluster.num_instances"),
    ("instances-negative", ["cluster.num_instances=-2"], "cluster.num_instances"),
    ("instances-bool", ["cluster.num_instances=yes"], "cluster.num_instances"),
    ("instances-text", ["cluster.num_instances=two"], "cluster.num_instances"),
    ("instances-huge", ["cluster.num_instances=44432209016423300"], "cluster.num_instances"),
    ("instances-float-huge", ["cluster.num_instances=4.4e+16"], "cluster.num_instances"),
    ("lanes-too-many", ["cluster.num_instances=9000", "cluster.pp=2"], "PP lanes"),
    ("tp-zero", ["cluster.tp=0"], "cluster.tp"),
    ("tp-not-dividing-heads", ["cluster.tp=3"], "cluster.tp"),
    ("tp-above-heads", ["cluster.tp=64"], "cluster.tp"),
    ("tp-kv-heads", [f"model={INLINE_MODEL.replace('num_kv_heads: 8', 'num_kv_heads: 6')}}}",
                     "cluster.tp=4"], "KV heads"),
    ("pp-zero", ["cluster.pp=0"], "cluster.pp"),
    ("pp-above-layers", ["cluster.pp=64"], "cluster.pp"),
    ("mem-util-zero", ["cluster.gpu_memory_utilization=0"], "gpu_memory_utilization"),
    ("mem-util-above-1", ["cluster.gpu_memory_utilization=1.5"], "gpu_memory_utilization"),
    ("mem-util-nan", ["cluster.gpu_memory_utilization=.nan"], "gpu_memory_utilization"),
    ("mem-util-bool", ["cluster.gpu_memory_utilization=true"], "gpu_memory_utilization"),
    ("router-unknown", ["cluster.router=random"], "cluster.router"),
    ("topology-unknown", ["cluster.topology=ring"], "cluster.topology"),
    ("max-len-zero", ["cluster.max_model_len=0"], "cluster.max_model_len"),
    ("max-len-above-model", ["cluster.max_model_len=100000"], "allow_long_max_model_len"),
    ("overhead-negative", ["cluster.framework_overhead_gib=-1"], "framework_overhead_gib"),
    ("gpu-unknown", ["cluster.gpu=tpu-v9"], "unknown GPU"),
    ("gpu-zero-memory", [f"cluster.gpu={INLINE_GPU.replace('memory_gib: 16', 'memory_gib: 0')}}}"],
     "cluster.gpu.memory_gib"),
    ("gpu-inf-bandwidth", [f"cluster.gpu={INLINE_GPU.replace('500', '.inf')}}}"],
     "cluster.gpu.memory_bandwidth_gbps"),
    ("gpu-missing-field", [f"cluster.gpu={INLINE_GPU.replace(', pcie_gbps: 16', '')}}}"],
     "cluster.gpu.pcie_gbps"),
    ("model-too-big", ["model=llama-2-70b"], "does not fit"),
    ("cluster-unknown-key", ["cluster.gpus=4"], "cluster.gpus"),
    ("prefill-without-topology", ["cluster.prefill={}"], "topology: disaggregated"),
    ("disagg-without-decode-policy", DISAGG, "decode_policy"),
    ("decode-policy-colocated", ["decode_policy={kind: distserve_decode}"], "disaggregated"),
    ("cpu-engines-disagg", DISAGG + ["policy={kind: distserve_prefill}",
                                     "decode_policy={kind: distserve_decode}",
                                     "cluster.cpu_engines={num_instances: 1}"], "cpu_engines"),
    ("side-tp-zero", DISAGG + ["cluster.prefill={tp: 0}", "policy={kind: distserve_prefill}",
                               "decode_policy={kind: distserve_decode}"], "cluster.prefill.tp"),
    ("side-tp-not-dividing", DISAGG + ["cluster.decode={tp: 3}", "policy={kind: distserve_prefill}",
                                       "decode_policy={kind: distserve_decode}"],
     "cluster.decode.tp"),
    ("kv-transfer-negative", DISAGG + ["policy={kind: distserve_prefill}",
                                       "decode_policy={kind: distserve_decode}",
                                       "cluster.kv_transfer={bandwidth_gbps: -1}"],
     "kv_transfer.bandwidth_gbps"),
    # kv cache
    ("block-zero", ["kv_cache.block_size=0"], "kv_cache.block_size"),
    ("block-huge", ["kv_cache.block_size=1000000000"], "kv_cache.block_size"),
    ("block-bool", ["kv_cache.block_size=true"], "kv_cache.block_size"),
    ("watermark-one", ["kv_cache.watermark=1"], "kv_cache.watermark"),
    ("watermark-negative", ["kv_cache.watermark=-0.1"], "kv_cache.watermark"),
    ("swap-negative", ["kv_cache.swap_space_gib=-4"], "kv_cache.swap_space_gib"),
    ("num-blocks-zero", ["kv_cache.num_blocks=0"], "kv_cache.num_blocks"),
    ("kv-unknown-key", ["kv_cache.page_size=16"], "kv_cache.page_size"),
    # policies
    ("policy-unknown", ["policy={kind: fifo}"], "policy"),
    ("policy-no-kind", ["policy={max_num_seqs: 4}"], "policy"),
    ("policy-unknown-knob", ["policy.colour=1"], "policy.colour: unknown field"),
    ("policy-seqs-zero", ["policy.max_num_seqs=0"], "max_num_seqs"),
    ("policy-seqs-bool", ["policy.max_num_seqs=true"], "max_num_seqs"),
    ("policy-tokens-negative", ["policy.max_num_batched_tokens=-1"], "max_num_batched_tokens"),
    ("policy-preemption-unknown", ["policy.preemption_mode=drop"], "preemption_mode"),
    ("policy-old-and-new", ["policy={kind: sarathi, chunk_size: 8, max_num_batched_tokens: 8}"],
     "give only max_num_batched_tokens"),
    ("static-wait-negative", ["policy={kind: static, max_wait_s: -1}"], "max_wait_s"),
    ("static-wait-inf", ["policy={kind: static, max_wait_s: .inf}"], "max_wait_s"),
    ("orca-reserve-zero", ["policy={kind: orca, reserve_tokens: 0}"], "reserve_tokens"),
    ("uellm-sort-unknown", ["policy={kind: uellm, sort: random}"], "sort"),
    ("uellm-weight-negative", ["policy={kind: uellm, w_slo: -1}"], "w_slo"),
    ("hf-cb-scheduler-unknown", ["policy={kind: hf_cb, scheduler: lifo}"], "scheduler"),
    ("hf-cb-margin-above-1", ["policy={kind: hf_cb, safety_margin: 2}"], "safety_margin"),
    ("omniserve-offload-no-host", ["policy={kind: omniserve}"], "cluster.host"),
    ("omniserve-margin-zero", ["policy={kind: omniserve, offload: none, be_margin: 0}"],
     "be_margin"),
    ("prefill-policy-colocated", ["policy={kind: distserve_prefill}"], "policy.kind"),
    ("bucketserve-colocated", ["policy={kind: bucketserve}"], "policy.kind"),
    ("decode-policy-as-policy", ["policy={kind: distserve_decode}"], "policy.kind"),
    ("vllm-as-prefill", DISAGG + ["decode_policy={kind: distserve_decode}"], "policy.kind"),
    ("prefill-as-decode", DISAGG + ["policy={kind: distserve_prefill}",
                                    "decode_policy={kind: distserve_prefill}"],
     "decode_policy.kind"),
    ("bucketserve-safety-zero", DISAGG + ["policy={kind: bucketserve, safety: 0}",
                                          "decode_policy={kind: distserve_decode}"], "safety"),
    # latency
    ("latency-unknown", ["latency={kind: magic}"], "latency.kind"),
    ("latency-list", ["latency=[1]"], "latency"),
    ("roofline-eff-zero", ["latency={kind: roofline, compute_efficiency: 0}"],
     "latency.compute_efficiency"),
    ("roofline-eff-above-1", ["latency={kind: roofline, bandwidth_efficiency: 2}"],
     "latency.bandwidth_efficiency"),
    ("roofline-unknown-knob", ["latency={kind: roofline, speed: 2}"], "latency.speed"),
    ("roofline-overhead-negative", ["latency={kind: roofline, step_overhead_s: -1}"],
     "latency.step_overhead_s"),
    ("profiled-no-profile", ["latency={kind: profiled}"], "no profile"),
    ("profiled-extrapolation", ["latency={kind: profiled, max_extrapolation: 0.5}"],
     "latency.max_extrapolation"),
    ("profiled-engine-unknown", ["latency={kind: profiled, engine: tensorrt}"], "latency.engine"),
    # workload
    ("workload-missing", ["workload=null"], "workload"),
    ("workload-unknown-kind", ["workload.kind=poisson"], "workload"),
    ("requests-zero", ["workload.num_requests=0"], "num_requests"),
    ("requests-negative", ["workload.num_requests=-5"], "num_requests"),
    ("requests-bool", ["workload.num_requests=true"], "num_requests"),
    ("requests-sci-text", ["workload.num_requests=1e12"], "num_requests"),
    ("requests-too-many", ["workload.num_requests=1000000000000"], "GiB"),
    ("arrival-unknown", ["workload.arrival={kind: burst}"], "arrival"),
    ("rate-zero", ["workload.arrival.rate_per_s=0"], "rate_per_s"),
    ("rate-negative", ["workload.arrival.rate_per_s=-1"], "rate_per_s"),
    ("rate-inf", ["workload.arrival.rate_per_s=.inf"], "rate_per_s"),
    ("rate-nan", ["workload.arrival.rate_per_s=.nan"], "rate_per_s"),
    ("rate-text", ["workload.arrival.rate_per_s=fast"], "rate_per_s"),
    ("gamma-cv-zero", ["workload.arrival={kind: gamma, rate_per_s: 1, cv: 0}"], "cv"),
    ("prompt-dist-unknown", ["workload.prompt_tokens={kind: zipf}"], "prompt_tokens"),
    ("fixed-zero", ["workload.prompt_tokens.tokens=0"], "prompt_tokens"),
    ("fixed-huge", ["workload.output_tokens.tokens=1e30"], "output_tokens"),
    ("uniform-reversed", ["workload.prompt_tokens={kind: uniform, min_tokens: 9, max_tokens: 3}"],
     "min_tokens"),
    ("lognormal-reversed", ["workload.prompt_tokens={kind: lognormal, median_tokens: 100, "
                            "sigma: 1, min_tokens: 500, max_tokens: 100}"], "min_tokens"),
    ("lognormal-sigma-negative", ["workload.prompt_tokens={kind: lognormal, median_tokens: 100, "
                                  "sigma: -1}"], "sigma"),
    ("lognormal-median-zero", ["workload.prompt_tokens={kind: lognormal, median_tokens: 0, "
                               "sigma: 1}"], "median_tokens"),
    ("mixture-weight-inf", ["workload.prompt_tokens={kind: mixture, components: [{weight: .inf, "
                            "dist: {kind: fixed, tokens: 10}}]}"], "weight"),
    ("mixture-weight-nan", ["workload.output_tokens={kind: mixture, components: [{weight: .nan, "
                            "dist: {kind: fixed, tokens: 10}}]}"], "weight"),
    ("mixture-empty", ["workload.output_tokens={kind: mixture, components: []}"], "components"),
    ("empirical-missing", ["workload.prompt_tokens={kind: empirical, path: nope.csv}"],
     "not found"),
    ("service-class-unknown", ["workload.service_class=urgent"], "service_class"),
    ("trace-missing", ["workload={kind: trace, path: nope.csv}"], "not found"),
    ("trace-is-folder", ["workload={kind: trace, path: .}"], "is a directory"),
    ("trace-format-unknown", ["workload={kind: trace, path: t.csv, format: parquet}"], "format"),
    ("trace-sharegpt-as-trace", ["workload={kind: trace, path: t.csv, format: sharegpt_lengths}"],
     "sharegpt_lengths"),
    ("trace-max-requests-zero", ["workload={kind: trace, path: t.csv, max_requests: 0}"],
     "max_requests"),
    ("trace-time-scale-zero", ["workload={kind: trace, path: t.csv, time_scale: 0}"],
     "time_scale"),
    ("mix-empty", ["workload={kind: mix, streams: []}"], "streams"),
    # slo, predictor, simulation
    ("ttft-zero", ["slo.ttft_s=0"], "slo.ttft_s"), ("tpot-negative", ["slo.tpot_s=-1"], "slo.tpot_s"),
    ("deadline-text", ["slo.deadline_s=soon"], "slo.deadline_s"),
    ("slo-scale-zero", ["slo.scale=0"], "slo.scale"), ("slo-bool", ["slo.ttft_s=true"], "slo.ttft_s"),
    ("slo-unknown-key", ["slo.e2e_s=1"], "slo.e2e_s"),
    ("predictor-unknown", ["predictor={kind: psychic}"], "predictor.kind"),
    ("predictor-accuracy", ["predictor={kind: bucketed, accuracy: 1.5}"], "predictor.accuracy"),
    ("predictor-edges-decreasing", ["predictor={kind: bucketed, edges_tokens: [512, 256]}"],
     "predictor.edges_tokens"),
    ("predictor-edges-zero", ["predictor={kind: bucketed, edges_tokens: [0, 256]}"],
     "predictor.edges_tokens"),
    ("predictor-edges-empty", ["predictor={kind: bucketed, edges_tokens: []}"],
     "predictor.edges_tokens"),
    ("max-run-steps-zero", ["simulation.max_run_steps=0"], "simulation.max_run_steps"),
    ("until-unknown", ["simulation.until=never"], "simulation.until"),
    ("stop-at-zero", ["simulation.stop_at_s=0"], "simulation.stop_at_s"),
    ("fuse-text", ["simulation.fuse_decode_steps=maybe"], "simulation.fuse_decode_steps"),
    # the --set syntax itself
    ("set-without-equals", ["seed"], "--set"),
    ("set-through-a-scalar", ["seed.x=1"], "--set"),
]

# (id, trace file name, its content, format, fragment)
TRACES: list[tuple[str, str, str, str, str]] = [
    ("llmsim-missing-column", "t.csv", "arrival_s,prompt_tokens\n0,10\n", "llmsim", "output_tokens"),
    ("llmsim-empty", "t.csv", "arrival_s,prompt_tokens,output_tokens\n", "llmsim", "no requests"),
    ("llmsim-zero-bytes", "t.csv", "", "llmsim", "not a readable CSV"),
    ("llmsim-prompt-text", "t.csv", "arrival_s,prompt_tokens,output_tokens\n0,ten,5\n", "llmsim",
     "row 2: prompt_tokens"),
    ("llmsim-prompt-negative", "t.csv", "arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,-4,5\n",
     "llmsim", "row 3: prompt_tokens"),
    ("llmsim-output-zero", "t.csv", "arrival_s,prompt_tokens,output_tokens\n0,10,0\n", "llmsim",
     "row 2: output_tokens"),
    ("llmsim-fractional", "t.csv", "arrival_s,prompt_tokens,output_tokens\n0,10.5,5\n", "llmsim",
     "row 2: prompt_tokens"),
    ("llmsim-overflow", "t.csv", "arrival_s,prompt_tokens,output_tokens\n0,1e30,5\n", "llmsim",
     "row 2: prompt_tokens"),
    ("llmsim-arrival-nan", "t.csv", "arrival_s,prompt_tokens,output_tokens\nnan,10,5\n", "llmsim",
     "row 2: arrival_s"),
    ("llmsim-arrival-inf", "t.csv", "arrival_s,prompt_tokens,output_tokens\n0,10,5\ninf,10,5\n",
     "llmsim", "row 3: arrival_s"),
    ("llmsim-arrival-text", "t.csv", "arrival_s,prompt_tokens,output_tokens\nsoon,10,5\n",
     "llmsim", "row 2: arrival_s"),
    ("llmsim-backwards", "t.csv", "arrival_s,prompt_tokens,output_tokens\n2,10,5\n1,10,5\n",
     "llmsim", "goes backwards"),
    ("llmsim-service-class", "t.csv", "arrival_s,prompt_tokens,output_tokens,service_class\n"
     "0,10,5,vip\n", "llmsim", "service_class"),
    ("llmsim-slo-text", "t.csv", "arrival_s,prompt_tokens,output_tokens,ttft_slo_s\n0,10,5,fast\n",
     "llmsim", "row 2: ttft_slo_s"),
    ("llmsim-slo-negative", "t.csv", "arrival_s,prompt_tokens,output_tokens,tpot_slo_s\n0,10,5,-1\n",
     "llmsim", "row 2: tpot_slo_s"),
    ("llmsim-deadline-zero", "t.csv", "arrival_s,prompt_tokens,output_tokens,deadline_s\n0,10,5,0\n",
     "llmsim", "row 2: deadline_s"),
    ("llmsim-priority-fraction", "t.csv", "arrival_s,prompt_tokens,output_tokens,priority\n"
     "0,10,5,0.5\n", "llmsim", "row 2: priority"),
    ("llmsim-binary", "t.csv", "\x00\x01\x02\xff", "llmsim", "t.csv"),
    ("azure-bad-timestamp", "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,10,5\n",
     "azure", "TIMESTAMP"),
    ("azure-missing-column", "a.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6805900,10\n",
     "azure", "GeneratedTokens"),
    ("mooncake-not-json", "m.jsonl", "not json\n", "mooncake", "not JSON lines"),
    ("mooncake-missing-field", "m.jsonl", '{"timestamp": 0, "input_length": 10}\n', "mooncake",
     "output_length"),
    ("mooncake-text-timestamp", "m.jsonl",
     '{"timestamp": "noon", "input_length": 10, "output_length": 5}\n', "mooncake", "timestamp"),
    ("burstgpt-text-timestamp", "b.csv", "Timestamp,Request tokens,Response tokens\nnoon,10,5\n",
     "burstgpt", "Timestamp"),
    ("burstgpt-missing-column", "b.csv", "Timestamp,Request tokens\n0,10\n", "burstgpt",
     "Response tokens"),
]

# (id, argv after the command, fragment); scenario files: s.yaml (valid), sweep files written
OPTIONS: list[tuple[str, list[str], str]] = [
    ("goodput-seeds-zero", ["goodput", "s.yaml", "--seeds", "0"], "--seeds"),
    ("goodput-per-seed-one", ["goodput", "s.yaml", "--per-seed"], "--per-seed"),
    ("goodput-metric-unknown", ["goodput", "s.yaml", "--metric", "latency"], "--metric"),
    ("goodput-target-above-1", ["goodput", "s.yaml", "--target", "2"], "--target"),
    ("goodput-closed", ["goodput", "s.yaml", "--set", "workload.arrival={kind: closed}"],
     "open arrival"),
    ("sweep-workers-zero", ["sweep", "sw.yaml", "--workers", "0"], "--workers"),
    ("sweep-missing", ["sweep", "nope.yaml"], "sweep file not found"),
    ("sweep-bad-yaml", ["sweep", "bad.yaml"], "invalid YAML"),
    ("sweep-unknown-axis", ["sweep", "axis.yaml"], "colour"),
    ("sweep-empty-axis", ["sweep", "empty.yaml"], "no values"),
    ("sweep-no-grid", ["sweep", "nogrid.yaml"], "grid"),
    ("sweep-out-is-file", ["sweep", "sw.yaml", "--out", "afile"], "not a folder"),
    ("run-out-is-file", ["run", "s.yaml", "--out", "afile"], "not a folder"),
    ("run-out-empty", ["run", "s.yaml", "--out", ""], "--out"),
    ("run-out-dot", ["run", "s.yaml", "--out", "."], "--out"),
    ("run-scenario-missing", ["run", "nope.yaml"], "not found"),
    ("run-scenario-folder", ["run", "."], "is a directory"),
    ("run-scenario-not-utf8", ["run", "bin.yaml"], "not UTF-8"),
    ("run-scenario-bad-yaml", ["run", "bad.yaml"], "invalid YAML"),
    ("run-scenario-duplicate-key", ["run", "dup.yaml"], "duplicate key"),
    ("run-scenario-list", ["run", "list.yaml"], "mapping"),
    ("run-scenario-empty", ["run", "empty.yaml"], "mapping"),
    ("check-duplicate-nested-key", ["check", "dup2.yaml"], "duplicate key"),
    ("check-all-rejected", ["check", "s.yaml", "--set", "workload.prompt_tokens.tokens=5000"],
     "every one of the 20 requests would be rejected"),
    ("regress-unknown-case", ["regress", "--root", str(REPO), "--case", "nope"], "--case"),
    ("regress-not-a-checkout", ["regress", "--root", "."], "--root"),
    ("placement-colocated", ["placement", "s.yaml", "--rate", "1"], "disaggregated"),
    ("export-missing", ["workload", "export", "nope.yaml", "--out", "x.csv"], "not found"),
]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(BASE)
    (tmp_path / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00name: x")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    (tmp_path / "dup.yaml").write_text(BASE + "seed: 3\n")
    (tmp_path / "dup2.yaml").write_text(BASE.replace("policy: {kind: vllm}",
                                                     "policy: {kind: vllm, kind: orca}"))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "sw.yaml").write_text("scenario: s.yaml\ngrid: {seed: [0, 1]}\n")
    (tmp_path / "axis.yaml").write_text("scenario: s.yaml\ngrid: {colour: [1]}\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "nogrid.yaml").write_text("scenario: s.yaml\n")
    (tmp_path / "empty_axis.yaml").write_text("scenario: s.yaml\ngrid: {seed: []}\n")
    (tmp_path / "empty.yaml").write_text("")
    runner = CliRunner()

    def invoke(*args: str):
        before = sorted(p.name for p in tmp_path.iterdir())
        res = runner.invoke(app, list(args))
        after = sorted(p.name for p in tmp_path.iterdir())
        return res, set(after) - set(before)

    return invoke


def assert_one_line(res, new_files, fragment):
    assert res.exception is None or isinstance(res.exception, SystemExit), \
        f"traceback: {res.exception!r}"
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.stderr
    assert fragment in lines[0], lines[0]
    assert not new_files, f"left behind: {new_files}"


@pytest.mark.parametrize("sets,fragment", [pytest.param(s, f, id=i) for i, s, f in SETS])
def test_bad_scenario_field(cli, sets, fragment):
    args = ["run", "s.yaml", "--no-plots", "--out", "out"]
    for s in sets:
        args += ["--set", s]
    assert_one_line(*cli(*args), fragment)


@pytest.mark.parametrize("name,content,fmt,fragment",
                         [pytest.param(n, c, f, fr, id=i) for i, n, c, f, fr in TRACES])
def test_bad_trace(cli, tmp_path, name, content, fmt, fragment):
    (tmp_path / name).write_bytes(content.encode("latin-1"))
    res, new = cli("run", "s.yaml", "--no-plots", "--out", "out", "--set",
                   f"workload={{kind: trace, path: {name}, format: {fmt}}}")
    assert_one_line(res, new - {name}, fragment)


@pytest.mark.parametrize("argv,fragment", [pytest.param(a, f, id=i) for i, a, f in OPTIONS])
def test_bad_option_or_file(cli, tmp_path, argv, fragment):
    if "empty.yaml" in argv and argv[0] == "sweep":
        argv = [a.replace("empty.yaml", "empty_axis.yaml") for a in argv]
    assert_one_line(*cli(*argv), fragment)


def test_the_corpus_is_large_and_distinct():
    ids = [c[0] for c in SETS] + [c[0] for c in TRACES] + [c[0] for c in OPTIONS]
    assert len(ids) == len(set(ids)) >= 150
    json.dumps(ids)


def test_an_echoed_value_with_a_line_break_stays_on_one_line(cli):
    res, new = cli("run", "s.yaml", "--no-plots", "--out", "out", "--set", 'policy={kind: "a\\nb"}')
    assert_one_line(res, new, "a\\nb")
