"""The lab's command line (``python -m calibration`` = ``llmsim-lab``) end to end: scoring
llmsim against real engine runs, and one-line errors. The whole committed set is behind the
``slow`` marker (``.ci/run`` runs it as its own step)."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO


def lab(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "calibration", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_validate_session_and_pooled(tmp_path):
    """`llmsim-lab validate` prices each committed case at its session's speed; --pooled does not."""
    tables = {}
    for name, extra in (("session", ()), ("pooled", ("--pooled",))):
        proc = lab("validate", "--csv", str(tmp_path / f"{name}.csv"), *extra)
        assert proc.returncode == 0, proc.stderr
        tables[name] = pd.read_csv(tmp_path / f"{name}.csv")
    assert len(tables["session"]) == len(tables["pooled"]) >= 41
    assert not tables["session"]["e2e_p50"].equals(tables["pooled"]["e2e_p50"])
    # each case of a repeated configuration is held to that configuration's own spread
    within = tables["session"]["within_spread"].dropna()
    assert len(within) >= 100 and within.isin([0.0, 1.0]).all() and within.mean() > 0.8
    assert "spread" in proc.stdout


def test_the_parts_model_refuses_one_line_where_no_parts_run_is_committed():
    proc = lab("parts", "--gpu", "h100", "--model", "llama-3.1-70b")
    assert proc.returncode == 2 and "no parts runs (profiler traces or forward probes) of " \
        "h100/llama-3.1-70b" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_parts_model_comes_from_the_trace_runs_where_the_probe_found_no_clean_step():
    from calibration.step_parts import load_parts, load_trace_parts

    # the committed H200 probe run: the engine's forward waited on the GPU in every call ...
    assert not load_parts(gpu="h200") and load_trace_parts(gpu="h200")
    # ... so the parts model is the profiler traces', scored on every committed replay
    proc = lab("parts", "--gpu", "h200")
    assert proc.returncode == 0, proc.stderr
    assert "'source': 'profiler trace'" in proc.stdout
    assert re.search(r"parts: runs the whole-step fit was not fitted on, median \|total error\| "
                     r"[0-9.]+%", proc.stdout)


def test_the_graph_parts_model_is_scored_on_the_graph_replays():
    proc = lab("parts", "--gpu", "h200", "--graph")
    assert proc.returncode == 0, proc.stderr
    # the held-out graph runs are the runs the whole-step graph fit was not fitted on
    text = " ".join(proc.stdout.split())  # rich wraps lines at the terminal's width
    m = re.search(r"parts: runs the whole-step fit was not fitted on, median \|total error\| "
                  r"([0-9.]+)%, median step MAPE ([0-9.]+)%", text)
    assert m and float(m.group(2)) < 15  # the held-out graph runs' steps (6.0% when written)
    proc = lab("parts", "--gpu", "h200", "--model", "qwen2.5-7b", "--graph")
    if proc.returncode:  # no Qwen graph replay committed yet: one line, no traceback
        assert proc.returncode == 2 and "hf_cb_graph_parts" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_model_never_run_in_graph_mode_is_priced_by_borrowed_graph_parts():
    """Qwen2.5-7B on the H200 has eager parts runs but (until its graph runs are committed) no
    CUDA-graph run: its graph mode is its own kernels on padded shapes plus the replay host part
    fitted on Llama's graph runs, and a scenario asking for hf_cb_graph is priced by that, with
    the stand-in named where the run reports its cost model."""
    import json

    from calibration.engine_fit import ENGINE_FITS, FIT_FILE, EngineFitConfig, EngineFitLatency
    from llmsim.latency.base import StepShape

    fits = json.loads((ENGINE_FITS / "h200" / "qwen2.5-7b" / FIT_FILE).read_text())
    llama = json.loads((ENGINE_FITS / "h200" / "llama-3.1-8b" / FIT_FILE).read_text())
    if "hf_cb_graph" in fits:
        pytest.skip("Qwen graph runs are committed: its graph mode has a whole-step fit")
    gp = fits["hf_cb_graph_parts"]
    assert gp["parts"]["host_from"] == "llama-3.1-8b"
    assert gp["coef_s"][:2] == llama["hf_cb_graph_parts"]["coef_s"][:2]  # the replay host part
    assert gp["coef_s"][5:] == fits["hf_cb_parts"]["coef_s"][5:]  # Qwen's own kernels
    assert gp["coef_s"][3] == pytest.approx(llama["hf_cb_graph_parts"]["coef_s"][3] * 28 / 32)
    lat = EngineFitLatency("qwen2.5-7b", "h200", 1, EngineFitConfig(engine="hf_cb_graph"))
    eager = EngineFitLatency("qwen2.5-7b", "h200", 1, EngineFitConfig(engine="hf_cb_parts"))
    assert "hf_cb_graph_parts" in lat.source()
    notes = " ".join(lat.domain().notes)
    assert "no hf_cb_graph step fit" in notes and "llama-3.1-8b" in notes
    dec = StepShape((), 32, 32 * 1500, 1500)
    lat.advance(dec, 1)
    eager.advance(dec, 1)
    assert lat.step_time_s(dec) < 0.7 * eager.step_time_s(dec)  # no launches to issue


def test_compare_predicts_a_held_out_run_as_validate_does(tmp_path):
    """`llmsim-lab compare` on a run that is not committed fits on the committed runs too (as
    `validate --root` does), not on its own folder's siblings alone."""
    import re
    import shutil

    src = REPO / "calibration" / "validation" / "h200"
    for name in ("qwen7b_fifo_mbt256_queue_r4", "qwen7b_pf_mbt1024_sat_r4"):
        shutil.copytree(src / name, tmp_path / "held" / "h200" / name)
    proc = lab("validate", "--root", str(tmp_path / "held"), "--csv", str(tmp_path / "v.csv"))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "v.csv").set_index("case")
    proc = lab("compare", str(tmp_path / "held" / "h200" / "qwen7b_fifo_mbt256_queue_r4"))
    assert proc.returncode == 0, proc.stderr
    shown = float(re.search(r"median \|error\| over p50/p90: ([0-9.]+)%", proc.stdout).group(1))
    assert shown == pytest.approx(100 * table.loc["qwen7b_fifo_mbt256_queue_r4", "median_abs_err"],
                                  abs=0.06)


def test_validate_a_held_out_folder(tmp_path):
    """`llmsim-lab validate --root` scores a folder of real runs that is not committed, fitted on
    the committed runs and its own other runs; a folder with no runs is a one-line error."""
    import shutil

    src = REPO / "calibration" / "validation" / "h200"
    for name in ("llama8b_fifo_mbt256_queue", "llama8b_static_fcfs"):
        shutil.copytree(src / name, tmp_path / "held" / "h200" / name)
    proc = lab("validate", "--root", str(tmp_path / "held"), "--csv", str(tmp_path / "v.csv"))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "v.csv")
    assert sorted(table["case"]) == ["llama8b_fifo_mbt256_queue", "llama8b_static_fcfs"]
    assert (table["median_abs_err"] < 0.25).all()
    # the static groups' rows run past the generate microbenchmark's longest context (1,539):
    # the run flags that share of its busy time, and validate reports it per case
    share = table.set_index("case")["outside_share"]
    assert share["llama8b_static_fcfs"] > 0.05 and 0.0 <= share.min() and share.max() <= 1.0
    assert "priced partly outside the measured range of their fit" in " ".join(proc.stdout.split())
    # one held-out run, no configuration run twice: summarised without a spread or a mean
    shutil.copytree(src / "llama8b_fifo_mbt256_queue", tmp_path / "once" / "h200" / "heldout_q")
    info_path = tmp_path / "once" / "h200" / "heldout_q" / "case.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "session": "a-session-of-its-own"}))
    proc = lab("validate", "--root", str(tmp_path / "once"), "--csv", str(tmp_path / "o.csv"))
    assert proc.returncode == 0, proc.stderr
    assert "held out (heldout_*, never fitted on): 1 runs" in " ".join(proc.stdout.split())
    # alone in its session: priced at the fit's own speed, and the summary says so
    once = pd.read_csv(tmp_path / "o.csv").iloc[0]
    assert once["session_runs"] == 0 and once["host_scale"] == 1.0
    assert "priced with no session speed (no other run of their engine variant in their " \
        "session, so at the fit's own speed): 1 of 1 cases" in " ".join(proc.stdout.split())
    (tmp_path / "empty").mkdir()
    proc = lab("validate", "--root", str(tmp_path / "empty"))
    assert proc.returncode != 0 and "--root: no measured cases" in proc.stderr
    assert "Traceback" not in proc.stderr
    # a case that ran after another in one process, without that run beside it
    shutil.copytree(src / "llama8b_static_sorted", tmp_path / "alone" / "h200" / "sorted")
    proc = lab("validate", "--root", str(tmp_path / "alone"))
    assert proc.returncode != 0 and "ran after llama8b_static_fcfs" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
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
        proc = lab("validate", "--root", str(tmp_path / "held"), "--csv",
                      str(tmp_path / f"{mode}.csv"), *extra)
        assert proc.returncode == 0, proc.stderr
        tables[mode] = pd.read_csv(tmp_path / f"{mode}.csv").set_index("case")
    assert "own host speed (diagnostic)" in proc.stdout
    cb, static = "qwen7b_fifo_mbt512_code_r17", "llama8b_static_fcfs"
    # that run went fast while its session went slow: its own speed removes most of the error
    assert tables["own"].loc[cb, "ttft_p50"] < 0.5 * tables["session"].loc[cb, "ttft_p50"]
    assert tables["own"].loc[static].equals(tables["session"].loc[static])
    proc = lab("validate", "--own-speed", "--pooled")
    assert proc.returncode != 0 and "choose one" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_decisions_on_a_held_out_folder(tmp_path):
    """`llmsim-lab decisions --root --pairs` scores configuration pairs of runs that are not
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
    proc = lab("decisions", "--root", str(tmp_path / "held"), "--pairs", str(pairs),
                  "--csv", str(tmp_path / "d.csv"))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "d.csv")
    assert len(table) == 4 and set(table["stat"]) == {"mean_e2e", "p90_ttft"}
    assert (table["real"] < 1).all()  # the queueing slice (b) is served faster than the saturated
    assert f"llmsim reproduces {int(table['reproduced'].sum())} of 4 decisions" in proc.stdout
    assert "the engine reproduces its own decision from another session" in " ".join(proc.stdout.split())
    pairs.write_text("pairs:\n  - [h200/nothing_here, h200/qwen7b_pf_mbt1024_sat_r4]\n")
    proc = lab("decisions", "--root", str(tmp_path / "held"), "--pairs", str(pairs))
    assert proc.returncode != 0 and "not a measured case" in proc.stderr
    pairs.write_text("pairs: [h200/a]\n")
    proc = lab("decisions", "--root", str(tmp_path / "held"), "--pairs", str(pairs))
    assert proc.returncode != 0 and "pairs[0] must be" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = lab("decisions", "--pooled", "--own-speed")
    assert proc.returncode != 0 and "choose one" in proc.stderr
