"""The command line end to end: outputs, and one-line errors with exit code 2. Most tests run
the entry point in process (the same ``main``, argv and streams, without a Python start-up
each); a few run it as a real subprocess."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import pandas as pd
import pytest

from llmsim.cli import main
from tests.conftest import REPO


def llmsim(*args, cwd=REPO):
    """``llmsim ARGS`` in process, as a CompletedProcess (an exception escaping ``main`` would
    be a traceback, and fails the test)."""
    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_argv = os.getcwd(), sys.argv
    os.chdir(cwd)
    sys.argv = ["llmsim", *map(str, args)]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def llmsim_subprocess(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "llmsim", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    text = " ".join(lines)
    assert text.startswith("error:"), proc.stderr
    for f in fragments:
        assert f in text, text


def test_run_writes_every_output(tmp_path):
    out = tmp_path / "run"
    proc = llmsim_subprocess("run", "--out", str(out), "--set", "workload.num_requests=300")
    assert proc.returncode == 0, proc.stderr
    assert "SLO attainment" in proc.stdout and "TTFT" in proc.stdout
    for f in ("requests.csv", "steps.csv", "summary.json", "scenario.yaml", "latency_cdf.png",
              "timeline.png"):
        assert (out / f).stat().st_size > 0, f
    req = pd.read_csv(out / "requests.csv")
    assert len(req) == 300
    for col in ("request_id", "arrival_s", "prompt_tokens", "output_tokens", "first_token_s",
                "finish_s", "ttft_s", "tpot_s", "e2e_s", "instance", "num_preemptions", "status"):
        assert col in req.columns
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_finished"] == 300
    # the resolved scenario re-runs to the same summary
    again = tmp_path / "again"
    assert llmsim("run", str(out / "scenario.yaml"), "--out", str(again), "--no-plots").returncode == 0
    rerun = json.loads((again / "summary.json").read_text())
    # provenance: the same scenario (hash), seed and llmsim; only the wall time may differ
    prov, prov2 = summary.pop("provenance"), rerun.pop("provenance")
    assert prov2.pop("wall_s") > 0 and prov.pop("wall_s") > 0 and prov2 == prov
    assert prov["seed"] == 0 and len(prov["scenario_sha256"]) == 64
    assert rerun == summary


def test_check_and_policies():
    proc = llmsim("check", "scenarios/vllm.yaml")
    assert proc.returncode == 0 and proc.stdout.startswith("ok:")
    proc = llmsim("policies")
    assert proc.returncode == 0
    for name in ("static", "orca", "vllm", "sarathi", "max_num_batched_tokens", "max_wait_s"):
        assert name in proc.stdout
    # no pointer into documents outside the repository, no raw markup; each cites its source
    assert "policies.md" not in proc.stdout and "``" not in proc.stdout
    assert "after: Kwon et al." in proc.stdout and "OSDI 2024" in proc.stdout


def test_version_names_the_release():
    import llmsim as pkg

    proc = llmsim("--version")
    assert proc.returncode == 0 and proc.stdout.startswith(f"llmsim {pkg.__version__}")


def test_the_default_results_folder_says_when_it_replaces_a_run(tmp_path):
    for _ in range(2):
        proc = llmsim("run", "--set", "workload.num_requests=20", "--no-plots", cwd=tmp_path)
        assert proc.returncode == 0
    assert "runs/latest/ held an earlier run, now replaced" in proc.stderr
    again = llmsim("run", "--set", "workload.num_requests=20", "--no-plots", "--out", "mine",
                   cwd=tmp_path)
    assert again.returncode == 0 and "replaced" not in again.stderr


def test_a_missing_shared_trace_says_where_traces_come_from(tmp_path):
    sc = write(tmp_path, BASE.replace("trace.csv", "../shared/traces/nothing_here/x.csv"))
    assert_one_line_error(llmsim("run", sc, "--out", str(tmp_path / "o")), "trace file not found",
                          "traces/README.md")


def test_a_piped_table_keeps_every_number_whole(tmp_path):
    proc = llmsim_subprocess("run", "scenarios/omniserve-yi34b.yaml", "--set",
                             "simulation.stop_at_s=20", "--out", str(tmp_path / "o"), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("│")]
    assert rows and all(ln.count("│") == 3 for ln in rows)  # one line per row: nothing folded
    assert any("LS: SLO attainment" in ln for ln in rows) and "…" not in proc.stdout


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


BASE = """
model: llama-2-7b
cluster: {gpu: a100-80gb, max_model_len: 2048}
policy: {kind: vllm}
workload: {kind: trace, path: trace.csv}
"""


def test_yaml_typo(tmp_path):
    assert_one_line_error(llmsim("check", write(tmp_path, "model: [unclosed\n")), "invalid YAML")


def test_unknown_key(tmp_path):
    assert_one_line_error(llmsim("check", write(tmp_path, BASE + "clutser: {}\n")), "clutser",
                          "clutser: unknown field; did you mean cluster?")


def test_wrong_type(tmp_path):
    assert_one_line_error(llmsim("check", write(tmp_path, BASE.replace("{kind: vllm}",
                          "{kind: vllm, max_num_seqs: lots}"))), "policy.max_num_seqs")


def test_unknown_policy(tmp_path):
    assert_one_line_error(llmsim("check", write(tmp_path, BASE.replace("vllm", "magic"))), "policy")


@pytest.mark.parametrize("rows,fragment", [
    ("0,10,5\n1,-4,5\n", "row 3: prompt_tokens"),
    ("0,10,5\n1,,5\n", "row 3: prompt_tokens"),
    ("0,10,5\n2,10,5\n1,10,5\n", "row 4: arrival_s goes backwards"),
    ("0,10,5\nnan,10,5\n", "row 3: arrival_s"),
])
def test_bad_trace_rows(tmp_path, rows, fragment):
    write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n" + rows, "trace.csv")
    assert_one_line_error(llmsim("run", write(tmp_path, BASE), "--out", str(tmp_path / "o")), fragment)


def test_model_that_does_not_fit(tmp_path):
    write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n0,10,5\n", "trace.csv")
    text = BASE.replace("llama-2-7b", "llama-3.1-70b")
    assert_one_line_error(llmsim("check", write(tmp_path, text)), "does not fit")


def test_request_longer_than_capacity_is_rejected_and_reported(tmp_path):
    write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n0,10,5\n0.5,1900,400\n1,12,6\n",
          "trace.csv")
    out = tmp_path / "o"
    proc = llmsim("run", write(tmp_path, BASE), "--out", str(out), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    req = pd.read_csv(out / "requests.csv")
    assert list(req["status"]) == ["finished", "rejected", "finished"]
    assert "max_model_len" in req["reject_reason"].iloc[1]


def test_missing_scenario_and_bad_set(tmp_path):
    assert_one_line_error(llmsim("check", str(tmp_path / "nope.yaml")), "not found")
    assert_one_line_error(llmsim("check", "--set", "cluster.tp"), "key.path=value")
    assert_one_line_error(llmsim("check", "--set", "cluster.num_instances=-2"),
                          "cluster.num_instances")


def test_set_indexes_lists():
    """A stream of a mix is reached by its index; a bad index or a scalar path says so."""
    from llmsim.scenario import load_scenario
    path = REPO / "scenarios" / "omniserve-yi34b.yaml"
    sc = load_scenario(path, ["workload.streams.0.arrival.rate_per_s=7.5",
                              "workload.streams.-1.num_requests=12"])
    assert sc.workload.streams[0].arrival.rate_per_s == 7.5
    assert sc.workload.streams[1].num_requests == 12
    assert_one_line_error(llmsim("check", str(path), "--set", "workload.streams.2.seed=1"),
                          "workload.streams is a list of 2; index it with 0..1")
    assert_one_line_error(llmsim("check", str(path), "--set", "workload.streams.x=1"),
                          "index it with 0..1")
    assert_one_line_error(llmsim("check", "--set", "seed.x=1"), "seed is not a mapping")


def test_unknown_model_name(tmp_path):
    write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n0,10,5\n", "trace.csv")
    assert_one_line_error(llmsim("check", write(tmp_path, BASE.replace("llama-2-7b", "gpt-9"))),
                          "unknown model")


def test_user_defined_model_and_gpu_inline(tmp_path):
    write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n0,10,5\n", "trace.csv")
    text = BASE.replace("model: llama-2-7b", "model: {name: tiny, num_layers: 4, hidden_size: 512, "
                        "num_heads: 8, num_kv_heads: 8, head_dim: 64, intermediate_size: 1024, "
                        "vocab_size: 1000, max_model_len: 2048}").replace(
        "gpu: a100-80gb", "gpu: {name: mygpu, memory_gib: 16, memory_bandwidth_gbps: 500, "
        "peak_bf16_tflops: 100, interconnect_gbps: 50, pcie_gbps: 16}")
    proc = llmsim("check", write(tmp_path, text))
    assert proc.returncode == 0 and "tiny on mygpu: 1 x TP1 vllm" in proc.stdout


@pytest.mark.parametrize("args,fragment", [
    (("run", "--bogus"), "No such option: --bogus"),
    (("nope",), "No such command 'nope'"),
    (("run", "a.yaml", "b.yaml"), "unexpected extra argument"),
    (("goodput", "--seeds", "x"), "'--seeds'"),
])
def test_usage_errors_are_one_line(args, fragment):
    assert_one_line_error(llmsim_subprocess(*args), fragment)


def test_no_arguments_show_the_help():
    proc = llmsim_subprocess()
    assert proc.returncode == 0 and "Usage" in proc.stdout + proc.stderr


def test_switching_a_kind_says_how_to_replace_the_section(tmp_path):
    assert_one_line_error(llmsim("run", "--set", "policy.kind=static", "--out", tmp_path),
                          "policy.max_num_batched_tokens: unknown field",
                          "--set 'policy={kind: ..., <knob>: ...}'")
    assert_one_line_error(llmsim("run", "--set", "latency.kind=roofline", "--out", tmp_path),
                          "latency.engine: unknown field", "--set 'latency={kind:")
    ok = llmsim("run", "--set", "policy={kind: static}", "--set", "workload.num_requests=20",
                "--no-plots", "--out", tmp_path)
    assert ok.returncode == 0, ok.stderr
