"""The command line, end to end in a subprocess: outputs, and one-line errors with exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO


def llmsim(*args, cwd=REPO):
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
    proc = llmsim("run", "--out", str(out), "--set", "workload.num_requests=300")
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
    assert json.loads((again / "summary.json").read_text()) == summary


def test_check_and_policies():
    proc = llmsim("check", "scenarios/vllm.yaml")
    assert proc.returncode == 0 and proc.stdout.startswith("ok:")
    proc = llmsim("policies")
    assert proc.returncode == 0
    for name in ("static", "orca", "vllm", "sarathi", "chunk_size", "max_wait_s"):
        assert name in proc.stdout


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
                          "Extra inputs")


def test_wrong_type(tmp_path):
    assert_one_line_error(llmsim("check", write(tmp_path, BASE.replace("{kind: vllm}",
                          "{kind: vllm, max_num_seqs: lots}"))), "policy.vllm.max_num_seqs")


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
    assert proc.returncode == 0 and "tiny on 1 x mygpu" in proc.stdout


def test_validate_session_and_pooled(tmp_path):
    """`llmsim validate` prices each committed case at its session's speed; --pooled does not."""
    tables = {}
    for name, extra in (("session", ()), ("pooled", ("--pooled",))):
        proc = llmsim("validate", "--csv", str(tmp_path / f"{name}.csv"), *extra)
        assert proc.returncode == 0, proc.stderr
        tables[name] = pd.read_csv(tmp_path / f"{name}.csv")
    assert len(tables["session"]) == len(tables["pooled"]) >= 41
    assert not tables["session"]["e2e_p50"].equals(tables["pooled"]["e2e_p50"])


def test_compare_predicts_a_held_out_run_as_validate_does(tmp_path):
    """`llmsim compare` on a run that is not committed fits on the committed runs too (as
    `validate --root` does), not on its own folder's siblings alone."""
    import re
    import shutil

    src = REPO / "calibration" / "validation" / "h200"
    for name in ("qwen7b_fifo_mbt256_queue_r4", "qwen7b_pf_mbt1024_sat_r4"):
        shutil.copytree(src / name, tmp_path / "held" / "h200" / name)
    proc = llmsim("validate", "--root", str(tmp_path / "held"), "--csv", str(tmp_path / "v.csv"))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "v.csv").set_index("case")
    proc = llmsim("compare", str(tmp_path / "held" / "h200" / "qwen7b_fifo_mbt256_queue_r4"))
    assert proc.returncode == 0, proc.stderr
    shown = float(re.search(r"median \|error\| over p50/p90: ([0-9.]+)%", proc.stdout).group(1))
    assert shown == pytest.approx(100 * table.loc["qwen7b_fifo_mbt256_queue_r4", "median_abs_err"],
                                  abs=0.06)


def test_validate_a_held_out_folder(tmp_path):
    """`llmsim validate --root` scores a folder of real runs that is not committed, fitted on
    the committed runs and its own other runs; a folder with no runs is a one-line error."""
    import shutil

    src = REPO / "calibration" / "validation" / "h200"
    for name in ("llama8b_fifo_mbt256_queue", "llama8b_static_fcfs"):
        shutil.copytree(src / name, tmp_path / "held" / "h200" / name)
    proc = llmsim("validate", "--root", str(tmp_path / "held"), "--csv", str(tmp_path / "v.csv"))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "v.csv")
    assert sorted(table["case"]) == ["llama8b_fifo_mbt256_queue", "llama8b_static_fcfs"]
    assert (table["median_abs_err"] < 0.25).all()
    (tmp_path / "empty").mkdir()
    proc = llmsim("validate", "--root", str(tmp_path / "empty"))
    assert proc.returncode != 0 and "--root: no measured cases" in proc.stderr
    assert "Traceback" not in proc.stderr
    # a case that ran after another in one process, without that run beside it
    shutil.copytree(src / "llama8b_static_sorted", tmp_path / "alone" / "h200" / "sorted")
    proc = llmsim("validate", "--root", str(tmp_path / "alone"))
    assert proc.returncode != 0 and "ran after llama8b_static_fcfs" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_own_speed_is_a_labelled_diagnostic(tmp_path):
    """`validate --own-speed` prices a continuous-batching case at its own run's speed (its
    table says it is a diagnostic) and leaves a static case at its session's; it takes one
    mode at a time."""
    import shutil

    src = REPO / "calibration" / "validation" / "h100"
    for name in ("qwen7b_fifo_mbt512_code_r17", "llama8b_static_fcfs"):
        shutil.copytree(src / name, tmp_path / "held" / "h100" / name)
    tables = {}
    for mode, extra in (("session", ()), ("own", ("--own-speed",))):
        proc = llmsim("validate", "--root", str(tmp_path / "held"), "--csv",
                      str(tmp_path / f"{mode}.csv"), *extra)
        assert proc.returncode == 0, proc.stderr
        tables[mode] = pd.read_csv(tmp_path / f"{mode}.csv").set_index("case")
    assert "own host speed (diagnostic)" in proc.stdout
    cb, static = "qwen7b_fifo_mbt512_code_r17", "llama8b_static_fcfs"
    # that run went fast while its session went slow: its own speed removes most of the error
    assert tables["own"].loc[cb, "ttft_p50"] < 0.5 * tables["session"].loc[cb, "ttft_p50"]
    assert tables["own"].loc[static].equals(tables["session"].loc[static])
    proc = llmsim("validate", "--own-speed", "--pooled")
    assert proc.returncode != 0 and "choose one" in proc.stderr and "Traceback" not in proc.stderr


def test_decisions_on_a_held_out_folder(tmp_path):
    """`llmsim decisions --root --pairs` scores configuration pairs of runs that are not
    committed: a table per (pair, statistic) and a count; where a configuration pair ran in two
    sessions it also says how often the engine reproduced its own decision. A pair naming a
    missing run, or a malformed pairs file, is a one-line error."""
    import shutil

    src = REPO / "calibration" / "validation" / "h200"
    names = ("qwen7b_pf_mbt1024_sat_r4", "qwen7b_fifo_mbt256_queue_r4",
             "qwen7b_pf_mbt1024_sat_r12", "qwen7b_fifo_mbt256_queue_r12")
    for name in names:
        shutil.copytree(src / name, tmp_path / "held" / "h200" / name)
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text("pairs:\n" + "".join(f"  - [h200/{a}, h200/{b}]\n"
                                          for a, b in (names[:2], names[2:])))
    proc = llmsim("decisions", "--root", str(tmp_path / "held"), "--pairs", str(pairs),
                  "--csv", str(tmp_path / "d.csv"))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "d.csv")
    assert len(table) == 4 and set(table["stat"]) == {"mean_e2e", "p90_ttft"}
    assert (table["real"] < 1).all()  # the queueing slice (b) is served faster than the saturated
    assert f"llmsim reproduces {int(table['reproduced'].sum())} of 4 decisions" in proc.stdout
    assert "the engine reproduces its own decision from another session" in " ".join(proc.stdout.split())
    pairs.write_text("pairs:\n  - [h200/nothing_here, h200/qwen7b_pf_mbt1024_sat_r4]\n")
    proc = llmsim("decisions", "--root", str(tmp_path / "held"), "--pairs", str(pairs))
    assert proc.returncode != 0 and "not a measured case" in proc.stderr
    pairs.write_text("pairs: [h200/a]\n")
    proc = llmsim("decisions", "--root", str(tmp_path / "held"), "--pairs", str(pairs))
    assert proc.returncode != 0 and "pairs[0] must be" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = llmsim("decisions", "--pooled", "--own-speed")
    assert proc.returncode != 0 and "choose one" in proc.stderr
